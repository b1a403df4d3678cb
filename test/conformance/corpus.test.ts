/**
 * Every bootstrap of the conformance corpus, loaded as `portico validate` loads it: it must either load cleanly
 * or be refused with `unsupported_extension` / `unsupported_field` errors only, never crash or hang. Tier-3
 * files must name their extension (and the CLI must refuse them). Prints a summary table at the end.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { ConfigError } from '../../src/config/errors.js';
import { CLI_REFUSALS, FILE_EXPECTATIONS, type FileExpectation, type RejectionExpectation, tierOf } from './examples.js';
import { CORPUS_FOUND, corpusBootstraps, corpusPath, type LoadOutcome, runPortico, SKIP_MESSAGE, skipWithoutCorpus } from './harness.js';

const LOAD_TIMEOUT_MS = 10_000;
const CLEAN_CODES: ReadonlySet<string> = new Set(['unsupported_extension', 'unsupported_field']);

type Loaded = LoadOutcome | { file: string; result: 'hung'; errors: ConfigError[] };

/** One worker thread loading files on request; a file that takes too long gets the worker terminated. */
class LoadWorker {
  private worker: Worker | undefined;
  private seq = 0;

  load(file: string): Promise<Loaded> {
    const worker = (this.worker ??= new Worker(new URL('./load-worker.js', import.meta.url)));
    const id = ++this.seq;
    return new Promise((resolve) => {
      const done = (outcome: Loaded, kill: boolean): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (kill) {
          this.worker = undefined;
          void worker.terminate();
        }
        resolve(outcome);
      };
      const onMessage = (message: { id: number; outcome: LoadOutcome }): void => {
        if (message.id === id) done(message.outcome, false);
      };
      const onError = (err: Error): void => done({ file, result: 'crashed', errors: [], crash: err.stack ?? String(err) }, true);
      const timer = setTimeout(() => done({ file, result: 'hung', errors: [] }, true), LOAD_TIMEOUT_MS);
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.postMessage({ id, file });
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = undefined;
  }
}

/** The last field name of a path: `a.b[0].c["x.y"]` → `c`. */
function lastField(path: string): string {
  const bare = path.replace(/(\[[^\]]*\])+$/, '');
  return bare.slice(bare.lastIndexOf('.') + 1);
}

function describeError(e: ConfigError): string {
  return `${e.path || '(root)'}: ${e.message} [${e.code}]`;
}

function assertClean(outcome: Loaded, expectation: FileExpectation): void {
  assert.notEqual(outcome.result, 'hung', `loading did not finish within ${LOAD_TIMEOUT_MS} ms`);
  if (outcome.result === 'crashed') assert.fail(`loading threw:\n${outcome.crash}`);
  if (expectation.mustLoad) {
    assert.equal(outcome.result, 'loads', `expected to load, refused with:\n${outcome.errors.map(describeError).join('\n')}`);
  }
  if (outcome.result === 'loads') return;
  assert.ok(outcome.errors.length > 0, 'refused without any error');
  const problems: string[] = [];
  for (const e of outcome.errors) {
    if (!CLEAN_CODES.has(e.code)) {
      problems.push(`not a clean refusal (only unsupported_extension/unsupported_field allowed): ${describeError(e)}`);
    } else if (e.path === '') {
      problems.push(`error without a path: ${describeError(e)}`);
    } else if (e.code === 'unsupported_extension') {
      if (!/^unsupported extension [\w.]+/.test(e.message)) problems.push(`extension not named: ${describeError(e)}`);
    } else if (!e.message.includes(lastField(e.path))) {
      problems.push(`message does not name the field ${lastField(e.path)}: ${describeError(e)}`);
    }
  }
  assert.deepEqual(problems, [], problems.join('\n'));
}

function assertRejection(outcome: Loaded, rejection: RejectionExpectation): void {
  const name = rejection.extension.replace(/\./g, '\\.');
  const named = new RegExp(`unsupported extension ${name}(?![\\w.])`);
  const hits = outcome.errors.filter((e) => e.code === 'unsupported_extension' && named.test(e.message));
  const all = outcome.errors.map(describeError).join('\n');
  assert.ok(hits.length > 0, `no "unsupported extension ${rejection.extension}" among:\n${all}`);
  if (rejection.path !== undefined) {
    const path = rejection.path;
    assert.ok(
      hits.some((e) => e.path === path || e.path.startsWith(`${path}.`) || e.path.startsWith(`${path}[`)),
      `"unsupported extension ${rejection.extension}" not reported at ${path}; errors:\n${all}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Summary

interface SummaryRow {
  file: string;
  tier: string;
  result: string;
  reasons: string;
}

function shortReason(e: ConfigError): string {
  if (e.code === 'unsupported_extension') return e.message.replace(/ \(.*\)$/, '').replace('unsupported extension', 'ext');
  if (e.code === 'unsupported_field') return `field ${lastField(e.path)}`;
  return `${e.code}: ${e.message}`;
}

function summaryRow(outcome: Loaded): SummaryRow {
  const reasons = [...new Set(outcome.errors.map(shortReason))];
  const shown = reasons.slice(0, 3).join('; ') + (reasons.length > 3 ? `; +${reasons.length - 3} more` : '');
  return {
    file: outcome.file,
    tier: String(tierOf(outcome.file) ?? '?'),
    result: outcome.result,
    reasons: outcome.result === 'crashed' ? (outcome.crash ?? '').split('\n')[0]! : shown,
  };
}

function formatSummary(rows: SummaryRow[]): string {
  const header: SummaryRow = { file: 'file', tier: 'tier', result: 'result', reasons: 'first reasons' };
  const widths = {
    file: Math.max(...[header, ...rows].map((r) => r.file.length)),
    result: Math.max(...[header, ...rows].map((r) => r.result.length)),
  };
  const line = (r: SummaryRow): string => `${r.file.padEnd(widths.file)}  ${r.tier.padEnd(4)}  ${r.result.padEnd(widths.result)}  ${r.reasons}`;
  const loads = rows.filter((r) => r.result === 'loads').length;
  return [
    'conformance corpus load summary',
    line(header),
    ...rows.map(line),
    `${rows.length} files: ${loads} load, ${rows.length - loads} refused or failing`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------

describe('conformance corpus: every bootstrap loads or is refused cleanly', () => {
  if (!CORPUS_FOUND) {
    it('corpus bootstraps', (t) => {
      t.skip(SKIP_MESSAGE);
    });
    return;
  }
  const worker = new LoadWorker();
  const outcomes = new Map<string, Promise<Loaded>>();
  const load = (file: string): Promise<Loaded> => {
    let outcome = outcomes.get(file);
    if (!outcome) outcomes.set(file, (outcome = worker.load(file)));
    return outcome;
  };
  const rows: SummaryRow[] = [];
  after(async () => {
    await worker.close();
    if (rows.length) console.log(formatSummary(rows));
  });

  for (const file of corpusBootstraps()) {
    const expectation = FILE_EXPECTATIONS[file] ?? {};
    const options: { timeout: number; todo?: string } = { timeout: LOAD_TIMEOUT_MS + 5000 };
    if (expectation.todo !== undefined) options.todo = expectation.todo;
    it(`${file} ${expectation.mustLoad ? 'loads' : 'loads or is refused cleanly'}`, options, async (t) => {
      if (skipWithoutCorpus(t)) return;
      const outcome = await load(file);
      rows.push(summaryRow(outcome));
      assertClean(outcome, expectation);
    });
    for (const rejection of expectation.rejects ?? []) {
      const rejectionOptions: { timeout: number; todo?: string } = { timeout: LOAD_TIMEOUT_MS + 5000 };
      if (rejection.todo !== undefined) rejectionOptions.todo = rejection.todo;
      const where = rejection.path !== undefined ? ` at ${rejection.path}` : '';
      it(`${file} is refused: unsupported extension ${rejection.extension}${where}`, rejectionOptions, async (t) => {
        if (skipWithoutCorpus(t)) return;
        const outcome = await load(file);
        assert.notEqual(outcome.result, 'loads', 'loaded, expected a refusal');
        assertRejection(outcome, rejection);
      });
    }
  }
});

describe('conformance corpus: tier 3 files are refused by the CLI', () => {
  for (const refusal of CLI_REFUSALS) {
    const expectLine = (stderr: string): void => {
      const lines = stderr.split('\n').filter((l) => l.includes(`unsupported extension ${refusal.extension}`));
      assert.ok(lines.length > 0, `stderr does not say "unsupported extension ${refusal.extension}":\n${stderr}`);
      assert.ok(
        lines.some((line) => line.startsWith(`${refusal.path}: `)),
        `no message gives the path ${refusal.path}:\n${lines.join('\n')}`,
      );
    };

    it(`portico validate -c ${refusal.file} exits 1 naming ${refusal.extension}`, async (t) => {
      if (skipWithoutCorpus(t)) return;
      const result = await runPortico(['validate', '-c', corpusPath(refusal.file)], 10_000);
      assert.equal(result.timedOut, false, 'portico validate hung');
      assert.equal(result.code, 1, `exit code ${result.code}, stderr:\n${result.stderr}`);
      expectLine(result.stderr);
    });

    it(`portico run -c ${refusal.file} refuses to start, quickly, with the same message`, async (t) => {
      if (skipWithoutCorpus(t)) return;
      const result = await runPortico(['run', '-c', corpusPath(refusal.file), '--drain-time-s', '0'], 10_000);
      assert.equal(result.timedOut, false, `portico run did not exit (it started?):\n${result.stderr}`);
      assert.equal(result.code, 1, `exit code ${result.code}, stderr:\n${result.stderr}`);
      assert.ok(result.elapsedMs < 5000, `took ${result.elapsedMs} ms to refuse`);
      expectLine(result.stderr);
    });
  }
});

/**
 * `npm run fuzz -- --target http1|config|regex|all [--runs N] [--seed S]`: the fuzz targets at length. Prints the
 * cases run, the time and, on a failure, the shrunk counterexample with the seed and path that replay it.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { TARGETS } from './targets.js';

const { values } = parseArgs({ options: { target: { type: 'string', default: 'all' }, runs: { type: 'string', default: '100000' }, seed: { type: 'string' } } });
const names = values.target === 'all' ? Object.keys(TARGETS) : [values.target];
let failed = false;
for (const name of names) {
  const target = TARGETS[name];
  if (target === undefined) throw new Error(`unknown target "${name}" (${Object.keys(TARGETS).join(', ')}, all)`);
  const { property, stop } = await target.start();
  const started = performance.now();
  const details = await fc.check(property as fc.IAsyncProperty<unknown>, { numRuns: Number(values.runs), seed: values.seed === undefined ? undefined : Number(values.seed), endOnFailure: true });
  await stop();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (details.failed) {
    failed = true;
    process.stdout.write(`${name}: FAILED after ${details.numRuns} cases in ${seconds} s (seed ${details.seed}, path ${details.counterexamplePath})\n${fc.defaultReportMessage(details)}\n`);
  } else {
    process.stdout.write(`${name}: ${details.numRuns} cases, no failure, ${seconds} s (seed ${details.seed})\n`);
  }
}
process.exitCode = failed ? 1 : 0;

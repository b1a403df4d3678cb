// RE2 patterns on each candidate regex engine: the cost of one match for typical route patterns, of a request
// against a table of 10 regex routes, the pathological `(a+)+$`, and (with --e2e) Portico's CPU per request with
// 10 regex routes against 10 prefix routes.
//
//   npm run build && node bench/regex.mjs [--e2e] [--seconds 5] [--runs 3]
//
// Engines: V8's backtracking engine (irregexp, `u` mode, as Portico's translation to JS compiled), V8's
// experimental linear engine (the `l` flag, enabled here with v8.setFlagsFromString before any regex is built;
// it refuses `u` and `i`, so it gets the ASCII patterns without them), re2js through Portico's compileRe2, and
// re2-wasm when installed (`npm install --no-save re2-wasm`; skipped with a note otherwise).
// --e2e needs wrk and nginx (apt-get install -y wrk nginx-light): Portico on CPU 0, wrk and nginx on CPU 1.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';

v8.setFlagsFromString('--enable-experimental-regexp-engine');
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

const { compileRe2 } = await import('../dist/src/dataplane/matching/regex.js');
const { fmt, mdTable } = await import('./lib/report.mjs');

const { values: flags } = parseArgs({
  options: {
    e2e: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
  },
});

let Re2Wasm;
try {
  Re2Wasm = createRequire(import.meta.url)('re2-wasm').RE2;
} catch {
  console.log('re2-wasm is not installed (npm install --no-save re2-wasm): its column is left out\n');
}

/** Each engine as a full-match test, or a reason it cannot run the pattern. */
function engines(pattern) {
  const attempt = (build) => {
    try {
      return build();
    } catch (err) {
      return String(err.message).includes('linear') ? 'refused' : `error: ${err.message}`;
    }
  };
  const out = {
    backtracking: attempt(() => {
      const re = new RegExp(`^(?:${pattern})$`, 'u');
      return (s) => re.test(s);
    }),
    'V8 linear (l)': attempt(() => {
      const re = new RegExp(`^(?:${pattern})$`, 'l');
      return (s) => re.test(s);
    }),
    re2js: attempt(() => {
      const errors = [];
      const re = compileRe2(pattern, 'bench', errors);
      if (!re) throw new Error(errors[0].message);
      return (s) => re.testExact(s);
    }),
  };
  if (Re2Wasm) {
    out['re2-wasm'] = attempt(() => {
      const re = new Re2Wasm(`^(?:${pattern})$`, 'u');
      return (s) => re.test(s);
    });
  }
  return out;
}

/** Median ns per call of fn(input) over 5 batches, after a warm-up. */
function nsPerCall(fn, input, calls = 100_000) {
  for (let i = 0; i < calls / 5; i++) fn(input);
  const batches = [];
  for (let b = 0; b < 5; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn(input);
    batches.push(Number(process.hrtime.bigint() - t0) / calls);
  }
  return batches.sort((x, y) => x - y)[2];
}

const cell = (fn, input) => (typeof fn === 'function' ? fmt(nsPerCall(fn, input)) : fn);

// --- 1. one match -------------------------------------------------------------------------------------------------
const TYPICAL = [
  ['/api/v[0-9]+/users/[0-9]+', '/api/v2/users/12345', '/api/v2/users/abc'],
  ['/static/.*\\.(css|js|png)', '/static/app/main.css', '/static/app/main.html'],
  ['/users/[^/]+/orders/[^/]+', '/users/alice/orders/42', '/users/alice/carts/42'],
  ['Bearer [A-Za-z0-9._-]+', 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln', 'Basic dXNlcjpwYXNz'],
  ['[a-z0-9-]+\\.example\\.com', 'shop-eu.example.com', 'shop.example.org'],
];
const names = Object.keys(engines('a'));
console.log('One full match, ns per call (median of 5 batches of 100,000), matching input / non-matching input\n');
console.log(
  mdTable(
    ['pattern', ...names],
    TYPICAL.map(([pattern, yes, no]) => {
      const e = engines(pattern);
      return [`\`${pattern.replaceAll('|', '\\|')}\``, ...names.map((n) => `${cell(e[n], yes)} / ${cell(e[n], no)}`)];
    }),
    ['l', ...names.map(() => 'r')],
  ),
);

// --- 2. what each engine accepts of what RE2 patterns need ----------------------------------------------------------
/** What a translation to JS needs for an RE2 feature: the JS source and flags. */
const FEATURES = {
  'case-insensitive (`i` flag)': { source: 'abc', jsFlags: 'i' },
  'code points (`u` flag)': { source: '.', jsFlags: 'u' },
  'Unicode classes `\\p{Greek}`': { source: '\\p{Greek}', jsFlags: 'u' },
  '`(?m)` anchors at `\\n` only (a lookbehind in JS)': { source: '(?<=^|\\n)b', jsFlags: '' },
  'counted repetition `a{2,1000}`': { source: 'a{2,1000}', jsFlags: '' },
};
console.log("\nV8's linear engine on what RE2 patterns need (re2js takes each as RE2 syntax)\n");
console.log(
  mdTable(
    ['feature', 'V8 linear (l)'],
    Object.entries(FEATURES).map(([what, { source, jsFlags }]) => {
      try {
        new RegExp(source, jsFlags + 'l');
        return [what, 'accepted'];
      } catch (err) {
        return [what, `refused: ${err.message.replace(/^.*: /, '')}`];
      }
    }),
    ['l', 'l'],
  ),
);

// --- 3. a route table -----------------------------------------------------------------------------------------------
const TABLE = [
  '/api/v[0-9]+/users/[0-9]+',
  '/api/v[0-9]+/users/[0-9]+/orders',
  '/api/v[0-9]+/orders/[0-9a-f-]+',
  '/static/.*\\.(css|js|png|svg)',
  '/users/[^/]+/profile',
  '/img/[a-z0-9_-]+\\.(jpg|png)',
  '/v[12]/search',
  '/(en|de|fr)/docs/.*',
  '/healthz?',
  '/api/service-[0-9]+/.*',
];
const LAST = '/api/service-42/items/7';
console.log(`\nA request against ${TABLE.length} regex routes, the last one matching (${LAST}): ns per request\n`);
const tables = names.map((n) => {
  const tests = TABLE.map((p) => engines(p)[n]);
  if (tests.some((t) => typeof t !== 'function')) return [n, 'refused a pattern'];
  const request = (path) => tests.findIndex((t) => t(path));
  if (request(LAST) !== TABLE.length - 1) throw new Error(`${n} routed ${LAST} to ${request(LAST)}`);
  return [n, fmt(nsPerCall(request, LAST, 20_000))];
});
console.log(mdTable(['engine', 'ns per request'], tables, ['l', 'r']));

// --- 4. the pathological case ---------------------------------------------------------------------------------------
const evil = (n) => '/' + 'a'.repeat(n) + '!';
/** µs for one call, after a warm-up call on a short input (so the first figure is not the regex's compilation). */
const usOnce = (fn, input) => {
  fn(evil(4));
  const t0 = process.hrtime.bigint();
  fn(input);
  return Number(process.hrtime.bigint() - t0) / 1e3;
};
const patho = engines('/(a+)+$');
const nonU = new RegExp('^(?:/(a+)+$)$');
console.log("\n`/(a+)+$` (a route safe_regex) against '/' + n a's + '!': µs for one match\n");
const rows = [];
for (const n of [20, 22, 24, 26]) rows.push([`backtracking, n = ${n}`, fmt(usOnce(patho.backtracking, evil(n)))]);
rows.push(['backtracking, n = 40', `about ${fmt((usOnce(patho.backtracking, evil(26)) * 2 ** 14) / 3.6e9, 1)} hours (doubling per a from n = 26)`]);
rows.push(['backtracking without `u`, falling back to the linear engine after excessive backtracks, n = 40', fmt(usOnce((s) => nonU.test(s), evil(40)))]);
for (const n of [40, 10_000]) {
  for (const name of names.slice(1)) {
    if (typeof patho[name] === 'function') rows.push([`${name}, n = ${fmt(n)}`, fmt(usOnce(patho[name], evil(n)))]);
  }
}
console.log(mdTable(['engine', 'µs'], rows, ['l', 'r']));

// --- 5. end to end --------------------------------------------------------------------------------------------------
if (flags.e2e) {
  const { rounds, summarize } = await import('./lib/load.mjs');
  const { installCleanup, pinSelf, stopAll, which } = await import('./lib/processes.mjs');
  const { porticoFeatures, routePrefix, startNginxUpstream, startPortico } = await import('./lib/setups.mjs');
  for (const tool of ['nginx', 'wrk']) if (!which(tool)) throw new Error(`${tool} is needed (apt-get install -y wrk nginx-light)`);
  installCleanup();
  pinSelf('1');
  const dir = mkdtempSync(join(tmpdir(), 'portico-bench-regex-'));
  try {
    const upstream = await startNginxUpstream(dir, '1');
    const features = porticoFeatures(dir);
    const base = { cpus: '0', features, upstreamPort: upstream.port, routes: 10, accessLog: false };
    const prefix = await startPortico(dir, 'prefix', base);
    const regex = await startPortico(dir, 'regex', { ...base, regex: true });
    const path = `${routePrefix(9)}items/7`;
    const opts = { wrkCpus: '1', seconds: Number(flags.seconds), connections: 32, warmup: 2, runs: Number(flags.runs) };
    const samples = await rounds(
      [
        { key: 'prefix', url: `http://127.0.0.1:${prefix.port}${path}`, pid: prefix.pid },
        { key: 'regex', url: `http://127.0.0.1:${regex.port}${path}`, pid: regex.pid },
      ],
      opts,
      (line) => console.error(line),
    );
    const p = summarize(samples.get('prefix'));
    const r = summarize(samples.get('regex'));
    console.log(`\nPortico, 1 worker on CPU 0, 10 routes, the last matching (${path}); wrk -c ${opts.connections}, ${opts.runs} × ${opts.seconds} s, medians\n`);
    console.log(
      mdTable(
        ['route table', 'req/s', 'CPU µs/req', 'errors'],
        [
          ['10 prefix routes', fmt(p.rps), fmt(p.cpuUs, 1), String(p.errors)],
          ['10 safe_regex routes (re2js)', fmt(r.rps), fmt(r.cpuUs, 1), String(r.errors)],
        ],
        ['l', 'r', 'r', 'r'],
      ),
    );
    console.log(`\nCPU per request with regex routes: ${fmt(r.cpuUs - p.cpuUs, 1)} µs (${fmt((r.cpuUs / p.cpuUs - 1) * 100, 1)} %) more`);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

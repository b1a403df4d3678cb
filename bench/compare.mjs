// One command comparing Portico with nginx, HAProxy and Node proxies on this machine's loopback, plus Portico's
// own scaling (route tables, worker processes) and memory. See docs/benchmarks.md for the method.
//
//   npm run build && node bench/compare.mjs [--quick] [--only peers,routes,...] [--markdown FILE]
//
// Scenarios (default: all): peers, routes, compile, concurrency, memory, transfer. `--help` lists the flags.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus as osCpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closeAll, measure, openIdleConnections, rounds, stillOpen, summarize, transfers } from './lib/load.mjs';
import { hasTaskset, installCleanup, openFileLimit, pinSelf, processTree, rss, run, stealTicks, stop, stopAll, wasInterrupted, which } from './lib/processes.mjs';
import { fmt, kilo, mib, ratio, Report, rpsCell } from './lib/report.mjs';
import {
  NODE_PEERS,
  ROOT,
  ensurePeers,
  porticoFeatures,
  routePrefix,
  startEcho,
  startHaproxy,
  startNginxProxy,
  startNginxUpstream,
  startNodePeer,
  startPortico,
  toolVersion,
  writeBootstrap,
} from './lib/setups.mjs';

const SCENARIOS = ['peers', 'routes', 'compile', 'concurrency', 'memory', 'transfer'];
const PEERS = ['portico', 'nginx', 'haproxy', 'reply-from', 'http-proxy', 'undici'];
// CPU layout on this 2-core machine: the proxy under test owns CPU 0; everything that produces or answers load
// (wrk, the upstream, this orchestrator) shares CPU 1. The proxy is what is measured, so it gets a core to itself;
// wrk and nginx together need well under one core at the rates a single proxy core reaches.
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';
const ALL_CPUS = '0,1';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    skip: { type: 'string' },
    peers: { type: 'string' },
    upstream: { type: 'string', default: 'nginx' },
    runs: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '32' },
    'idle-connections': { type: 'string', default: '10000' },
    markdown: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (flags.help) {
  process.stdout.write(`node bench/compare.mjs [options]   (after npm run build)
  --quick                 1 run of 3 s per target after a 1 s warm-up (default: 3 runs of 5 s after 2 s)
  --only LIST             scenarios to run, comma-separated: ${SCENARIOS.join(',')}
  --skip LIST             scenarios to leave out
  --peers LIST            proxies in the peers scenario: ${PEERS.join(',')}
  --upstream KIND         upstream of the peers scenario: nginx (default), echo (portico echo) or both
  --runs N --duration S --warmup S --connections N     wrk runs per target, seconds, warm-up, wrk -c
  --idle-connections N    keep-alive connections held open in the memory scenario (default 10000)
  --markdown FILE         also write the markdown block to FILE
  --keep                  keep the temporary directory (configs, access logs)
`);
  process.exit(0);
}

const list = (s) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : undefined);
const usageError = (message) => {
  process.stderr.write(`${message}\n`);
  process.exit(2);
};
for (const [flag, valid] of [
  ['only', SCENARIOS],
  ['skip', SCENARIOS],
  ['peers', PEERS],
]) {
  const bad = (list(flags[flag]) ?? []).filter((x) => !valid.includes(x));
  if (bad.length) usageError(`--${flag}: unknown ${bad.join(', ')} (choose from ${valid.join(', ')})`);
}
if (!['nginx', 'echo', 'both'].includes(flags.upstream)) usageError('--upstream: nginx, echo or both');
const scenarios = (list(flags.only) ?? SCENARIOS).filter((s) => !(list(flags.skip) ?? []).includes(s));
const peers = list(flags.peers) ?? PEERS;
const load = {
  runs: Number(flags.runs ?? (flags.quick ? 1 : 3)),
  seconds: Number(flags.duration ?? (flags.quick ? 3 : 5)),
  warmup: Number(flags.warmup ?? (flags.quick ? 1 : 2)),
  connections: Number(flags.connections),
  wrkCpus: LOAD_CPUS,
};

const report = new Report();
const targets = []; // [what, measured, goal, verdict]
const log = (m) => process.stderr.write(`${m}\n`);
const dir = mkdtempSync(join(tmpdir(), 'portico-compare-'));
let features;
let stealAtStart;
let upstream; // nginx returning hello\n (or portico echo when nginx is missing)
let echo; // portico echo, started on first use

/** One GET on a fresh connection (so nothing stays open to the server); resolves { status, body }. */
function getOnce(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
}

/** Starts each server with `starters` [key, label, () => server]; a peer that fails is reported and skipped. */
async function startAll(starters, notes) {
  const started = [];
  for (const [key, label, startFn, path = ''] of starters) {
    try {
      const server = await startFn();
      started.push({ key, label, ...server, url: server.url.replace(/\/$/, path || '/') });
      const res = await getOnce(started.at(-1).url);
      if (res.status !== 200) throw new Error(`answered ${res.status} ${res.body.slice(0, 200)}`);
    } catch (err) {
      notes.push(`${label}: skipped, ${err.message.split('\n')[0]}`);
      log(`${label}: ${err.message}`);
      const failed = started.find((s) => s.key === key);
      // A server that did not answer right is stopped, unless it is the shared upstream itself.
      if (failed) started.splice(started.indexOf(failed), 1);
      if (failed && failed.proc !== upstream?.proc && failed.proc !== echo?.proc) await stop(failed.proc);
    }
  }
  return started;
}

const porticoLabel = (what) => `Portico ${what}`;
const porticoSetup = () =>
  `router, stats and admin, ${features.accessLog ? 'file access log' : 'no access log (unsupported by this build)'}`;

// ---------------------------------------------------------------------------------------------- scenarios

async function peersScenario(up, upName) {
  const notes = [];
  const starters = [[`direct`, `${upName} direct (no proxy)`, async () => up]];
  const versions = {};
  if (peers.some((p) => NODE_PEERS[p])) {
    const installed = ensurePeers(log);
    if (installed.error) notes.push(`Node peers skipped: ${installed.error}`);
    Object.assign(versions, installed.versions);
  }
  for (const key of peers) {
    if (key === 'portico') {
      const workers = features.concurrency ? '1 worker' : '1 process';
      starters.push([key, porticoLabel(`${workers} (${porticoSetup()})`), () => startPortico(dir, 'portico-peers', { cpus: PROXY_CPUS, features, upstreamPort: up.port })]);
    } else if (key === 'nginx') {
      if (!which('nginx')) notes.push('nginx proxy: skipped, nginx is not installed (apt-get install -y nginx-light)');
      else starters.push([key, `nginx ${toolVersion('nginx')} (1 worker)`, () => startNginxProxy(dir, PROXY_CPUS, up.port)]);
    } else if (key === 'haproxy') {
      if (!which('haproxy')) notes.push('HAProxy: skipped, haproxy is not installed (apt-get install -y haproxy)');
      else starters.push([key, `HAProxy ${toolVersion('haproxy')} (1 thread)`, () => startHaproxy(dir, PROXY_CPUS, up.port)]);
    } else if (NODE_PEERS[key].packages.every((name) => versions[name])) {
      const pkg = NODE_PEERS[key].packages.at(-1);
      const label = { 'reply-from': `@fastify/reply-from ${versions[pkg]} (fastify ${versions.fastify})`, 'http-proxy': `http-proxy ${versions[pkg]} (keep-alive agent)`, undici: `raw undici ${versions[pkg]} Pool + node:http` }[key];
      starters.push([key, label, () => startNodePeer(key, PROXY_CPUS, up.port)]);
    }
  }
  const servers = await startAll(starters, notes);
  log(`peers (${upName}): ${servers.map((s) => s.key).join(', ')}`);
  const samples = await rounds(servers.map((s) => ({ key: s.key, url: s.url, pid: s.pid })), load, log);
  const sum = Object.fromEntries(servers.map((s) => [s.key, summarize(samples.get(s.key))]));
  const ref = sum.nginx;
  const rows = servers.map((s) => {
    const r = sum[s.key];
    const vs = (k) => (s.key === 'direct' ? '' : ratio(r[k], ref?.[k]));
    return [s.label, rpsCell(r), vs('rps'), fmt(r.p50, 2), vs('p50'), fmt(r.p99, 2), vs('p99'), fmt(r.cpuUs, 1), vs('cpuUs'), fmt(r.cpuPct), mib(r.rss), fmt(r.errors), fmt(r.stealPct)];
  });
  if (!ref) notes.push('no nginx row: the ×nginx columns are empty');
  notes.push(`CPU µs/req and RSS are of the whole process tree (nginx master + worker, Portico primary + workers); the "direct" row's are the upstream's own`);
  for (const s of servers) if (s.key !== 'direct') await stop(s.proc);
  report.add({
    title: `Proxies in front of ${upName === 'nginx upstream' ? 'nginx (`return 200 "hello\\n"`)' : upName} (proxy on CPU ${PROXY_CPUS}; wrk -t1 -c${load.connections} and upstream on CPU ${LOAD_CPUS}; median of ${load.runs} × ${load.seconds} s)`,
    columns: ['proxy', 'req/s', '×nginx', 'p50 ms', '×nginx', 'p99 ms', '×nginx', 'CPU µs/req', '×nginx', 'CPU %', 'RSS MiB', 'errors', 'steal %'],
    rows,
    notes,
  });
  return sum;
}

async function routesScenario() {
  const notes = ['access log off here: the table isolates the cost of route matching'];
  const common = { cpus: PROXY_CPUS, features, upstreamPort: upstream.port, accessLog: false };
  const last = (n) => `${routePrefix(n - 1)}bench`;
  const servers = await startAll(
    [
      ['10', '10 prefix routes, last matches', () => startPortico(dir, 'portico-routes-10', { ...common, routes: 10 }), last(10)],
      ['10k', '10,000 prefix routes, last matches', () => startPortico(dir, 'portico-routes-10k', { ...common, routes: 10_000 }), last(10_000)],
    ],
    notes,
  );
  const byKey = Object.fromEntries(servers.map((s) => [s.key, s]));
  const list = [...servers.map((s) => ({ key: s.key, url: s.url, pid: s.pid }))];
  if (byKey['10k']) list.push({ key: '10k-first', url: byKey['10k'].url.replace(last(10_000), `${routePrefix(0)}bench`), pid: byKey['10k'].pid });
  const samples = await rounds(list, load, log);
  const sum = Object.fromEntries(list.map((t) => [t.key, summarize(samples.get(t.key))]));
  const labels = { 10: '10 prefix routes, last matches', '10k': '10,000 prefix routes, last matches', '10k-first': '10,000 prefix routes, first matches' };
  const base = sum['10'];
  const rows = list.map(({ key }) => {
    const r = sum[key];
    return [labels[key], rpsCell(r), ratio(r.rps, base?.rps), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.cpuUs, 1), ratio(r.cpuUs, base?.cpuUs), mib(r.rss), fmt(r.errors), fmt(r.stealPct)];
  });
  for (const s of servers) {
    notes.push(`${s.label}: started listening ${fmt(s.startupMs)} ms after spawn`);
    await stop(s.proc);
  }
  report.add({
    title: `Route table size (Portico ${features.concurrency ? '1 worker' : '1 process'} on CPU ${PROXY_CPUS})`,
    columns: ['route table', 'req/s', 'vs 10', 'p50 ms', 'p99 ms', 'CPU µs/req', 'vs 10', 'RSS MiB', 'errors', 'steal %'],
    rows,
    notes,
  });
  for (const key of ['10k', '10k-first']) {
    if (!base || !sum[key]) continue;
    const which = key === '10k' ? 'last' : 'first';
    targets.push([
      `10,000 vs 10 routes (${which} route matches): req/s`,
      `${ratio(sum[key].rps, base.rps)} (CPU/req ${ratio(sum[key].cpuUs, base.cpuUs)})`,
      '≥ 0.90× (cost ≤ 10 %)',
      verdict(sum[key].rps / base.rps >= 0.9),
    ]);
  }
}

/** Times parse, check and compileBootstrap of 10 and 10,000-route bootstraps, each in a fresh process. */
async function compileScenario() {
  const notes = [];
  const rows = [];
  const configs = [
    ['10 prefix routes', 10],
    ['10,000 prefix routes', 10_000],
  ].map(([label, routes]) => [label, writeBootstrap(dir, `compile-${routes}`, { port: 1, adminPort: 2, upstreamPort: 3, routes })]);
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  let compile10k;
  for (const [label, file] of configs) {
    const times = [];
    for (let i = 0; i < Math.max(3, load.runs); i++) {
      try {
        times.push(JSON.parse(await run(PROXY_CPUS, process.execPath, [join(ROOT, 'bench/lib/compile-time.mjs'), file])));
      } catch (err) {
        // The internal API moved: fall back to the wall time of `portico validate` (process start included).
        const note = `compile-time.mjs failed (${err.message.split('\n').slice(-1)[0]}); timing \`portico validate\` instead`;
        if (!notes.includes(note)) notes.push(note);
        const t0 = performance.now();
        await run(PROXY_CPUS, process.execPath, [join(ROOT, 'bin/portico.js'), 'validate', '-c', file]);
        times.push({ parseMs: NaN, checkMs: NaN, compileMs: NaN, validateMs: performance.now() - t0 });
      }
    }
    const m = (k) => med(times.map((t) => t[k] ?? NaN));
    const total = m('parseMs') + m('checkMs') + m('compileMs');
    rows.push([label, fmt(m('parseMs'), 1), fmt(m('checkMs'), 1), fmt(m('compileMs'), 1), fmt(Number.isNaN(total) ? m('validateMs') : total, 1)]);
    if (label.startsWith('10,000')) compile10k = Number.isNaN(m('compileMs')) ? m('validateMs') : m('compileMs');
  }
  notes.push('each figure is the median of fresh processes (cold JIT, as at startup); compile = compileBootstrap (route tables, clusters, listeners)');
  report.add({ title: `Configuration load time (ms, on CPU ${PROXY_CPUS})`, columns: ['bootstrap', 'parse', 'check', 'compile', 'total'], rows, notes });
  targets.push(['10,000-route bootstrap: compile time', `${fmt(compile10k, 1)} ms`, '< 300 ms', verdict(compile10k < 300)]);
}

async function concurrencyScenario() {
  if (!features.concurrency) {
    report.add({ title: 'Worker processes', columns: ['workers'], rows: [], notes: ['skipped: this build has no `--concurrency` (`portico help` does not mention it)'] });
    targets.push(['--concurrency 2 vs 1: req/s', '–', '≥ 1.7×', 'n/a (no --concurrency yet)']);
    return;
  }
  const notes = [
    `--concurrency 1 runs on CPU ${PROXY_CPUS}; --concurrency 2 on CPUs ${ALL_CPUS}, so its second worker shares CPU ${LOAD_CPUS} with wrk and the upstream: the throughput ratio is bounded by this 2-core machine, CPU µs/req is the per-request cost that would scale on more cores`,
  ];
  const common = { features, upstreamPort: upstream.port };
  const servers = await startAll(
    [
      ['c1', '--concurrency 1', () => startPortico(dir, 'portico-c1', { ...common, cpus: PROXY_CPUS, concurrency: 1 })],
      ['c2', '--concurrency 2', () => startPortico(dir, 'portico-c2', { ...common, cpus: ALL_CPUS, concurrency: 2 })],
    ],
    notes,
  );
  const samples = await rounds(servers.map((s) => ({ key: s.key, url: s.url, pid: s.pid })), load, log);
  const sum = Object.fromEntries(servers.map((s) => [s.key, summarize(samples.get(s.key))]));
  const rows = servers.map((s) => {
    const r = sum[s.key];
    return [s.label, fmt(processTree(s.pid).length), rpsCell(r), ratio(r.rps, sum.c1?.rps), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.cpuUs, 1), ratio(r.cpuUs, sum.c1?.cpuUs), fmt(r.cpuPct), mib(r.rss), fmt(r.errors), fmt(r.stealPct)];
  });
  for (const s of servers) await stop(s.proc);
  if (sum.c1 && sum.c2) {
    // What two workers would reach with a core each: twice one worker's rate, scaled by how much more CPU each
    // request costs with two. Only an estimate; the target is judged on the measured ratio.
    const projected = (2 * sum.c1.cpuUs) / sum.c2.cpuUs;
    notes.push(`with a dedicated core per worker the ratio would be about 2 × (CPU/req of 1) / (CPU/req of 2) = ${fmt(projected, 2)}×`);
    targets.push(['--concurrency 2 vs 1: req/s', `${ratio(sum.c2.rps, sum.c1.rps)} (projected ${fmt(projected, 2)}×)`, '≥ 1.7×', verdict(sum.c2.rps / sum.c1.rps >= 1.7)]);
  }
  report.add({
    title: `Worker processes (${porticoSetup()})`,
    columns: ['Portico', 'processes', 'req/s', 'vs 1', 'p50 ms', 'p99 ms', 'CPU µs/req', 'vs 1', 'CPU %', 'RSS MiB', 'errors', 'steal %'],
    rows,
    notes,
  });
}

async function memoryScenario() {
  const notes = [];
  const [p] = await startAll([['portico', porticoLabel(porticoSetup()), () => startPortico(dir, 'portico-memory', { cpus: PROXY_CPUS, features, upstreamPort: upstream.port })]], notes);
  if (!p) return report.add({ title: 'Portico memory', columns: ['state'], rows: [], notes });
  const settle = (ms) => new Promise((r) => setTimeout(r, ms));
  // RSS of the tree, and where it sits: the primary only accepts and hands connections over; workers serve.
  const sample = () => {
    const pids = processTree(p.pid);
    const total = rss(pids);
    const primary = rss([p.pid]);
    const split = pids.length > 1 ? `primary ${mib(primary)} + ${pids.length - 1} worker(s) ${mib(total - primary)}` : '';
    return { total, split };
  };
  const rows = [];
  await settle(1000);
  const idle = sample();
  rows.push(['idle, after start', mib(idle.total), idle.split]);
  await run(LOAD_CPUS, 'wrk', ['-t1', `-c${load.connections}`, `-d${load.warmup}s`, p.url]);
  const loaded = await measure(p.url, p.pid, load);
  rows.push([`under load (peak, wrk -c${load.connections}, ${kilo(loaded.rps)} req/s)`, mib(loaded.rss), '']);
  await settle(1000);
  const afterLoad = sample();
  rows.push(['idle again, after load', mib(afterLoad.total), afterLoad.split]);
  // Portico and this process each hold one descriptor per connection; keep a margin under the limit.
  const wanted = Number(flags['idle-connections']);
  const count = Math.min(wanted, openFileLimit() - 500);
  if (count < wanted) notes.push(`open-file limit ${openFileLimit()}: ${count} connections instead of ${wanted} (raise ulimit -n)`);
  const t0 = performance.now();
  const { sockets, failed } = await openIdleConnections(p.port, count);
  const openMs = performance.now() - t0;
  await settle(2000);
  const held = sample();
  const open = stillOpen(sockets);
  const perConnection = (held.total - afterLoad.total) / Math.max(open, 1) / 1024;
  rows.push([
    `${fmt(count)} idle keep-alive connections (each after 1 request)`,
    mib(held.total),
    `${held.split ? `${held.split}; ` : ''}${fmt(open)} open, ${fmt(failed)} failed, ${fmt(perConnection, 1)} KiB each; opened in ${fmt(openMs / 1000, 1)} s`,
  ]);
  closeAll(sockets);
  await settle(1000);
  const closed = sample();
  rows.push(['after closing them', mib(closed.total), closed.split]);
  await stop(p.proc);
  notes.push('RSS = summed VmRSS of the primary and its worker processes; memory freed by closing is returned lazily (GC), so the last row lags');
  report.add({ title: `Portico memory (${features.concurrency ? '--concurrency 1' : 'one process'}, ${porticoSetup()})`, columns: ['state', 'RSS MiB', 'detail'], rows, notes, align: 'lrl' });
}

async function transferScenario() {
  echo ??= await startEcho(LOAD_CPUS);
  const notes = ['bodies stream with backpressure: the peak is buffers and pools, not the body'];
  const [p] = await startAll([['portico', 'Portico', () => startPortico(dir, 'portico-transfer', { cpus: PROXY_CPUS, features, upstreamPort: echo.port })]], notes);
  if (!p) return report.add({ title: '1 GiB through Portico', columns: ['direction'], rows: [], notes });
  const results = await transfers(p.port, p.pid);
  await stop(p.proc);
  report.add({
    title: `1 GiB through Portico to and from \`portico echo\` (${porticoSetup()})`,
    columns: ['direction', 'seconds', 'MiB/s', 'RSS before MiB', 'peak RSS MiB'],
    rows: Object.entries(results).map(([d, r]) => [d, fmt(r.seconds, 1), fmt(r.mibPerSecond), mib(r.baseline), mib(r.peak)]),
    notes,
  });
}

const verdict = (ok) => (ok ? 'PASS' : 'FAIL');

// ---------------------------------------------------------------------------------------------- main

async function main() {
  if (!existsSync(join(ROOT, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  if (!which('wrk')) throw new Error('wrk is not installed (apt-get install -y wrk)');
  pinSelf(LOAD_CPUS);
  stealAtStart = stealTicks();
  features = porticoFeatures(dir);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const built = statSync(join(ROOT, 'dist/src/cli/main.js')).mtime.toISOString().slice(0, 16).replace('T', ' ');
  report.header.push(
    `Run of ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: Portico ${pkg.version} (dist built ${built} UTC), Node ${process.version}, ${osCpus().length} × ${osCpus()[0]?.model ?? 'CPU'}, load average ${loadavg()[0].toFixed(2)} at start`,
    `wrk ${toolVersion('wrk')} -t1 -c${load.connections} --latency, ${load.warmup} s warm-up per target, then ${load.runs} round(s) of ${load.seconds} s over all targets (medians; req/s ranges over the rounds)`,
    hasTaskset ? `CPU ${PROXY_CPUS}: the proxy under test; CPU ${LOAD_CPUS}: wrk, the upstream and the harness` : 'taskset missing: nothing is pinned',
  );
  if (!features.concurrency) report.header.push('note: this build has no `--concurrency`; Portico runs as one process');
  if (!features.accessLog) {
    const reason = features.accessLogError.replace(/^[^:]*: /, '').replace(/ \(.*$/, '');
    report.header.push(`note: this build rejects a file access log (${reason}); Portico runs without one`);
  }
  process.stdout.write(`${report.header.join('\n')}\n`);

  if (which('nginx')) upstream = await startNginxUpstream(dir, LOAD_CPUS);
  else {
    report.header.push('note: nginx is not installed; `portico echo` is the upstream everywhere');
    process.stdout.write(`${report.header.at(-1)}\n`);
    upstream = echo = await startEcho(LOAD_CPUS);
  }
  const upName = which('nginx') ? 'nginx upstream' : '`portico echo`';

  let failed = false;
  for (const scenario of scenarios) {
    log(`\n== ${scenario}`);
    try {
      if (scenario === 'peers') {
        const passes = [];
        if (flags.upstream !== 'echo') passes.push(await peersScenario(upstream, upName));
        if (flags.upstream !== 'nginx') {
          echo ??= await startEcho(LOAD_CPUS);
          passes.push(await peersScenario(echo, '`portico echo`'));
        }
        // The targets are judged on the first pass (the nginx upstream unless --upstream echo).
        const [p, n, rf] = [passes[0].portico, passes[0].nginx, passes[0]['reply-from']];
        targets.push(['Portico CPU µs/req vs nginx', p && n ? ratio(p.cpuUs, n.cpuUs) : '–', '≤ 3.5×', p && n ? verdict(p.cpuUs / n.cpuUs <= 3.5) : 'n/a']);
        targets.push(['Portico req/s vs @fastify/reply-from', p && rf ? ratio(p.rps, rf.rps) : '–', '≥ 1.3×', p && rf ? verdict(p.rps / rf.rps >= 1.3) : 'n/a']);
      } else if (scenario === 'routes') await routesScenario();
      else if (scenario === 'compile') await compileScenario();
      else if (scenario === 'concurrency') await concurrencyScenario();
      else if (scenario === 'memory') await memoryScenario();
      else if (scenario === 'transfer') await transferScenario();
    } catch (err) {
      if (wasInterrupted()) return;
      failed = true;
      log(err.stack);
      report.add({ title: `${scenario}: failed`, columns: ['error'], rows: [[err.message.split('\n')[0]]] });
    } finally {
      // Whatever a failed scenario left running must not load the next one's CPU.
      await stopAll([upstream?.proc, echo?.proc]);
    }
  }
  if (targets.length) report.add({ title: 'Targets', columns: ['target', 'measured', 'goal', 'result'], rows: targets, align: 'lrrl' });
  const steal = stealTicks();
  report.header.push(
    `load average ${loadavg()[0].toFixed(2)} at the end; CPU steal (time the host gave to other machines) ${fmt(((steal.steal - stealAtStart.steal) / (steal.total - stealAtStart.total)) * 100)} % over the run`,
  );
  const markdown = report.markdown();
  process.stdout.write(`\n----- markdown -----\n${markdown}----- end -----\n`);
  if (flags.markdown) writeFileSync(flags.markdown, markdown);
  if (failed) process.exitCode = 1;
}

// Piped into head: stop writing quietly, the cleanup still runs.
process.stdout.on('error', (err) => err.code === 'EPIPE' || log(err.message));
installCleanup(() => flags.keep || rmSync(dir, { recursive: true, force: true }));
main()
  .catch((err) => {
    if (wasInterrupted()) return;
    log(err.stack ?? String(err));
    process.exitCode = 1;
  })
  .finally(stopAll);

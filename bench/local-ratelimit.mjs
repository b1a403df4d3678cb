// CPU per request of Portico with envoy.filters.http.local_ratelimit (enabled and enforced, with a bucket that
// never runs out) against the same Portico without the filter: wrk over keep-alive HTTP/1.1 to an nginx upstream,
// Portico one worker on CPU 0, load and upstream on CPU 1, measured in interleaved rounds.
//
//   npm run build && node bench/local-ratelimit.mjs [--seconds 10] [--runs 3] [--concurrency 1] [--profile]
//
// With --concurrency 2 the buckets are leased from the primary (both workers then share CPU 0).
// On a shared machine the two Porticos' CPU per request moves by more than the filter costs; --profile then runs
// the filtered one under V8's sampling profiler (--cpu-prof) and counts the samples with the filter's code
// (local_ratelimit/, token-bucket.js, rate-limit-policy.js) on the stack: a share of the process's CPU that other
// processes' noise does not move.
// Needs nginx and wrk.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { rounds, summarize } from './lib/load.mjs';
import { freePort, installCleanup, pinSelf, stop, stopAll, which } from './lib/processes.mjs';
import { fmt } from './lib/report.mjs';
import { PORTICO, serve, startNginxUpstream } from './lib/setups.mjs';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1' },
    profile: { type: 'boolean', default: false },
  },
});
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';

for (const tool of ['nginx', 'wrk']) if (!which(tool)) throw new Error(`${tool} is needed (apt-get install -y nginx wrk)`);
installCleanup();
pinSelf(LOAD_CPUS);
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-rl-'));

const address = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const ALL = { default_value: { numerator: 100, denominator: 'HUNDRED' } };
const LIMIT = {
  name: 'envoy.filters.http.local_ratelimit',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
    stat_prefix: 'bench',
    // Far more than any run asks for: every request takes a token and none is refused.
    token_bucket: { max_tokens: 1_000_000_000, tokens_per_fill: 1_000_000_000, fill_interval: '1s' },
    filter_enabled: ALL,
    filter_enforced: ALL,
  },
};
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };

async function startPortico(name, upstreamPort, filters, nodeArgs = []) {
  const port = await freePort();
  const hcm = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'bench',
    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'up' } }] }] },
    http_filters: [...filters, ROUTER],
  };
  const cluster = { name: 'up', connect_timeout: '1s', load_assignment: { cluster_name: 'up', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(upstreamPort) } }] }] } };
  const bootstrap = {
    static_resources: {
      listeners: [{ name: 'bench', address: address(port), filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }] }],
      clusters: [cluster],
    },
  };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(bootstrap));
  return serve(name, PROXY_CPUS, process.execPath, [...nodeArgs, PORTICO, 'run', '-c', file, '-l', 'warning', '--concurrency', flags.concurrency], port);
}

const FILTER_CODE = /\/local_ratelimit\/|\/token-bucket\.js$|\/rate-limit-policy\.js$/;

/** Samples of the profiles in `profileDir` (every process of the Portico) that are not idle, and those with the filter's code on the stack. */
function filterShare(profileDir) {
  let busy = 0;
  let filter = 0;
  for (const file of readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8'));
    const parent = new Map();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const inFilter = new Map();
    const hasFilter = (id) => {
      if (id === undefined) return false;
      let known = inFilter.get(id);
      if (known === undefined) inFilter.set(id, (known = FILTER_CODE.test(byId.get(id).callFrame.url) || hasFilter(parent.get(id))));
      return known;
    };
    for (const id of profile.samples) {
      if (byId.get(id).callFrame.functionName === '(idle)') continue;
      busy++;
      if (hasFilter(id)) filter++;
    }
  }
  return { busy, filter };
}

try {
  const upstream = await startNginxUpstream(dir, LOAD_CPUS);
  const off = await startPortico('off', upstream.port, []);
  const on = await startPortico('on', upstream.port, [LIMIT]);
  const opts = { wrkCpus: LOAD_CPUS, seconds: Number(flags.seconds), connections: 50, warmup: 3, runs: Number(flags.runs) };
  const samples = await rounds(
    [
      { key: 'off', url: `http://127.0.0.1:${off.port}/`, pid: off.pid },
      { key: 'on', url: `http://127.0.0.1:${on.port}/`, pid: on.pid },
    ],
    opts,
    (line) => console.error(line),
  );
  const a = summarize(samples.get('off'));
  const b = summarize(samples.get('on'));
  console.log(`local_ratelimit on vs off (wrk -c 50, ${opts.runs} × ${opts.seconds} s, --concurrency ${flags.concurrency}), medians`);
  console.log('| Portico | req/s | CPU µs/req | errors |\n| --- | ---: | ---: | ---: |');
  console.log(`| without the filter | ${fmt(a.rps)} | ${fmt(a.cpuUs, 1)} | ${a.errors} |`);
  console.log(`| with local_ratelimit | ${fmt(b.rps)} | ${fmt(b.cpuUs, 1)} | ${b.errors} |`);
  console.log(`\nCPU per request with the filter: ${fmt((b.cpuUs / a.cpuUs - 1) * 100, 1)} % more`);
  if (flags.profile) {
    const profileDir = join(dir, 'profiles');
    const profiled = await startPortico('profiled', upstream.port, [LIMIT], ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`]);
    const run = await rounds([{ key: 'on', url: profiled.url, pid: profiled.pid }], { ...opts, runs: 1 }, (line) => console.error(line));
    // The profiles are written when the processes exit.
    await stop(profiled.proc, 15_000);
    const { busy, filter } = filterShare(profileDir);
    const cpuUs = summarize(run.get('on')).cpuUs;
    console.log(
      `\nProfiled (--cpu-prof, ${opts.seconds} s): the filter's code was on the stack in ${fmt(filter)} of ${fmt(busy)} busy samples, ` +
        `${fmt((filter / busy) * 100, 2)} % of the CPU: about ${fmt((filter / busy) * cpuUs, 2)} µs of the ${fmt(cpuUs, 1)} µs per request under the profiler`,
    );
  }
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

// CPU per request of envoy.filters.http.jwt_authn: one Portico route with the filter (an ES256 token checked
// against a local JWKS, so every key is cached) against the same route without it; an HS256 token as well, whose
// signature costs next to nothing, to tell the filter's own work from the ECDSA check; and ES256 with
// jwt_cache_config, where the repeated token's signature is checked once. Both Porticos run one worker on
// CPU 0 and proxy to an nginx upstream; wrk (HTTP/1.1 keep-alive, the same Authorization header on every request)
// runs on CPU 1. The two are measured in alternating rounds, so that a noisy neighbour hits both alike.
//
//   npm run build && node bench/jwt.mjs [--seconds 5] [--rounds 3]
//
// Needs nginx and wrk.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair, generateSecret, SignJWT } from 'jose';
import { parseWrk } from './lib/load.mjs';
import { cpuDelta, cpuSeconds, freePort, installCleanup, pinSelf, processTree, run, stopAll, which } from './lib/processes.mjs';
import { fmt } from './lib/report.mjs';
import { PORTICO, serve, startNginxUpstream } from './lib/setups.mjs';

const { values: flags } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' } } });
const SECONDS = Number(flags.seconds);
const ROUNDS = Number(flags.rounds);
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';

for (const tool of ['nginx', 'wrk']) if (!which(tool)) throw new Error(`${tool} is needed (apt-get install -y nginx wrk)`);
installCleanup();
pinSelf(LOAD_CPUS);
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-jwt-'));

const address = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const router = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };

/** A token of `alg` and the jwt_authn filter that admits it, its key inline (cached from the start). */
async function setup(alg, provider = {}) {
  const { publicKey, privateKey } = alg.startsWith('HS') ? await generateSecret(alg, { extractable: true }).then((k) => ({ publicKey: k, privateKey: k })) : await generateKeyPair(alg);
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg }] });
  const token = await new SignJWT({ sub: 'bench', aud: 'api' }).setProtectedHeader({ alg, kid: 'bench' }).setIssuer('https://issuer.example').setExpirationTime('2h').sign(privateKey);
  const filter = {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
      providers: { bench: { issuer: 'https://issuer.example', audiences: ['api'], local_jwks: { inline_string: jwks }, ...provider } },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'bench' } }],
    },
  };
  return { token, filter };
}

/** Portico with one listener routing everything to the upstream, `filters` before the router. */
async function startPortico(name, upstreamPort, filters) {
  const port = await freePort();
  const hcm = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'bench',
    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'up', timeout: '0s' } }] }] },
    http_filters: [...filters, router],
  };
  const bootstrap = {
    static_resources: {
      listeners: [{ name: 'bench', address: address(port), filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }] }],
      clusters: [{ name: 'up', connect_timeout: '1s', load_assignment: { cluster_name: 'up', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(upstreamPort) } }] }] } }],
    },
  };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(bootstrap));
  return serve(name, PROXY_CPUS, process.execPath, [PORTICO, 'run', '-c', file, '-l', 'warning', '--concurrency', '1'], port);
}

/** wrk for `seconds` with `token`; the proxy tree's CPU per completed request. */
async function load(server, token, seconds) {
  const before = cpuSeconds(processTree(server.pid));
  const out = await run(LOAD_CPUS, 'wrk', ['-t1', '-c50', `-d${seconds}s`, '-H', `Authorization: Bearer ${token}`, server.url]);
  const cpu = cpuDelta(before, cpuSeconds(processTree(server.pid)));
  const result = parseWrk(out);
  // A 401 is cheaper than a proxied request: a refused token must not pass for a fast filter.
  if (result.errors > 0) throw new Error(`${server.name}: ${result.errors} failed requests`);
  return { rps: result.rps, cpuUs: (cpu * 1e6) / result.requests };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

try {
  const upstream = await startNginxUpstream(dir, LOAD_CPUS);
  const es = await setup('ES256');
  const hs = await setup('HS256');
  const cached = await setup('ES256', { jwt_cache_config: {} });
  const targets = [
    { name: 'without jwt_authn', server: await startPortico('plain', upstream.port, []), token: es.token, samples: [] },
    { name: 'with jwt_authn, ES256', server: await startPortico('es256', upstream.port, [es.filter]), token: es.token, samples: [] },
    { name: 'with jwt_authn, HS256', server: await startPortico('hs256', upstream.port, [hs.filter]), token: hs.token, samples: [] },
    { name: 'with jwt_authn, ES256, jwt_cache_config', server: await startPortico('cached', upstream.port, [cached.filter]), token: cached.token, samples: [] },
  ];
  for (const t of targets) await load(t.server, t.token, 1); // warm-up (JIT, upstream connections)
  for (let round = 0; round < ROUNDS; round++) for (const t of targets) t.samples.push(await load(t.server, t.token, SECONDS));
  const rows = targets.map((t) => ({ name: t.name, rps: median(t.samples.map((s) => s.rps)), cpuUs: median(t.samples.map((s) => s.cpuUs)) }));
  console.log(`HTTP/1.1, wrk -c 50 for ${SECONDS} s × ${ROUNDS} rounds (medians), one Portico worker on CPU ${PROXY_CPUS}, nginx upstream`);
  console.log('| route | req/s | CPU µs/req |\n| --- | ---: | ---: |');
  for (const r of rows) console.log(`| ${r.name} | ${fmt(r.rps)} | ${fmt(r.cpuUs, 1)} |`);
  console.log(`| jwt_authn's share, ES256 | | ${fmt(rows[1].cpuUs - rows[0].cpuUs, 1)} |`);
  console.log(`| jwt_authn's share, HS256 | | ${fmt(rows[2].cpuUs - rows[0].cpuUs, 1)} |`);
  console.log(`| jwt_authn's share, ES256 cached | | ${fmt(rows[3].cpuUs - rows[0].cpuUs, 1)} |`);
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

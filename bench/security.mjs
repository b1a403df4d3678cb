// What authentication, authorization and rate limiting cost, measured on this machine's loopback:
//   - CPU per request of Portico (one worker on CPU 0, wrk on CPU 1) with jwt_authn (ES256, local JWKS, the token
//     in `access_token`; without and with `jwt_cache_config`) and with local_ratelimit (a bucket that never runs out, enforced) against the same
//     route without filters, in alternating rounds;
//   - the latency the global rate limit filter adds (p50/p99 of sequential requests, against `portico ratelimit`
//     on Redis; bench/ext-authz.mjs does the same for ext_authz);
//   - checks per second of `portico ratelimit` on Redis with one core, 50 calls in flight, and their latency.
//
//   npm run build && node bench/security.mjs [--seconds 5] [--runs 3] [--requests 3000]
//
// Needs nginx, wrk and redis-server (Debian: nginx, wrk, redis-server).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Client } from 'undici';
import { encodeMessage, envoyMethod } from '../dist/src/grpc/envoy-protos.js';
import { rounds, summarize } from './lib/load.mjs';
import { cpuDelta, cpuSeconds, freePort, installCleanup, pinSelf, processTree, start, stopAll, waitForPort, which } from './lib/processes.mjs';
import { fmt } from './lib/report.mjs';
import { PORTICO, serve, startNginxUpstream } from './lib/setups.mjs';

const { values: flags } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, runs: { type: 'string', default: '3' }, requests: { type: 'string', default: '3000' } } });
const SECONDS = Number(flags.seconds);
const RUNS = Number(flags.runs);
const REQUESTS = Number(flags.requests);
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';

for (const tool of ['nginx', 'wrk', 'redis-server']) if (!which(tool)) throw new Error(`${tool} is needed (apt-get install -y nginx wrk redis-server)`);
installCleanup();
pinSelf(LOAD_CPUS);
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-security-'));
const address = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const cluster = (name, port, h2 = false) => ({
  name,
  connect_timeout: '1s',
  load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: address(port) } }] }] },
  ...(h2
    ? {
        typed_extension_protocol_options: {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } },
        },
      }
    : {}),
});
const typed = (type, config) => ({ name: type, typed_config: { '@type': `type.googleapis.com/${type}`, ...config } });
const ROUTER = typed('envoy.extensions.filters.http.router.v3.Router', {});

/** A one-worker Portico whose one route goes to `up`, after `filters`. */
async function startPortico(name, upstreamPort, filters, { clusters = [], rateLimits } = {}) {
  const port = await freePort();
  const route = { match: { prefix: '/' }, route: { cluster: 'up', timeout: '0s', ...(rateLimits ? { rate_limits: rateLimits } : {}) } };
  const hcm = typed('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
    stat_prefix: 'bench',
    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [route] }] },
    http_filters: [...filters, ROUTER],
  });
  const bootstrap = { static_resources: { listeners: [{ name, address: address(port), filter_chains: [{ filters: [hcm] }] }], clusters: [cluster('up', upstreamPort), ...clusters] } };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(bootstrap));
  return serve(name, PROXY_CPUS, process.execPath, [PORTICO, 'run', '-c', file, '-l', 'error', '--concurrency', '1'], port);
}

/** Sequential GETs; latency percentiles in ms. */
async function latency(port) {
  const client = new Client(`http://127.0.0.1:${port}`);
  const once = async () => {
    const res = await client.request({ path: '/', method: 'GET' });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  };
  for (let i = 0; i < 200; i++) await once();
  const samples = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    await once();
    samples.push(performance.now() - t0);
  }
  await client.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)], p99: samples[Math.floor(samples.length * 0.99)] };
}

try {
  const upstream = await startNginxUpstream(dir, LOAD_CPUS);

  // ---- CPU per request: jwt_authn and local_ratelimit against no filter
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  const token = await new SignJWT({ sub: 'bench' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://issuer.bench').setExpirationTime('2h').sign(privateKey);
  const jwt = typed('envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', {
    providers: { bench: { issuer: 'https://issuer.bench', local_jwks: { inline_string: jwks } } },
    rules: [{ match: { prefix: '/' }, requires: { provider_name: 'bench' } }],
  });
  const jwtCached = typed('envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication', {
    providers: { bench: { issuer: 'https://issuer.bench', local_jwks: { inline_string: jwks }, jwt_cache_config: { jwt_cache_size: 100 } } },
    rules: [{ match: { prefix: '/' }, requires: { provider_name: 'bench' } }],
  });
  const always = { default_value: { numerator: 100, denominator: 'HUNDRED' }, runtime_key: 'bench' };
  const localRateLimit = typed('envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit', {
    stat_prefix: 'bench',
    token_bucket: { max_tokens: 1e9, tokens_per_fill: 1e9, fill_interval: '1s' },
    filter_enabled: always,
    filter_enforced: always,
  });
  const plain = await startPortico('plain', upstream.port, []);
  const withJwt = await startPortico('jwt', upstream.port, [jwt]);
  const withJwtCache = await startPortico('jwt-cached', upstream.port, [jwtCached]);
  const withLocal = await startPortico('local-ratelimit', upstream.port, [localRateLimit]);
  const targets = [
    { key: 'no filter', url: `${plain.url}?access_token=${token}`, pid: plain.pid },
    { key: 'jwt_authn (ES256)', url: `${withJwt.url}?access_token=${token}`, pid: withJwt.pid },
    { key: 'jwt_authn (ES256, jwt_cache_config)', url: `${withJwtCache.url}?access_token=${token}`, pid: withJwtCache.pid },
    { key: 'local_ratelimit', url: `${withLocal.url}?access_token=${token}`, pid: withLocal.pid },
  ];
  const samples = await rounds(targets, { wrkCpus: LOAD_CPUS, seconds: SECONDS, connections: 50, warmup: 2, runs: RUNS });
  const rows = targets.map((t) => ({ key: t.key, ...summarize(samples.get(t.key)) }));
  const base = rows[0].cpuUs;
  console.log(`CPU per request, one worker, wrk -c 50 for ${SECONDS} s, median of ${RUNS} alternating rounds`);
  console.log('| route | req/s | CPU µs/req | vs no filter | errors |\n| --- | ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(`| ${r.key} | ${fmt(r.rps)} | ${fmt(r.cpuUs, 1)} | ${r === rows[0] ? '–' : `${fmt(((r.cpuUs - base) / base) * 100, 1)}%`} | ${r.errors} |`);
  await stopAll([upstream.proc]);

  const plainAgain = await startPortico('plain-latency', upstream.port, []);
  const without = await latency(plainAgain.port);

  // ---- portico ratelimit on Redis: checks per second with one core, and the latency the filter adds
  const redisPort = await freePort();
  const redis = start('redis', LOAD_CPUS, 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitForPort(redisPort, redis);
  const rlsConfig = join(dir, 'ratelimit.yaml');
  writeFileSync(rlsConfig, 'domain: bench\ndescriptors:\n  - key: generic_key\n    value: bench\n    rate_limit: { unit: second, requests_per_unit: 1000000000 }\n');
  const [rlsPort, rlsAdmin] = [await freePort(), await freePort()];
  const rls = start('portico ratelimit', PROXY_CPUS, process.execPath, [PORTICO, 'ratelimit', '-c', rlsConfig, '--redis-url', `redis://127.0.0.1:${redisPort}`, '--grpc-port', String(rlsPort), '--admin-port', String(rlsAdmin), '-l', 'error']);
  await waitForPort(rlsPort, rls);
  const rlsMethod = envoyMethod('envoy/service/ratelimit/v3/rls.proto', 'envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');
  const rlsClient = new grpc.Client(`127.0.0.1:${rlsPort}`, grpc.credentials.createInsecure());
  const request = { domain: 'bench', descriptors: [{ entries: [{ key: 'generic_key', value: 'bench' }] }] };
  const ask = () =>
    new Promise((resolve, reject) =>
      rlsClient.makeUnaryRequest(rlsMethod.path, (m) => encodeMessage(rlsMethod.requestType, m), (b) => b, request, (err, res) => (err ? reject(err) : resolve(res))),
    );
  for (let i = 0; i < 2000; i++) await ask();
  const checkSamples = [];
  let checks = 0;
  const serviceCpuBefore = cpuSeconds(processTree(rls.pid));
  const deadline = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await ask();
        checkSamples.push(performance.now() - t0);
        checks++;
      }
    }),
  );
  const serviceCpuUs = (cpuDelta(serviceCpuBefore, cpuSeconds(processTree(rls.pid))) * 1e6) / checks;
  rlsClient.close();
  checkSamples.sort((a, b) => a - b);
  const globalRateLimit = typed('envoy.extensions.filters.http.ratelimit.v3.RateLimit', {
    domain: 'bench',
    timeout: '1s',
    rate_limit_service: { transport_api_version: 'V3', grpc_service: { envoy_grpc: { cluster_name: 'rls' } } },
  });
  const withGlobal = await startPortico('global-ratelimit', upstream.port, [globalRateLimit], {
    clusters: [cluster('rls', rlsPort, true)],
    rateLimits: [{ actions: [{ generic_key: { descriptor_value: 'bench' } }] }],
  });
  const globalLatency = await latency(withGlobal.port);

  console.log(`\nAdded latency, ${REQUESTS} sequential requests (undici, keep-alive)`);
  console.log('| route | p50 ms | p99 ms | added p50 | added p99 |\n| --- | ---: | ---: | ---: | ---: |');
  console.log(`| no filter | ${fmt(without.p50, 3)} | ${fmt(without.p99, 3)} | – | – |`);
  for (const [name, l] of [['ratelimit (portico ratelimit on Redis)', globalLatency]]) {
    console.log(`| ${name} | ${fmt(l.p50, 3)} | ${fmt(l.p99, 3)} | ${fmt(l.p50 - without.p50, 3)} | ${fmt(l.p99 - without.p99, 3)} |`);
  }
  console.log(`\nportico ratelimit on Redis, one core (CPU 0), 50 calls in flight for ${SECONDS} s`);
  // The load generator shares CPU 1 with Redis and is the first to saturate: the service's CPU per check says what
  // one core of it would serve.
  console.log('| checks/s | p50 ms | p99 ms | service CPU µs/check | checks/s one core would serve |\n| ---: | ---: | ---: | ---: | ---: |');
  console.log(
    `| ${fmt(checks / SECONDS)} | ${fmt(checkSamples[Math.floor(checkSamples.length * 0.5)], 3)} | ${fmt(checkSamples[Math.floor(checkSamples.length * 0.99)], 3)} | ${fmt(serviceCpuUs, 1)} | ${fmt(1e6 / serviceCpuUs)} |`,
  );
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

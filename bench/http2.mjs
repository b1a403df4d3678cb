// HTTP/2 and gRPC through Portico, measured side by side with nginx on this machine's loopback:
//   - CPU per request for h2c prior-knowledge clients (h2load -c 50 -m 10), Portico against nginx
//     (`listen ... http2`), both one worker on CPU 0, proxying to an nginx upstream over HTTP/1.1 on CPU 1;
//   - the floor of the codec Portico uses: a bare node:http2 server on CPU 0 answering every request itself, the
//     CPU no proxy built on node:http2 can go below;
//   - gRPC unary latency (p50, p99) of @grpc/grpc-js calls through Portico (h2 both sides) minus direct.
//
//   npm run build && node bench/http2.mjs [--seconds 10] [--calls 5000]
//
// Needs nginx and h2load (Debian: nginx, nghttp2-client).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { cpuDelta, cpuSeconds, freePort, installCleanup, pinSelf, processTree, run, stopAll, which } from './lib/processes.mjs';
import { fmt } from './lib/report.mjs';
import { PORTICO, serve, startNginx, startNginxUpstream } from './lib/setups.mjs';

const { values: flags } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, calls: { type: 'string', default: '5000' } } });
const SECONDS = Number(flags.seconds);
const CALLS = Number(flags.calls);
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';

for (const tool of ['nginx', 'h2load']) if (!which(tool)) throw new Error(`${tool} is needed (apt-get install -y nginx nghttp2-client)`);
installCleanup();
pinSelf(LOAD_CPUS);
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-h2-'));

const address = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const router = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };

/** Portico with one h2-capable listener (codec_type AUTO) routing everything to `cluster`. */
async function startPortico(name, upstreamPort, { http2Upstream = false } = {}) {
  const port = await freePort();
  const cluster = { name: 'up', connect_timeout: '1s', load_assignment: { cluster_name: 'up', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(upstreamPort) } }] }] } };
  if (http2Upstream) {
    cluster.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  const hcm = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'bench',
    codec_type: 'AUTO',
    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'up', timeout: '0s' } }] }] },
    http_filters: [router],
  };
  const bootstrap = {
    static_resources: {
      listeners: [{ name: 'bench', address: address(port), filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }] }],
      clusters: [cluster],
    },
  };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(bootstrap));
  return serve(name, PROXY_CPUS, process.execPath, [PORTICO, 'run', '-c', file, '-l', 'warning', '--concurrency', '1'], port);
}

/** h2load for SECONDS against `port`; the proxy tree's CPU per completed request. */
async function h2load(server) {
  const tree = processTree(server.pid);
  const before = cpuSeconds(tree);
  const out = await run(LOAD_CPUS, 'h2load', ['-c', '50', '-m', '10', '-t', '1', '-D', String(SECONDS), '--warm-up-time', '1', `http://127.0.0.1:${server.port}/`]);
  const cpu = cpuDelta(before, cpuSeconds(processTree(server.pid)));
  const done = Number(/requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded/.exec(out)?.[2] ?? NaN);
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  return { rps, succeeded: done, cpuUsPerRequest: (cpu * 1e6) / done };
}

/** A node:http2 server that answers every stream itself: what node:http2 costs before any proxying. */
async function startBareHttp2(name) {
  const port = await freePort();
  const code = `const s = require('node:http2').createServer();
s.on('stream', (st) => { st.respond({ ':status': 200, 'content-type': 'text/plain' }); st.end('hello from node\\n'); });
s.listen(${port}, '127.0.0.1');`;
  return serve(name, PROXY_CPUS, process.execPath, ['-e', code], port);
}

const identity = (b) => b;
const ECHO = { path: '/bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };

/** Sequential unary calls to `port`; latency percentiles in ms. */
async function grpcLatency(port) {
  const Client = grpc.makeGenericClientConstructor({ Echo: ECHO }, 'Echo');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = () => new Promise((resolve, reject) => client.Echo(Buffer.from('ping'), (err, res) => (err ? reject(err) : resolve(res))));
  for (let i = 0; i < 200; i++) await call();
  const samples = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await call();
    samples.push(performance.now() - t0);
  }
  client.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)], p99: samples[Math.floor(samples.length * 0.99)] };
}

try {
  const upstream = await startNginxUpstream(dir, LOAD_CPUS);
  const nginx = await startNginx(dir, 'nginx h2c proxy', PROXY_CPUS, 20000, (port) => `  upstream up { server 127.0.0.1:${upstream.port}; keepalive 128; }
  server { listen 127.0.0.1:${port} http2 backlog=4096; http2_max_concurrent_streams 128;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`);
  const portico = await startPortico('portico', upstream.port);
  const bare = await startBareHttp2('bare node:http2');
  const rows = [];
  for (const [name, server] of [['nginx 1 worker', nginx], ['Portico 1 worker', portico], ['node:http2 alone, answering itself (no proxying)', bare]]) rows.push({ name, ...(await h2load(server)) });
  const base = rows[0].cpuUsPerRequest;
  console.log(`HTTP/2 (h2c prior knowledge, h2load -c 50 -m 10 for ${SECONDS} s) to an HTTP/1.1 nginx upstream`);
  console.log('| proxy | req/s | CPU µs/req | ×nginx |\n| --- | ---: | ---: | ---: |');
  for (const r of rows) console.log(`| ${r.name} | ${fmt(r.rps)} | ${fmt(r.cpuUsPerRequest, 1)} | ${fmt(r.cpuUsPerRequest / base, 2)}× |`);

  const server = new grpc.Server();
  server.addService({ Echo: ECHO }, { Echo: (call, callback) => callback(null, call.request) });
  const grpcPort = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const grpcProxy = await startPortico('portico-grpc', grpcPort, { http2Upstream: true });
  const direct = await grpcLatency(grpcPort);
  const proxied = await grpcLatency(grpcProxy.port);
  server.forceShutdown();
  console.log(`\ngRPC unary (@grpc/grpc-js, ${CALLS} sequential calls, 4-byte messages)`);
  console.log('| path | p50 ms | p99 ms |\n| --- | ---: | ---: |');
  console.log(`| direct | ${fmt(direct.p50, 3)} | ${fmt(direct.p99, 3)} |`);
  console.log(`| through Portico | ${fmt(proxied.p50, 3)} | ${fmt(proxied.p99, 3)} |`);
  console.log(`| Portico's share | ${fmt(proxied.p50 - direct.p50, 3)} | ${fmt(proxied.p99 - direct.p99, 3)} |`);
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

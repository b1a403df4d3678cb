// Latency ext_authz adds over gRPC: sequential HTTP/1.1 requests (keep-alive) through one Portico worker to an
// echo upstream, on a listener without the filter and on one with ext_authz asking a local @grpc/grpc-js
// Authorization server (envoy_grpc, HTTP/2) that allows everything; p50 and p99 of both, and their difference.
//
//   npm run build && node bench/ext-authz.mjs [--requests 5000]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { encodeMessage, envoyMethod } from '../dist/src/grpc/envoy-protos.js';
import { freePort, installCleanup, pinSelf, stopAll } from './lib/processes.mjs';
import { fmt } from './lib/report.mjs';
import { PORTICO, serve, startEcho } from './lib/setups.mjs';

const { values: flags } = parseArgs({ options: { requests: { type: 'string', default: '5000' } } });
const REQUESTS = Number(flags.requests);
const PROXY_CPUS = '0';
const LOAD_CPUS = '1';

installCleanup();
pinSelf(LOAD_CPUS);
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-ext-authz-'));

const CHECK = envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
const ALLOW = encodeMessage(CHECK.responseType, { status: { code: 0 } });
const identity = (b) => b;

const address = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const cluster = (name, port, http2) => ({
  name,
  connect_timeout: '1s',
  load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: address(port) } }] }] },
  ...(http2
    ? {
        typed_extension_protocol_options: {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
            '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
            explicit_http_config: { http2_protocol_options: {} },
          },
        },
      }
    : {}),
});
const listener = (port, filters) => ({
  address: address(port),
  filter_chains: [
    {
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
            stat_prefix: 'bench',
            route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'up' } }] }] },
            http_filters: [...filters, { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
          },
        },
      ],
    },
  ],
});

/** Sequential GETs on one keep-alive connection; latency percentiles in ms. */
async function latency(port) {
  const dispatcher = new Agent({ connections: 1 });
  const get = async () => {
    const res = await request(`http://127.0.0.1:${port}/`, { dispatcher });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  };
  for (let i = 0; i < 500; i++) await get();
  const samples = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    await get();
    samples.push(performance.now() - t0);
  }
  await dispatcher.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)], p99: samples[Math.floor(samples.length * 0.99)] };
}

try {
  const echo = await startEcho(LOAD_CPUS);
  const authz = new grpc.Server();
  const method = { path: CHECK.path, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
  authz.addService({ Check: method }, { Check: (_call, callback) => callback(null, ALLOW) });
  const authzPort = await new Promise((resolve, reject) => authz.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));

  const [plainPort, authzListenerPort] = [await freePort(), await freePort()];
  const extAuthz = {
    name: 'envoy.filters.http.ext_authz',
    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', grpc_service: { envoy_grpc: { cluster_name: 'authz' }, timeout: '1s' } },
  };
  const bootstrap = {
    static_resources: {
      listeners: [listener(plainPort, []), listener(authzListenerPort, [extAuthz])],
      clusters: [cluster('up', echo.port, false), cluster('authz', authzPort, true)],
    },
  };
  const file = join(dir, 'portico.json');
  writeFileSync(file, JSON.stringify(bootstrap));
  await serve('portico', PROXY_CPUS, process.execPath, [PORTICO, 'run', '-c', file, '-l', 'warning', '--concurrency', '1'], plainPort);

  const plain = await latency(plainPort);
  const checked = await latency(authzListenerPort);
  authz.forceShutdown();
  console.log(`HTTP/1.1 GET through Portico (1 worker), ${REQUESTS} sequential requests on one connection`);
  console.log('| route | p50 ms | p99 ms |\n| --- | ---: | ---: |');
  console.log(`| without ext_authz | ${fmt(plain.p50, 3)} | ${fmt(plain.p99, 3)} |`);
  console.log(`| with ext_authz (gRPC, allow all) | ${fmt(checked.p50, 3)} | ${fmt(checked.p99, 3)} |`);
  console.log(`| added by ext_authz | ${fmt(checked.p50 - plain.p50, 3)} | ${fmt(checked.p99 - plain.p99, 3)} |`);
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Global rate limiting is exact across gateways: three `portico run` processes share one `portico ratelimit` on
 * a real Redis; 200 concurrent clients spread over them send 1,500 requests against a limit of 1,000 per minute.
 * Exactly 1,000 are admitted, the other 500 get 429 with `x-envoy-ratelimited`. A gateway restarted within the
 * window loses nothing: the counts live in Redis.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { freePort } from '../support/ports.js';
import { hasRedis, REDIS_MISSING, startRedis, type TestRedis } from '../support/redis.js';
import { BIN } from '../support/start-process.js';
import { startRecordingUpstream, type RecordingUpstream, httpRequest } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const LIMIT = 1000;
const REQUESTS = 1500;
const CLIENTS = 200;
const GATEWAYS = 3;

function gatewayYaml(listenerPort: number, appPort: number, rlsPort: number): string {
  return `node: { id: gw-${listenerPort}, cluster: edge }
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: ${listenerPort} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { path: "/ready" }
                route: { cluster: app }
              - match: { prefix: "/" }
                route:
                  cluster: app
                  rate_limits: [{ actions: [{ generic_key: { descriptor_value: api } }] }]
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: edge
              timeout: 10s
              failure_mode_deny: true
              rate_limit_service:
                transport_api_version: V3
                grpc_service: { envoy_grpc: { cluster_name: rls } }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: app
    load_assignment: { cluster_name: app, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${appPort} } } } }] }] }
  - name: rls
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment: { cluster_name: rls, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${rlsPort} } } } }] }] }
`;
}

interface Proc {
  child: ChildProcess;
  output: () => string;
}

function spawnPortico(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d));
  child.stderr!.on('data', (d: Buffer) => (output += d));
  return { child, output: () => output };
}

async function stopProc(proc: Proc | undefined): Promise<void> {
  if (proc === undefined || proc.child.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.child.once('exit', resolve));
  proc.child.kill('SIGTERM');
  await exited;
}

/** Waits until a window of the minute has at least `seconds` left, so the test runs inside one window. */
async function waitForRoomInMinute(seconds: number): Promise<void> {
  const left = 60 - (Date.now() / 1000) % 60;
  if (left < seconds) await new Promise((resolve) => setTimeout(resolve, left * 1000 + 100));
}

describe('global rate limiting across gateways', { skip: hasRedis() ? false : REDIS_MISSING }, () => {
  let redis: TestRedis;
  let app: RecordingUpstream;
  let service: Proc;
  const gateways: Proc[] = [];
  const ports: number[] = [];
  let dir: string;
  let rlsPort: number;

  before(async () => {
    redis = await startRedis();
    app = await startRecordingUpstream();
    dir = mkdtempSync(join(tmpdir(), 'portico-exact-'));
    const serviceConfig = join(dir, 'ratelimit.yaml');
    writeFileSync(serviceConfig, `domain: edge\ndescriptors:\n  - key: generic_key\n    value: api\n    rate_limit: { unit: minute, requests_per_unit: ${LIMIT} }\n`);
    rlsPort = await freePort();
    const adminPort = await freePort();
    service = spawnPortico(['ratelimit', '-c', serviceConfig, '--redis-url', redis.url, '--grpc-port', String(rlsPort), '--admin-port', String(adminPort), '--log-level', 'error']);
    await eventually(async () => assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/healthcheck`)).status, 200), 20_000);
    for (let i = 0; i < GATEWAYS; i++) {
      ports.push(await freePort());
      gateways.push(startGateway(i));
    }
    // `/ready` has no rate limits: probing it counts nothing.
    await Promise.all(ports.map((port) => eventually(async () => assert.equal((await httpRequest(`http://127.0.0.1:${port}/ready`)).status, 200), 20_000)));
  });

  function startGateway(i: number): Proc {
    const config = join(dir, `gateway-${i}.yaml`);
    writeFileSync(config, gatewayYaml(ports[i]!, app.port, rlsPort));
    return spawnPortico(['run', '-c', config, '--concurrency', '1', '--log-level', 'error']);
  }

  after(async () => {
    await Promise.all(gateways.map(stopProc));
    await stopProc(service);
    await app.close();
    await redis.stop();
  });

  it(`admits exactly ${LIMIT} of ${REQUESTS} requests from ${CLIENTS} concurrent clients, and a restarted gateway loses no counts`, async () => {
    await waitForRoomInMinute(40);
    const pools = ports.map((port) => new Pool(`http://127.0.0.1:${port}`, { connections: Math.ceil(CLIENTS / GATEWAYS) }));
    const statuses = new Map<number, number>();
    let limitedWithHeader = 0;
    let next = 0;
    const client = async (c: number): Promise<void> => {
      while (next < REQUESTS) {
        next++;
        const res = await pools[c % GATEWAYS]!.request({ path: '/', method: 'GET' });
        await res.body.text();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode === 429 && res.headers['x-envoy-ratelimited'] === 'true') limitedWithHeader++;
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    await Promise.all(pools.map((pool) => pool.close()));
    assert.deepEqual(Object.fromEntries(statuses), { 200: LIMIT, 429: REQUESTS - LIMIT });
    assert.equal(limitedWithHeader, REQUESTS - LIMIT);

    // A gateway restarted inside the window: the limit is still spent.
    await stopProc(gateways[0]);
    gateways[0] = startGateway(0);
    await eventually(async () => assert.equal((await httpRequest(`http://127.0.0.1:${ports[0]}/after-restart`)).status, 429), 20_000);
  });
});

/**
 * The admin endpoint of a real `portico run --concurrency 2`: a primary process and two worker processes sharing
 * the listener. Stats add up over the workers; admin commands reach every worker; a dead worker is replaced and
 * its counts kept; draining (POST /drain_listeners, SIGTERM) lets in-flight requests finish.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { freePort } from '../support/ports.js';
import { childrenOf } from '../support/start-process.js';
import { httpRequest, startRecordingUpstream, type HttpResponse, type RecordingUpstream } from '../support/upstreams.js';

const BIN = join(PACKAGE_ROOT, 'bin', 'portico.js');
const dir = mkdtempSync(join(tmpdir(), 'portico-admin-'));

// ---------------------------------------------------------------------------------------------------------------
// Processes

interface Gateway {
  child: ChildProcess;
  listenerPort: number;
  adminPort: number;
  exited: Promise<number | null>;
  stderr(): string;
  /** `http://127.0.0.1:<listener>` */
  url: string;
  admin(path: string, method?: string, body?: string): Promise<HttpResponse>;
  /** PIDs of the worker processes (the primary's children). */
  workers(): number[];
}

const gateways: Gateway[] = [];
const seenWorkers = new Set<number>();

/** Kills whatever a test left running, workers included (they may be stopped with SIGSTOP). */
after(async () => {
  for (const gw of gateways) for (const pid of gw.workers()) seenWorkers.add(pid);
  for (const pid of seenWorkers) signal(pid, 'SIGCONT');
  for (const gw of gateways) if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  for (const pid of seenWorkers) signal(pid, 'SIGKILL');
  await Promise.all(gateways.map((gw) => gw.exited));
});

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function bootstrap(opts: { listenerPort: number; adminPort: number; upstreamPort: number; adminLayer: boolean; extra?: string }): string {
  return `${opts.extra ?? ''}
admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${opts.adminPort} } } }
layered_runtime:
  layers:
  - name: static
    static_layer: { feature: { canary: 0 } }
${opts.adminLayer ? '  - name: admin\n    admin_layer: {}' : ''}
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: ${opts.listenerPort} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match:
                  prefix: "/canary"
                  runtime_fraction: { default_value: { numerator: 0 }, runtime_key: routing.canary }
                direct_response: { status: 200, body: { inline_string: "canary" } }
              - match: { prefix: "/" }
                route: { cluster: backend, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${opts.upstreamPort} } } }
`;
}

async function startGateway(
  name: string,
  upstreamPort: number,
  opts: { adminLayer?: boolean; logLevel?: string; drainTimeS?: number; extra?: string } = {},
): Promise<Gateway> {
  const [listenerPort, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, bootstrap({ listenerPort, adminPort, upstreamPort, adminLayer: opts.adminLayer ?? true, extra: opts.extra }));
  const args = [BIN, 'run', '-c', file, '-l', opts.logLevel ?? 'warning', '--concurrency', '2', '--drain-time-s', String(opts.drainTimeS ?? 10)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const gw: Gateway = {
    child,
    listenerPort,
    adminPort,
    exited,
    stderr: () => stderr,
    url: `http://127.0.0.1:${listenerPort}`,
    admin: (path, method = 'GET', body) => httpRequest(`http://127.0.0.1:${adminPort}${path}`, { method, body: body ?? null, ...(body ? { headers: { 'content-type': 'application/x-www-form-urlencoded' } } : {}) }),
    workers: () => (child.pid === undefined ? [] : childrenOf(child.pid)),
  };
  gateways.push(gw);
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`portico exited with ${child.exitCode}: ${stderr}`);
    return (await gw.admin('/ready')).status === 200;
  }, `${name} to be ready`);
  for (const pid of gw.workers()) seenWorkers.add(pid);
  return gw;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
      if (err instanceof Error && err.message.startsWith('portico exited')) throw err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `/stats` text as name → value (histogram lines keep their text). */
async function stats(gw: Gateway, query = ''): Promise<Map<string, string>> {
  const res = await gw.admin(`/stats${query}`);
  assert.equal(res.status, 200, res.body);
  const out = new Map<string, string>();
  for (const line of res.body.split('\n')) {
    if (line === '') continue;
    const colon = line.indexOf(': ');
    out.set(line.slice(0, colon), line.slice(colon + 2));
  }
  return out;
}

async function stat(gw: Gateway, name: string): Promise<number> {
  const all = await stats(gw, `?filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`);
  const value = all.get(name);
  assert.ok(value !== undefined, `no stat ${name}`);
  return Number(value);
}

/** A connection attempt; resolves with its error code or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** An upstream whose answers wait until `release()`: requests stay in flight as long as a test needs. */
async function gatedUpstream(): Promise<RecordingUpstream & { release(): void }> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const upstream = await startRecordingUpstream(async (_req, res) => {
    await gate;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 9 });
    res.end('slow done');
  });
  return Object.assign(upstream, { release });
}

const MUTATING = ['/runtime_modify', '/logging', '/reset_counters', '/healthcheck/fail', '/healthcheck/ok', '/drain_listeners', '/reopen_logs', '/quitquitquit'];

// ---------------------------------------------------------------------------------------------------------------

describe('admin endpoint of portico run --concurrency 2', () => {
  let echo: EchoServer;
  let gw: Gateway;
  /** Requests served so far, all 200. */
  let served = 0;

  before(async () => {
    echo = await startEchoServer({ name: 'admin-echo' });
    gw = await startGateway('main', echo.port);
  });
  after(async () => {
    await echo?.close();
  });

  /** `n` requests each on a new connection: node:cluster hands connections to the workers in turn. */
  async function sequential(n: number, path = '/seq'): Promise<HttpResponse[]> {
    const responses: HttpResponse[] = [];
    for (let i = 0; i < n; i++) responses.push(await httpRequest(`${gw.url}${path}/${i}`));
    return responses;
  }

  it('runs two worker processes', () => {
    const workers = gw.workers();
    assert.equal(workers.length, 2, `children of ${gw.child.pid}: ${workers}`);
  });

  it('adds up the stats of both workers', async () => {
    for (const res of await sequential(10)) assert.equal(res.status, 200);
    // Several concurrent keep-alive connections, spread over the workers.
    const agent = new Agent({ connections: 4 });
    try {
      const responses = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const res = await request(`${gw.url}/ka/${i}`, { dispatcher: agent });
          await res.body.text();
          return res.statusCode;
        }),
      );
      assert.deepEqual(new Set(responses), new Set([200]));
    } finally {
      await agent.close();
    }
    served = 50;
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === served, 'the requests to be counted');
    const all = await stats(gw);
    const value = (name: string) => Number(all.get(name));
    assert.equal(value('http.ingress_http.downstream_rq_total'), 50);
    assert.equal(value('http.ingress_http.downstream_rq_2xx'), 50);
    assert.equal(value('http.ingress_http.rq_total'), 50);
    assert.equal(value('cluster.backend.upstream_rq_total'), 50);
    assert.equal(value('cluster.backend.upstream_rq_200'), 50);
    assert.equal(value('cluster.backend.upstream_rq_2xx'), 50);
    assert.equal(value(`listener.127.0.0.1_${gw.listenerPort}.http.ingress_http.downstream_rq_2xx`), 50);
    const connections = value('http.ingress_http.downstream_cx_total');
    assert.ok(connections >= 11 && connections <= 14, `downstream_cx_total ${connections}`);
    assert.equal(value(`listener.127.0.0.1_${gw.listenerPort}.downstream_cx_total`), connections);
    // Sequential requests on one worker reuse one upstream connection: two or more means both workers served.
    assert.ok(value('cluster.backend.upstream_cx_total') >= 2, `upstream_cx_total ${value('cluster.backend.upstream_cx_total')}`);
    // Configuration gauges are the same in every worker: shown once.
    assert.equal(value('cluster.backend.membership_total'), 1);
    assert.equal(value('cluster.backend.membership_healthy'), 1);
    assert.equal(value('cluster_manager.active_clusters'), 1);
    assert.equal(value('listener_manager.total_listeners_active'), 1);
    // server.* from the primary.
    assert.equal(value('server.concurrency'), 2);
    assert.equal(value('server.live'), 1);
    assert.equal(value('server.state'), 0);
    assert.equal(value('server.worker_restarts'), 0);
    assert.ok(value('server.memory_allocated') > 0);
    assert.ok(value('server.uptime') >= 0);
    assert.match(all.get('http.ingress_http.downstream_rq_time')!, /^P0\([^)]*\) P25/);
    assert.match(all.get('server.initialization_time_ms')!, /^P0\(/);
  });

  it('shows the per-host request counts of both workers in /clusters', async () => {
    const text = await gw.admin('/clusters');
    assert.equal(text.status, 200);
    const lines = new Set(text.body.trimEnd().split('\n'));
    const host = `backend::127.0.0.1:${echo.port}::`;
    for (const line of [
      `${host}rq_total::${served}`,
      `${host}rq_success::${served}`,
      `${host}rq_error::0`,
      `${host}rq_active::0`,
      `${host}health_flags::healthy`,
      'backend::default_priority::max_connections::1024',
      'backend::high_priority::max_requests::1024',
      'backend::added_via_api::false',
    ]) {
      assert.ok(lines.has(line), `/clusters lacks ${line}:\n${text.body}`);
    }
    const cxTotal = [...lines].find((l) => l.startsWith(`${host}cx_total::`));
    assert.ok(Number(cxTotal?.split('::').at(-1)) >= 2, String(cxTotal));

    const json = await gw.admin('/clusters?format=json');
    assert.equal(json.status, 200);
    assert.match(String(json.headers['content-type']), /application\/json/);
    const body = JSON.parse(json.body) as {
      cluster_statuses: Array<{
        name: string;
        added_via_api: boolean;
        host_statuses: Array<{ address: { socket_address: { address: string; port_value: number } }; stats: Array<{ name: string; value: string; type?: string }>; health_status: Record<string, unknown> }>;
      }>;
    };
    assert.equal(body.cluster_statuses.length, 1);
    const [cluster] = body.cluster_statuses;
    assert.equal(cluster!.name, 'backend');
    assert.equal(cluster!.added_via_api, false);
    assert.equal(cluster!.host_statuses.length, 1);
    const [hostStatus] = cluster!.host_statuses;
    assert.deepEqual(hostStatus!.address, { socket_address: { address: '127.0.0.1', port_value: echo.port } });
    const byName = new Map(hostStatus!.stats.map((s) => [s.name, s]));
    assert.deepEqual(byName.get('rq_total'), { name: 'rq_total', value: String(served) });
    assert.deepEqual(byName.get('rq_success'), { name: 'rq_success', value: String(served) });
    assert.deepEqual(byName.get('rq_active'), { name: 'rq_active', type: 'GAUGE', value: '0' });
  });

  it('renders /stats as JSON and Prometheus, summed', async () => {
    const json = await gw.admin('/stats?format=json');
    assert.equal(json.status, 200);
    const body = JSON.parse(json.body) as { stats: Array<{ name?: string; value?: number; histograms?: { supported_quantiles: number[]; computed_quantiles: Array<{ name: string }> } }> };
    assert.deepEqual(body.stats.find((s) => s.name === 'cluster.backend.upstream_rq_200'), { name: 'cluster.backend.upstream_rq_200', value: served });
    const histograms = body.stats.at(-1)!.histograms!;
    assert.deepEqual(histograms.supported_quantiles, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
    assert.ok(histograms.computed_quantiles.some((h) => h.name === 'cluster.backend.upstream_rq_time'));

    for (const path of ['/stats/prometheus', '/stats?format=prometheus']) {
      const prom = await gw.admin(path);
      assert.equal(prom.status, 200);
      assert.match(String(prom.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      const lines = new Set(prom.body.split('\n'));
      for (const line of [
        '# TYPE envoy_cluster_upstream_rq counter',
        `envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="backend"} ${served}`,
        `envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="backend"} ${served}`,
        `envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"} ${served}`,
        `envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"} ${served}`,
        `envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="ingress_http"} 0`,
        '# TYPE envoy_cluster_upstream_rq_time histogram',
        `envoy_cluster_upstream_rq_time_count{envoy_cluster_name="backend"} ${served}`,
        `envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="+Inf"} ${served}`,
        '# TYPE envoy_server_concurrency gauge',
        'envoy_server_concurrency 2',
        'envoy_server_worker_restarts 0',
      ]) {
        assert.ok(lines.has(line), `${path} lacks ${line}`);
      }
      assert.ok(
        [...lines].some((l) => l.startsWith(`envoy_listener_downstream_cx_total{envoy_listener_address="127.0.0.1_${gw.listenerPort}"} `)),
        `${path} lacks the listener address label`,
      );
    }
    const filtered = await gw.admin(`/stats/prometheus?usedonly&filter=${encodeURIComponent('^cluster\\.')}`);
    assert.ok(filtered.body.length > 0);
    assert.ok(
      filtered.body.split('\n').every((l) => l === '' || /^(# TYPE )?envoy_cluster_/.test(l)),
      filtered.body,
    );
    assert.doesNotMatch(filtered.body, /upstream_rq_timeout/);
  });

  it('selects stats with filter, usedonly, type and histogram_buckets', async () => {
    const filtered = await stats(gw, `?filter=${encodeURIComponent('^cluster\\.backend\\.upstream_rq_2')}`);
    assert.deepEqual([...filtered.entries()], [
      ['cluster.backend.upstream_rq_200', String(served)],
      ['cluster.backend.upstream_rq_2xx', String(served)],
    ]);

    // A filter matches anywhere in the name (RE2 partial match).
    assert.deepEqual([...(await stats(gw, '?filter=backend.upstream_rq_2')).keys()], ['cluster.backend.upstream_rq_200', 'cluster.backend.upstream_rq_2xx']);

    const all = await stats(gw);
    const used = await stats(gw, '?usedonly');
    assert.ok(all.has('cluster.backend.upstream_rq_timeout'));
    assert.ok(!used.has('cluster.backend.upstream_rq_timeout'), 'a counter never incremented is not used');
    assert.ok(used.has('cluster.backend.upstream_rq_total'));
    assert.ok(used.size < all.size);
    const names = [...all.keys()];
    const histogramNames = names.filter((n) => /^P0\(|^No recorded values$/.test(all.get(n)!));
    const valueNames = names.filter((n) => !histogramNames.includes(n));
    assert.deepEqual(valueNames, [...valueNames].sort(), 'counters and gauges sorted by name');
    assert.deepEqual(names.slice(valueNames.length), histogramNames, 'histograms last');

    const counters = await stats(gw, '?type=Counters');
    assert.ok(counters.has('cluster.backend.upstream_rq_total'));
    assert.ok(!counters.has('server.concurrency'), 'no gauges');
    assert.ok(!counters.has('cluster.backend.upstream_rq_time'), 'no histograms');
    const gauges = await stats(gw, '?type=Gauges');
    assert.equal(gauges.get('server.concurrency'), '2');
    assert.ok(!gauges.has('cluster.backend.upstream_rq_total'));
    const histograms = await stats(gw, '?type=Histograms&usedonly');
    assert.ok([...histograms.values()].every((v) => v.startsWith('P0(')), [...histograms.entries()].join('\n'));
    assert.ok(histograms.has('cluster.backend.upstream_rq_time'));

    const cumulative = (await stats(gw, `?histogram_buckets=cumulative&filter=${encodeURIComponent('^cluster\\.backend\\.upstream_rq_time$')}`)).get('cluster.backend.upstream_rq_time')!;
    assert.match(cumulative, /^B0\.5\(\d+,\d+\) B1\(/);
    assert.match(cumulative, new RegExp(`B3600000\\(\\d+,${served}\\)$`));
    const disjoint = (await stats(gw, `?histogram_buckets=disjoint&filter=${encodeURIComponent('^cluster\\.backend\\.upstream_rq_time$')}`)).get('cluster.backend.upstream_rq_time')!;
    const perBucket = [...disjoint.matchAll(/B[\d.]+\(\d+,(\d+)\)/g)].map((m) => Number(m[1]));
    assert.equal(perBucket.length, 19);
    assert.equal(perBucket.reduce((a, b) => a + b, 0), served);
  });

  it('answers 400 to an invalid regex, type, format or bucket mode', async () => {
    for (const query of [`?filter=${encodeURIComponent('(')}`, `?filter=${encodeURIComponent('a[')}`, '?type=Nope', '?format=xml', '?histogram_buckets=nope']) {
      const res = await gw.admin(`/stats${query}`);
      assert.equal(res.status, 400, `/stats${query}`);
    }
    assert.equal((await gw.admin(`/stats/prometheus?filter=${encodeURIComponent('(')}`)).status, 400);
  });

  it('lists the listeners with their bound addresses', async () => {
    const text = await gw.admin('/listeners');
    assert.equal(text.status, 200);
    assert.equal(text.body, `ingress::127.0.0.1:${gw.listenerPort}\n`);
    const json = await gw.admin('/listeners?format=json');
    assert.deepEqual(JSON.parse(json.body), {
      listener_statuses: [{ name: 'ingress', local_address: { socket_address: { address: '127.0.0.1', port_value: gw.listenerPort } } }],
    });
  });

  it('changes the runtime of every worker with /runtime_modify', async () => {
    const runtime = JSON.parse((await gw.admin('/runtime')).body) as { layers: string[]; entries: Record<string, { layer_values: string[]; final_value: string }> };
    assert.deepEqual(runtime.layers, ['static', 'admin']);
    assert.deepEqual(runtime.entries['feature.canary'], { layer_values: ['0', ''], final_value: '0' });
    assert.equal(runtime.entries['routing.canary'], undefined);

    const get = await gw.admin('/runtime_modify?routing.canary=100');
    assert.equal(get.status, 405);
    assert.equal(get.body, 'Method GET not allowed, POST required.');
    // The route is off by default: /canary goes to the cluster.
    for (const res of await sequential(4, '/canary')) assert.equal(JSON.parse(res.body).name, 'admin-echo');

    const set = await gw.admin('/runtime_modify?routing.canary=100', 'POST');
    assert.equal(set.status, 200);
    assert.equal(set.body, 'OK\n');
    const after = JSON.parse((await gw.admin('/runtime')).body) as typeof runtime;
    assert.deepEqual(after.entries['routing.canary'], { layer_values: ['', '100'], final_value: '100' });
    // Every worker serves the override (each request on a new connection, handed to the workers in turn).
    assert.deepEqual((await sequential(4, '/canary')).map((r) => r.body), ['canary', 'canary', 'canary', 'canary']);

    // A form body works too; an empty value removes the override.
    const cleared = await gw.admin('/runtime_modify', 'POST', 'routing.canary=');
    assert.equal(cleared.status, 200);
    const afterClear = JSON.parse((await gw.admin('/runtime')).body) as typeof runtime;
    assert.equal(afterClear.entries['routing.canary'], undefined);
    for (const res of await sequential(4, '/canary')) assert.equal(JSON.parse(res.body).name, 'admin-echo');
    served += 8;

    assert.equal((await gw.admin('/runtime_modify', 'POST')).status, 400, 'nothing to modify');
  });

  it('lists and sets the log level with /logging', async () => {
    assert.equal((await gw.admin('/logging')).status, 405);
    const list = await gw.admin('/logging', 'POST');
    assert.equal(list.status, 200);
    assert.equal(list.body, 'active loggers:\n  main: warning\n');
    assert.equal((await gw.admin('/logging?level=debug', 'POST')).body, 'active loggers:\n  main: debug\n');
    assert.equal((await gw.admin('/logging?paths=main:error', 'POST')).body, 'active loggers:\n  main: error\n');
    assert.equal((await gw.admin('/logging?level=loud', 'POST')).status, 400);
    assert.equal((await gw.admin('/logging?paths=nope:debug', 'POST')).status, 400);
    assert.equal((await gw.admin('/logging', 'POST')).body, 'active loggers:\n  main: error\n', 'a refused change changes nothing');
    assert.equal((await gw.admin('/logging?level=warning', 'POST')).body, 'active loggers:\n  main: warning\n');
  });

  it('zeroes every worker counter with /reset_counters, keeping them listed', async () => {
    assert.equal((await gw.admin('/reset_counters')).status, 405);
    const before = await stats(gw, '?usedonly');
    assert.equal(Number(before.get('cluster.backend.upstream_rq_200')), served);
    const reset = await gw.admin('/reset_counters', 'POST');
    assert.equal(reset.status, 200);
    assert.equal(reset.body, 'OK\n');
    const used = await stats(gw, '?usedonly');
    for (const name of ['cluster.backend.upstream_rq_total', 'cluster.backend.upstream_rq_200', 'http.ingress_http.downstream_rq_2xx', 'http.ingress_http.downstream_rq_total']) {
      assert.equal(used.get(name), '0', name);
    }
    const counters = await stats(gw, '?usedonly&type=Counters');
    assert.deepEqual([...counters.entries()].filter(([, v]) => v !== '0'), [], 'every counter is 0');
    // Gauges and histograms are not counters.
    assert.equal(used.get('cluster.backend.membership_total'), '1');
    assert.equal(used.get('server.concurrency'), '2');
    assert.match(used.get('cluster.backend.upstream_rq_time') ?? '', /^P0\(/);

    for (const res of await sequential(2)) assert.equal(res.status, 200);
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === 2, 'two new requests to be counted');
    assert.equal(await stat(gw, 'cluster.backend.upstream_rq_200'), 2);
    served = 2;
  });

  it('fails health checks after /healthcheck/fail and recovers after /healthcheck/ok', async () => {
    assert.equal((await gw.admin('/healthcheck/fail')).status, 405);
    assert.equal((await gw.admin('/ready')).body, 'LIVE\n');
    const fail = await gw.admin('/healthcheck/fail', 'POST');
    assert.deepEqual([fail.status, fail.body], [200, 'OK\n']);
    const ready = await gw.admin('/ready');
    assert.deepEqual([ready.status, ready.body], [503, 'DRAINING\n']);
    assert.equal(JSON.parse((await gw.admin('/server_info')).body).state, 'DRAINING');
    assert.equal(await stat(gw, 'server.live'), 0);
    assert.equal(await stat(gw, 'server.state'), 1);
    // Traffic is still served.
    assert.equal((await httpRequest(`${gw.url}/still-serving`)).status, 200);
    served++;

    const ok = await gw.admin('/healthcheck/ok', 'POST');
    assert.deepEqual([ok.status, ok.body], [200, 'OK\n']);
    const live = await gw.admin('/ready');
    assert.deepEqual([live.status, live.body], [200, 'LIVE\n']);
    assert.equal(await stat(gw, 'server.live'), 1);
    assert.equal(await stat(gw, 'server.state'), 0);
  });

  it('answers 404 with the command list to an unknown path and 405 to GET on mutating commands', async () => {
    for (const path of ['/nope', '/stats/', '/statsx', '/clusters/json']) {
      const res = await gw.admin(path);
      assert.equal(res.status, 404, path);
      assert.match(res.body, /^invalid path\. admin commands are:\n/);
      for (const command of ['/stats', '/clusters', '/listeners', '/ready', '/runtime', '/config_dump', '/server_info']) {
        assert.match(res.body, new RegExp(`^  ${command.replaceAll('/', '\\/')}: `, 'm'), `${command} in the 404 list`);
      }
      for (const command of MUTATING) assert.match(res.body, new RegExp(`^  ${command.replaceAll('/', '\\/')} \\(POST\\): `, 'm'));
    }
    const help = await gw.admin('/help');
    assert.equal(help.status, 200);
    assert.match(help.body, /^admin commands are:\n/);
    for (const path of MUTATING) {
      for (const method of ['GET', 'PUT']) {
        const res = await gw.admin(path, method);
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.body, `Method ${method} not allowed, POST required.`);
      }
    }
    // Still running: the GET /quitquitquit and /drain_listeners above did nothing.
    assert.equal((await gw.admin('/ready')).status, 200);
    assert.equal((await httpRequest(`${gw.url}/after-405`)).status, 200);
    served++;
  });

  it('keeps answering while every worker is unresponsive', async () => {
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === served, 'the requests to be counted');
    const before = await stat(gw, 'cluster.backend.upstream_rq_200');
    const workers = gw.workers();
    assert.equal(workers.length, 2);
    for (const pid of workers) signal(pid, 'SIGSTOP');
    try {
      const ready = await gw.admin('/ready');
      assert.deepEqual([ready.status, ready.body], [200, 'LIVE\n']);
      assert.equal((await gw.admin('/server_info')).status, 200);
      assert.equal((await gw.admin('/listeners')).status, 200);
      // Workers that do not answer are represented by the stats they last reported.
      assert.equal(await stat(gw, 'cluster.backend.upstream_rq_200'), before);
      assert.equal(await stat(gw, 'server.concurrency'), 2);
    } finally {
      for (const pid of workers) signal(pid, 'SIGCONT');
    }
    assert.equal((await httpRequest(`${gw.url}/resumed`)).status, 200);
    served++;
    await waitFor(async () => (await stat(gw, 'cluster.backend.upstream_rq_200')) === before + 1, 'the workers to answer again');
  });

  it('restarts a worker that dies, counts the restart and keeps its counts', async () => {
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === served, 'the requests to be counted');
    // Reading /stats now also gives the primary the workers' latest counts.
    const before = await stats(gw);
    const completed = Number(before.get('http.ingress_http.downstream_rq_completed'));
    const rq200 = Number(before.get('cluster.backend.upstream_rq_200'));
    assert.equal(rq200, served);
    const workers = gw.workers();
    assert.equal(workers.length, 2);
    const victim = workers[0]!;
    signal(victim, 'SIGKILL');
    await waitFor(() => !alive(victim), 'the worker to die');
    await waitFor(async () => (await stat(gw, 'server.worker_restarts')) === 1, 'server.worker_restarts to be 1');
    await waitFor(() => {
      const now = gw.workers();
      return now.length === 2 && !now.includes(victim);
    }, 'a replacement worker');
    for (const pid of gw.workers()) seenWorkers.add(pid);
    await waitFor(async () => (await gw.admin('/ready')).status === 200, 'the server to be live');

    // The dead worker's counts are kept: nothing goes backwards.
    const afterDeath = await stats(gw);
    assert.equal(Number(afterDeath.get('http.ingress_http.downstream_rq_completed')), completed);
    assert.equal(Number(afterDeath.get('cluster.backend.upstream_rq_200')), rq200);
    for (const [name, value] of before) {
      if (!/^(http|cluster|listener)\./.test(name) || !/^\d+$/.test(value)) continue;
      if (/_active$|membership_|max_host_weight/.test(name)) continue; // gauges
      assert.ok(Number(afterDeath.get(name)) >= Number(value), `${name}: ${afterDeath.get(name)} < ${value}`);
    }

    // Traffic flows through both workers.
    for (const res of await sequential(6, '/after-restart')) assert.equal(res.status, 200);
    served += 6;
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === completed + 6, 'the new requests to be counted');
    assert.equal(await stat(gw, 'cluster.backend.upstream_rq_200'), rq200 + 6);
    assert.equal(await stat(gw, 'server.worker_restarts'), 1);
    assert.match((await gw.admin('/stats/prometheus')).body, /^envoy_server_worker_restarts 1$/m);
    await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_cx_active')) === 0, 'connection gauges without the dead worker');
    assert.match(gw.stderr(), /worker \d+ died/);

    // server.worker_restarts is a counter like the others: /reset_counters zeroes it.
    assert.equal((await gw.admin('/reset_counters', 'POST')).status, 200);
    const reset = await stats(gw, '?usedonly&type=Counters');
    assert.deepEqual(
      { restarts: reset.get('server.worker_restarts'), rq200: reset.get('cluster.backend.upstream_rq_200') },
      { restarts: '0', rq200: '0' },
    );
    served = 0;
  });

  it('survives a worker dying while the admin endpoint is asking the workers for stats', async () => {
    const restarts = await stat(gw, 'server.worker_restarts');
    const victim = gw.workers()[0]!;
    // Admin requests in a tight loop around the death: some reach the primary between the worker dying and the
    // primary noticing it.
    let polling = true;
    const statuses: number[] = [];
    const poll = async () => {
      while (polling) statuses.push((await gw.admin('/stats?filter=worker_restarts').catch(() => ({ status: 0 }))).status);
    };
    const pollers = Array.from({ length: 8 }, poll);
    await new Promise((r) => setTimeout(r, 100));
    signal(victim, 'SIGKILL');
    await waitFor(() => !alive(victim), 'the worker to die');
    await new Promise((r) => setTimeout(r, 300));
    polling = false;
    await Promise.all(pollers);
    assert.equal(gw.child.exitCode, null, `the primary exited:\n${gw.stderr()}`);
    assert.deepEqual(new Set(statuses), new Set([200]));
    await waitFor(async () => (await stat(gw, 'server.worker_restarts')) === restarts + 1, 'server.worker_restarts to grow');
    await waitFor(() => gw.workers().length === 2, 'a replacement worker');
    for (const pid of gw.workers()) seenWorkers.add(pid);
    await waitFor(async () => (await gw.admin('/ready')).status === 200, 'the server to be live');
    for (const res of await sequential(2, '/after-crash')) assert.equal(res.status, 200);
    served += 2;
  });

  it('gives a replacement worker the runtime overrides and log level in force', async () => {
    const set = await gw.admin('/runtime_modify?routing.canary=100', 'POST');
    assert.equal(set.status, 200);
    assert.deepEqual((await sequential(2, '/canary')).map((r) => r.body), ['canary', 'canary']);
    // The workers started at `warning`; at `info` a starting worker logs its listener.
    assert.equal((await gw.admin('/logging?level=info', 'POST')).status, 200);
    const logged = () => gw.stderr().split('\n').filter((l) => l.includes('listener ingress listening on')).length;
    assert.equal(logged(), 0);

    const restarts = await stat(gw, 'server.worker_restarts');
    const victim = gw.workers()[1]!;
    signal(victim, 'SIGKILL');
    await waitFor(async () => (await stat(gw, 'server.worker_restarts')) === restarts + 1, 'server.worker_restarts to grow');
    await waitFor(() => {
      const now = gw.workers();
      return now.length === 2 && !now.includes(victim);
    }, 'a replacement worker');
    for (const pid of gw.workers()) seenWorkers.add(pid);
    await waitFor(async () => (await gw.admin('/ready')).status === 200, 'the server to be live');
    // The replacement logs its listener once it serves, which can come after the primary is live; a replacement
    // started at another level than the one in force would never log it.
    await waitFor(() => logged() === 1, 'the replacement worker to log its listener at info');
    const runtime = JSON.parse((await gw.admin('/runtime')).body) as { entries: Record<string, { final_value: string }> };
    assert.equal(runtime.entries['routing.canary']?.final_value, '100');
    // Both workers, the replacement included, serve what /runtime shows.
    const bodies = (await sequential(4, '/canary')).map((r) => (r.body === 'canary' ? 'canary' : `default route (${r.status})`));
    const replacementLogged = logged();
    await gw.admin('/runtime_modify?routing.canary=', 'POST');
    await gw.admin('/logging?level=warning', 'POST');
    assert.deepEqual(
      { bodies, replacementLogged },
      { bodies: ['canary', 'canary', 'canary', 'canary'], replacementLogged: 1 },
    );
  });

  it('exits 0 on POST /quitquitquit, workers included', async () => {
    const workers = gw.workers();
    const res = await gw.admin('/quitquitquit', 'POST');
    assert.deepEqual([res.status, res.body], [200, 'OK\n']);
    assert.equal(await gw.exited, 0);
    await waitFor(() => workers.every((pid) => !alive(pid)), 'the workers to exit');
  });
});

describe('histograms of portico run --concurrency 2', () => {
  it('keeps the counts of workers that died, but not their last flush interval', async () => {
    const echo = await startEchoServer({ name: 'interval-echo' });
    try {
      const gw = await startGateway('intervals', echo.port, { extra: 'stats_flush_interval: 1s' });
      const filter = `?filter=${encodeURIComponent('^cluster\\.backend\\.upstream_rq_time$')}`;
      /** `[interval, cumulative]` of P50, as printed. */
      const p50 = async () => {
        const line = (await stats(gw, filter)).get('cluster.backend.upstream_rq_time')!;
        const match = /P50\(([^,]+),([^)]+)\)/.exec(line);
        assert.ok(match, line);
        return [match[1], match[2]];
      };
      for (let i = 0; i < 6; i++) assert.equal((await httpRequest(`${gw.url}/interval/${i}`)).status, 200);
      // The next stats flush makes these requests the interval.
      await waitFor(async () => (await p50())[0] !== 'nan', 'an interval with values');
      // Every worker dies at once, with that interval in its last report.
      const workers = gw.workers();
      for (const pid of workers) signal(pid, 'SIGKILL');
      await waitFor(async () => (await stat(gw, 'server.worker_restarts')) === 2, 'both workers to be restarted');
      await waitFor(() => {
        const now = gw.workers();
        return now.length === 2 && now.every((pid) => !workers.includes(pid));
      }, 'two replacement workers');
      for (const pid of gw.workers()) seenWorkers.add(pid);
      const prometheus = await gw.admin(`/stats/prometheus${filter}`);
      assert.match(prometheus.body, /^envoy_cluster_upstream_rq_time_count\{envoy_cluster_name="backend"\} 6$/m, 'the cumulative counts stay');
      // Nothing was recorded since: once the new workers have flushed, the interval is empty again.
      let last: string[] = [];
      await waitFor(
        async () => {
          last = await p50();
          return last[0] === 'nan';
        },
        'the interval to be empty',
        5000,
      ).catch(() => undefined);
      assert.deepEqual({ interval: last[0], cumulativeRecorded: last[1] !== 'nan' }, { interval: 'nan', cumulativeRecorded: true });
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0);
    } finally {
      await echo.close();
    }
  });
});

describe('draining portico run --concurrency 2', () => {
  it('stops accepting on POST /drain_listeners while an in-flight request completes', async () => {
    const upstream = await gatedUpstream();
    try {
      const gw = await startGateway('drain', upstream.port, { adminLayer: false });
      // Without an admin layer, /runtime_modify has nothing to change.
      assert.equal((await gw.admin('/runtime_modify?a=b', 'POST')).status, 503);
      assert.equal((await gw.admin('/drain_listeners?skip_exit', 'POST')).status, 400, 'skip_exit needs graceful');

      const slow = httpRequest(`${gw.url}/slow`);
      await waitFor(() => upstream.requests.length === 1, 'the request to reach the upstream');
      const drain = await gw.admin('/drain_listeners?graceful&skip_exit', 'POST');
      assert.deepEqual([drain.status, drain.body], [200, 'OK\n']);
      await waitFor(async () => (await tryConnect(gw.listenerPort)) === 'ECONNREFUSED', 'new connections to be refused');
      const ready = await gw.admin('/ready');
      assert.deepEqual([ready.status, ready.body], [503, 'DRAINING\n']);

      upstream.release();
      const res = await slow;
      assert.equal(res.status, 200);
      assert.equal(res.body, 'slow done');
      assert.equal(res.headers.connection, 'close', 'a draining listener closes the connection after the response');
      await waitFor(async () => (await stat(gw, 'http.ingress_http.downstream_rq_completed')) === 1, 'the request to be counted');
      assert.equal(await stat(gw, 'http.ingress_http.downstream_cx_drain_close'), 1);

      // skip_exit: the server stays up, draining, until told to stop.
      assert.equal(gw.child.exitCode, null);
      assert.equal((await gw.admin('/ready')).status, 503);
      const workers = gw.workers();
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0);
      await waitFor(() => workers.every((pid) => !alive(pid)), 'the workers to exit');
    } finally {
      await upstream.close();
    }
  });

  it('lets in-flight requests finish on SIGTERM, then exits 0', async () => {
    const upstream = await gatedUpstream();
    try {
      const gw = await startGateway('sigterm', upstream.port);
      const workers = gw.workers();
      // Two requests on two connections: one in each worker.
      const slow = [httpRequest(`${gw.url}/slow/1`), httpRequest(`${gw.url}/slow/2`)];
      await waitFor(() => upstream.requests.length === 2, 'both requests to reach the upstream');
      gw.child.kill('SIGTERM');
      await waitFor(async () => (await tryConnect(gw.listenerPort)) === 'ECONNREFUSED', 'new connections to be refused');
      assert.equal(gw.child.exitCode, null, 'still draining');
      upstream.release();
      for (const res of await Promise.all(slow)) {
        assert.equal(res.status, 200);
        assert.equal(res.body, 'slow done');
      }
      assert.equal(await gw.exited, 0);
      await waitFor(() => workers.every((pid) => !alive(pid)), 'the workers to exit');
    } finally {
      await upstream.close();
    }
  });
});

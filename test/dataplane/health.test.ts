/**
 * Upstream health end to end: active HTTP and TCP health checks and outlier detection against real upstreams,
 * observed through requests, `/clusters` health flags and the `health_check.*`, `outlier_detection.*` and
 * `membership_*` stats.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { renderClustersJson, renderClustersText } from '../../src/admin/clusters.js';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { clusterStatus } from '../../src/dataplane/status.js';
import { createLogger } from '../../src/util/logger.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat as statValue } from '../support/portico.js';
import {
  httpRequest,
  refusedPort,
  startMisbehavingUpstream,
  startRecordingUpstream,
  startToggleBackend,
  type ToggleBackend,
} from '../support/upstreams.js';
import { waitFor } from '../support/wait.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function backend(name: string): Promise<ToggleBackend> {
  const b = await startToggleBackend(name);
  started.push(b);
  return b;
}

async function gateway(clusters: string, extraRoutes = ''): Promise<RunningPortico> {
  const gw = await startPortico(simpleBootstrap({ routes: `${extraRoutes}- match: { prefix: "/" }\n  route: { cluster: c }`, clusters }));
  started.push(gw);
  return gw;
}

/** Endpoints on loopback; `hcPort` sets the endpoint's `health_check_config.port_value`. */
function endpoints(list: Array<{ port: number; hcPort?: number }>): string {
  return list
    .map(({ port, hcPort }) => {
      const hc = hcPort === undefined ? '' : `, health_check_config: { port_value: ${hcPort} }`;
      return `      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }${hc} }`;
    })
    .join('\n');
}

function cluster(extra: string, list: Array<{ port: number; hcPort?: number }>): string {
  return `- name: c
  connect_timeout: 1s
${extra}
  load_assignment:
    cluster_name: c
    endpoints:
    - lb_endpoints:
${endpoints(list)}
`;
}

/** `/clusters` as the admin endpoint renders it. */
function clustersText(gw: RunningPortico): string {
  return renderClustersText([clusterStatus(gw.plane.config.clusters.get('c')!)]);
}

function healthFlags(gw: RunningPortico, port: number): string | undefined {
  return new RegExp(`^c::127\\.0\\.0\\.1:${port}::health_flags::(.*)$`, 'm').exec(clustersText(gw))?.[1];
}

/** A stat that must exist. */
function stat(gw: RunningPortico, name: string): number {
  const value = statValue(gw, name);
  assert.ok(value !== undefined, `no stat ${name}`);
  return value;
}

/** Sends `n` requests and returns the bodies. */
async function bodies(gw: RunningPortico, n: number, path = '/'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await httpRequest(`${gw.url()}${path}`)).body);
  return out;
}

const FAST_HTTP_CHECK = `  health_checks:
  - interval: 0.05s
    timeout: 1s
    no_traffic_interval: 0.05s
    unhealthy_threshold: 2
    healthy_threshold: 2
    http_health_check:
      path: /
      host: health.example
      request_headers_to_add: [{ header: { key: x-check, value: "yes" } }]`;

describe('active HTTP health checks', () => {
  it('mark a host unhealthy when it answers 503 and healthy again after healthy_threshold passes', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const gw = await gateway(cluster(FAST_HTTP_CHECK, [{ port: a.port }, { port: b.port }]));
    // Warming waited for the first checks: both are healthy before the first request.
    assert.equal(healthFlags(gw, a.port), 'healthy');
    assert.equal(healthFlags(gw, b.port), 'healthy');
    assert.equal(stat(gw, 'cluster.c.health_check.healthy'), 2);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 2);
    const check = a.rootRequestHeaders[0]!;
    assert.equal(check['user-agent'], 'Envoy/HC');
    assert.equal(check.host, 'health.example');
    assert.equal(check['x-check'], 'yes');

    b.healthy = false;
    // A wrong status fails the host at once, whatever unhealthy_threshold says.
    await waitFor(() => healthFlags(gw, b.port) === '/failed_active_hc', () => `b failed: ${healthFlags(gw, b.port)}`);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 1);
    assert.equal(stat(gw, 'cluster.c.health_check.healthy'), 1);
    assert.ok(stat(gw, 'cluster.c.health_check.failure') >= 1);
    assert.equal(stat(gw, 'cluster.c.health_check.network_failure'), 0);
    assert.deepEqual(new Set(await bodies(gw, 6)), new Set(['Hello from a!\n']));
    const json = renderClustersJson([clusterStatus(gw.plane.config.clusters.get('c')!)]) as {
      cluster_statuses: Array<{ host_statuses: Array<{ address: { socket_address: { port_value: number } }; health_status: unknown }> }>;
    };
    const hostJson = json.cluster_statuses[0]!.host_statuses.find((h) => h.address.socket_address.port_value === b.port)!;
    assert.deepEqual(hostJson.health_status, { failed_active_health_check: true, eds_health_status: 'HEALTHY' });

    b.healthy = true;
    await waitFor(() => healthFlags(gw, b.port) === 'healthy', () => `b back: ${healthFlags(gw, b.port)}`);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 2);
    assert.equal(stat(gw, 'cluster.c.health_check.healthy'), 2);
    assert.ok(stat(gw, 'cluster.c.health_check.attempt') >= stat(gw, 'cluster.c.health_check.success'));
    assert.deepEqual(new Set(await bodies(gw, 6)), new Set(['Hello from a!\n', 'Hello from b!\n']));
  });

  it('go to health_check_config.port_value instead of the traffic port', async () => {
    const checked = await backend('checked');
    const gw = await gateway(cluster(FAST_HTTP_CHECK, [{ port: await refusedPort(), hcPort: checked.port }]));
    const port = gw.plane.config.clusters.get('c')!.allHosts()[0]!.port;
    assert.equal(healthFlags(gw, port), 'healthy');
    assert.ok(checked.rootRequests >= 1);
  });

  it('count a hanging host as a network failure with /active_hc_timeout', async () => {
    const hang = await startMisbehavingUpstream('hang');
    started.push(hang);
    const gw = await gateway(
      cluster(
        `  health_checks:
  - { interval: 0.05s, timeout: 0.1s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: { path: /health } }`,
        [{ port: hang.port }],
      ),
    );
    assert.equal(healthFlags(gw, hang.port), '/failed_active_hc/active_hc_timeout');
    assert.ok(stat(gw, 'cluster.c.health_check.network_failure') >= 1);
    assert.equal(stat(gw, 'cluster.c.health_check.healthy'), 0);
    assert.match(hang.requests[0]!, /^GET \/health HTTP\/1\.1\r\n/);
  });

  it('fail a host at once when a response on the request path says x-envoy-immediate-health-check-fail', async () => {
    const upstream = await startRecordingUpstream((req, res) => {
      res.writeHead(200, req.url === '/drain' ? { 'x-envoy-immediate-health-check-fail': 'true' } : {});
      res.end('ok');
    });
    started.push(upstream);
    const gw = await gateway(
      cluster(
        `  common_lb_config: { healthy_panic_threshold: { value: 0 } }
  health_checks:
  - { interval: 60s, no_traffic_interval: 60s, timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 1, http_health_check: { path: / } }`,
        [{ port: upstream.port }],
      ),
    );
    assert.equal(healthFlags(gw, upstream.port), 'healthy');
    assert.equal((await httpRequest(`${gw.url()}/drain`)).status, 200);
    assert.equal(healthFlags(gw, upstream.port), '/failed_active_hc/excluded_via_immediate_hc_fail');
    assert.equal(stat(gw, 'cluster.c.health_check.passive_failure'), 1);
    // Nothing healthy and panic disabled: no host to send to.
    const res = await httpRequest(gw.url());
    assert.equal(res.status, 503);
    assert.equal(res.body, 'no healthy upstream');
    assert.equal(stat(gw, 'cluster.c.upstream_cx_none_healthy'), 1);
  });

  it('balance over all hosts in panic and count lb_healthy_panic', async () => {
    const only = await backend('only');
    only.healthy = false;
    const gw = await gateway(cluster(FAST_HTTP_CHECK, [{ port: only.port }]));
    assert.equal(healthFlags(gw, only.port), '/failed_active_hc');
    assert.equal((await httpRequest(gw.url())).status, 503);
    assert.equal(stat(gw, 'cluster.c.lb_healthy_panic'), 1);
  });
});

/** A TCP server that answers `pong` to `ping` (possibly split) and ignores anything else. */
async function pingPong(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    let seen = '';
    socket.on('data', (chunk) => {
      seen += chunk.toString('latin1');
      if (seen.includes('ping')) {
        seen = '';
        socket.write('po');
        setTimeout(() => socket.write('ng'), 5);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const upstream = {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  started.push(upstream);
  return upstream;
}

describe('health checking across configuration changes', () => {
  it('stops checking the hosts of a cluster that a new configuration replaces', async () => {
    const checked = await backend('checked');
    const gw = await gateway(cluster(FAST_HTTP_CHECK, [{ port: checked.port }]));
    assert.ok(checked.rootRequests >= 1);
    const yaml = simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: c }', clusters: cluster('', [{ port: checked.port }]) });
    const errors: ConfigError[] = [];
    const { bootstrap, errors: checkErrors } = checkBootstrap(parseDocument(yaml, 't', errors));
    assert.deepEqual([...errors, ...checkErrors], []);
    await gw.plane.update(bootstrap, 0);
    // The old cluster closes once the old configuration has drained; from then on no check arrives.
    let last = -1;
    await waitFor(
      () => {
        const quiet = checked.rootRequests === last;
        last = checked.rootRequests;
        return quiet;
      },
      'health checks to stop',
      { intervalMs: 300 },
    );
    assert.equal(healthFlags(gw, checked.port), 'healthy');
    assert.equal((await httpRequest(gw.url())).body, 'Hello from checked!\n');
  });
});

describe('active TCP health checks', () => {
  it('pass when the expected bytes come back, and fail a host that stops answering', async () => {
    const good = await pingPong();
    const silent = await startMisbehavingUpstream('hang');
    started.push(silent);
    const gw = await gateway(
      cluster(
        `  health_checks:
  - interval: 0.05s
    no_traffic_interval: 0.05s
    timeout: 0.2s
    unhealthy_threshold: 1
    healthy_threshold: 1
    tcp_health_check: { send: { text: "70696e67" }, receive: [{ text: "706f6e67" }] }`,
        [{ port: good.port }, { port: silent.port }],
      ),
    );
    assert.equal(healthFlags(gw, good.port), 'healthy');
    assert.equal(healthFlags(gw, silent.port), '/failed_active_hc/active_hc_timeout');
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 1);
    const successes = stat(gw, 'cluster.c.health_check.success');
    await waitFor(() => stat(gw, 'cluster.c.health_check.success') > successes + 2, 'further TCP checks passing');

    await good.close();
    await waitFor(() => healthFlags(gw, good.port) === '/failed_active_hc', () => `good failed: ${healthFlags(gw, good.port)}`);
    assert.ok(stat(gw, 'cluster.c.health_check.network_failure') >= 1);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 0);
  });

  it('with nothing to send or receive, only connect', async () => {
    const listening = await pingPong();
    const refused = await refusedPort();
    const gw = await gateway(
      cluster(
        `  health_checks: [{ interval: 0.05s, timeout: 0.5s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }]`,
        [{ port: listening.port }, { port: refused }],
      ),
    );
    assert.equal(healthFlags(gw, listening.port), 'healthy');
    assert.equal(healthFlags(gw, refused), '/failed_active_hc');
  });
});

describe('outlier detection', () => {
  const OUTLIER = `  outlier_detection: { consecutive_5xx: 3, interval: 0.05s, base_ejection_time: 0.5s }`;

  it('ejects a host that answers 5xx, sends nothing to it, and brings it back after base_ejection_time', async () => {
    const good = [await backend('a'), await backend('b')];
    const bad = await backend('bad');
    bad.healthy = false;
    const gw = await gateway(cluster(OUTLIER, [...good, bad].map((b) => ({ port: b.port }))));
    const answers = await bodies(gw, 9);
    assert.equal(answers.filter((body) => body === 'Unhealthy\n').length, 3);
    const ejectedAt = performance.now();
    assert.equal(healthFlags(gw, bad.port), '/failed_outlier_check');
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_active'), 1);
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_enforced_consecutive_5xx'), 1);
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_detected_consecutive_5xx'), 1);
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_enforced_total'), 1);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 2);
    assert.match(clustersText(gw), /^c::outlier::success_rate_average::-1$/m);
    const before = bad.rootRequests;
    assert.deepEqual(new Set(await bodies(gw, 6)), new Set(['Hello from a!\n', 'Hello from b!\n']));
    assert.equal(bad.rootRequests, before);

    bad.healthy = true;
    await waitFor(() => healthFlags(gw, bad.port) === 'healthy', () => `bad back: ${healthFlags(gw, bad.port)}`);
    assert.ok(performance.now() - ejectedAt >= 450, 'returned before base_ejection_time');
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_active'), 0);
    assert.equal(stat(gw, 'cluster.c.membership_healthy'), 3);
    assert.ok((await bodies(gw, 6)).includes('Hello from bad!\n'));
  });

  it('ejects a host whose connections fail, counting local-origin failures as 5xx', async () => {
    const good = await backend('good');
    const refused = await refusedPort();
    const gw = await gateway(cluster(OUTLIER, [{ port: good.port }, { port: refused }]));
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await httpRequest(gw.url())).status);
    assert.equal(statuses.filter((s) => s === 503).length, 3);
    assert.equal(healthFlags(gw, refused), '/failed_outlier_check');
  });

  it('respects max_ejection_percent: with two bad hosts of three only one is ejected', async () => {
    const good = await backend('good');
    const bad = [await backend('bad1'), await backend('bad2')];
    for (const b of bad) b.healthy = false;
    const gw = await gateway(cluster(OUTLIER, [good, ...bad].map((b) => ({ port: b.port }))));
    await bodies(gw, 12);
    const flags = bad.map((b) => healthFlags(gw, b.port));
    assert.deepEqual([...flags].sort(), ['/failed_outlier_check', 'healthy']);
    assert.equal(stat(gw, 'cluster.c.outlier_detection.ejections_active'), 1);
    assert.ok(stat(gw, 'cluster.c.outlier_detection.ejections_overflow') >= 1);
  });
});

describe('health checking configuration', () => {
  /** Every error of a bootstrap: schema and cross checks, then compiling. */
  function problems(clusters: string): string[] {
    const errors: ConfigError[] = [];
    const yaml = simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: c }', clusters });
    const { bootstrap, errors: checked } = checkBootstrap(parseDocument(yaml, 't', errors));
    errors.push(...checked);
    if (checked.length === 0) compileBootstrap(bootstrap, createLogger('off'), errors, EXTENSIONS);
    return errors.map((e) => `${e.code} ${e.path.replace('static_resources.clusters[0].', '')}`);
  }

  it('names every bad field of a health check with its path', () => {
    const found = problems(
      cluster(
        `  health_checks:
  - interval: 1s
    timeout: 1s
    unhealthy_threshold: 1
    healthy_threshold: 1
    http_health_check:
      path: /
      expected_statuses: [{ start: 300, end: 200 }]
      codec_client_type: HTTP2
      request_headers_to_add: [{ header: { key: host, value: x } }]`,
        [{ port: 1 }],
      ),
    );
    assert.deepEqual(found.sort(), [
      'invalid_value health_checks[0].http_health_check.expected_statuses[0]',
      'invalid_value health_checks[0].http_health_check.request_headers_to_add[0].header.key',
      'unsupported_field health_checks[0].http_health_check.codec_client_type',
    ]);
    assert.deepEqual(
      problems(cluster(`  health_checks: [{ interval: 1s, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: { send: { text: "zz" } } }]`, [{ port: 1 }])),
      ['invalid_value health_checks[0].tcp_health_check.send.text'],
    );
  });

  it('refuses two health checks, unsupported kinds, and out-of-range outlier percentages', () => {
    const check = '{ interval: 1s, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }';
    assert.deepEqual(problems(cluster(`  health_checks: [${check}, ${check}]`, [{ port: 1 }])), ['invalid_value health_checks']);
    const custom = checkYaml(
      simpleBootstrap({
        routes: '- match: { prefix: "/" }\n  route: { cluster: c }',
        clusters: cluster('  health_checks: [{ interval: 1s, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1, custom_health_check: { name: x } }]', [{ port: 1 }]),
      }),
    );
    assert.ok(custom.some((e) => e.code === 'unsupported_field' && e.path.endsWith('health_checks[0].custom_health_check')), JSON.stringify(custom));
    assert.deepEqual(problems(cluster('  outlier_detection: { max_ejection_percent: 101 }', [{ port: 1 }])), ['invalid_value outlier_detection.max_ejection_percent']);
  });
});

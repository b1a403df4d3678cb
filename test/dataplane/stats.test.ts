/**
 * Stats counted by the data plane, with Envoy's names, after real traffic through an in-process Portico: each
 * test starts its own gateway so that every value can be asserted exactly.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startEchoServer, type EchoServer } from '../../src/echo/echo-server.js';
import { binTotal } from '../../src/stats/histogram.js';
import { simpleBootstrap, startPortico, staticCluster, type RunningPortico } from '../support/portico.js';
import { httpRequest, rawRequest, refusedPort, startMisbehavingUpstream, type MisbehavingUpstream } from '../support/upstreams.js';
import { eventually as pollUntilPasses } from '../support/wait.js';

const started: Array<{ close(): Promise<void> }> = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function echo(): Promise<EchoServer> {
  const server = await startEchoServer({ name: 'stats-echo' });
  started.push(server);
  return server;
}

async function misbehaving(mode: Parameters<typeof startMisbehavingUpstream>[0]): Promise<MisbehavingUpstream> {
  const upstream = await startMisbehavingUpstream(mode);
  started.push(upstream);
  return upstream;
}

async function gateway(routes: string, clusters: string): Promise<RunningPortico> {
  const gw = await startPortico(simpleBootstrap({ routes, clusters }));
  started.push(gw);
  return gw;
}

/** Counters and gauges by full name. */
function values(gw: RunningPortico): Map<string, number> {
  const snapshot = gw.plane.stats.snapshot();
  return new Map([...snapshot.counters, ...snapshot.gauges].map(([name, value]) => [name, value]));
}

function histogramCount(gw: RunningPortico, name: string): number {
  const found = gw.plane.stats.snapshot().histograms.find(([n]) => n === name);
  assert.ok(found, `no histogram ${name}`);
  return binTotal(found[1].cumulative);
}

/** Asserts that each named stat has exactly the expected value. */
function expectStats(gw: RunningPortico, expected: Record<string, number>): void {
  const all = values(gw);
  const actual: Record<string, number | undefined> = {};
  for (const name of Object.keys(expected)) actual[name] = all.get(name);
  assert.deepEqual(actual, expected);
}

/**
 * Open upstream connections are those made and not yet destroyed. (After an aborted request undici opens a
 * spare connection at once, so the exact number of connections made is not asserted there.)
 */
function expectConnectionBalance(gw: RunningPortico, cluster: string): void {
  const all = values(gw);
  const made = all.get(`${cluster}upstream_cx_total`)!;
  const destroyed = all.get(`${cluster}upstream_cx_destroy`)!;
  assert.equal(all.get(`${cluster}upstream_cx_active`), made - destroyed, `${cluster}upstream_cx_active`);
  assert.equal(destroyed, all.get(`${cluster}upstream_cx_destroy_local`)! + all.get(`${cluster}upstream_cx_destroy_remote`)!);
}

/** Retries an assertion until it holds: stream and connection stats are counted when sockets close. */
/** Stats move within moments of the traffic that moves them. */
const eventually = (check: () => void): Promise<void> => pollUntilPasses(check, 5000);

const listenerPrefix = (gw: RunningPortico) => `listener.127.0.0.1_${gw.port()}.`;

describe('data plane stats', () => {
  it('counts successful requests on the connection manager, the listener and the cluster', async () => {
    const upstream = await echo();
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: echo }', staticCluster('echo', upstream.port));
    for (let i = 0; i < 3; i++) {
      // A fresh downstream connection each time, closed by the client afterwards.
      const res = await httpRequest(`${gw.url()}/ok/${i}`);
      assert.equal(res.status, 200);
    }
    const listener = listenerPrefix(gw);
    await eventually(() =>
      expectStats(gw, {
        'http.ingress_http.downstream_cx_total': 3,
        'http.ingress_http.downstream_cx_http1_total': 3,
        'http.ingress_http.downstream_cx_active': 0,
        'http.ingress_http.downstream_cx_destroy': 3,
        'http.ingress_http.downstream_cx_destroy_remote': 3,
        'http.ingress_http.downstream_cx_destroy_local': 0,
        'http.ingress_http.downstream_cx_destroy_active_rq': 0,
        [`${listener}downstream_cx_total`]: 3,
        [`${listener}downstream_cx_active`]: 0,
        [`${listener}downstream_cx_destroy`]: 3,
      }),
    );
    expectStats(gw, {
      'http.ingress_http.downstream_rq_total': 3,
      'http.ingress_http.downstream_rq_http1_total': 3,
      'http.ingress_http.downstream_rq_completed': 3,
      'http.ingress_http.downstream_rq_active': 0,
      'http.ingress_http.downstream_rq_1xx': 0,
      'http.ingress_http.downstream_rq_2xx': 3,
      'http.ingress_http.downstream_rq_3xx': 0,
      'http.ingress_http.downstream_rq_4xx': 0,
      'http.ingress_http.downstream_rq_5xx': 0,
      'http.ingress_http.rq_total': 3,
      'http.ingress_http.no_route': 0,
      [`${listener}http.ingress_http.downstream_rq_completed`]: 3,
      [`${listener}http.ingress_http.downstream_rq_2xx`]: 3,
      'cluster.echo.upstream_rq_total': 3,
      'cluster.echo.upstream_rq_pending_total': 3,
      'cluster.echo.upstream_rq_completed': 3,
      'cluster.echo.upstream_rq_2xx': 3,
      'cluster.echo.upstream_rq_200': 3,
      'cluster.echo.upstream_rq_5xx': 0,
      'cluster.echo.upstream_rq_active': 0,
      'cluster.echo.upstream_rq_pending_active': 0,
      // Sequential requests share one keep-alive upstream connection.
      'cluster.echo.upstream_cx_total': 1,
      'cluster.echo.upstream_cx_http1_total': 1,
      'cluster.echo.upstream_cx_active': 1,
      'cluster.echo.upstream_cx_connect_fail': 0,
      'cluster.echo.upstream_cx_destroy': 0,
    });
    const all = values(gw);
    assert.equal(all.has('cluster.echo.upstream_rq_404'), false, 'code counters exist once counted');
    assert.ok(all.get('http.ingress_http.downstream_cx_rx_bytes_total')! > 0);
    assert.ok(all.get('http.ingress_http.downstream_cx_tx_bytes_total')! > 0);
    assert.equal(histogramCount(gw, 'http.ingress_http.downstream_rq_time'), 3);
    assert.equal(histogramCount(gw, 'cluster.echo.upstream_rq_time'), 3);
    assert.equal(histogramCount(gw, 'http.ingress_http.downstream_cx_length_ms'), 3);
    assert.equal(histogramCount(gw, `${listener}downstream_cx_length_ms`), 3);
    assert.equal(histogramCount(gw, 'cluster.echo.upstream_cx_connect_ms'), 1);

    // The upstream closes its side: the pooled connection is destroyed by the remote.
    await upstream.close();
    await eventually(() =>
      expectStats(gw, {
        'cluster.echo.upstream_cx_active': 0,
        'cluster.echo.upstream_cx_destroy': 1,
        'cluster.echo.upstream_cx_destroy_remote': 1,
        'cluster.echo.upstream_cx_destroy_local': 0,
      }),
    );
    assert.ok(values(gw).get('cluster.echo.upstream_cx_rx_bytes_total')! > 0);
    assert.equal(histogramCount(gw, 'cluster.echo.upstream_cx_length_ms'), 1);
  });

  it('counts requests on a keep-alive connection as one connection', async () => {
    const upstream = await echo();
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: echo }', staticCluster('echo', upstream.port));
    const agent = new Agent({ connections: 1 });
    try {
      for (let i = 0; i < 4; i++) {
        const res = await request(`${gw.url()}/status/${i === 3 ? 404 : 200}`, { dispatcher: agent });
        await res.body.text();
        assert.equal(res.statusCode, i === 3 ? 404 : 200);
      }
      await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_rq_completed': 4, 'http.ingress_http.downstream_cx_active': 1 }));
      expectStats(gw, {
        'http.ingress_http.downstream_cx_total': 1,
        'http.ingress_http.downstream_rq_total': 4,
        'http.ingress_http.downstream_rq_2xx': 3,
        'http.ingress_http.downstream_rq_4xx': 1,
        'http.ingress_http.downstream_rq_active': 0,
        'cluster.echo.upstream_rq_200': 3,
        'cluster.echo.upstream_rq_404': 1,
        'cluster.echo.upstream_rq_4xx': 1,
        'cluster.echo.upstream_rq_completed': 4,
      });
    } finally {
      await agent.close();
    }
    await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_cx_active': 0, 'http.ingress_http.downstream_cx_destroy_remote': 1 }));
  });

  it('counts local replies: no route, direct response, redirect and unknown cluster', async () => {
    const upstream = await echo();
    const gw = await gateway(
      `- match: { prefix: "/direct" }
  direct_response: { status: 200, body: { inline_string: "direct" } }
- match: { prefix: "/redirect" }
  redirect: { path_redirect: "/elsewhere" }
- match: { prefix: "/by-header" }
  route: { cluster_header: x-target }
- match: { prefix: "/ok" }
  route: { cluster: echo }`,
      staticCluster('echo', upstream.port),
    );
    const nr = await httpRequest(`${gw.url()}/nothing-here`);
    assert.equal(nr.status, 404);
    const direct = await httpRequest(`${gw.url()}/direct`);
    assert.equal(direct.status, 200);
    assert.equal(direct.body, 'direct');
    const redirect = await httpRequest(`${gw.url()}/redirect`);
    assert.equal(redirect.status, 301);
    const nc = await httpRequest(`${gw.url()}/by-header`, { headers: { 'x-target': 'nope' } });
    assert.equal(nc.status, 503);
    await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_rq_completed': 4, 'http.ingress_http.downstream_cx_active': 0 }));
    expectStats(gw, {
      'http.ingress_http.downstream_rq_total': 4,
      'http.ingress_http.downstream_rq_active': 0,
      'http.ingress_http.no_route': 1,
      'http.ingress_http.rq_direct_response': 1,
      'http.ingress_http.rq_redirect': 1,
      'http.ingress_http.no_cluster': 1,
      'http.ingress_http.rq_total': 0,
      'http.ingress_http.downstream_rq_2xx': 1,
      'http.ingress_http.downstream_rq_3xx': 1,
      'http.ingress_http.downstream_rq_4xx': 1,
      'http.ingress_http.downstream_rq_5xx': 1,
      [`${listenerPrefix(gw)}http.ingress_http.downstream_rq_4xx`]: 1,
      [`${listenerPrefix(gw)}http.ingress_http.downstream_rq_completed`]: 4,
      'cluster.echo.upstream_rq_total': 0,
      'cluster.echo.upstream_rq_completed': 0,
      'cluster.echo.upstream_cx_total': 0,
    });
    assert.equal(histogramCount(gw, 'http.ingress_http.downstream_rq_time'), 4);
    assert.equal(histogramCount(gw, 'cluster.echo.upstream_rq_time'), 0);
  });

  it('counts a refused upstream connection as a connect failure and a 503 (UF)', async () => {
    const port = await refusedPort();
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: dead }', staticCluster('dead', port));
    const res = await httpRequest(`${gw.url()}/x`);
    assert.equal(res.status, 503);
    assert.match(res.body, /connection failure/);
    await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_rq_completed': 1 }));
    expectStats(gw, {
      'http.ingress_http.downstream_rq_5xx': 1,
      'http.ingress_http.rq_total': 1,
      'cluster.dead.upstream_rq_total': 1,
      'cluster.dead.upstream_rq_503': 1,
      'cluster.dead.upstream_rq_5xx': 1,
      'cluster.dead.upstream_rq_completed': 1,
      'cluster.dead.upstream_rq_active': 0,
      'cluster.dead.upstream_rq_pending_active': 0,
      'cluster.dead.upstream_cx_connect_fail': 1,
      'cluster.dead.upstream_cx_total': 0,
      'cluster.dead.upstream_cx_active': 0,
      'cluster.dead.upstream_rq_timeout': 0,
    });
    assert.equal(histogramCount(gw, 'http.ingress_http.downstream_rq_time'), 1);
  });

  it('counts a route timeout as upstream_rq_timeout and a 504', async () => {
    const hang = await misbehaving('hang');
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: hang, timeout: 0.2s }', staticCluster('hang', hang.port));
    const res = await httpRequest(`${gw.url()}/slow`);
    assert.equal(res.status, 504);
    assert.equal(res.body, 'upstream request timeout');
    // The proxy gives up on the request and closes the connection it was on.
    await eventually(() =>
      expectStats(gw, {
        'http.ingress_http.downstream_rq_completed': 1,
        'cluster.hang.upstream_cx_destroy': 1,
        'cluster.hang.upstream_cx_destroy_local': 1,
      }),
    );
    expectStats(gw, {
      'http.ingress_http.downstream_rq_5xx': 1,
      'cluster.hang.upstream_rq_total': 1,
      'cluster.hang.upstream_rq_timeout': 1,
      'cluster.hang.upstream_rq_504': 1,
      'cluster.hang.upstream_rq_5xx': 1,
      'cluster.hang.upstream_rq_active': 0,
      'cluster.hang.upstream_rq_pending_active': 0,
      'cluster.hang.upstream_rq_rx_reset': 0,
    });
    expectConnectionBalance(gw, 'cluster.hang.');
    assert.equal(values(gw).has('cluster.hang.upstream_rq_503'), false, 'a timeout is not also a 503');
  });

  it('counts an upstream reset before the response as upstream_rq_rx_reset and a 503', async () => {
    const reset = await misbehaving('reset');
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: reset }', staticCluster('reset', reset.port));
    const res = await httpRequest(`${gw.url()}/x`);
    assert.equal(res.status, 503);
    await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_rq_completed': 1, 'cluster.reset.upstream_cx_destroy': 1 }));
    expectStats(gw, {
      'http.ingress_http.downstream_rq_5xx': 1,
      'cluster.reset.upstream_rq_total': 1,
      'cluster.reset.upstream_rq_rx_reset': 1,
      'cluster.reset.upstream_rq_503': 1,
      'cluster.reset.upstream_rq_active': 0,
      'cluster.reset.upstream_cx_connect_fail': 0,
    });
    expectConnectionBalance(gw, 'cluster.reset.');
  });

  it('counts an upstream reset after the response started as a reset of both streams', async () => {
    const half = await misbehaving('headers-then-reset');
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: half }', staticCluster('half', half.port));
    const res = await rawRequest(gw.port(), 'GET /x HTTP/1.1\r\nhost: test\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.closed, true);
    assert.equal(res.responses[0]!.complete, false);
    await eventually(() => expectStats(gw, { 'http.ingress_http.downstream_rq_active': 0, 'http.ingress_http.downstream_cx_active': 0 }));
    expectStats(gw, {
      'cluster.half.upstream_rq_rx_reset': 1,
      'cluster.half.upstream_rq_200': 1,
      'cluster.half.upstream_rq_active': 0,
      'http.ingress_http.rq_reset_after_downstream_response_started': 1,
      'http.ingress_http.downstream_rq_tx_reset': 1,
      'http.ingress_http.downstream_rq_rx_reset': 0,
      'http.ingress_http.downstream_cx_destroy_local': 1,
    });
  });

  it('counts a client that disconnects mid-request as downstream_rq_rx_reset', async () => {
    const hang = await misbehaving('hang');
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: hang, timeout: 0s }', staticCluster('hang', hang.port));
    const socket = connect(gw.port(), '127.0.0.1');
    socket.on('error', () => {});
    try {
      socket.write('GET /pending HTTP/1.1\r\nhost: test\r\n\r\n');
      await eventually(() => assert.equal(hang.requests.length, 1));
      // In flight: every activity gauge shows it.
      expectStats(gw, {
        'http.ingress_http.downstream_rq_active': 1,
        'http.ingress_http.downstream_cx_active': 1,
        'cluster.hang.upstream_rq_active': 1,
        'cluster.hang.upstream_rq_pending_active': 0,
        'cluster.hang.upstream_cx_active': 1,
        [`${listenerPrefix(gw)}downstream_cx_active`]: 1,
      });
    } finally {
      socket.destroy();
    }
    await eventually(() =>
      expectStats(gw, {
        'http.ingress_http.downstream_rq_active': 0,
        'http.ingress_http.downstream_cx_active': 0,
        'cluster.hang.upstream_rq_active': 0,
        'cluster.hang.upstream_cx_destroy_local': 1,
      }),
    );
    expectConnectionBalance(gw, 'cluster.hang.');
    expectStats(gw, {
      'http.ingress_http.downstream_rq_total': 1,
      'http.ingress_http.downstream_rq_rx_reset': 1,
      'http.ingress_http.downstream_rq_completed': 0,
      'http.ingress_http.downstream_rq_5xx': 0,
      'http.ingress_http.downstream_cx_destroy_remote': 1,
      'http.ingress_http.downstream_cx_destroy_remote_active_rq': 1,
      'http.ingress_http.downstream_cx_destroy_active_rq': 1,
      'cluster.hang.upstream_rq_total': 1,
      'cluster.hang.upstream_rq_tx_reset': 1,
      'cluster.hang.upstream_rq_completed': 0,
      [`${listenerPrefix(gw)}downstream_cx_destroy`]: 1,
    });
    assert.equal(histogramCount(gw, 'http.ingress_http.downstream_rq_time'), 1);
    assert.equal(histogramCount(gw, 'cluster.hang.upstream_rq_time'), 0);
  });

  it('shows cluster membership, the cluster manager and the listener manager', async () => {
    const [a, b] = [await echo(), await echo()];
    const pair = `- name: pair
  connect_timeout: 1s
  load_assignment:
    cluster_name: pair
    endpoints:
    - lb_endpoints:
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${a.port} } } }
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${b.port} } } }
        health_status: UNHEALTHY
`;
    const empty = '- name: empty\n  load_assignment: { cluster_name: empty, endpoints: [{ lb_endpoints: [] }] }\n';
    const gw = await gateway('- match: { prefix: "/" }\n  route: { cluster: pair }', pair + empty);
    expectStats(gw, {
      'cluster.pair.membership_total': 2,
      'cluster.pair.membership_healthy': 1,
      'cluster.empty.membership_total': 0,
      'cluster.empty.membership_healthy': 0,
      'cluster_manager.active_clusters': 2,
      'cluster_manager.warming_clusters': 0,
      'cluster_manager.cluster_added': 2,
      'listener_manager.listener_added': 1,
      'listener_manager.listener_create_success': 1,
      'listener_manager.listener_create_failure': 0,
      'listener_manager.total_listeners_active': 1,
    });
    // The unhealthy host takes no traffic.
    for (let i = 0; i < 3; i++) assert.equal((await httpRequest(`${gw.url()}/x`)).status, 200);
    await eventually(() => expectStats(gw, { 'cluster.pair.upstream_rq_200': 3, 'cluster.pair.upstream_cx_total': 1 }));
  });
});

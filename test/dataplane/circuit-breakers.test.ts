/**
 * Circuit breakers end to end: `max_requests`, `max_pending_requests` and `max_connections` refusing requests
 * with 503 UO and `x-envoy-overloaded`, `max_retries` and the retry budget refusing retries, route priorities
 * choosing their thresholds, and the `circuit_breakers.*` gauges.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, startMisbehavingUpstream, startRecordingUpstream, type HttpResponse, type MisbehavingUpstream } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

function breakers(thresholds: string, perHost = ''): string {
  return `  circuit_breakers:
    thresholds: ${thresholds}
${perHost ? `    per_host_thresholds: ${perHost}\n` : ''}`;
}

async function gateway(clusterYaml: string, routes = '- match: { prefix: "/" }\n  route: { cluster: c }'): Promise<RunningPortico> {
  const gw = await startPortico(simpleBootstrap({ routes, clusters: clusterYaml }));
  started.push(gw);
  return gw;
}

async function hanging(): Promise<MisbehavingUpstream> {
  const upstream = await startMisbehavingUpstream('hang');
  started.push(upstream);
  return upstream;
}

/** A request left hanging; it fails when the gateway closes, which the test does not care about. */
function hang(url: string): Promise<HttpResponse | undefined> {
  return httpRequest(url, { timeoutMs: 60_000 }).catch(() => undefined);
}

function assertOverflow(res: HttpResponse): void {
  assert.equal(res.status, 503);
  assert.equal(res.headers['x-envoy-overloaded'], 'true');
  assert.equal(res.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
}

describe('circuit breakers', () => {
  it('refuses requests over max_requests with 503 UO, and moves the gauges', async () => {
    const upstream = await hanging();
    const gw = await gateway(staticCluster('c', upstream.port) + breakers('[{ max_requests: 1, track_remaining: true }]'));
    const prefix = 'cluster.c.circuit_breakers.default.';
    assert.equal(stat(gw, `${prefix}rq_open`), 0);
    assert.equal(stat(gw, `${prefix}remaining_rq`), 1);
    assert.equal(stat(gw, `${prefix}remaining_retries`), 3);
    void hang(`${gw.url()}/first`);
    await eventually(() => assert.equal(upstream.requests.length, 1));
    assert.equal(stat(gw, `${prefix}rq_open`), 1);
    assert.equal(stat(gw, `${prefix}remaining_rq`), 0);
    assertOverflow(await httpRequest(`${gw.url()}/second`));
    assert.equal(stat(gw, 'cluster.c.upstream_rq_pending_overflow'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_503'), 1);
    assert.equal(stat(gw, 'cluster.c.circuit_breakers.high.rq_open'), 0);
    assert.equal(stat(gw, 'cluster.c.circuit_breakers.high.remaining_rq'), undefined, 'track_remaining is per priority');
  });

  it('lets HIGH priority routes use their own thresholds', async () => {
    // Holds /first open; answers anything else.
    const upstream = await startRecordingUpstream((req, res) => {
      if (req.url !== '/first') res.end('ok');
    });
    started.push(upstream);
    const routes = `- match: { prefix: "/high" }
  route: { cluster: h, priority: HIGH }
- match: { prefix: "/" }
  route: { cluster: h }`;
    const gw = await gateway(staticCluster('h', upstream.port) + breakers('[{ priority: DEFAULT, max_requests: 1 }, { priority: HIGH, max_requests: 5 }]'), routes);
    void hang(`${gw.url()}/first`);
    await eventually(() => assert.equal(upstream.requests.length, 1));
    assertOverflow(await httpRequest(`${gw.url()}/default`));
    const high = await httpRequest(`${gw.url()}/high`);
    assert.equal(high.status, 200);
  });

  it('queues requests for a connection up to max_pending_requests', async () => {
    const upstream = await hanging();
    const gw = await gateway(staticCluster('c', upstream.port) + breakers('[{ max_connections: 1, max_pending_requests: 1 }]'));
    const prefix = 'cluster.c.circuit_breakers.default.';
    void hang(`${gw.url()}/1`);
    await eventually(() => assert.equal(upstream.requests.length, 1));
    assert.equal(stat(gw, `${prefix}cx_open`), 1);
    void hang(`${gw.url()}/2`);
    await eventually(() => assert.equal(stat(gw, 'cluster.c.upstream_rq_pending_active'), 1));
    assert.equal(stat(gw, `${prefix}rq_pending_open`), 1);
    assert.ok(stat(gw, 'cluster.c.upstream_cx_overflow')! >= 1);
    assertOverflow(await httpRequest(`${gw.url()}/3`));
    assert.equal(upstream.connections, 1, 'max_connections held');
    assert.equal(stat(gw, 'cluster.c.upstream_rq_pending_overflow'), 1);
  });

  it('refuses retries over max_retries (UO) and over the retry budget', async () => {
    const failing = await startRecordingUpstream((_req, res) => {
      res.writeHead(503, { 'content-length': 0 });
      res.end();
    });
    started.push(failing);
    const routes = '- match: { prefix: "/" }\n  route: { cluster: c, retry_policy: { retry_on: 5xx, num_retries: 3 } }';
    const gw = await gateway(staticCluster('c', failing.port) + breakers('[{ max_retries: 0 }]'), routes);
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 503);
    assert.equal(res.headers['x-envoy-overloaded'], undefined, 'the upstream response, not a local reply');
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry_overflow'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 0);
    assert.equal(failing.requests.length, 1);

    const budget = await gateway(
      staticCluster('c', failing.port) + breakers('[{ retry_budget: { budget_percent: { value: 0 }, min_retry_concurrency: 1 } }]'),
      routes,
    );
    // One retry at a time: sequential requests each get their retries, one after another.
    const ok = await httpRequest(`${budget.url()}/`);
    assert.equal(ok.status, 503);
    assert.equal(stat(budget, 'cluster.c.upstream_rq_retry'), 3);
    assert.equal(stat(budget, 'cluster.c.upstream_rq_retry_limit_exceeded'), 1);
    assert.equal(stat(budget, 'cluster.c.upstream_rq_retry_overflow'), 0);
    const none = await gateway(
      staticCluster('c', failing.port) + breakers('[{ retry_budget: { budget_percent: { value: 0 }, min_retry_concurrency: 0 } }]'),
      routes,
    );
    assert.equal((await httpRequest(`${none.url()}/`)).status, 503);
    assert.equal(stat(none, 'cluster.c.upstream_rq_retry_overflow'), 1);
    assert.equal(stat(none, 'cluster.c.circuit_breakers.default.rq_retry_open'), 1, 'a budget of 0 is always open');
  });
});

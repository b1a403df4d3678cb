/**
 * Retries and timeouts end to end: `retry_policy` conditions (5xx, connect-failure, reset, retriable status
 * codes and headers), back-off and previous hosts, per-try timeouts, the body replayed on retry, the
 * `x-envoy-*` request headers honoured from internal clients only, and their stats, flags and access logs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import {
  httpRequest,
  refusedPort,
  startMisbehavingUpstream,
  startRecordingUpstream,
  type RecordingHandler,
  type RecordingUpstream,
} from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function upstream(handler?: RecordingHandler): Promise<RecordingUpstream> {
  const u = await startRecordingUpstream(handler);
  started.push(u);
  return u;
}

/** An upstream answering `status` with its body `name`, and optional extra headers. */
function answer(status: number, name: string, headers: Record<string, string> = {}): RecordingHandler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name), ...headers });
    res.end(name);
  };
}

const LOG_FORMAT = '%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\n';

/** A gateway with one route `/` to cluster `c`, whose route action gets `routeExtra` (YAML flow fields). */
async function gateway(
  clusterPorts: number[],
  routeExtra: string,
  options: { hcmExtra?: string; vhostExtra?: string; clusterExtra?: string } = {},
): Promise<RunningPortico & { log: string }> {
  const log = join(mkdtempSync(join(tmpdir(), 'portico-retries-')), 'access.log');
  const accessLog = `access_log:
- name: file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${log}
    log_format: { text_format_source: { inline_string: ${JSON.stringify(LOG_FORMAT)} } }
${options.hcmExtra ?? ''}`;
  const yaml = simpleBootstrap({
    routes: `- match: { prefix: "/" }\n  route: { cluster: c${routeExtra ? `, ${routeExtra}` : ''} }`,
    clusters: staticCluster('c', ...clusterPorts) + (options.clusterExtra ?? ''),
    hcmExtra: accessLog,
  }).replace('- name: backend\n', `- name: backend\n${options.vhostExtra ? `              ${options.vhostExtra}\n` : ''}`);
  const gw = await startPortico(yaml);
  started.push(gw);
  return Object.assign(gw, { log });
}

async function logLines(path: string, count: number): Promise<string[]> {
  let lines: string[] = [];
  await eventually(() => {
    lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
    assert.ok(lines.length >= count, `${lines.length} access log lines`);
  });
  return lines;
}

describe('retries', () => {
  it('retries a 5xx on another host, with the attempt count in headers, stats and access log', async () => {
    const failing = await upstream(answer(503, 'failing'));
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway([failing.port, healthy.port], 'retry_policy: { retry_on: 5xx, num_retries: 2 }', {
      vhostExtra: 'include_request_attempt_count: true\n              include_attempt_count_in_response: true',
    });
    const res = await httpRequest(`${gw.url()}/x`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'healthy');
    assert.equal(res.headers['x-envoy-attempt-count'], '2');
    assert.equal(failing.requests[0]?.headers['x-envoy-attempt-count'], '1');
    assert.equal(healthy.requests[0]?.headers['x-envoy-attempt-count'], '2');
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry_success'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry_backoff_exponential'), 1);
    assert.equal(stat(gw, 'cluster.c.retry.upstream_rq_503'), 1);
    assert.equal(stat(gw, 'cluster.c.retry.upstream_rq_5xx'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_200'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_503'), undefined);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_total'), 2);
    assert.deepEqual(await logLines(gw.log, 1), ['200 - 2']);
    await eventually(() => assert.equal(stat(gw, 'cluster.c.circuit_breakers.default.rq_retry_open'), 0));
  });

  it('forwards the last response with URX once retries are exhausted', async () => {
    const a = await upstream(answer(503, 'a'));
    const b = await upstream(answer(502, 'b'));
    const gw = await gateway([a.port, b.port], 'retry_policy: { retry_on: gateway-error, num_retries: 1 }');
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 502);
    assert.equal(res.body, 'b');
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry_limit_exceeded'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_502'), 1);
    assert.deepEqual(await logLines(gw.log, 1), ['502 URX 2']);
  });

  it('does not retry without a matching condition', async () => {
    const a = await upstream(answer(500, 'a'));
    const b = await upstream(answer(200, 'b'));
    const gw = await gateway([a.port, b.port], 'retry_policy: { retry_on: connect-failure }');
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 500);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 0);
  });

  it('retries a refused connection (connect-failure) and says so when it gives up', async () => {
    const refused = await refusedPort();
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway([refused, healthy.port], 'retry_policy: { retry_on: connect-failure }');
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 200);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry_success'), 1);

    const refused2 = await refusedPort();
    const gw2 = await gateway([refused2], 'retry_policy: { retry_on: connect-failure, num_retries: 2 }');
    const failed = await httpRequest(`${gw2.url()}/`);
    assert.equal(failed.status, 503);
    assert.match(failed.body, /retried and the latest reset reason: connection failure/);
    assert.equal(stat(gw2, 'cluster.c.upstream_rq_retry'), 2);
    assert.equal(stat(gw2, 'cluster.c.upstream_rq_retry_limit_exceeded'), 1);
    assert.deepEqual(await logLines(gw2.log, 1), ['503 UF,URX 3']);
  });

  it('retries a reset (reset) and replays the request body', async () => {
    const resetting = await startMisbehavingUpstream('reset');
    started.push(resetting);
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway([resetting.port, healthy.port], 'retry_policy: { retry_on: reset }');
    const body = Buffer.alloc(200_000, 'abcdefghij');
    const res = await httpRequest(`${gw.url()}/upload`, { method: 'POST', body });
    assert.equal(res.status, 200);
    assert.equal(resetting.connections, 1);
    assert.equal(healthy.requests.length, 1);
    assert.equal(healthy.requests[0]!.bodySize, body.length);
    assert.ok(healthy.requests[0]!.body.equals(body));
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
  });

  it('never retries once the response has started', async () => {
    const broken = await startMisbehavingUpstream('headers-then-reset');
    started.push(broken);
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway([broken.port, healthy.port], 'retry_policy: { retry_on: "reset,5xx" }');
    await assert.rejects(httpRequest(`${gw.url()}/`));
    assert.equal(healthy.requests.length, 0);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 0);
    assert.deepEqual(await logLines(gw.log, 1), ['200 UR 1']);
  });

  it('gives each try its per_try_timeout, and answers 504 UT after the last', async () => {
    const hanging = await startMisbehavingUpstream('hang');
    started.push(hanging);
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway([hanging.port, healthy.port], 'retry_policy: { retry_on: 5xx, per_try_timeout: 0.2s }');
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 200);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_per_try_timeout'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
    // The expected timeout the upstream sees is the per-try timeout.
    assert.equal(healthy.requests[0]!.headers['x-envoy-expected-rq-timeout-ms'], '200');

    const gw2 = await gateway([hanging.port], 'retry_policy: { retry_on: 5xx, per_try_timeout: 0.1s }');
    const timedOut = await httpRequest(`${gw2.url()}/`);
    assert.equal(timedOut.status, 504);
    assert.equal(timedOut.body, 'upstream request timeout');
    assert.equal(stat(gw2, 'cluster.c.upstream_rq_per_try_timeout'), 2);
    assert.equal(stat(gw2, 'cluster.c.upstream_rq_504'), 1);
    assert.deepEqual(await logLines(gw2.log, 1), ['504 UT,URX 2']);
  });

  it('ends an attempt that goes silent for per_try_idle_timeout', async () => {
    const stalling = await startMisbehavingUpstream('slow-headers');
    started.push(stalling);
    const gw = await gateway([stalling.port], 'retry_policy: { retry_on: connect-failure, per_try_idle_timeout: 0.1s }');
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 504);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_per_try_idle_timeout'), 1);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 0);
    assert.deepEqual(await logLines(gw.log, 1), ['504 UT 1']);
  });

  it('retries retriable status codes and retriable headers', async () => {
    const teapot = await upstream(answer(418, 'teapot'));
    const flagged = await upstream(answer(200, 'flagged', { 'x-try-again': 'yes' }));
    const healthy = await upstream(answer(200, 'healthy'));
    const gw = await gateway(
      [teapot.port, flagged.port, healthy.port],
      'retry_policy: { retry_on: "retriable-status-codes,retriable-headers", num_retries: 3, retriable_status_codes: [418], retriable_headers: [{ name: x-try-again }] }',
    );
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'healthy');
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 2);
    assert.equal(stat(gw, 'cluster.c.retry.upstream_rq_418'), 1);
    assert.equal(stat(gw, 'cluster.c.retry.upstream_rq_200'), 1);
  });

  it('honours x-envoy-retry-on and x-envoy-max-retries from internal clients only', async () => {
    const a = await upstream(answer(503, 'a'));
    const b = await upstream(answer(200, 'b'));
    // 127.0.0.1 is internal with use_remote_address (the default internal_address_config covers loopback).
    const gw = await gateway([a.port, b.port], '', { hcmExtra: 'use_remote_address: true' });
    const internal = await httpRequest(`${gw.url()}/`, { headers: { 'x-envoy-retry-on': '5xx', 'x-envoy-max-retries': '1' } });
    assert.equal(internal.status, 200);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_retry'), 1);
    assert.equal(b.requests[0]!.headers['x-envoy-retry-on'], undefined, 'consumed by the router');
    assert.equal(b.requests[0]!.headers['x-envoy-max-retries'], undefined);

    // Without use_remote_address and without x-forwarded-for the request is external: headers dropped.
    const external = await gateway([a.port, b.port], '');
    const responses = [await httpRequest(`${external.url()}/`, { headers: { 'x-envoy-retry-on': '5xx' } })];
    responses.push(await httpRequest(`${external.url()}/`, { headers: { 'x-envoy-retry-on': '5xx' } }));
    assert.deepEqual(responses.map((r) => r.status).sort(), [200, 503]);
    assert.equal(stat(external, 'cluster.c.upstream_rq_retry'), 0);
    assert.equal(a.requests.at(-1)!.headers['x-envoy-retry-on'], undefined, 'stripped from external requests');
  });

  it('honours x-envoy-upstream-rq-timeout-ms from internal clients only', async () => {
    const hanging = await startMisbehavingUpstream('hang');
    started.push(hanging);
    const gw = await gateway([hanging.port], 'timeout: 30s', { hcmExtra: 'use_remote_address: true' });
    const started0 = Date.now();
    const res = await httpRequest(`${gw.url()}/`, { headers: { 'x-envoy-upstream-rq-timeout-ms': '100' } });
    assert.equal(res.status, 504);
    assert.ok(Date.now() - started0 < 20_000);
    assert.match(hanging.requests[0]!, /x-envoy-expected-rq-timeout-ms: 100\r\n/);
    assert.doesNotMatch(hanging.requests[0]!, /x-envoy-upstream-rq-timeout-ms/);

    const external = await gateway([hanging.port], 'timeout: 30s');
    const controller = httpRequest(`${external.url()}/`, { headers: { 'x-envoy-upstream-rq-timeout-ms': '100' }, timeoutMs: 1500 });
    await assert.rejects(controller, 'an external client cannot shorten the route timeout');
    assert.match(hanging.requests[1]!, /x-envoy-expected-rq-timeout-ms: 30000\r\n/);
  });
});

/**
 * gRPC through the router: local replies to gRPC requests are gRPC, as Envoy sends them (HTTP 200,
 * `application/grpc`, the status in `grpc-status`, mapped from the HTTP status, DEADLINE_EXCEEDED for timeouts,
 * the text in `grpc-message`), while other requests (`application/grpc-web` included) keep their HTTP replies;
 * and `retry_on` gRPC conditions read a trailers-only response's `grpc-status`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type MisbehavingUpstream, type RecordingUpstream, startMisbehavingUpstream, startRecordingUpstream } from '../support/upstreams.js';

describe('gRPC local replies and retries', () => {
  let hang: MisbehavingUpstream;
  let flaky: RecordingUpstream;
  let calls = 0;
  let gw: RunningPortico;
  const grpc = { 'content-type': 'application/grpc', te: 'trailers' };

  before(async () => {
    hang = await startMisbehavingUpstream('hang');
    // Every other call fails with a trailers-only UNAVAILABLE, as a gRPC server shedding load answers.
    flaky = await startRecordingUpstream((_req, res) => {
      calls++;
      res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': calls % 2 === 1 ? '14' : '0', 'x-call': String(calls) });
      res.end();
    });
    gw = await startPortico(
      simpleBootstrap({
        routes: `- match: { prefix: "/slow.Service/" }
  route: { cluster: hang, timeout: 0.2s }
- match: { prefix: "/empty.Service/" }
  route: { cluster: empty }
- match: { prefix: "/only.Grpc/", grpc: {} }
  route: { cluster: empty }
- match: { prefix: "/retried.Service/" }
  route: { cluster: flaky, retry_policy: { retry_on: "unavailable,cancelled", num_retries: 2 } }
- match: { prefix: "/flaky.Service/" }
  route: { cluster: flaky }
- match: { prefix: "/deadline.Service/" }
  route: { cluster: hang, timeout: 5s, max_stream_duration: { grpc_timeout_header_max: 2s, grpc_timeout_header_offset: 0.05s } }
- match: { prefix: "/echo.Service/" }
  route: { cluster: flaky, max_stream_duration: { grpc_timeout_header_max: 0s } }`,
        clusters: `${staticCluster('hang', hang.port)}
${staticCluster('flaky', flaky.port)}
- name: empty
  connect_timeout: 1s
  load_assignment: { cluster_name: empty, endpoints: [] }`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    await hang.close();
    await flaky.close();
  });

  it('no route: UNIMPLEMENTED (12) with HTTP 200 and no body', async () => {
    const res = await httpRequest(`${gw.url()}/nowhere.Service/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/grpc');
    assert.equal(res.headers['grpc-status'], '12');
    assert.equal(res.body, '');
  });

  it('no healthy upstream: UNAVAILABLE (14) with the reason in grpc-message', async () => {
    const res = await httpRequest(`${gw.url()}/empty.Service/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['grpc-status'], '14');
    assert.equal(res.headers['grpc-message'], 'no healthy upstream');
  });

  it('a route timeout: DEADLINE_EXCEEDED (4)', async () => {
    const res = await httpRequest(`${gw.url()}/slow.Service/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['grpc-status'], '4');
    assert.equal(res.headers['grpc-message'], 'upstream request timeout');
  });

  it('a route with `grpc: {}` matches gRPC requests only; others keep HTTP replies, gRPC-Web included', async () => {
    const matched = await httpRequest(`${gw.url()}/only.Grpc/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(matched.headers['grpc-status'], '14');
    const plain = await httpRequest(`${gw.url()}/only.Grpc/Call`, { method: 'POST', body: '' });
    assert.equal(plain.status, 404);
    const web = await httpRequest(`${gw.url()}/empty.Service/Call`, { method: 'POST', headers: { 'content-type': 'application/grpc-web' }, body: '' });
    assert.equal(web.status, 503);
    assert.equal(web.body, 'no healthy upstream');
  });

  it('retry_on unavailable retries a trailers-only UNAVAILABLE; without it, the client gets the status', async () => {
    const retried = await httpRequest(`${gw.url()}/retried.Service/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(retried.headers['grpc-status'], '0');
    assert.equal(stat(gw, 'cluster.flaky.upstream_rq_retry'), 1);
    const plain = await httpRequest(`${gw.url()}/flaky.Service/Call`, { method: 'POST', headers: grpc, body: '' });
    assert.equal(plain.headers['grpc-status'], '14');
  });

  it('grpc-timeout sets the route timeout under max_stream_duration, capped and less the offset, and goes upstream', async () => {
    const started = performance.now();
    const res = await httpRequest(`${gw.url()}/deadline.Service/Call`, { method: 'POST', headers: { ...grpc, 'grpc-timeout': '250m' }, body: '' });
    const elapsed = performance.now() - started;
    assert.equal(res.headers['grpc-status'], '4');
    assert.ok(elapsed >= 190 && elapsed < 2000, `answered after ${elapsed} ms, not the route's 5 s`);
    const before = flaky.requests.length;
    await httpRequest(`${gw.url()}/echo.Service/Call`, { method: 'POST', headers: { ...grpc, 'grpc-timeout': '3S' }, body: '' });
    assert.equal(flaky.requests.length, before + 1);
    assert.equal(flaky.requests.at(-1)!.headers['grpc-timeout'], '3000m', 'no cap with a max of 0');
  });
});

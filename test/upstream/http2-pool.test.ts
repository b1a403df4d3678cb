/**
 * The HTTP/2 pool through its contract, on a host of an HTTP/2 cluster against a node:http2 server: request
 * trailers carried by the body stream, response trailers to `onResponseEnd`, an aborted stream reset without
 * losing its connection, and the idle timeout.
 */
import assert from 'node:assert/strict';
import http2, { type Http2Session, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import type { envoy } from '../../src/generated/envoy.js';
import { clusterSettings } from '../../src/dataplane/upstream/cluster-settings.js';
import { Host } from '../../src/dataplane/upstream/host.js';
import type {
  RequestBodyWithTrailers,
  UpstreamHeaders,
  UpstreamStreamController,
  UpstreamStreamHandler,
} from '../../src/dataplane/upstream/pool-types.js';
import { CLUSTER_STATS } from '../../src/dataplane/upstream/stats.js';
import { StatScope } from '../../src/stats/store.js';
import { eventually } from '../support/wait.js';

/** Records what the pool reports, and settles once the request is over. */
class Recorder implements UpstreamStreamHandler {
  status = 0;
  chunks: Buffer[] = [];
  trailers: UpstreamHeaders | undefined;
  error: (Error & { code?: string }) | undefined;
  controller: UpstreamStreamController | undefined;
  readonly done: Promise<void>;
  private settle!: () => void;

  constructor(private readonly onData?: (recorder: Recorder) => void) {
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  onRequestStart(controller: UpstreamStreamController): void {
    this.controller = controller;
  }

  onResponseStart(_c: UpstreamStreamController, status: number): void {
    this.status = status;
  }

  onResponseData(_c: UpstreamStreamController, chunk: Buffer): void {
    this.chunks.push(chunk);
    this.onData?.(this);
  }

  onResponseEnd(_c: UpstreamStreamController, trailers: UpstreamHeaders): void {
    this.trailers = trailers;
    this.settle();
  }

  onResponseError(_c: UpstreamStreamController, error: Error & { code?: string }): void {
    this.error = error;
    this.settle();
  }
}

const servers: http2.Http2Server[] = [];
const sessions: Http2Session[] = [];
after(async () => {
  for (const session of sessions) session.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

async function server(onStream: (stream: http2.ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Promise<number> {
  const s = http2.createServer();
  s.on('session', (session) => {
    sessions.push(session);
    session.on('error', () => {});
  });
  s.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  servers.push(s);
  return (s.address() as AddressInfo).port;
}

function h2Host(port: number, idleTimeoutMs = 3_600_000): { host: Host; stats: StatScope } {
  const cluster = { http2_protocol_options: {}, common_http_protocol_options: { idle_timeout: idleTimeoutMs } } as envoy.config.cluster.v3.Cluster;
  const errors: unknown[] = [];
  const settings = clusterSettings(cluster, 'cluster', errors as never[]);
  assert.deepEqual(errors, []);
  const stats = new StatScope(CLUSTER_STATS, 'cluster.test.');
  return { host: new Host('127.0.0.1', port, '', 1, 0, true, settings, stats), stats };
}

const HEAD = { method: 'POST', path: '/', headers: ['host', 'backend'], upgrade: undefined };

describe('HTTP/2 pool', () => {
  it('sends the trailers a request body carries, and hands response trailers to onResponseEnd', async () => {
    let seen: IncomingHttpHeaders | undefined;
    const port = await server((stream) => {
      stream.on('trailers', (trailers: IncomingHttpHeaders) => (seen = trailers));
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end('done');
      });
    });
    const { host } = h2Host(port);
    const body: RequestBodyWithTrailers = new Readable({ read() {} });
    const recorder = new Recorder();
    host.pool().dispatch({ ...HEAD, body }, recorder);
    body.push('payload');
    body.trailers = { 'x-request-checksum': 'abc' };
    body.push(null);
    await recorder.done;
    assert.equal(recorder.error, undefined);
    assert.equal(recorder.status, 200);
    assert.equal(Buffer.concat(recorder.chunks).toString(), 'done');
    assert.deepEqual({ ...recorder.trailers }, { 'grpc-status': '0' });
    assert.equal(seen?.['x-request-checksum'], 'abc');
    await host.close();
  });

  it('resets an aborted stream (tx_reset) and keeps its connection for the next request', async () => {
    let resets = 0;
    const port = await server((stream) => {
      stream.on('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_CANCEL) resets++;
      });
      stream.respond({ ':status': 200 });
      stream.write(Buffer.alloc(1024));
    });
    const { host, stats } = h2Host(port);
    const aborted = new Recorder((r) => r.controller!.abort(new Error('client went away')));
    host.pool().dispatch({ ...HEAD, method: 'GET', body: null }, aborted);
    await aborted.done;
    assert.equal(aborted.error?.message, 'client went away');
    await eventually(() => assert.equal(resets, 1));
    assert.equal(stats.counters[CLUSTER_STATS.c['http2.tx_reset']], 1);
    assert.equal(stats.counters[CLUSTER_STATS.c['http2.rx_reset']], 0);
    const next = new Recorder((r) => r.controller!.abort(new Error('enough')));
    host.pool().dispatch({ ...HEAD, method: 'GET', body: null }, next);
    await next.done;
    assert.equal(next.status, 200);
    assert.equal(stats.counters[CLUSTER_STATS.c.upstream_cx_http2_total], 1);
    await host.close();
  });

  it('closes a connection idle for idle_timeout', async () => {
    const port = await server((stream) => stream.respond({ ':status': 204 }, { endStream: true }));
    const { host, stats } = h2Host(port, 50);
    const recorder = new Recorder();
    host.pool().dispatch({ ...HEAD, method: 'GET', body: null }, recorder);
    await recorder.done;
    assert.equal(recorder.status, 204);
    assert.equal(stats.gauges[CLUSTER_STATS.g.upstream_cx_active], 1);
    await eventually(() => assert.equal(stats.gauges[CLUSTER_STATS.g.upstream_cx_active], 0));
    assert.equal(stats.counters[CLUSTER_STATS.c.upstream_cx_destroy_local], 1);
    await host.close();
  });
});

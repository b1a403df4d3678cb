/**
 * The downstream HTTP/1.1 codec, end to end through a raw client socket: pipelined requests served one at a
 * time and in order (a malformed one refused only after those before it are answered), response framing (content-length, chunked with trailers, until close for HTTP/1.0),
 * HTTP/1.0 keep-alive, `Expect: 100-continue`, repeated request headers, a request body left unread by an early
 * answer, and `max_requests_per_connection`.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type RunningPortico, simpleBootstrap, startPortico, staticCluster } from '../support/portico.js';
import { rawRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const ROUTES = `- match: { prefix: "/local" }
  direct_response: { status: 200, body: { inline_string: "local" } }
- match: { prefix: "/" }
  route: { cluster: backend }`;

const UPSTREAM_TRAILERS = `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http_protocol_options: { enable_trailers: true } }`;

/** Answers by path: `/slow` after 150 ms, `/chunked` without a length and with a trailer, others `ok <path>`. */
async function backend(): Promise<RecordingUpstream> {
  return startRecordingUpstream((req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('hello ');
      res.write('world');
      res.addTrailers({ 'x-checksum': 'abc' });
      res.end();
      return;
    }
    const body = `ok ${req.url}`;
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url === '/slow') setTimeout(answer, 150);
    else answer();
  });
}

/** Writes `data` on a new connection and collects everything until the proxy closes it or `ms` pass. */
async function collect(port: number, data: string, ms: number): Promise<{ text: string; closed: boolean }> {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.write(data);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on('error', () => {});
  });
  socket.destroy();
  return { text, closed };
}

describe('downstream HTTP/1.1 codec', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    upstream = await backend();
    gw = await startPortico(
      simpleBootstrap({
        routes: ROUTES,
        clusters: staticCluster('backend', upstream.port).replace('  connect_timeout: 1s', `  connect_timeout: 1s\n${UPSTREAM_TRAILERS}`),
        hcmExtra: 'http_protocol_options: { accept_http_10: true, enable_trailers: true }',
      }),
    );
  });

  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('serves pipelined requests one at a time, answering in order', async () => {
    const before = upstream.requests.length;
    const result = await rawRequest(gw.port(), 'GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\nGET /local HTTP/1.1\r\nHost: a\r\n\r\n', {
      responses: 3,
    });
    assert.deepEqual(
      result.responses.map((r) => r.body),
      ['ok /slow', 'ok /fast', 'local'],
    );
    assert.equal(result.closed, false);
    // The second request went upstream only once the first was answered.
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => r.url),
      ['/slow', '/fast'],
    );
  });

  it('answers the pipelined requests before a malformed one, then refuses it with 400 and closes', async () => {
    const before = upstream.requests.length;
    const result = await rawRequest(gw.port(), 'GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', {
      responses: 3,
    });
    assert.deepEqual(result.responses.map((r) => r.status), [200, 200, 400]);
    assert.deepEqual(result.responses.slice(0, 2).map((r) => r.body), ['ok /slow', 'ok /fast']);
    assert.equal(result.closed, true);
    assert.deepEqual(upstream.requests.slice(before).map((r) => r.url), ['/slow', '/fast']);
  });

  it('frames a response without a length as chunked, with its trailers, and keeps the connection', async () => {
    const result = await rawRequest(gw.port(), 'GET /chunked HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\nGET /again HTTP/1.1\r\nHost: a\r\n\r\n', {
      responses: 2,
    });
    const [chunked, again] = result.responses;
    assert.equal(chunked?.headers['transfer-encoding'], 'chunked');
    assert.equal(chunked?.body, 'hello world');
    assert.equal(chunked?.trailers['x-checksum'], 'abc');
    assert.equal(again?.body, 'ok /again');
    assert.equal(result.closed, false);
  });

  it('sends an HTTP/1.0 client a body without a length until close, and keeps HTTP/1.0 keep-alive connections', async () => {
    const plain = await collect(gw.port(), 'GET /chunked HTTP/1.0\r\nHost: a\r\n\r\n', 3000);
    assert.equal(plain.closed, true);
    assert.match(plain.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(plain.text, /transfer-encoding/i);
    assert.match(plain.text, /\r\nconnection: close\r\n/);
    assert.ok(plain.text.endsWith('\r\n\r\nhello world'), plain.text);

    const keepAlive = await rawRequest(gw.port(), 'GET /a HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n', {
      responses: 2,
    });
    assert.deepEqual(
      keepAlive.responses.map((r) => [r.body, r.headers.connection]),
      [
        ['ok /a', 'keep-alive'],
        ['ok /b', 'keep-alive'],
      ],
    );
    assert.equal(keepAlive.closed, false);
  });

  it('answers Expect: 100-continue itself before the body is sent, and does not forward it', async () => {
    const socket = connect(gw.port(), '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    await eventually(() => assert.ok(text.includes('\r\n\r\n')));
    assert.equal(text, 'HTTP/1.1 100 Continue\r\n\r\n');
    socket.write('hello');
    await eventually(() => assert.ok(text.endsWith('ok /upload')));
    socket.destroy();
    const recorded = upstream.requests.at(-1)!;
    assert.equal(recorded.body.toString(), 'hello');
    assert.equal(recorded.headers.expect, undefined);
  });

  it('joins repeated request headers as node:http does: cookies with "; ", single-valued ones keep the first', async () => {
    await rawRequest(gw.port(), 'GET /headers HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Tag: 1\r\nx-tag: 2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n');
    const recorded = upstream.requests.at(-1)!;
    assert.equal(recorded.url, '/headers');
    assert.equal(recorded.headers.host, 'a');
    assert.equal(recorded.headers['x-tag'], '1, 2');
    assert.equal(recorded.headers.cookie, 'a=1; b=2');
  });

  it('reads a chunked body with trailers, then a head too long for one parser batch on the same connection', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `x-h-${i}: ${i}\r\n`).join('');
    const result = await rawRequest(
      gw.port(),
      'POST /chunked-upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n' +
        `GET /long HTTP/1.1\r\nHost: a\r\n${many}\r\n`,
      { responses: 2 },
    );
    assert.deepEqual(
      result.responses.map((r) => r.body),
      ['ok /chunked-upload', 'ok /long'],
    );
    const [upload, long] = upstream.requests.slice(-2);
    assert.equal(upload?.body.toString(), 'hello');
    assert.equal(long?.headers['x-trailer'], undefined);
    assert.equal(long?.headers['x-h-0'], '0');
    assert.equal(long?.headers['x-h-39'], '39');
  });

  it('drops the rest of a body the answer did not wait for, then serves the next request', async () => {
    const socket = connect(gw.port(), '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.write('POST /local HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc');
    await eventually(() => assert.ok(text.endsWith('local')));
    socket.write('defghijGET /after HTTP/1.1\r\nHost: a\r\n\r\n');
    await eventually(() => assert.ok(text.endsWith('ok /after')));
    assert.equal(text.match(/HTTP\/1\.1 200/g)?.length, 2);
    socket.destroy();
  });

  it('closes a connection after max_requests_per_connection requests, saying so on the last response', async () => {
    const limited = await startPortico(
      simpleBootstrap({
        routes: ROUTES,
        clusters: staticCluster('backend', upstream.port),
        hcmExtra: 'common_http_protocol_options: { max_requests_per_connection: 2 }',
      }),
    );
    try {
      const result = await collect(limited.port(), 'GET /local HTTP/1.1\r\nHost: a\r\n\r\nGET /local HTTP/1.1\r\nHost: a\r\n\r\nGET /local HTTP/1.1\r\nHost: a\r\n\r\n', 3000);
      assert.equal(result.closed, true);
      assert.equal(result.text.match(/HTTP\/1\.1 200/g)?.length, 2);
      assert.equal(result.text.match(/connection: close/g)?.length, 1);
    } finally {
      await limited.close();
    }
  });
});

/**
 * The upstream HTTP/2 pool end to end: an HTTP/1.1 client, Portico, and node:http2 servers (h2c, and TLS with
 * ALPN). Request and response heads, streamed bodies both ways under flow control, many requests multiplexed on
 * one connection, `max_concurrent_streams` (ours and the peer's) opening more, RST_STREAM as a 503 and as a
 * retriable reset, GOAWAY draining a connection, trailers, `auto_config` choosing by ALPN, and config checks.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster, tlsCluster } from '../support/portico.js';
import { httpRequest } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** A cluster YAML with typed HttpProtocolOptions (`protocol` is its fields, YAML flow style). */
function withProtocol(cluster: string, protocol: string): string {
  return cluster.replace(
    '  load_assignment:',
    `  typed_extension_protocol_options:
    ${OPTIONS_KEY}:
      "@type": type.googleapis.com/${OPTIONS_KEY}
      ${protocol}
  load_assignment:`,
  );
}

const h2Cluster = (name: string, port: number, http2Options = '{}'): string =>
  withProtocol(staticCluster(name, port), `explicit_http_config: { http2_protocol_options: ${http2Options} }`);

type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, session: Http2Session) => void;

interface H2Upstream {
  port: number;
  /** Sessions (connections) the server accepted. */
  sessions: Http2Session[];
  close(): Promise<void>;
}

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function h2Upstream(handler: StreamHandler, options: { settings?: http2.Settings; tls?: { cert: Buffer; key: Buffer } } = {}): Promise<H2Upstream> {
  const server = options.tls ? http2.createSecureServer({ ...options.tls, settings: options.settings }) : http2.createServer({ settings: options.settings });
  const upstream: H2Upstream = { port: 0, sessions: [], close: async () => {} };
  server.on('session', (session) => {
    upstream.sessions.push(session);
    session.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    handler(stream, headers, stream.session!);
  });
  upstream.port = await listen(server);
  upstream.close = () =>
    new Promise<void>((resolve) => {
      for (const session of upstream.sessions) session.destroy();
      server.close(() => resolve());
    });
  started.push(upstream);
  return upstream;
}

async function gateway(clusters: string, routes = '- match: { prefix: "/" }\n  route: { cluster: h2, timeout: 10s }', hcmExtra?: string): Promise<RunningPortico> {
  const gw = await startPortico(simpleBootstrap({ routes, clusters, hcmExtra }));
  started.push(gw);
  return gw;
}

function readAll(stream: ServerHttp2Stream): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** A response read slowly: the client stops reading for a while, so that back-pressure reaches the upstream. */
function slowGet(url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        res.pause();
        const chunks: Buffer[] = [];
        setTimeout(() => {
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
          res.resume();
        }, 300);
      })
      .on('error', reject);
  });
}

describe('upstream HTTP/2', () => {
  it('sends request heads as HTTP/2 and returns responses with repeated headers and trailers', async () => {
    const upstream = await h2Upstream((stream, headers) => {
      void readAll(stream).then((body) => {
        stream.respond({ ':status': 201, 'x-a': ['1', '2'], 'content-type': 'application/json' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': sha(body) }));
        stream.end(JSON.stringify({ headers, length: body.length }));
      });
    });
    const hcmExtra = 'http_protocol_options: { enable_trailers: true }';
    const gw = await gateway(h2Cluster('h2', upstream.port), undefined, hcmExtra);
    const res = await httpRequest(`${gw.url()}/some/path?q=1`, { headers: { 'x-multi': ['a', 'b'], connection: 'keep-alive', te: 'trailers' } });
    assert.equal(res.status, 201);
    assert.deepEqual(res.headers['x-a'], ['1', '2']);
    assert.equal(res.trailers['x-checksum'], sha(Buffer.alloc(0)));
    const seen = JSON.parse(res.body) as { headers: IncomingHttpHeaders; length: number };
    assert.equal(seen.headers[':method'], 'GET');
    assert.equal(seen.headers[':path'], '/some/path?q=1');
    assert.equal(seen.headers[':scheme'], 'http');
    assert.equal(seen.headers[':authority'], `127.0.0.1:${gw.port()}`);
    assert.equal(seen.headers['x-multi'], 'a, b');
    assert.equal(seen.headers.te, 'trailers');
    assert.equal(seen.headers.connection, undefined);
    assert.equal(seen.headers.host, undefined);

    // A streamed request body, large enough to fill a 64 KiB window many times over.
    const upload = Buffer.alloc(3 * 1024 * 1024, 'u');
    const chunks = Array.from({ length: 48 }, (_, i) => upload.subarray(i * 65536, (i + 1) * 65536));
    const posted = await httpRequest(`${gw.url()}/upload`, { method: 'POST', body: Readable.from(chunks) });
    assert.equal(posted.status, 201);
    assert.equal(posted.trailers['x-checksum'], sha(upload));
    assert.equal((JSON.parse(posted.body) as { length: number }).length, upload.length);
    assert.equal(upstream.sessions.length, 1);
    assert.equal(stat(gw, 'cluster.h2.upstream_cx_http2_total'), 1);
    assert.equal(stat(gw, 'cluster.h2.upstream_cx_http1_total'), 0);
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.http2.streams_active'), 0));
  });

  it('streams a large response under flow control to a slow client', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    const upstream = await h2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      let offset = 0;
      const write = (): void => {
        while (offset < big.length) {
          const piece = big.subarray(offset, offset + 16384);
          offset += piece.length;
          if (!stream.write(piece)) return void stream.once('drain', write);
        }
        stream.end();
      };
      write();
    });
    const gw = await gateway(h2Cluster('h2', upstream.port, '{ initial_stream_window_size: 65535, initial_connection_window_size: 65535 }'));
    const res = await slowGet(`${gw.url()}/big`);
    assert.equal(res.status, 200);
    assert.equal(res.body.length, big.length);
    assert.equal(sha(res.body), sha(big));
  });

  it('multiplexes concurrent requests on one connection, and opens another past max_concurrent_streams', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let streams = 0;
    const handler: StreamHandler = (stream) => {
      streams++;
      void held.then(() => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
    };
    const many = await h2Upstream(handler);
    const one = await h2Upstream(handler);
    const peerLimited = await h2Upstream(handler, { settings: { maxConcurrentStreams: 1 } });
    const clusters = [h2Cluster('h2', many.port), h2Cluster('one', one.port, '{ max_concurrent_streams: 1 }'), h2Cluster('peer', peerLimited.port)].join('');
    const routes = ['one', 'peer'].map((name) => `- match: { prefix: "/${name}" }\n  route: { cluster: ${name} }`).join('\n') + '\n- match: { prefix: "/" }\n  route: { cluster: h2 }';
    const gw = await gateway(clusters, routes);
    const responses = [
      ...Array.from({ length: 20 }, (_, i) => httpRequest(`${gw.url()}/many/${i}`)),
      ...Array.from({ length: 2 }, (_, i) => httpRequest(`${gw.url()}/one/${i}`)),
      ...Array.from({ length: 2 }, (_, i) => httpRequest(`${gw.url()}/peer/${i}`)),
    ];
    await eventually(() => assert.equal(streams, 24));
    assert.equal(stat(gw, 'cluster.h2.http2.streams_active'), 20);
    release();
    for (const res of await Promise.all(responses)) assert.equal(res.status, 200);
    assert.equal(many.sessions.length, 1);
    assert.equal(one.sessions.length, 2);
    assert.equal(peerLimited.sessions.length, 2);
    assert.equal(stat(gw, 'cluster.one.upstream_cx_http2_total'), 2);
  });

  it('answers 503 to a stream the upstream resets, and retries it with retry_on: reset', async () => {
    let attempts = 0;
    const upstream = await h2Upstream((stream, headers) => {
      attempts++;
      if (headers[':path'] === '/reset' || attempts === 2) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      else stream.respond({ ':status': 200 }, { endStream: true });
    });
    const routes = `- match: { prefix: "/retried" }
  route: { cluster: h2, retry_policy: { retry_on: reset, num_retries: 1 } }
- match: { prefix: "/" }
  route: { cluster: h2 }`;
    const gw = await gateway(h2Cluster('h2', upstream.port), routes);
    const reset = await httpRequest(`${gw.url()}/reset`);
    assert.equal(reset.status, 503);
    assert.match(reset.body, /reset reason: remote reset/);
    assert.equal(stat(gw, 'cluster.h2.http2.rx_reset'), 1);
    assert.equal(stat(gw, 'cluster.h2.upstream_rq_rx_reset'), 1);
    // The second attempt overall is reset, the third answers.
    const retried = await httpRequest(`${gw.url()}/retried`);
    assert.equal(retried.status, 200);
    assert.equal(stat(gw, 'cluster.h2.upstream_rq_retry'), 1);
    assert.equal(upstream.sessions.length, 1, 'a reset stream leaves its connection in use');
  });

  it('drains a connection on GOAWAY: streams it took finish, the others are refused and retried elsewhere', async () => {
    const streams: ServerHttp2Stream[] = [];
    const upstream = await h2Upstream((stream) => {
      if (upstream.sessions.length > 1) stream.respond({ ':status': 200 }, { endStream: true });
      else streams.push(stream);
    });
    const routes = '- match: { prefix: "/" }\n  route: { cluster: h2, retry_policy: { retry_on: reset, num_retries: 1 } }';
    const gw = await gateway(h2Cluster('h2', upstream.port), routes);
    const first = httpRequest(`${gw.url()}/first`);
    await eventually(() => assert.equal(streams.length, 1));
    const second = httpRequest(`${gw.url()}/second`);
    await eventually(() => assert.equal(streams.length, 2));
    upstream.sessions[0]!.goaway(http2.constants.NGHTTP2_NO_ERROR, streams[0]!.id);
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.upstream_cx_close_notify'), 1));
    streams[0]!.respond({ ':status': 200 }, { endStream: true });
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    assert.equal(upstream.sessions.length, 2);
    assert.equal(stat(gw, 'cluster.h2.upstream_rq_retry'), 1);
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.upstream_cx_active'), 1));
  });

  it('closes a connection after max_requests_per_connection streams', async () => {
    const upstream = await h2Upstream((stream) => stream.respond({ ':status': 200 }, { endStream: true }));
    const cluster = withProtocol(
      staticCluster('h2', upstream.port),
      'common_http_protocol_options: { max_requests_per_connection: 2 }\n      explicit_http_config: { http2_protocol_options: {} }',
    );
    const gw = await gateway(cluster);
    for (let i = 0; i < 3; i++) assert.equal((await httpRequest(`${gw.url()}/${i}`)).status, 200);
    assert.equal(upstream.sessions.length, 2);
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.upstream_cx_destroy'), 1));
  });

  it('answers 503 UPE when the upstream does not speak HTTP/2', async () => {
    const h1 = http.createServer((_req, res) => res.end('http/1.1'));
    const port = await listen(h1);
    started.push({ close: () => new Promise<void>((resolve) => h1.close(() => resolve())) });
    const gw = await gateway(h2Cluster('h2', port));
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.status, 503);
    assert.match(res.body, /reset reason: protocol error/);
    assert.equal(stat(gw, 'cluster.h2.upstream_cx_protocol_error'), 1);
  });

  it('refuses an upgrade over HTTP/2 with a protocol error', async () => {
    const upstream = await h2Upstream((stream) => stream.respond({ ':status': 200 }, { endStream: true }));
    const gw = await gateway(h2Cluster('h2', upstream.port), '- match: { prefix: "/" }\n  route: { cluster: h2, upgrade_configs: [{ upgrade_type: websocket }] }');
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http
        .get(`${gw.url()}/ws`, { agent: false, headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } }, resolve)
        .on('error', reject);
    });
    res.resume();
    assert.equal(res.statusCode, 503);
    assert.equal(stat(gw, 'cluster.h2.upstream_cx_protocol_error'), 1);
  });

  it('pings idle connections (connection_keepalive) and closes one whose PING goes unanswered', async () => {
    const upstream = await h2Upstream((stream) => stream.respond({ ':status': 200 }, { endStream: true }));
    // A relay that stops passing the upstream's bytes back once told to: PING ACKs never arrive.
    let blackhole = false;
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((client) => {
      const server = net.connect(upstream.port, '127.0.0.1');
      for (const socket of [client, server]) {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
      }
      client.pipe(server);
      server.on('data', (data: Buffer) => blackhole || client.write(data));
      client.on('close', () => server.destroy());
      server.on('close', () => client.destroy());
    });
    const relayPort = await listen(relay);
    started.push({
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          relay.close(() => resolve());
        }),
    });
    const gw = await gateway(h2Cluster('h2', relayPort, '{ connection_keepalive: { interval: 0.05s, timeout: 0.1s } }'));
    assert.equal((await httpRequest(`${gw.url()}/`)).status, 200);
    let pings = 0;
    upstream.sessions[0]!.on('ping', () => pings++);
    await eventually(() => assert.ok(pings >= 2));
    assert.equal(stat(gw, 'cluster.h2.upstream_cx_active'), 1);
    blackhole = true;
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.http2.keepalive_timeout'), 1));
    await eventually(() => assert.equal(stat(gw, 'cluster.h2.upstream_cx_active'), 0));
  });

  it('refuses HTTP/2 options it does not implement, and windows out of range', () => {
    const cluster = h2Cluster('h2', 1, '{ hpack_table_size: 0, initial_stream_window_size: 10, connection_keepalive: { interval: 1s, interval_jitter: { value: 5 } } }');
    const errors = checkYaml(simpleBootstrap({ routes: '- match: { prefix: "/" }\n  route: { cluster: h2 }', clusters: cluster }));
    const fields = errors.map((e) => `${e.code} ${e.path}`);
    assert.ok(fields.some((f) => f.startsWith('unsupported_field') && f.endsWith('http2_protocol_options.hpack_table_size')), fields.join('\n'));
    assert.ok(fields.some((f) => f.startsWith('invalid_value') && f.endsWith('http2_protocol_options.initial_stream_window_size')), fields.join('\n'));
    assert.ok(fields.some((f) => f.startsWith('unsupported_field') && f.endsWith('connection_keepalive.interval_jitter')), fields.join('\n'));
    assert.ok(fields.some((f) => f.startsWith('missing_required') && f.endsWith('connection_keepalive.timeout')), fields.join('\n'));
  });
});

describe('upstream HTTP/2 over TLS', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let pki: TestPki;
  let tls: { cert: Buffer; key: Buffer };
  before(() => {
    pki = makeTestPki([{ name: 'backend', commonName: 'backend' }]);
    tls = { cert: readFileSync(pki.file('backend.crt')), key: readFileSync(pki.file('backend.key')) };
  });

  it('speaks h2 to a TLS upstream, and auto_config picks h2 or http/1.1 by ALPN', async () => {
    const h2 = await h2Upstream((stream, headers) => stream.respond({ ':status': 200, 'x-scheme': String(headers[':scheme']) }, { endStream: true }), { tls });
    const h1Server = https.createServer({ ...tls, ALPNProtocols: ['http/1.1'] }, (req, res) => res.end(req.httpVersion));
    const h1Port = await listen(h1Server);
    started.push({ close: () => new Promise<void>((resolve) => h1Server.close(() => resolve())) });
    const auto = 'auto_config: {}';
    const clusters = [
      withProtocol(tlsCluster('explicit', h2.port), 'explicit_http_config: { http2_protocol_options: {} }'),
      withProtocol(tlsCluster('auto_h2', h2.port), auto),
      withProtocol(tlsCluster('auto_h1', h1Port), auto),
    ].join('');
    const routes = ['explicit', 'auto_h2', 'auto_h1'].map((name) => `- match: { prefix: "/${name}" }\n  route: { cluster: ${name} }`).join('\n');
    const gw = await gateway(clusters, routes);
    const explicit = await httpRequest(`${gw.url()}/explicit`);
    assert.equal(explicit.status, 200);
    assert.equal(explicit.headers['x-scheme'], 'https');
    const requests = await Promise.all(Array.from({ length: 3 }, () => httpRequest(`${gw.url()}/auto_h2`)));
    for (const res of requests) assert.equal(res.headers['x-scheme'], 'https');
    assert.equal((await httpRequest(`${gw.url()}/auto_h1`)).body, '1.1');
    assert.equal((await httpRequest(`${gw.url()}/auto_h1`)).body, '1.1');
    assert.equal(stat(gw, 'cluster.explicit.upstream_cx_http2_total'), 1);
    assert.equal(stat(gw, 'cluster.auto_h2.upstream_cx_http2_total'), 1);
    assert.equal(stat(gw, 'cluster.auto_h1.upstream_cx_http1_total'), 1);
    assert.equal(stat(gw, 'cluster.auto_h1.upstream_cx_http2_total'), 0);
    assert.equal(h2.sessions.length, 2);
  });
});

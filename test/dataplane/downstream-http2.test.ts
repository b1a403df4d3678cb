/**
 * The downstream HTTP/2 codec end to end: node:http2 (and curl) clients with h2c prior knowledge on codec_type
 * AUTO and HTTP2 listeners, h2 by ALPN over TLS, to an HTTP/1.1 upstream. Heads and bodies both ways, many
 * streams on one connection, a large response under flow control, trailers both ways, a client RST_STREAM, local
 * replies, and HTTP/1.1 clients still served on an AUTO listener; curl, h2load and nghttp as clients; and the
 * protections against abusive clients, driven with hand-written frames (test/support/h2-frames.ts).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';
import { END_HEADERS, END_STREAM, exchange, frame, FrameType, goawayCode, literalHeader, requestBlock } from '../support/h2-frames.js';

const NGHTTP2_MISSING = "h2load and nghttp come with Debian's nghttp2-client";
const hasCommand = (name: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

const BIG = 4 * 1024 * 1024;
const BIG_BODY = Buffer.alloc(BIG, 'abcdefghijklmnopqrstuvwxyz');

const UPSTREAM_TRAILERS = `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http_protocol_options: { enable_trailers: true } }
`;

/**
 * `/big` a 4 MiB body, `/trailers` a chunked body with a trailer, `/slow` after 300 ms, `/hang` a head then
 * nothing; others `ok <method> <body size>`.
 */
function backend(): Promise<RecordingUpstream> {
  return startRecordingUpstream((req, res, record) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG });
      res.end(BIG_BODY);
    } else if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('hello ');
      res.addTrailers({ 'x-checksum': 'abc', 'x-echo': record.trailers['x-request-trailer'] ?? 'none' });
      res.end('world');
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('slow'), 300);
    } else if (req.url === '/hang') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started');
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`ok ${record.method} ${record.bodySize}`);
    }
  });
}

function bootstrap(upstream: number, hcmExtra: string): string {
  return simpleBootstrap({
    routes: `- match: { prefix: "/local" }
  direct_response: { status: 200, body: { inline_string: "local" } }
- match: { prefix: "/" }
  route: { cluster: backend }`,
    domains: '["127.0.0.1", "localhost", "127.0.0.1:*", "localhost:*"]',
    clusters: staticCluster('backend', upstream).replace('  load_assignment:', `${UPSTREAM_TRAILERS}  load_assignment:`),
    hcmExtra: `http_protocol_options: { enable_trailers: true }\n${hcmExtra}`,
  });
}

interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  trailers: IncomingHttpHeaders | undefined;
}

/** One request on `session`; `body` is sent whole, with `trailers` after it when given. */
function request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: Buffer | string, trailers?: OutgoingHttpHeaders): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const endStream = body === undefined && trailers === undefined;
    const stream = session.request(headers, { endStream, waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    let head: IncomingHttpHeaders = {};
    let received: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (head = h));
    stream.on('trailers', (t) => (received = t));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks), trailers: received }));
    stream.on('error', reject);
    if (!endStream) stream.end(body);
  });
}

function connect(url: string, options: http2.SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, options);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

describe('downstream HTTP/2 (h2c, codec_type AUTO)', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  let session: ClientHttp2Session;

  before(async () => {
    upstream = await backend();
    gw = await startPortico(bootstrap(upstream.port, ''));
    session = await connect(gw.url());
  });
  after(async () => {
    session.close();
    await gw.close();
    await upstream.close();
  });

  it('proxies a GET to an HTTP/1.1 upstream, :authority becoming host', async () => {
    const res = await request(session, { ':path': '/get?x=1', 'x-custom': 'a' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok GET 0');
    assert.equal(res.headers.server, 'envoy');
    assert.equal(res.headers.connection, undefined);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.url, '/get?x=1');
    assert.equal(seen.headers.host, `127.0.0.1:${gw.port()}`);
    assert.equal(seen.headers['x-custom'], 'a');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_http2_total'), 1);
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_http2_active'), 1);
    assert.ok(stat(gw, 'http.ingress_http.downstream_rq_http2_total')! >= 1);
    assert.equal(stat(gw, 'http.ingress_http.downstream_rq_http1_total'), 0);
  });

  it('proxies a POST body', async () => {
    const res = await request(session, { ':method': 'POST', ':path': '/post', 'content-type': 'text/plain' }, 'x'.repeat(100_000));
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok POST 100000');
    assert.equal(upstream.requests.at(-1)!.body.toString(), 'x'.repeat(100_000));
  });

  it('carries many concurrent streams on one connection', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => request(session, { ':method': 'POST', ':path': `/many/${i}` }, 'y'.repeat(i))));
    results.forEach((res, i) => assert.equal(res.body.toString(), `ok POST ${i}`));
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_http2_total'), 1);
  });

  it('streams a large response under flow control to a slow reader', async () => {
    const stream = session.request({ ':path': '/big' });
    stream.pause();
    // The reader holds off: the proxy's writes back up, then resume when it reads.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const hash = createHash('sha256');
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      hash.update(chunk);
    });
    stream.resume();
    await new Promise((resolve) => stream.on('end', resolve));
    assert.equal(size, BIG);
    assert.equal(hash.digest('hex'), createHash('sha256').update(BIG_BODY).digest('hex'));
  });

  it('forwards request and response trailers', async () => {
    const res = await request(session, { ':method': 'POST', ':path': '/trailers' }, 'body', { 'x-request-trailer': 'sent' });
    assert.equal(res.body.toString(), 'hello world');
    assert.equal(upstream.requests.at(-1)!.trailers['x-request-trailer'], 'sent');
    assert.equal(res.trailers?.['x-checksum'], 'abc');
    assert.equal(res.trailers?.['x-echo'], 'sent');
  });

  it('answers local replies: a direct response and 404 for no route', async () => {
    const local = await request(session, { ':path': '/local' });
    assert.equal(local.status, 200);
    assert.equal(local.body.toString(), 'local');
    const missing = await request(session, { ':path': '/', ':authority': 'unknown.example' });
    assert.equal(missing.status, 404);
    assert.ok(stat(gw, 'http.ingress_http.no_route')! >= 1);
  });

  it('counts a client RST_STREAM mid-response as downstream_rq_rx_reset, the connection carrying on', async () => {
    const before = stat(gw, 'http.ingress_http.downstream_rq_rx_reset')!;
    const stream = session.request({ ':path': '/hang' });
    await new Promise((resolve) => stream.once('data', resolve));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await eventually(() => assert.equal(stat(gw, 'http.ingress_http.downstream_rq_rx_reset'), before + 1));
    assert.ok(stat(gw, 'http.ingress_http.http2.rx_reset')! >= 1);
    assert.equal((await request(session, { ':path': '/after-reset' })).status, 200);
  });

  it('closes a connection that resets streams as fast as it opens them (rapid reset) with ENHANCE_YOUR_CALM', async () => {
    const abuser = await connect(gw.url());
    const goaway = new Promise<number>((resolve) => abuser.once('goaway', resolve));
    abuser.on('error', () => {});
    // Each stream reaches the upstream and is reset once its response has started: work the proxy did for nothing.
    for (let i = 0; i < 120 && !abuser.destroyed; i++) {
      const stream = abuser.request({ ':path': '/hang' });
      stream.on('error', () => {});
      await new Promise((resolve) => {
        stream.once('data', resolve);
        stream.once('close', resolve);
      });
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    assert.equal(await goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await new Promise((resolve) => (abuser.destroyed ? resolve(undefined) : abuser.once('close', resolve)));
    // Other connections are served as before.
    assert.equal((await request(session, { ':path': '/after-abuse' })).status, 200);
  });

  it('still serves HTTP/1.1 clients', async () => {
    const res = await httpRequest(`${gw.url()}/h1`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok GET 0');
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_http1_total'), 1);
  });

  it('serves curl --http2-prior-knowledge', async (t) => {
    if (!/\bHTTP2\b/.test(execFileSync('curl', ['--version']).toString())) {
      t.skip('curl without HTTP/2');
      return;
    }
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--http2-prior-knowledge', '-w', ' %{http_version}', `${gw.url()}/curl`]);
    assert.equal(stdout, 'ok GET 0 2');
  });

  it('serves h2load: 400 requests, 10 streams at a time on each of 4 connections, all succeed', async (t) => {
    if (!hasCommand('h2load')) return t.skip(NGHTTP2_MISSING);
    const { stdout } = await promisify(execFile)('h2load', ['-n', '400', '-c', '4', '-m', '10', `${gw.url()}/h2load`]);
    assert.match(stdout, /requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored/);
    assert.match(stdout, /status codes: 400 2xx/);
  });

  it('serves nghttp, whose frame log shows the settings exchange and the answer', async (t) => {
    if (!hasCommand('nghttp')) return t.skip(NGHTTP2_MISSING);
    const { stdout } = await promisify(execFile)('nghttp', ['-nv', `${gw.url()}/nghttp`]);
    assert.match(stdout, /recv SETTINGS frame <length=\d+, flags=0x00, stream_id=0>/);
    assert.match(stdout, /recv SETTINGS frame <length=0, flags=0x01, stream_id=0>/, 'the server acknowledged our SETTINGS');
    // nghttp opens its request on the first stream after its PRIORITY placeholders (13 with nghttp2 1.52).
    const stream = /send HEADERS frame <[^>]*stream_id=(\d+)>/.exec(stdout)?.[1];
    assert.ok(stream, stdout);
    assert.match(stdout, new RegExp(`recv \\(stream_id=${stream}\\) :status: 200`));
    assert.match(stdout, new RegExp(`recv DATA frame <length=\\d+, flags=0x01, stream_id=${stream}>`));
  });

  it('sends GOAWAY when draining, the stream in flight finishing', async () => {
    const other = await connect(gw.url());
    const pending = request(other, { ':path': '/slow' });
    await eventually(() => assert.ok(upstream.requests.some((r) => r.url === '/slow')));
    const goaway = new Promise((resolve) => other.once('goaway', resolve));
    gw.plane.listeners[0]!.startDraining();
    await goaway;
    assert.equal((await pending).body.toString(), 'slow');
    await new Promise((resolve) => other.once('close', resolve));
  });
});

describe('downstream HTTP/2 protections', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  const port = () => Number(new URL(gw.url()).port);

  before(async () => {
    upstream = await backend();
    gw = await startPortico(bootstrap(upstream.port, 'codec_type: HTTP2\nmax_request_headers_kb: 8\nhttp2_protocol_options: { max_concurrent_streams: 10 }'));
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  async function stillServes(): Promise<void> {
    const session = await connect(gw.url());
    assert.equal((await request(session, { ':path': '/after' })).status, 200);
    session.close();
  }

  it('closes a connection flooding it with PINGs it does not read the answers to, counting outbound_control_flood', async () => {
    const pings = Buffer.concat(Array.from({ length: 20_000 }, () => frame(FrameType.Ping, 0, 0, Buffer.alloc(8))));
    const { frames, closed } = await exchange(port(), pings, { pauseMs: 1500 });
    assert.ok(closed, 'the connection is closed');
    assert.equal(goawayCode(frames), http2.constants.NGHTTP2_INTERNAL_ERROR);
    assert.ok(frames.filter((f) => f.type === FrameType.Ping).length < 20_000, 'not every PING was answered');
    await eventually(() => assert.equal(stat(gw, 'http.ingress_http.http2.outbound_control_flood'), 1));
    await stillServes();
  });

  it('closes a connection flooding it with SETTINGS the same way', async () => {
    const settings = Buffer.concat(Array.from({ length: 20_000 }, () => frame(FrameType.Settings, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]))));
    const { closed } = await exchange(port(), settings, { pauseMs: 1500 });
    assert.ok(closed);
    await eventually(() => assert.equal(stat(gw, 'http.ingress_http.http2.outbound_control_flood'), 2));
  });

  it('closes a connection sending endless CONTINUATION frames (CVE-2024-27316) before any request starts', async () => {
    const before = upstream.requests.length;
    const errors = stat(gw, 'http.ingress_http.downstream_cx_protocol_error') ?? 0;
    const flood = [frame(FrameType.Headers, 0, 1, requestBlock('/continuation'))];
    for (let i = 0; i < 5_000; i++) flood.push(frame(FrameType.Continuation, 0, 1, literalHeader(`x-${i}`, 'v')));
    const { frames, closed } = await exchange(port(), Buffer.concat(flood));
    assert.ok(closed);
    assert.ok(goawayCode(frames) !== undefined, 'a GOAWAY says why');
    assert.equal(upstream.requests.length, before, 'no request reached the upstream');
    await eventually(() => assert.equal(stat(gw, 'http.ingress_http.downstream_cx_protocol_error'), errors + 1));
    await stillServes();
  });

  it('answers 431 to a header list over max_request_headers_kb, the connection carrying on', async () => {
    const before = upstream.requests.length;
    const session = await connect(gw.url());
    const big = await request(session, { ':path': '/big-headers', 'x-big': 'a'.repeat(20_000) }).catch((err: Error) => err);
    if (big instanceof Error) assert.match(big.message, /ENHANCE_YOUR_CALM|NGHTTP2|stream/i);
    else assert.equal(big.status, 431);
    assert.equal(upstream.requests.length, before, 'the request did not reach the upstream');
    assert.equal((await request(session, { ':path': '/small' })).status, 200, 'the same connection still serves');
    session.close();
  });

  it('refuses streams beyond max_concurrent_streams with REFUSED_STREAM, serving the others', async () => {
    // 30 requests at once, each held 300 ms by the upstream: 10 are served, 20 refused, the connection stays.
    const streams = Buffer.concat(Array.from({ length: 30 }, (_, i) => frame(FrameType.Headers, END_HEADERS | END_STREAM, 2 * i + 1, requestBlock('/slow'))));
    const { frames, closed } = await exchange(port(), streams, { waitMs: 2000 });
    const refused = frames.filter((f) => f.type === FrameType.RstStream && f.payload.readUInt32BE(0) === http2.constants.NGHTTP2_REFUSED_STREAM);
    const answered = new Set(frames.filter((f) => f.type === FrameType.Headers).map((f) => f.stream));
    assert.deepEqual([refused.length, answered.size, closed, goawayCode(frames)], [20, 10, false, undefined]);
  });
});

describe('downstream HTTP/2 (codec_type HTTP2, http2_protocol_options)', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    upstream = await backend();
    gw = await startPortico(bootstrap(upstream.port, 'codec_type: HTTP2\nhttp2_protocol_options: { max_concurrent_streams: 2, initial_stream_window_size: 65535 }'));
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('serves h2c and announces its settings', async () => {
    const session = await connect(gw.url());
    await new Promise((resolve) => (session.remoteSettings.maxConcurrentStreams === 2 ? resolve(undefined) : session.once('remoteSettings', resolve)));
    assert.equal(session.remoteSettings.maxConcurrentStreams, 2);
    assert.equal(session.remoteSettings.initialWindowSize, 65535);
    const res = await request(session, { ':method': 'POST', ':path': '/x' }, 'z'.repeat(200_000));
    assert.equal(res.body.toString(), 'ok POST 200000');
    session.close();
  });

  it('answers a connection without the preface with GOAWAY, a protocol error', async () => {
    const res = await httpRequest(`${gw.url()}/h1`).catch((err: Error) => err);
    assert.ok(res instanceof Error);
    await eventually(() => assert.equal(stat(gw, 'http.ingress_http.downstream_cx_protocol_error'), 1));
  });

  it('refuses downstream connection_keepalive and accepts codec_type HTTP2', () => {
    const yaml = bootstrap(1, 'codec_type: HTTP2\nhttp2_protocol_options: { connection_keepalive: { interval: 1s, timeout: 1s } }');
    assert.deepEqual(
      checkYaml(yaml).map((e) => e.path),
      ['static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http2_protocol_options.connection_keepalive'],
    );
    assert.deepEqual(checkYaml(bootstrap(1, 'codec_type: HTTP2')), []);
    assert.equal(checkYaml(bootstrap(1, 'codec_type: HTTP3')).length, 1);
  });
});

describe('downstream HTTP/2 over TLS (ALPN)', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let pki: TestPki;
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    pki = makeTestPki([{ name: 'server', commonName: 'localhost', subjectAltNames: ['DNS:localhost'] }]);
    upstream = await backend();
    const tls = `    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${pki.file('server.crt')} }
              private_key: { filename: ${pki.file('server.key')} }
      filters:`;
    gw = await startPortico(bootstrap(upstream.port, '').replace('    - filters:', tls));
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('offers h2 and http/1.1 by default and serves h2', async () => {
    const session = await connect(`https://localhost:${gw.port()}`, { ca: readFileSync(pki.file('ca.crt')) });
    assert.equal(session.alpnProtocol, 'h2');
    const res = await request(session, { ':method': 'POST', ':path': '/tls' }, 'abc');
    assert.equal(res.body.toString(), 'ok POST 3');
    assert.equal(upstream.requests.at(-1)!.headers['x-forwarded-proto'], 'https');
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_ssl_total'), 1);
    assert.equal(stat(gw, 'http.ingress_http.downstream_cx_http2_total'), 1);
    session.close();
  });
});

/**
 * Every pairing of downstream and upstream protocol: HTTP/1.1 and HTTP/2, each in clear text (h2c with prior
 * knowledge) and over TLS (h2 by ALPN), on both sides: 16 paths through one codec-agnostic stream core. Each
 * carries a 256 KiB request body each way's flow control must move, and the answer names the protocol the
 * upstream heard.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { type RunningPortico, simpleBootstrap, startPortico, staticCluster, tlsCluster } from '../support/portico.js';

const BODY = Buffer.alloc(256 * 1024, 'portico');
const DIGEST = createHash('sha256').update(BODY).digest('hex').slice(0, 16);
const H2 = `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: {} }
  load_assignment:`;

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/** Answers `<HTTP version> <method> <body bytes> <body digest>`. */
const echo: Handler = (req, res) => {
  const hash = createHash('sha256');
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => {
    res.setHeader('content-type', 'text/plain');
    res.end(`${req.httpVersion} ${req.method} ${size} ${hash.digest('hex').slice(0, 16)}`);
  });
};

interface Closable {
  close(callback: () => void): unknown;
  listen(port: number, host: string, callback: () => void): unknown;
  address(): AddressInfo | string | null;
}

async function listen(server: Closable): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function h1Post(url: string, ca?: Buffer): Promise<{ status: number; body: string; protocol: string }> {
  return new Promise((resolve, reject) => {
    const req = (ca ? https : http).request(url, { method: 'POST', ca, headers: { 'content-length': BODY.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), protocol: res.httpVersion }));
    });
    req.on('error', reject);
    req.end(BODY);
  });
}

function h2Post(origin: string, path: string, ca?: Buffer): Promise<{ status: number; body: string; protocol: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, { ca });
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => (status = Number(headers[':status'])));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      session.close();
      resolve({ status, body: Buffer.concat(chunks).toString(), protocol: '2.0' });
    });
    stream.on('error', reject);
    stream.end(BODY);
  });
}

describe('protocol matrix: HTTP/1.1 and HTTP/2, clear and TLS, downstream × upstream', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let pki: TestPki;
  let ca: Buffer;
  const servers: Closable[] = [];
  let plain: RunningPortico;
  let secure: RunningPortico;

  before(async () => {
    pki = makeTestPki([{ name: 'server', commonName: 'localhost', subjectAltNames: ['DNS:localhost'] }]);
    ca = readFileSync(pki.file('ca.crt'));
    const tls = { cert: readFileSync(pki.file('server.crt')), key: readFileSync(pki.file('server.key')) };
    const upstreams: [string, Closable][] = [
      ['h1', http.createServer(echo)],
      ['h2c', http2.createServer(echo)],
      ['h1_tls', https.createServer({ ...tls, ALPNProtocols: ['http/1.1'] }, echo)],
      ['h2_tls', http2.createSecureServer(tls, echo)],
    ];
    const clusters: string[] = [];
    for (const [name, server] of upstreams) {
      servers.push(server);
      const port = await listen(server);
      const cluster = name.endsWith('_tls') ? tlsCluster(name, port) : staticCluster(name, port);
      clusters.push(name.startsWith('h2') ? cluster.replace('  load_assignment:', H2) : cluster);
    }
    const yaml = simpleBootstrap({
      routes: upstreams.map(([name]) => `- match: { prefix: "/${name}" }\n  route: { cluster: ${name} }`).join('\n'),
      clusters: clusters.join(''),
    });
    plain = await startPortico(yaml);
    const downstreamTls = `    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${pki.file('server.crt')} }
              private_key: { filename: ${pki.file('server.key')} }
      filters:`;
    secure = await startPortico(yaml.replace('    - filters:', downstreamTls));
  });
  after(async () => {
    await plain?.close();
    await secure?.close();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(() => resolve(undefined)))));
  });

  const downstreams: [string, (path: string) => ReturnType<typeof h1Post>][] = [
    ['HTTP/1.1', (path) => h1Post(`${plain.url()}${path}`)],
    ['h2c', (path) => h2Post(plain.url(), path)],
    ['HTTP/1.1 over TLS', (path) => h1Post(`https://localhost:${secure.port()}${path}`, ca)],
    ['h2 over TLS', (path) => h2Post(`https://localhost:${secure.port()}`, path, ca)],
  ];
  const upstreamNames: [string, string, string][] = [
    ['h1', 'HTTP/1.1', '1.1'],
    ['h2c', 'h2c', '2.0'],
    ['h1_tls', 'HTTP/1.1 over TLS', '1.1'],
    ['h2_tls', 'h2 over TLS', '2.0'],
  ];
  for (const [downstream, post] of downstreams) {
    it(`${downstream} to every upstream protocol`, async () => {
      for (const [path, upstream, version] of upstreamNames) {
        const res = await post(`/${path}`);
        assert.deepEqual(
          [res.status, res.body, res.protocol],
          [200, `${version} POST ${BODY.length} ${DIGEST}`, downstream.startsWith('HTTP/1.1') ? '1.1' : '2.0'],
          `${downstream} → ${upstream}`,
        );
      }
    });
  }
});

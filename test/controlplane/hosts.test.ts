/**
 * Hosts, TLSContexts, Secrets, TCPMappings and Listeners through `portico start`, over real sockets: HTTPS by SNI
 * (two Hosts, two certificates), the cleartext listener's insecure actions, client certificates required by a
 * TLSContext, TCPMappings in the clear and behind TLS, and Listener resources deciding which ports are open.
 * Certificates are made for the run by a throwaway CA.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

interface TlsAnswer {
  status: number;
  body: string;
  /** The common name of the certificate the gateway presented. */
  servedFor: string;
}

/** One HTTPS request to 127.0.0.1:port for `servername` (SNI and Host), trusting only the test CA. */
function httpsGet(port: number, servername: string, path: string, pki: TestPki, client?: string): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const identity = client ? { cert: readFileSync(pki.file(`${client}.crt`)), key: readFileSync(pki.file(`${client}.key`)) } : {};
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername, headers: { host: servername }, ca: readFileSync(pki.file('ca.crt')), agent: false, ...identity }, (res) => {
      const servedFor = String((res.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, servedFor }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes `data` on a connection and collects what comes back until the other side ends it. */
function roundTrip(socket: Socket, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.length >= data.length) socket.end();
    });
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    socket.write(data);
  });
}

function tcpEcho(port: number, data: string): Promise<string> {
  return roundTrip(connect({ host: '127.0.0.1', port }), data);
}

function tlsEcho(port: number, options: ConnectionOptions, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...options }, () => roundTrip(socket, data).then(resolve, reject));
    socket.on('error', reject);
  });
}

const secret = (name: string, pki: TestPki, leaf: string) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name },
  type: 'kubernetes.io/tls',
  data: { 'tls.crt': readFileSync(pki.file(`${leaf}.crt`)).toString('base64'), 'tls.key': readFileSync(pki.file(`${leaf}.key`)).toString('base64') },
});

describe('Hosts, TLS and TCPMappings through portico start', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let pki: TestPki;
  let upstream: RecordingUpstream;
  let echo: Server;
  let echoPort: number;
  let gw: TestGateway;
  // Ports of the HTTPS listener and of the two TCPMappings, chosen by the test.
  let [httpsPort, tcpPort, tlsTcpPort] = [0, 0, 0];

  before(async () => {
    pki = makeTestPki([
      { name: 'a', commonName: 'a.example.com', subjectAltNames: ['DNS:a.example.com'] },
      { name: 'b', commonName: 'b.example.com', subjectAltNames: ['DNS:b.example.com'] },
      { name: 'client', commonName: 'trusted-client' },
    ]);
    upstream = await startRecordingUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.headers.host} ${req.headers['x-forwarded-proto']} ${req.url}`);
    });
    echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as import('node:net').AddressInfo).port;
    [httpsPort, tcpPort, tlsTcpPort] = [await freePort(), await freePort(), await freePort()];
    gw = await startTestGateway({ httpsPort });
    const applied = await gw.api('/api/v1/apply', {
      method: 'POST',
      body: [
        secret('a-cert', pki, 'a'),
        secret('b-cert', pki, 'b'),
        { kind: 'Secret', metadata: { name: 'clients-ca' }, spec: { type: 'Opaque', stringData: { 'ca.crt': readFileSync(pki.file('ca.crt'), 'utf8') } } },
        { kind: 'Host', metadata: { name: 'a' }, spec: { hostname: 'a.example.com', tlsSecret: { name: 'a-cert' } } },
        { kind: 'Host', metadata: { name: 'b' }, spec: { hostname: 'b.example.com', tlsContext: { name: 'b-mtls' }, requestPolicy: { insecure: { action: 'Reject' } } } },
        { kind: 'TLSContext', metadata: { name: 'b-mtls' }, spec: { secret: 'b-cert', ca_secret: 'clients-ca', cert_required: true, min_tls_version: 'v1.2' } },
        { kind: 'Host', metadata: { name: 'plain' }, spec: { hostname: 'plain.example.com' } },
        { kind: 'Mapping', metadata: { name: 'app' }, spec: { prefix: '/app/', service: `127.0.0.1:${upstream.port}` } },
        { kind: 'TCPMapping', metadata: { name: 'echo' }, spec: { port: tcpPort, service: `127.0.0.1:${echoPort}` } },
        { kind: 'TCPMapping', metadata: { name: 'echo-tls' }, spec: { port: tlsTcpPort, host: 'a.example.com', service: `127.0.0.1:${echoPort}` } },
      ],
    });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    echo?.close();
  });

  it('serves each Host with its own certificate, chosen by SNI', async () => {
    const a = await httpsGet(httpsPort, 'a.example.com', '/app/x', pki);
    assert.deepEqual(a, { status: 200, body: 'a.example.com https /x', servedFor: 'a.example.com' });
    const b = await httpsGet(httpsPort, 'b.example.com', '/app/y', pki, 'client');
    assert.deepEqual(b, { status: 200, body: 'b.example.com https /y', servedFor: 'b.example.com' });
  });

  it('refuses a client without a certificate where the TLSContext requires one', async () => {
    await assert.rejects(httpsGet(httpsPort, 'b.example.com', '/app/y', pki), /certificate required/);
    const withOne = await httpsGet(httpsPort, 'b.example.com', '/app/y', pki, 'client');
    assert.equal(withOne.status, 200);
  });

  it('redirects cleartext requests of a Host with TLS to https, rejects or routes them as the Host says', async () => {
    const redirected = await gw.proxy('/app/x?q=1', { host: 'a.example.com' });
    assert.equal(redirected.status, 301);
    assert.equal(redirected.headers.location, 'https://a.example.com/app/x?q=1');
    const rejected = await gw.proxy('/app/x', { host: 'b.example.com' });
    assert.equal(rejected.status, 404);
    // A Host without TLS routes in the clear; a host name no Host has is not served.
    const plain = await gw.proxy('/app/z', { host: 'plain.example.com' });
    assert.deepEqual([plain.status, plain.body], [200, 'plain.example.com http /z']);
    assert.equal((await gw.proxy('/app/z', { host: 'other.example.com' })).status, 404);
  });

  it('proxies the bytes of a TCPMapping, in the clear and behind TLS terminated for its host', async () => {
    assert.equal(await tcpEcho(tcpPort, 'ping over tcp'), 'ping over tcp');
    const ca = readFileSync(pki.file('ca.crt'));
    assert.equal(await tlsEcho(tlsTcpPort, { servername: 'a.example.com', ca }, 'ping over tls'), 'ping over tls');
  });

  it('refuses an invalid Host at the API with its paths, and serves what it served', async () => {
    const version = gw.cp.current.version;
    const bad = await gw.api('/api/v1/hosts/broken', {
      method: 'PUT',
      body: { kind: 'Host', spec: { hostname: 'c.example.com', tlsSecret: { name: 'no-such-secret' }, requestPolicy: { insecure: { action: 'Upgrade' } } } },
    });
    assert.equal(bad.status, 400);
    assert.deepEqual(
      bad.json.errors.map((e: { path: string }) => e.path),
      ['spec.requestPolicy.insecure.action'],
    );
    const missing = await gw.api('/api/v1/hosts/broken', { method: 'PUT', body: { kind: 'Host', spec: { hostname: 'c.example.com', tlsSecret: { name: 'no-such-secret' } } } });
    assert.equal(missing.status, 400);
    assert.deepEqual(
      missing.json.errors.map((e: { resource: string; path: string }) => `${e.resource} ${e.path}`),
      ['Host/broken spec.tlsSecret.name'],
    );
    assert.equal(gw.cp.current.version, version);
    assert.equal((await httpsGet(httpsPort, 'a.example.com', '/app/x', pki)).status, 200);
  });

  it('opens the listeners Listener resources ask for, and only those', async () => {
    const [http, https] = [await freePort(), await freePort()];
    const listener = (name: string, port: number, protocol: string, more = {}) => ({ kind: 'Listener', metadata: { name }, spec: { port, protocol, securityModel: 'XFP', hostBinding: { namespace: { from: 'ALL' } }, ...more } });
    // Behind one trusted proxy (l7Depth 1), whose x-forwarded-proto says whether the client used TLS.
    const applied = await gw.api('/api/v1/apply', { method: 'POST', body: [listener('http', http, 'HTTP', { l7Depth: 1 }), listener('https', https, 'HTTPS')] });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
    assert.equal((await httpsGet(https, 'a.example.com', '/app/x', pki)).servedFor, 'a.example.com');
    const redirected = await httpRequest(`http://127.0.0.1:${http}/app/x`, { headers: { host: 'a.example.com' } });
    assert.equal(redirected.status, 301);
    const forwarded = await httpRequest(`http://127.0.0.1:${http}/app/x`, { headers: { host: 'a.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7' } });
    assert.deepEqual([forwarded.status, forwarded.body], [200, 'a.example.com https /x']);
    // The default listeners are gone; the TCPMappings keep theirs.
    await assert.rejects(httpRequest(`http://127.0.0.1:${gw.proxyPort}/app/x`, { headers: { host: 'plain.example.com' } }), { code: 'ECONNREFUSED' });
    await assert.rejects(httpsGet(httpsPort, 'a.example.com', '/app/x', pki), { code: 'ECONNREFUSED' });
    assert.equal(await tcpEcho(tcpPort, 'still here'), 'still here');
  });
});

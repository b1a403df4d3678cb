/**
 * TLS to upstreams (a cluster's UpstreamTlsContext): SNI, chain verification against trusted_ca, SAN matching,
 * client certificates, the 503 UF a failed handshake gives, the cluster's ssl.* stats, and config errors.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { ConfigValidationError } from '../../src/config/errors.js';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat } from '../support/portico.js';
import { httpRequest, startHelloService, type HelloService } from '../support/upstreams.js';

describe('upstream TLS', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let pki: TestPki;
  let otherPki: TestPki;
  let upstream: https.Server;
  let upstreamPort: number;
  let plain: HelloService;
  let gw: RunningPortico;

  /** A TLS cluster `name` towards `port`, with `context` as the UpstreamTlsContext's fields (YAML). */
  const tlsCluster = (name: string, port: number, context: string): string => `- name: ${name}
  connect_timeout: 1s
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
${context.replace(/^/gm, '      ')}
  load_assignment:
    cluster_name: ${name}
    endpoints:
    - lb_endpoints:
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } }
`;

  before(async () => {
    pki = makeTestPki([
      { name: 'backend', commonName: 'backend', subjectAltNames: ['DNS:backend.internal', 'URI:spiffe://portico.test/backend'] },
      { name: 'client', commonName: 'portico-client' },
    ]);
    otherPki = makeTestPki([], 'unrelated-ca');
    // The upstream asks for (but does not require) a client certificate and says what it saw.
    upstream = https.createServer(
      { cert: readFileSync(pki.file('backend.crt')), key: readFileSync(pki.file('backend.key')), ca: readFileSync(pki.file('ca.crt')), requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const socket = req.socket as TLSSocket & { servername?: string | false };
        const peer = socket.getPeerCertificate();
        res.end(JSON.stringify({ sni: socket.servername || null, client: peer?.subject?.CN ?? null, path: req.url }));
      },
    );
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamPort = (upstream.address() as AddressInfo).port;
    plain = await startHelloService(1);
    const ca = `{ filename: ${pki.file('ca.crt')} }`;
    const clusters = [
      tlsCluster('no_verify', upstreamPort, 'sni: backend.internal'),
      tlsCluster('verified', upstreamPort, `common_tls_context:\n  validation_context:\n    trusted_ca: ${ca}`),
      tlsCluster('wrong_ca', upstreamPort, `common_tls_context:\n  validation_context:\n    trusted_ca: { filename: ${otherPki.file('ca.crt')} }`),
      tlsCluster(
        'san_ok',
        upstreamPort,
        `common_tls_context:\n  validation_context:\n    trusted_ca: ${ca}\n    match_typed_subject_alt_names:\n    - { san_type: DNS, matcher: { exact: other.internal } }\n    - { san_type: URI, matcher: { prefix: "spiffe://portico.test/" } }`,
      ),
      tlsCluster('san_mismatch', upstreamPort, `common_tls_context:\n  validation_context:\n    trusted_ca: ${ca}\n    match_typed_subject_alt_names:\n    - { san_type: DNS, matcher: { exact: other.internal } }`),
      tlsCluster(
        'mutual',
        upstreamPort,
        `common_tls_context:\n  tls_certificates:\n  - certificate_chain: { filename: ${pki.file('client.crt')} }\n    private_key: { filename: ${pki.file('client.key')} }`,
      ),
      tlsCluster('plain_upstream', plain.port, 'sni: backend.internal'),
    ].join('');
    const routes = ['no_verify', 'verified', 'wrong_ca', 'san_ok', 'san_mismatch', 'mutual', 'plain_upstream']
      .map((name) => `- match: { prefix: "/${name}" }\n  route: { cluster: ${name} }`)
      .join('\n');
    gw = await startPortico(simpleBootstrap({ routes, clusters }));
  });

  after(async () => {
    await gw?.close();
    await plain?.close();
    upstream?.close();
  });

  const counter = (name: string): number => stat(gw, name) ?? 0;
  const get = async (path: string) => {
    const res = await httpRequest(`${gw.url()}${path}`);
    return { ...res, json: res.status === 200 ? JSON.parse(res.body) : undefined };
  };

  it('sends the configured SNI and verifies nothing without trusted_ca, as Envoy', async () => {
    const res = await get('/no_verify/x');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { sni: 'backend.internal', client: null, path: '/no_verify/x' });
    assert.ok(counter('cluster.no_verify.ssl.handshake') >= 1);
  });

  it('sends no SNI when none is configured and verifies the chain against trusted_ca', async () => {
    const res = await get('/verified');
    assert.equal(res.status, 200);
    assert.equal(res.json.sni, null);
  });

  it('fails with 503 UF when the chain does not verify, counting ssl.fail_verify_error', async () => {
    const res = await get('/wrong_ca');
    assert.equal(res.status, 503);
    assert.match(res.body, /^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure/);
    assert.equal(counter('cluster.wrong_ca.ssl.connection_error'), 1);
    assert.equal(counter('cluster.wrong_ca.ssl.fail_verify_error'), 1);
    assert.equal(counter('cluster.wrong_ca.upstream_cx_connect_fail'), 1);
  });

  it('accepts a certificate when one SAN matches one matcher of its type, and refuses it otherwise', async () => {
    assert.equal((await get('/san_ok')).status, 200);
    const res = await get('/san_mismatch');
    assert.equal(res.status, 503);
    assert.equal(counter('cluster.san_mismatch.ssl.fail_verify_san'), 1);
  });

  it('presents the client certificate of tls_certificates', async () => {
    const res = await get('/mutual');
    assert.equal(res.status, 200);
    assert.equal(res.json.client, 'portico-client');
  });

  it('fails with 503 when the upstream does not speak TLS, and keeps serving', async () => {
    const res = await get('/plain_upstream');
    assert.equal(res.status, 503);
    assert.ok(counter('cluster.plain_upstream.ssl.connection_error') >= 1);
    assert.equal((await get('/no_verify/again')).status, 200);
  });

  it('refuses SAN matching without trusted_ca, and a downstream context on a cluster, naming both paths', async () => {
    const bootstrap = simpleBootstrap({
      routes: '- match: { prefix: "/" }\n  route: { cluster: a }',
      clusters: [
        tlsCluster('a', 1, 'common_tls_context:\n  validation_context:\n    match_typed_subject_alt_names:\n    - { san_type: DNS, matcher: { exact: x } }'),
        tlsCluster('b', 1, 'require_client_certificate: true').replace('UpstreamTlsContext', 'DownstreamTlsContext'),
      ].join(''),
    });
    assert.deepEqual(checkYaml(bootstrap), [], 'the schema accepts both');
    await assert.rejects(startPortico(bootstrap), (err: ConfigValidationError) => {
      assert.deepEqual(
        err.errors.map((e) => e.path),
        ['static_resources.clusters[0].transport_socket.typed_config.common_tls_context.validation_context', 'static_resources.clusters[1].transport_socket.typed_config'],
      );
      return true;
    });
  });
});

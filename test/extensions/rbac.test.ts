/**
 * `envoy.filters.http.rbac` end to end: ALLOW and DENY policies on headers, paths and addresses (the client
 * address after `xff_num_trusted_hops`), shadow rules that only count, a route's RBACPerRoute, metadata principals
 * (fed by an earlier filter's dynamic metadata), mTLS clients by their certificate's SAN, and CEL refused by name.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const rbac = (body: string) => `- name: envoy.filters.http.rbac
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
${body
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}`;

describe('RBAC filter', () => {
  let app: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        hcmExtra: 'use_remote_address: true\nxff_num_trusted_hops: 1',
        httpFilters: [
          // A first RBAC filter only in shadow: its verdict lands in the dynamic metadata the second one reads.
          rbac(`shadow_rules_stat_prefix: probe_
shadow_rules:
  action: ALLOW
  policies:
    internal-network:
      permissions: [{ any: true }]
      principals: [{ remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } }]`),
          rbac(`rules:
  action: ALLOW
  policies:
    admins:
      permissions: [{ url_path: { path: { prefix: /admin } } }]
      principals: [{ header: { name: x-role, string_match: { exact: admin } } }]
    public:
      permissions:
      - and_rules:
          rules:
          - url_path: { path: { prefix: /public } }
          - not_rule: { header: { name: ":method", string_match: { exact: DELETE } } }
      principals: [{ any: true }]
    from-internal-network:
      permissions: [{ url_path: { path: { prefix: /internal } } }]
      principals:
      - metadata:
          filter: envoy.filters.http.rbac
          path: [{ key: probe_shadow_engine_result }]
          value: { string_match: { exact: allowed } }
    direct-loopback:
      permissions: [{ url_path: { path: { exact: /direct } } }]
      principals: [{ direct_remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }]
shadow_rules:
  action: DENY
  policies:
    no-curl:
      permissions: [{ any: true }]
      principals: [{ header: { name: user-agent, string_match: { prefix: curl } } }]`),
        ].join('\n'),
        routes: `- match: { prefix: "/open" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.rbac:
      "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute
- match: { prefix: "/" }
  route: { cluster: app }`,
        clusters: staticCluster('app', app.port),
      }),
    );
  });

  after(async () => {
    await gw.close();
    await app.close();
  });

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') => httpRequest(`${gw.url()}${path}`, { headers, method });

  it('ALLOW admits what a policy matches and refuses the rest with 403, counting both', async () => {
    assert.equal((await get('/admin/users', { 'x-role': 'admin' })).status, 200);
    const denied = await get('/admin/users', { 'x-role': 'guest' });
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'RBAC: access denied');
    assert.equal((await get('/public/page')).status, 200);
    assert.equal((await get('/public/page', {}, 'DELETE')).status, 403);
    assert.equal((await get('/direct')).status, 200);
    assert.equal(stat(gw, 'http.ingress_http.rbac.allowed'), 3);
    assert.equal(stat(gw, 'http.ingress_http.rbac.denied'), 2);
  });

  it('reads the client address through x-forwarded-for with trusted hops, via another filter\'s metadata', async () => {
    assert.equal((await get('/internal/report', { 'x-forwarded-for': '10.1.2.3' })).status, 200);
    assert.equal((await get('/internal/report', { 'x-forwarded-for': '192.0.2.7' })).status, 403);
    assert.ok(stat(gw, 'http.ingress_http.rbac.probe_shadow_allowed')! >= 1);
    assert.ok(stat(gw, 'http.ingress_http.rbac.probe_shadow_denied')! >= 1);
  });

  it('shadow rules only count: a request they would deny passes', async () => {
    const before = stat(gw, 'http.ingress_http.rbac.shadow_denied') ?? 0;
    assert.equal((await get('/public/x', { 'user-agent': 'curl/8' })).status, 200);
    assert.equal(stat(gw, 'http.ingress_http.rbac.shadow_denied'), before + 1);
  });

  it('an empty RBACPerRoute turns the rules off on its route', async () => {
    assert.equal((await get('/open/anything', { 'x-role': 'nobody' })).status, 200);
  });

  it('refuses CEL conditions and matcher trees by name', () => {
    const yaml = simpleBootstrap({
      httpFilters: rbac(`rules:
  policies:
    cel:
      permissions: [{ any: true }]
      principals: [{ any: true }]
      condition: { const_expr: { bool_value: true } }`),
      routes: '- match: { prefix: "/" }\n  route: { cluster: app }',
      clusters: staticCluster('app', 1),
    });
    const errors = checkYaml(yaml);
    assert.ok(errors.some((e) => e.code === 'unsupported_field' && e.path.endsWith('policies["cel"].condition')), JSON.stringify(errors));
  });
});

describe('RBAC authenticated principals (mTLS)', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let app: RecordingUpstream;
  let gw: RunningPortico;
  let file: (name: string) => string;

  before(async () => {
    ({ file } = makeTestPki([
      { name: 'server', commonName: 'localhost', subjectAltNames: ['DNS:localhost'] },
      { name: 'billing', commonName: 'billing', subjectAltNames: ['URI:spiffe://example.org/billing'] },
      { name: 'other', commonName: 'other', subjectAltNames: ['URI:spiffe://example.org/other'] },
    ]));
    app = await startRecordingUpstream();
    const yaml = simpleBootstrap({
      httpFilters: rbac(`rules:
  policies:
    billing-only:
      permissions: [{ any: true }]
      principals: [{ authenticated: { principal_name: { exact: "spiffe://example.org/billing" } } }]`),
      routes: '- match: { prefix: "/" }\n  route: { cluster: app }',
      clusters: staticCluster('app', app.port),
    }).replace(
      '    filter_chains:\n    - filters:',
      `    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${file('server.crt')} }
              private_key: { filename: ${file('server.key')} }
            validation_context:
              trusted_ca: { filename: ${file('ca.crt')} }
      filters:`,
    );
    gw = await startPortico(yaml);
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  const as = async (leaf: string) => {
    const dispatcher = new Agent({ connect: { ca: readFileSync(file('ca.crt')), cert: readFileSync(file(`${leaf}.crt`)), key: readFileSync(file(`${leaf}.key`)) } });
    try {
      const res = await request(`https://localhost:${gw.port()}/pay`, { dispatcher });
      await res.body.text();
      return res.statusCode;
    } finally {
      await dispatcher.close();
    }
  };

  it("admits the client whose certificate's URI SAN matches, refuses another", async () => {
    assert.equal(await as('billing'), 200);
    assert.equal(await as('other'), 403);
  });
});

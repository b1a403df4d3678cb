/**
 * `envoy.filters.http.rbac` end to end through real sockets: ALLOW and DENY policies on headers, paths and
 * addresses (with XFF trust), shadow rules and their metadata, the LOG action, per-route RBACPerRoute and
 * FilterConfig `disabled`, `authenticated` principals over mTLS, metadata principals, stats, and validation.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { HttpFilterRegistry, FilterHeadersStatus, type HttpFilterFactory, type ResponseHead } from '../../src/dataplane/http/filter.js';
import { DataPlane } from '../../src/dataplane/data-plane.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { RBAC_FILTER_FACTORY } from '../../src/extensions/filters/http/rbac/rbac-filter.js';
import { ROUTER_FILTER_FACTORY } from '../../src/extensions/filters/http/router/router-filter.js';
import { makeTestPki, hasOpenssl, OPENSSL_MISSING, type TestPki } from '../support/certificates.js';
import { checkYaml, httpListener, type Json, parseBootstrap, type RunningPortico, startPortico, stat } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const PER_ROUTE_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute';

const rbacFilter = (config: Json): Json => ({ name: 'envoy.filters.http.rbac', typed_config: { '@type': RBAC_TYPE, ...config } });
const perRoute = (rbac?: Json): Json => ({ 'envoy.filters.http.rbac': { '@type': PER_ROUTE_TYPE, ...(rbac === undefined ? {} : { rbac }) } });
const prefixPath = (prefix: string): Json => ({ url_path: { path: { prefix } } });
const header = (name: string, exact: string): Json => ({ header: { name, string_match: { exact } } });
const cidr = (address_prefix: string, prefix_len: number): Json => ({ address_prefix, prefix_len });

function cluster(port: number): Json {
  return {
    name: 'backend',
    connect_timeout: '1s',
    load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
}

const DETAILS_HEADER = [{ header: { key: 'x-details', value: '%RESPONSE_CODE_DETAILS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];

function routeConfig(routes: Json[]): Json {
  return { name: 'local', response_headers_to_add: DETAILS_HEADER, virtual_hosts: [{ name: 'app', domains: ['*'], routes }] };
}

const route = (prefix: string, extra: Json = {}): Json => ({ match: { prefix }, route: { cluster: 'backend' }, ...extra });

function bootstrap(listener: Json, upstreamPort: number): string {
  return JSON.stringify({ static_resources: { listeners: [listener], clusters: [cluster(upstreamPort)] } });
}

const P = 'http.ingress_http.rbac.';

describe('HTTP RBAC filter', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    upstream = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('upstream');
    });
    const rules = {
      action: 'ALLOW',
      policies: {
        'admin by header': { permissions: [prefixPath('/admin')], principals: [header('x-role', 'admin')] },
        public: {
          permissions: [{ and_rules: { rules: [header(':method', 'GET'), prefixPath('/public')] } }],
          principals: [{ any: true }],
        },
        office: { permissions: [{ url_path: { path: { exact: '/office' } } }], principals: [{ remote_ip: cidr('203.0.113.0', 24) }] },
        direct: {
          permissions: [{ or_rules: { rules: [prefixPath('/direct'), prefixPath('/also-direct')] } }],
          principals: [{ and_ids: { ids: [{ direct_remote_ip: cidr('127.0.0.0', 8) }, { not_id: { remote_ip: cidr('198.51.100.0', 24) } }] } }],
        },
        'not-get': { permissions: [{ not_rule: header(':method', 'GET') }, { destination_port: 1 }], principals: [{ source_ip: cidr('127.0.0.1', 32) }] },
      },
    };
    const shadow = { action: 'DENY', policies: { 'no-secrets': { permissions: [{ url_path: { path: { contains: 'secret' } } }], principals: [{ any: true }] } } };
    const routes = [
      route('/x-override', { typed_per_filter_config: perRoute({ rules: { action: 'DENY', policies: { blocked: { permissions: [{ any: true }], principals: [{ header: { name: 'x-block', present_match: true } }] } } } }) }),
      route('/x-open', { typed_per_filter_config: perRoute() }),
      route('/x-disabled', { typed_per_filter_config: { 'envoy.filters.http.rbac': { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true } } }),
      route('/'),
    ];
    gw = await startPortico(
      bootstrap(
        httpListener(routeConfig(routes), { use_remote_address: true, xff_num_trusted_hops: 1 }, [rbacFilter({ rules, shadow_rules: shadow, shadow_rules_stat_prefix: 'audit_' })]),
        upstream.port,
      ),
    );
  });

  after(async () => {
    await gw.close();
    await upstream.close();
  });

  async function deltas(run: () => Promise<void>): Promise<Record<string, number>> {
    const names = ['allowed', 'denied', 'audit_shadow_allowed', 'audit_shadow_denied'];
    const before = names.map((n) => stat(gw, P + n) ?? 0);
    await run();
    return Object.fromEntries(names.map((n, i) => [n, (stat(gw, P + n) ?? 0) - before[i]!]));
  }

  it('denies what no ALLOW policy matches with 403 and counts it', async () => {
    const d = await deltas(async () => {
      const res = await httpRequest(`${gw.url()}/admin/x`);
      assert.equal(res.status, 403);
      assert.equal(res.body, 'RBAC: access denied');
      assert.equal(res.headers['x-details'], 'rbac_access_denied_matched_policy[none]');
    });
    assert.deepEqual(d, { allowed: 0, denied: 1, audit_shadow_allowed: 1, audit_shadow_denied: 0 });
    assert.equal(upstream.requests.filter((r) => r.url === '/admin/x').length, 0);
  });

  it('allows on header and path permissions and principals', async () => {
    const d = await deltas(async () => {
      assert.equal((await httpRequest(`${gw.url()}/admin/x`, { headers: { 'x-role': 'admin' } })).status, 200);
      assert.equal((await httpRequest(`${gw.url()}/public/page?q=1`)).status, 200);
      // and_rules: GET only; `not-get` lets other methods through from 127.0.0.1.
      assert.equal((await httpRequest(`${gw.url()}/public/page`, { method: 'HEAD' })).status, 200);
      assert.equal((await httpRequest(`${gw.url()}/elsewhere`)).status, 403);
    });
    assert.deepEqual(d, { allowed: 3, denied: 1, audit_shadow_allowed: 4, audit_shadow_denied: 0 });
  });

  it('url_path ignores the query string', async () => {
    assert.equal((await httpRequest(`${gw.url()}/office2?x=/office`, { headers: { 'x-forwarded-for': '203.0.113.7' } })).status, 403);
  });

  it('remote_ip is the client address after XFF trust, direct_remote_ip the peer', async () => {
    // One trusted hop (the peer, with use_remote_address): the client is the last address it forwarded for.
    assert.equal((await httpRequest(`${gw.url()}/office`, { headers: { 'x-forwarded-for': '192.0.2.1, 203.0.113.7' } })).status, 200);
    assert.equal((await httpRequest(`${gw.url()}/office`, { headers: { 'x-forwarded-for': '203.0.113.7, 192.0.2.1' } })).status, 403);
    assert.equal((await httpRequest(`${gw.url()}/office`)).status, 403);
    // The peer is loopback whatever XFF says; not_id excludes a client in 198.51.100.0/24.
    assert.equal((await httpRequest(`${gw.url()}/direct`, { headers: { 'x-forwarded-for': '203.0.113.7, 192.0.2.1' } })).status, 200);
    assert.equal((await httpRequest(`${gw.url()}/also-direct`, { headers: { 'x-forwarded-for': '192.0.2.1, 198.51.100.3' } })).status, 403);
  });

  it('shadow rules count and never deny', async () => {
    const d = await deltas(async () => {
      assert.equal((await httpRequest(`${gw.url()}/public/secret`)).status, 200);
    });
    assert.deepEqual(d, { allowed: 1, denied: 0, audit_shadow_allowed: 0, audit_shadow_denied: 1 });
  });

  it('RBACPerRoute replaces the rules of a route; an empty one and a disabled filter let everything through', async () => {
    const d = await deltas(async () => {
      assert.equal((await httpRequest(`${gw.url()}/x-override`)).status, 200);
      const blocked = await httpRequest(`${gw.url()}/x-override`, { headers: { 'x-block': '1' } });
      assert.equal(blocked.status, 403);
      assert.equal(blocked.headers['x-details'], 'rbac_access_denied_matched_policy[blocked]');
      assert.equal((await httpRequest(`${gw.url()}/x-open`)).status, 200);
      assert.equal((await httpRequest(`${gw.url()}/x-disabled`)).status, 200);
    });
    // The route's rules have no shadow rules; the open and disabled routes count nothing.
    assert.deepEqual(d, { allowed: 1, denied: 1, audit_shadow_allowed: 0, audit_shadow_denied: 0 });
  });

  it('names a matched DENY policy with whitespace replaced', async () => {
    const local = await startPortico(
      bootstrap(
        httpListener(routeConfig([route('/')]), {}, [
          rbacFilter({ rules: { action: 'DENY', policies: { 'no admin': { permissions: [prefixPath('/admin')], principals: [{ any: true }] } } }, rules_stat_prefix: 'edge.' }),
        ]),
        upstream.port,
      ),
    );
    try {
      const res = await httpRequest(`${local.url()}/admin`);
      assert.equal(res.status, 403);
      assert.equal(res.headers['x-details'], 'rbac_access_denied_matched_policy[no_admin]');
      assert.equal((await httpRequest(`${local.url()}/user`)).status, 200);
      assert.equal(stat(local, `${P}edge.denied`), 1);
      assert.equal(stat(local, `${P}edge.allowed`), 1);
    } finally {
      await local.close();
    }
  });
});

/**
 * A test-only filter before RBAC: it puts the `x-claims` request header (JSON) into dynamic metadata where
 * jwt_authn puts a JWT payload, and returns all dynamic metadata in the `x-metadata` response header.
 */
const METADATA_FILTER: HttpFilterFactory = {
  name: 'test.metadata',
  configType: 'test.Metadata',
  createFilterConfig() {
    return {
      createFilter: (callbacks) => ({
        decodeHeaders(head) {
          const claims = head.headers['x-claims'];
          if (typeof claims === 'string') callbacks.info.dynamicMetadata = { 'envoy.filters.http.jwt_authn': { payload: JSON.parse(claims) as unknown } };
          return FilterHeadersStatus.Continue;
        },
        encodeHeaders(response: ResponseHead) {
          response.headers['x-metadata'] = JSON.stringify(callbacks.info.dynamicMetadata ?? {});
          return FilterHeadersStatus.Continue;
        },
      }),
      release() {},
    };
  },
};

describe('HTTP RBAC filter and dynamic metadata', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    upstream = await startRecordingUpstream((_req, res) => void res.end('ok'));
    const rules = {
      action: 'ALLOW',
      policies: {
        admins: {
          permissions: [{ any: true }],
          principals: [
            {
              metadata: {
                filter: 'envoy.filters.http.jwt_authn',
                path: [{ key: 'payload' }, { key: 'groups' }],
                value: { list_match: { one_of: { string_match: { exact: 'admin' } } } },
              },
            },
          ],
        },
      },
    };
    const shadow = { action: 'ALLOW', policies: { 'level-two': { permissions: [{ any: true }], principals: [{ metadata: { filter: 'envoy.filters.http.jwt_authn', path: [{ key: 'payload' }, { key: 'level' }], value: { double_match: { exact: 2 } } } }] } } };
    const logged = { rules: { action: 'LOG', policies: { mine: { permissions: [prefixPath('/log/mine')], principals: [{ any: true }] } } } };
    const listener = httpListener(routeConfig([route('/log', { typed_per_filter_config: perRoute(logged) }), route('/')]), {}, [
      { name: 'metadata', typed_config: { '@type': RBAC_TYPE } },
      rbacFilter({ rules, shadow_rules: shadow }),
    ]);
    // The configuration checks know only Portico's extensions: the test filter replaces a placeholder once parsed.
    const parsed = parseBootstrap(bootstrap(listener, upstream.port));
    const hcm = parsed.static_resources!.listeners![0]!.filter_chains![0]!.filters![0]!.typed_config!.value as { http_filters: { name: string; typed_config: unknown }[] };
    hcm.http_filters[0] = { name: 'metadata', typed_config: { type_url: 'type.googleapis.com/test.Metadata', value: {} } };
    const plane = await DataPlane.start(parsed, createLogger('error'), {
      ...EXTENSIONS,
      httpFilters: new HttpFilterRegistry([METADATA_FILTER, RBAC_FILTER_FACTORY, ROUTER_FILTER_FACTORY]),
    });
    const port = (): number => plane.listeners[0]!.boundAddress()!.port;
    gw = { plane, port, url: () => `http://127.0.0.1:${port()}`, close: () => plane.close(0) };
  });

  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('matches a metadata principal on the JWT payload and records the shadow result', async () => {
    const admin = await httpRequest(`${gw.url()}/x`, { headers: { 'x-claims': JSON.stringify({ groups: ['dev', 'admin'], level: 2 }) } });
    assert.equal(admin.status, 200);
    assert.deepEqual(JSON.parse(admin.headers['x-metadata'] as string)['envoy.filters.http.rbac'], {
      shadow_effective_policy_id: 'level-two',
      shadow_engine_result: 'allowed',
    });
    const dev = await httpRequest(`${gw.url()}/x`, { headers: { 'x-claims': JSON.stringify({ groups: ['dev'], level: 1 }) } });
    assert.equal(dev.status, 403);
    assert.deepEqual(JSON.parse(dev.headers['x-metadata'] as string)['envoy.filters.http.rbac'], { shadow_engine_result: 'denied' });
    assert.equal((await httpRequest(`${gw.url()}/x`)).status, 403);
  });

  it('LOG allows and sets access_log_hint by whether a policy matched', async () => {
    const mine = await httpRequest(`${gw.url()}/log/mine`);
    assert.equal(mine.status, 200);
    assert.deepEqual(JSON.parse(mine.headers['x-metadata'] as string)['envoy.common'], { access_log_hint: true });
    const other = await httpRequest(`${gw.url()}/log/other`);
    assert.equal(other.status, 200);
    assert.deepEqual(JSON.parse(other.headers['x-metadata'] as string)['envoy.common'], { access_log_hint: false });
  });
});

function tlsGet(port: number, path: string, pki: TestPki, client: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, headers, servername: 'localhost', ca: readFileSync(pki.file('ca.crt')), cert: readFileSync(pki.file(`${client}.crt`)), key: readFileSync(pki.file(`${client}.key`)), agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP RBAC filter with mTLS', { skip: hasOpenssl ? false : OPENSSL_MISSING }, () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  let pki: TestPki;

  before(async () => {
    pki = makeTestPki([
      { name: 'server', commonName: 'localhost', subjectAltNames: ['DNS:localhost'] },
      { name: 'web', commonName: 'web', subjectAltNames: ['URI:spiffe://example.org/ns/web', 'DNS:web.internal'] },
      { name: 'dns', commonName: 'dns', subjectAltNames: ['DNS:batch.internal'] },
      { name: 'plain', commonName: 'plain' },
    ]);
    upstream = await startRecordingUpstream((_req, res) => void res.end('ok'));
    const principal = (m: Json): Json => ({ authenticated: { principal_name: m } });
    const rules = {
      action: 'ALLOW',
      policies: {
        spiffe: { permissions: [prefixPath('/web')], principals: [principal({ prefix: 'spiffe://example.org/' })] },
        dns: { permissions: [prefixPath('/batch')], principals: [principal({ exact: 'batch.internal' })] },
        subject: { permissions: [prefixPath('/plain')], principals: [principal({ exact: 'CN=plain' })] },
        'any-cert': { permissions: [prefixPath('/any')], principals: [{ authenticated: {} }] },
        sni: { permissions: [{ requested_server_name: { exact: 'localhost' } }], principals: [header('x-sni', 'yes')] },
      },
    };
    const listener = httpListener(routeConfig([route('/')]), {}, [rbacFilter({ rules })]);
    const chain = (listener.filter_chains as Json[])[0]!;
    chain.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
        require_client_certificate: true,
        common_tls_context: {
          tls_certificates: [{ certificate_chain: { filename: pki.file('server.crt') }, private_key: { filename: pki.file('server.key') } }],
          validation_context: { trusted_ca: { filename: pki.file('ca.crt') } },
        },
      },
    };
    gw = await startPortico(bootstrap(listener, upstream.port));
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('matches the peer certificate URI SAN, then DNS SAN, then subject; and the SNI', async () => {
    const port = gw.port();
    assert.equal(await tlsGet(port, '/web', pki, 'web'), 200);
    assert.equal(await tlsGet(port, '/web', pki, 'dns'), 403);
    assert.equal(await tlsGet(port, '/batch', pki, 'dns'), 200);
    assert.equal(await tlsGet(port, '/batch', pki, 'web'), 403);
    assert.equal(await tlsGet(port, '/plain', pki, 'plain'), 200);
    // Another certificate does not match by its subject.
    assert.equal(await tlsGet(port, '/plain', pki, 'web'), 403);
    assert.equal(await tlsGet(port, '/any', pki, 'plain'), 200);
    // requested_server_name is the SNI the client sent.
    assert.equal(await tlsGet(port, '/sni', pki, 'plain', { 'x-sni': 'yes' }), 200);
    assert.equal(await tlsGet(port, '/sni', pki, 'plain'), 403);
  });
});

describe('HTTP RBAC configuration', () => {
  const yaml = (rbac: string): string => `
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config: { name: local, virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }] }
          http_filters:
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": ${RBAC_TYPE}
${rbac}
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`;

  it('accepts the supported fields', () => {
    assert.deepEqual(checkYaml(yaml('              rules: { action: DENY, policies: { p: { permissions: [{ destination_port_range: { start: 1, end: 2 } }], principals: [{ any: true }] } } }')), []);
  });

  it('refuses CEL conditions and the matcher tree by name', () => {
    const errors = checkYaml(
      yaml(`              rules: { policies: { p: { permissions: [{ any: true }], principals: [{ any: true }], condition: { const_expr: { bool_value: true } } } } }
              matcher: {}
              shadow_matcher: {}`),
    );
    const found = errors.map((e) => [e.code, e.path]);
    for (const field of ['condition', 'matcher', 'shadow_matcher']) {
      assert.ok(
        found.some(([code, path]) => code === 'unsupported_field' && path!.endsWith(field)),
        `${field} not refused: ${JSON.stringify(errors)}`,
      );
    }
  });
});

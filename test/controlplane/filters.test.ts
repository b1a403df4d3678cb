/**
 * Edge Stack's Filter (JWT, APIKey) and FilterPolicy: validation with every problem and its path, how rules bind
 * to Mappings (first match wins, a rule matching part of a Mapping is refused), the translation the data plane
 * accepts, and `portico start` guarding Mappings with tokens signed by keys made at test time and served by a
 * real JWKS server, and with API keys.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { ConfigError } from '../../src/config/errors.js';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { checkTranslation, translate } from '../../src/controlplane/translate.js';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { createLogger } from '../../src/util/logger.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

function problems(kind: string, spec: unknown): string[] {
  const errors: ConfigError[] = [];
  parseResource({ kind, metadata: { name: 'x' }, spec }, errors);
  return errors.map((e) => `${e.path} ${e.code}`);
}

function resource(kind: string, name: string, spec: object): Resource {
  const errors: ConfigError[] = [];
  const r = parseResource({ kind, metadata: { name }, spec }, errors);
  assert.deepEqual(errors, []);
  return r!;
}

const OPTIONS = { listenerAddress: '127.0.0.1', listenerPort: 8080 };
const JWKS = JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', alg: 'HS256', kid: 'k1' }] });
const mapping = (name: string, spec: object) => resource('Mapping', name, { service: 'backend:80', ...spec });
const keys = resource('Filter', 'keys', { APIKey: { keys: [{ client: 'ci', key: 'k-123' }] } });
const jwt = resource('Filter', 'jwt', { JWT: { jwks: JWKS } });

function bindingErrors(resources: Resource[]): string[] {
  return translate(resources, OPTIONS).errors.map((e) => `${e.resource} ${e.path}: ${e.message}`);
}

describe('Filter and FilterPolicy validation', () => {
  it('refuses bad Filters with every problem and its path', () => {
    assert.deepEqual(problems('Filter', { JWT: { jwksURI: 'ftp://keys', insecureTLS: true, injectRequestHeaders: [{ name: 'x-sub', value: '{{.token.Header.kid}}' }], colour: 1 } }), [
      'spec.JWT.insecureTLS unsupported_field',
      'spec.JWT.jwksURI invalid_value',
      'spec.JWT.injectRequestHeaders[0].value invalid_value',
      'spec.JWT.colour unknown_field',
    ]);
    assert.deepEqual(problems('Filter', { JWT: {} }), ['spec.JWT missing_required']);
    assert.deepEqual(problems('Filter', { JWT: { jwks: '{"keys": 1}', jwksURI: 'http://a/k' } }), ['spec.JWT.jwks invalid_value', 'spec.JWT oneof_conflict']);
    assert.deepEqual(problems('Filter', { OAuth2: {} }), ['spec.OAuth2 unsupported_field']);
    assert.deepEqual(problems('Filter', { JWT: { jwks: JWKS }, APIKey: { keys: [] } }), ['spec oneof_conflict']);
    assert.deepEqual(problems('Filter', {}), ['spec missing_required']);
    assert.deepEqual(
      problems('Filter', { APIKey: { httpHeader: 'bad header', keys: [{ client: 'a', key: 'same' }, { client: 'b', key: 'same' }, { secretName: 's' }] } }),
      ['spec.APIKey.httpHeader invalid_value', 'spec.APIKey.keys[2].client missing_required', 'spec.APIKey.keys[2].key missing_required', 'spec.APIKey.keys[1] invalid_value', 'spec.APIKey.keys[2].secretName unsupported_field'],
    );
  });

  it('refuses bad FilterPolicies with every problem and its path', () => {
    assert.deepEqual(problems('FilterPolicy', {}), ['spec.rules missing_required']);
    assert.deepEqual(problems('FilterPolicy', { rules: [{ path: 'api/*', host: 'a b', filters: [{ name: 'jwt', ifRequestHeader: { name: 'x' } }, {}] }] }), [
      'spec.rules[0].path invalid_value',
      'spec.rules[0].host invalid_value',
      'spec.rules[0].filters[0].ifRequestHeader unsupported_field',
      'spec.rules[0].filters[1].name missing_required',
    ]);
  });
});

describe('FilterPolicy binding', () => {
  it('binds the first matching rule to each Mapping; filters: [] exempts', () => {
    const policy = resource('FilterPolicy', 'policy', {
      rules: [
        { path: '/api/public/*', filters: [] },
        { host: 'admin.example.com', path: '/admin/*', filters: [{ name: 'keys' }, { name: 'jwt' }] },
        { path: '/api/*', filters: [{ name: 'jwt' }] },
      ],
    });
    const t = translate(
      [
        policy,
        jwt,
        keys,
        mapping('api', { prefix: '/api/' }),
        mapping('public', { prefix: '/api/public/' }),
        mapping('admin', { prefix: '/admin/', host: 'admin.example.com' }),
        mapping('other', { prefix: '/other/', host: 'www.example.com' }),
      ],
      OPTIONS,
    );
    assert.deepEqual(t.errors, []);
    assert.deepEqual(Object.fromEntries(t.filtersOf), { 'Mapping/api': ['Filter/jwt'], 'Mapping/admin': ['Filter/jwt', 'Filter/keys'] });
    const hcm = (t.listeners[0] as any).filter_chains[0].filters[0].typed_config;
    assert.deepEqual(
      hcm.http_filters.map((f: { name: string; disabled?: boolean }) => `${f.name} ${f.disabled ?? false}`),
      ['jwt_authn/jwt true', 'api_key_auth/keys true', 'envoy.filters.http.router false'],
    );
    const routes = hcm.route_config.virtual_hosts[0].routes as { name: string; typed_per_filter_config?: object }[];
    const enabled = Object.fromEntries(routes.map((r) => [r.name, Object.keys(r.typed_per_filter_config ?? {})]));
    assert.deepEqual(enabled, { public: [], api: ['jwt_authn/jwt'], admin: ['jwt_authn/jwt', 'api_key_auth/keys'], other: [] });
    assert.deepEqual(checkTranslation(t, createLogger('off')).errors, []);
  });

  it('refuses a rule that matches only part of a Mapping, and a rule naming no Filter', () => {
    // admin.example.com/api/x goes to Mapping/api, which the rule would guard for that host only.
    assert.match(
      bindingErrors([resource('FilterPolicy', 'policy', { rules: [{ host: 'admin.example.com', filters: [{ name: 'jwt' }] }] }), jwt, mapping('api', { prefix: '/api/' }), mapping('admin', { prefix: '/', host: 'admin.example.com' })])[0]!,
      /host "admin.example.com" matches only some of the hosts of Mapping\/api/,
    );
    const rules = (...r: object[]) => resource('FilterPolicy', 'policy', { rules: r });
    assert.deepEqual(bindingErrors([rules({ path: '/admin/*', filters: [{ name: 'jwt' }] }), jwt, mapping('root', { prefix: '/' })]), [
      'FilterPolicy/policy spec.rules[0]: path "/admin/*" matches only some of the paths of Mapping/root (prefix "/"): a rule applies to whole Mappings, so write a Mapping for what the rule guards, or widen the rule',
    ]);
    assert.match(bindingErrors([rules({ host: 'a.example.com', filters: [{ name: 'jwt' }] }), jwt, mapping('any', { prefix: '/' })])[0]!, /host "a.example.com" matches only some of the hosts of Mapping\/any/);
    assert.deepEqual(bindingErrors([rules({ host: 'a.example.com', filters: [{ name: 'jwt' }] }), jwt, mapping('b', { prefix: '/', hostname: 'b.example.com' })]), []);
    assert.deepEqual(bindingErrors([rules({ path: '/v2/*', filters: [{ name: 'jwt' }] }), jwt, mapping('v1', { prefix: '/v1/' })]), [], 'disjoint: not an error');
    assert.deepEqual(bindingErrors([rules({ filters: [{ name: 'nope' }] }), mapping('m', { prefix: '/' })]), ['FilterPolicy/policy spec.rules[0].filters[0].name: no Filter named "nope"']);
  });

  it('names the Filter behind what the data plane refuses in its filter', () => {
    const keyless = resource('Filter', 'keyless', { JWT: { jwks: '{"keys": []}' } });
    const t = translate([keyless, resource('FilterPolicy', 'p', { rules: [{ filters: [{ name: 'keyless' }] }] }), mapping('m', { prefix: '/' })], OPTIONS);
    const errors = checkTranslation(t, createLogger('off')).errors;
    assert.deepEqual(errors.map((e) => `${e.resource} ${e.path}`), ['Filter/keyless spec.JWT']);
    assert.match(errors[0]!.message, /no usable signing key/);
  });

  it('fetches a remote JWKS through a cluster of its host, over TLS for https', () => {
    const remote = resource('Filter', 'remote', { JWT: { jwksURI: 'https://login.example.com/.well-known/jwks.json', issuer: 'https://login.example.com/', audience: 'api' } });
    const t = translate([remote, resource('FilterPolicy', 'p', { rules: [{ filters: [{ name: 'remote' }] }] }), mapping('m', { prefix: '/' })], OPTIONS);
    const cluster = t.clusters.find((c) => c.name === 'cluster_jwks_https_login_example_com_443') as any;
    assert.ok(cluster, 'a cluster for the JWKS host');
    assert.equal(cluster.transport_socket.typed_config.sni, 'login.example.com');
    const filter = (t.listeners[0] as any).filter_chains[0].filters[0].typed_config.http_filters[0].typed_config;
    assert.deepEqual(filter.providers.remote.remote_jwks.http_uri, { uri: 'https://login.example.com/.well-known/jwks.json', cluster: cluster.name, timeout: '5s' });
    assert.deepEqual([filter.providers.remote.issuer, filter.providers.remote.audiences], ['https://login.example.com/', ['api']]);
    assert.deepEqual(checkTranslation(t, createLogger('off')).errors, []);
  });
});

describe('portico start with Filters and a FilterPolicy', () => {
  let echo: EchoServer;
  let jwksServer: RecordingUpstream;
  let gw: TestGateway;
  let sign: (claims: Record<string, unknown>, expiresIn?: string) => Promise<string>;
  let forge: string;
  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'test', alg: 'ES256' };
    sign = (claims, expiresIn = '5m') =>
      new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'test' }).setIssuer('https://issuer.test/').setAudience('portico-api').setIssuedAt().setExpirationTime(expiresIn).sign(privateKey);
    const other = await generateKeyPair('ES256');
    forge = await new SignJWT({ sub: 'mallory' }).setProtectedHeader({ alg: 'ES256', kid: 'test' }).setIssuer('https://issuer.test/').setAudience('portico-api').setExpirationTime('5m').sign(other.privateKey);
    jwksServer = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    echo = await startEchoServer({ name: 'backend' });
    gw = await startTestGateway();
    const service = `127.0.0.1:${echo.port}`;
    const yaml = [
      `kind: Mapping\nmetadata: { name: api }\nspec: { prefix: /api/, service: "${service}" }\n`,
      `kind: Mapping\nmetadata: { name: health }\nspec: { prefix: /api/health/, service: "${service}" }\n`,
      `kind: Mapping\nmetadata: { name: partners }\nspec: { prefix: /partners/, service: "${service}" }\n`,
      `kind: Filter\nmetadata: { name: login }\nspec:\n  JWT:\n    jwksURI: "http://127.0.0.1:${jwksServer.port}/jwks.json"\n    issuer: "https://issuer.test/"\n    audience: portico-api\n    injectRequestHeaders: [{ name: x-user, value: "{{ .token.Claims.sub }}" }]\n`,
      `kind: Filter\nmetadata: { name: partner-keys }\nspec:\n  APIKey:\n    httpHeader: x-partner-key\n    keys: [{ client: acme, key: acme-secret-1 }]\n    clientHeader: x-partner\n    hideCredentials: true\n`,
      `kind: FilterPolicy\nmetadata: { name: edge }\nspec:\n  rules:\n  - { path: "/api/health/*", filters: null }\n  - { path: "/api/*", filters: [{ name: login }] }\n  - { path: "/partners/*", filters: [{ name: partner-keys }] }\n`,
    ].join('---\n');
    const applied = await gw.api('/api/v1/apply', { method: 'POST', body: yaml });
    assert.equal(applied.status, 200, applied.body);
  });
  after(async () => {
    await gw?.close();
    await jwksServer?.close();
    await echo?.close();
  });

  it('asks JWT-guarded Mappings for a valid token and forwards its claims', async () => {
    const missing = await gw.proxy('/api/orders');
    assert.deepEqual([missing.status, missing.body], [401, 'Jwt is missing']);
    assert.match(String(missing.headers['www-authenticate']), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/api\/orders"$/);
    const token = await sign({ sub: 'alice' });
    const allowed = await gw.proxy('/api/orders', { authorization: `Bearer ${token}` });
    assert.equal(allowed.status, 200);
    const upstream = JSON.parse(allowed.body);
    assert.equal(upstream.headers['x-user'], 'alice');
    assert.equal(upstream.headers.authorization, `Bearer ${token}`, 'the token is forwarded');
    assert.equal((await gw.proxy('/api/orders', { authorization: `Bearer ${forge}` })).status, 401, 'signed by another key');
    assert.equal((await gw.proxy('/api/orders', { authorization: `Bearer ${await sign({ sub: 'bob' }, '-1m')}` })).body, 'Jwt is expired');
    assert.equal((await gw.proxy('/api/health/live')).status, 200, 'filters: null exempts the health Mapping');
    assert.ok(jwksServer.requests.length >= 1, 'the JWKS was fetched from its server');
  });

  it('asks API-key-guarded Mappings for a known key, names the client and hides the key', async () => {
    assert.deepEqual([(await gw.proxy('/partners/x')).status, (await gw.proxy('/partners/x', { 'x-partner-key': 'wrong' })).status], [401, 401]);
    const ok = await gw.proxy('/partners/x', { 'x-partner-key': 'acme-secret-1' });
    assert.equal(ok.status, 200);
    const upstream = JSON.parse(ok.body);
    assert.deepEqual([upstream.headers['x-partner'], upstream.headers['x-partner-key']], ['acme', undefined]);
    assert.equal((await gw.proxy('/partners/x', { authorization: `Bearer ${await sign({ sub: 'alice' })}` })).status, 401, 'a token is not a key');
  });

  it('lists what each Mapping runs, and refuses a policy leaving part of a Mapping unguarded while the old one serves', async () => {
    const bindings = await gw.api('/api/v1/bindings');
    assert.deepEqual(bindings.json.mappings, { api: ['Filter/login'], partners: ['Filter/partner-keys'] });
    const bad = await gw.api('/api/v1/filterpolicies/edge', { method: 'PUT', body: { kind: 'FilterPolicy', metadata: { name: 'edge' }, spec: { rules: [{ path: '/api/orders/*', filters: [{ name: 'login' }] }] } } });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json.errors.map((e: { resource: string; path: string }) => `${e.resource} ${e.path}`), ['FilterPolicy/edge spec.rules[0]']);
    assert.equal((await gw.proxy('/api/orders')).status, 401, 'the old policy still guards');
    // Taking the Filter away takes the guard away.
    assert.equal((await gw.api('/api/v1/filterpolicies/edge', { method: 'DELETE' })).status, 200);
    assert.equal((await gw.proxy('/api/orders')).status, 200);
    assert.deepEqual((await gw.api('/api/v1/bindings')).json.mappings, {});
  });
});

/**
 * `envoy.filters.http.jwt_authn` end to end, with keys made at test time by jose: every algorithm family, every
 * kind of bad token refused and counted, token locations, requirements and their combinations, per-route
 * requirements, a JWKS served by a real HTTP server (fetched at start, fetched again for a new kid, kept while the
 * server is down), and the payload in dynamic metadata feeding an RBAC policy.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, generateSecret, type JWK, SignJWT } from 'jose';
import type { ConfigValidationError } from '../../src/config/errors.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';
import { freePort } from '../support/ports.js';
import { eventually } from '../support/wait.js';

interface Signer {
  jwk: JWK;
  sign(claims?: Record<string, unknown>, options?: { exp?: number; nbf?: number; header?: Record<string, unknown> }): Promise<string>;
}

async function signer(alg: string, kid: string, issuer: string): Promise<Signer> {
  const { publicKey, privateKey } = alg.startsWith('HS') ? await generateSecret(alg, { extractable: true }).then((k) => ({ publicKey: k, privateKey: k })) : await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg };
  return {
    jwk,
    sign: (claims = {}, options = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, aud: 'api', sub: 'alice', exp: options.exp ?? now + 600, ...(options.nbf !== undefined ? { nbf: options.nbf } : {}), ...claims })
        .setProtectedHeader({ alg, kid, ...options.header })
        .sign(privateKey);
    },
  };
}

const jwks = (...signers: Signer[]) => JSON.stringify({ keys: signers.map((s) => s.jwk) });
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('jwt_authn filter', () => {
  let app: RecordingUpstream;
  let jwksServer: http.Server;
  let served: string;
  let gw: RunningPortico;
  let es: Signer;
  let rs: Signer;
  let ps: Signer;
  let ed: Signer;
  let hs: Signer;
  let other: Signer;
  let remote: Signer;
  let rotated: Signer;
  /** The other algorithms, one signer each. */
  let more: Signer[];

  before(async () => {
    [es, rs, ps, ed, hs, other, remote, rotated] = await Promise.all([
      signer('ES256', 'es', 'https://issuer.example'),
      signer('RS256', 'rs', 'https://issuer.example'),
      signer('PS256', 'ps', 'https://issuer.example'),
      signer('EdDSA', 'ed', 'https://issuer.example'),
      signer('HS256', 'hs', 'https://issuer.example'),
      signer('ES256', 'es', 'https://issuer.example'),
      signer('ES384', 'r1', 'https://remote.example'),
      signer('ES384', 'r2', 'https://remote.example'),
    ]);
    more = await Promise.all(['RS384', 'RS512', 'PS384', 'PS512', 'ES384', 'ES512', 'HS384', 'HS512'].map((alg) => signer(alg, alg, 'https://issuer.example')));
    served = jwks(remote);
    jwksServer = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(served);
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    app = await startRecordingUpstream();
    // Nothing listens there: the provider's fetches fail.
    const deadPort = await freePort();
    const local = JSON.stringify(jwks(es, rs, ps, ed, hs, ...more));
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: `- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      local:
        issuer: https://issuer.example
        audiences: [api]
        local_jwks: { inline_string: ${local} }
        forward_payload_header: x-jwt-payload
        payload_in_metadata: jwt
        header_in_metadata: jwt_header
        claim_to_headers: [{ header_name: x-sub, claim_name: sub }, { header_name: x-tenant, claim_name: org.tenant }]
      custom:
        issuer: https://issuer.example
        local_jwks: { inline_string: ${local} }
        from_headers: [{ name: x-token, value_prefix: "Token " }]
        from_params: [jwt]
        from_cookies: [session]
        forward: true
      cached:
        issuer: https://issuer.example
        local_jwks: { inline_string: ${local} }
        clock_skew_seconds: 0
        jwt_cache_config: { jwt_cache_size: 10 }
      remote:
        issuer: https://remote.example
        remote_jwks:
          http_uri: { uri: "http://jwks.internal/.well-known/jwks.json", cluster: jwks, timeout: 2s }
          cache_duration: 600s
      shortlived:
        issuer: https://remote.example
        remote_jwks:
          http_uri: { uri: "http://jwks.internal/.well-known/jwks.json", cluster: jwks, timeout: 2s }
          cache_duration: 0.1s
      unreachable:
        issuer: https://unreachable.example
        remote_jwks:
          http_uri: { uri: "http://jwks.down/keys", cluster: jwks-down, timeout: 1s }
          async_fetch: { failed_refetch_duration: 60s }
    bypass_cors_preflight: true
    requirement_map:
      remote-only: { provider_name: remote }
    rules:
    - match: { prefix: /open }
    - match: { prefix: /shortlived }
      requires: { provider_name: shortlived }
    - match: { prefix: /unreachable }
      requires: { provider_name: unreachable }
    - match: { prefix: /custom }
      requires: { provider_name: custom }
    - match: { prefix: /any }
      requires: { requires_any: { requirements: [{ provider_name: custom }, { provider_name: remote }] } }
    - match: { prefix: /all }
      requires: { requires_all: { requirements: [{ provider_name: local }, { provider_name: custom }] } }
    - match: { prefix: /optional }
      requires: { requires_any: { requirements: [{ provider_name: local }, { allow_missing: {} }] } }
    - match: { prefix: /lenient }
      requires: { requires_any: { requirements: [{ provider_name: local }, { allow_missing_or_failed: {} }] } }
    - match: { prefix: /cached }
      requires: { provider_name: cached }
    - match: { prefix: /other-audience }
      requires: { provider_and_audiences: { provider_name: local, audiences: [other] } }
    - match: { prefix: / }
      requires: { provider_name: local }
- name: envoy.filters.http.rbac
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
    rules:
      action: DENY
      policies:
        no-mallory:
          permissions: [{ any: true }]
          principals:
          - metadata: { filter: envoy.filters.http.jwt_authn, path: [{ key: jwt }, { key: sub }], value: { string_match: { exact: mallory } } }
          - metadata: { filter: envoy.filters.http.jwt_authn, path: [{ key: jwt_header }, { key: typ }], value: { string_match: { exact: blocked } } }`,
        routes: `- match: { prefix: /remote-route }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.jwt_authn:
      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig
      requirement_name: remote-only
- match: { prefix: /no-auth }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.jwt_authn:
      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig
      disabled: true
- match: { prefix: / }
  route: { cluster: app }`,
        clusters: `${staticCluster('app', app.port)}${staticCluster('jwks', (jwksServer.address() as AddressInfo).port)}${staticCluster('jwks-down', deadPort)}`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    await app.close();
    jwksServer.closeAllConnections();
    await new Promise((resolve) => jwksServer.close(resolve));
  });

  const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
    httpRequest(`${gw.url()}${path}`, { headers: token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers } });

  it('admits a valid token of each algorithm, forwarding the payload and claims and stripping the token', async () => {
    const allowed = stat(gw, 'http.ingress_http.jwt_authn.allowed') ?? 0;
    for (const s of [...more, es, rs, ps, ed, hs]) {
      const res = await get('/api', await s.sign({ org: { tenant: 'acme' } }));
      assert.equal(res.status, 200, s.jwk.alg);
    }
    const seen = app.requests.at(-1)!.headers;
    assert.equal(seen.authorization, undefined);
    assert.equal(seen['x-sub'], 'alice');
    assert.equal(seen['x-tenant'], 'acme');
    assert.equal(JSON.parse(Buffer.from(String(seen['x-jwt-payload']), 'base64url').toString()).sub, 'alice');
    assert.equal(stat(gw, 'http.ingress_http.jwt_authn.allowed'), allowed + 5 + more.length);
  });

  it('refuses a request without a token: 401 Jwt is missing, with the realm', async () => {
    const res = await get('/api/items?x=1');
    assert.equal(res.status, 401);
    assert.equal(res.body, 'Jwt is missing');
    assert.equal(res.headers['www-authenticate'], `Bearer realm="http://127.0.0.1:${gw.port()}/api/items"`);
  });

  it('refuses every kind of bad token with 401 (403 for an audience), and counts them', async () => {
    const denied = stat(gw, 'http.ingress_http.jwt_authn.denied') ?? 0;
    const now = Math.floor(Date.now() / 1000);
    const good = await es.sign();
    const [h, p, sig] = good.split('.') as [string, string, string];
    const cases: Array<[string, string, number, string]> = [
      ['two parts', `${h}.${p}`, 401, 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ['bad base64 payload', `${h}.@@@.${sig}`, 401, 'Jwt payload is an invalid Base64url encoded'],
      ['bad base64 header', `*.${p}.${sig}`, 401, 'Jwt header is an invalid Base64url encoded'],
      ['payload not JSON', `${h}.${Buffer.from('{oops').toString('base64url')}.${sig}`, 401, 'Jwt payload is an invalid JSON'],
      ['bad base64 signature', `${h}.${p}.!!`, 401, 'Jwt signature is an invalid Base64url encoded'],
      ['alg none', `${b64({ alg: 'none' })}.${p}.`, 401, 'Jwt header [alg] is not supported'],
      ['no alg', `${b64({ kid: 'es' })}.${p}.${sig}`, 401, 'Jwt header [alg] field is required and must be a string'],
      ['unknown kid', await es.sign({}, { header: { kid: 'nobody' } }), 401, "Jwks doesn't have key to match kid or alg from Jwt"],
      ['wrong key', await other.sign(), 401, 'Jwt verification fails'],
      ['tampered payload', `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'root' })}.${sig}`, 401, 'Jwt verification fails'],
      ['nbf in the future', await es.sign({}, { nbf: now + 3600 }), 401, 'Jwt not yet valid'],
      ['expired', await es.sign({}, { exp: now - 3600 }), 401, 'Jwt is expired'],
      ['other issuer', await es.sign({ iss: 'https://elsewhere' }), 401, 'Jwt issuer is not configured'],
      ['other audience', await es.sign({ aud: 'billing' }), 403, 'Audiences in Jwt are not allowed'],
    ];
    for (const [name, token, status, body] of cases) {
      const res = await get('/api', token);
      assert.equal(res.status, status, name);
      assert.equal(res.body, body, name);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"$/, name);
    }
    assert.equal(stat(gw, 'http.ingress_http.jwt_authn.denied'), denied + cases.length);
  });

  it('finds tokens in a custom header with its prefix, a query parameter and a cookie', async () => {
    const token = await es.sign();
    assert.equal((await get('/custom', undefined, { 'x-token': `Token ${token}` })).status, 200);
    assert.equal(app.requests.at(-1)!.headers['x-token'], `Token ${token}`, 'forward: true keeps the token');
    assert.equal((await get(`/custom?jwt=${token}`)).status, 200);
    assert.equal((await get('/custom', undefined, { cookie: `a=b; session=${token}` })).status, 200);
    assert.equal((await get('/custom', token)).status, 401, 'Authorization is not one of its locations');
  });

  it('combines requirements: any, all, allow_missing, allow_missing_or_failed, provider_and_audiences; rules without requirement', async () => {
    const token = await es.sign();
    assert.equal((await get('/open')).status, 200);
    assert.equal((await get('/any', undefined, { 'x-token': `Token ${token}` })).status, 200);
    assert.equal((await get('/any')).status, 401);
    assert.equal((await get('/all', token, { 'x-token': `Token ${token}` })).status, 200);
    assert.equal((await get('/all', token)).status, 401);
    assert.equal((await get('/optional')).status, 200);
    assert.equal((await get('/optional', await other.sign())).status, 401);
    assert.equal((await get('/lenient', await other.sign())).status, 200);
    assert.equal((await get('/other-audience', token)).status, 403);
    assert.equal((await get('/other-audience', await es.sign({ aud: 'other' }))).status, 200);
  });

  it('a route picks its requirement by name, or turns the filter off', async () => {
    assert.equal((await get('/no-auth')).status, 200);
    assert.equal((await get('/remote-route', await es.sign())).status, 401);
  });

  it('remote JWKS: fetched at start, fetched again for a new kid, kept while the server is down', async () => {
    const token = await remote.sign();
    await eventually(async () => assert.equal((await get('/remote-route', token)).status, 200));
    const fetched = stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_success')!;
    // Both remote providers fetched their keys before any request asked.
    assert.ok(fetched >= 2);
    served = jwks(remote, rotated);
    // A kid the cached JWKS does not have makes the filter fetch it again (at most once a second).
    const fresh = await rotated.sign();
    await eventually(async () => assert.equal((await get('/remote-route', fresh)).status, 200));
    assert.ok(stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_success')! > fetched);
    jwksServer.closeAllConnections();
    await new Promise((resolve) => jwksServer.close(resolve));
    assert.equal((await get('/remote-route', await rotated.sign())).status, 200);
  });

  it('jwt_cache_config: a cached token still expires', async () => {
    const token = await es.sign({}, { exp: Math.floor(Date.now() / 1000) + 2 });
    assert.equal((await get('/cached', token)).status, 200);
    assert.equal((await get('/cached', token)).status, 200);
    await eventually(async () => assert.equal((await get('/cached', token)).body, 'Jwt is expired'), 5000);
  });

  it('puts the payload and the header in dynamic metadata, where an RBAC policy reads them', async () => {
    assert.equal((await get('/api', await es.sign({ sub: 'mallory' }))).status, 403);
    assert.equal((await get('/api', await es.sign({}, { header: { typ: 'blocked' } }))).status, 403);
    assert.equal((await get('/api', await es.sign({ sub: 'bob' }))).status, 200);
  });

  it('lets CORS preflights through without a token, and counts them', async () => {
    const bypassed = stat(gw, 'http.ingress_http.jwt_authn.cors_preflight_bypassed') ?? 0;
    const preflight = await httpRequest(`${gw.url()}/api`, { method: 'OPTIONS', headers: { origin: 'https://web.example', 'access-control-request-method': 'GET' } });
    assert.equal(preflight.status, 200);
    assert.equal(stat(gw, 'http.ingress_http.jwt_authn.cors_preflight_bypassed'), bypassed + 1);
    assert.equal((await httpRequest(`${gw.url()}/api`, { method: 'OPTIONS' })).status, 401, 'a plain OPTIONS is no preflight');
  });

  it('a JWKS host that never answered: the fetch is counted as failed and the token refused', async () => {
    const token = (await signer('ES256', 'u', 'https://unreachable.example')).sign();
    await eventually(() => assert.ok((stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_failed') ?? 0) >= 1));
    // Past the default failed_refetch_duration (1 s): the configured 60 s keeps this request from fetching again.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const res = await get('/unreachable', await token);
    assert.equal(res.status, 401);
    assert.equal(res.body, 'Jwks remote fetch is failed');
    assert.equal(stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_failed'), 1);
  });

  it('keys past their cache_duration while the JWKS server is down: the refetch fails, the cached keys still serve', async () => {
    // The JWKS server was stopped by the remote JWKS test; shortlived's keys (0.1 s) expired long since.
    const failed = stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_failed')!;
    assert.equal((await get('/shortlived', await remote.sign())).status, 200);
    assert.equal(stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_failed'), failed + 1);
  });
});

describe('jwt_authn async_fetch: listeners wait for the first JWKS fetch unless fast_listener', () => {
  let app: RecordingUpstream;
  let slowJwks: http.Server;
  let key: Signer;
  /** JWKS responses sent so far; each one is sent 400 ms after its request. */
  let answered = 0;

  before(async () => {
    key = await signer('ES256', 'k', 'https://slow.example');
    slowJwks = http.createServer((_req, res) => {
      setTimeout(() => {
        answered++;
        res.end(jwks(key));
      }, 400);
    });
    await new Promise<void>((resolve) => slowJwks.listen(0, '127.0.0.1', resolve));
    app = await startRecordingUpstream();
  });

  after(async () => {
    await app.close();
    slowJwks.closeAllConnections();
    await new Promise((resolve) => slowJwks.close(resolve));
  });

  const start = (asyncFetch: string) =>
    startPortico(
      simpleBootstrap({
        httpFilters: `- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      slow:
        issuer: https://slow.example
        remote_jwks:
          http_uri: { uri: "http://jwks.slow/keys", cluster: jwks, timeout: 5s }
          async_fetch: ${asyncFetch}
    rules:
    - match: { prefix: / }
      requires: { provider_name: slow }`,
        routes: '- match: { prefix: / }\n  route: { cluster: app }',
        clusters: `${staticCluster('app', app.port)}${staticCluster('jwks', (slowJwks.address() as AddressInfo).port)}`,
      }),
    );

  for (const [asyncFetch, waits] of [['{}', true], ['{ fast_listener: true }', false]] as const) {
    it(`async_fetch: ${asyncFetch}`, async () => {
      const before = answered;
      const gw = await start(asyncFetch);
      try {
        assert.equal(answered - before, waits ? 1 : 0, waits ? 'serving only once the JWKS came' : 'serving before the JWKS came');
        // Either way the first request is decided with the keys (it waits for the fetch in flight if need be).
        const res = await httpRequest(`${gw.url()}/`, { headers: { authorization: `Bearer ${await key.sign()}` } });
        assert.equal(res.status, 200);
        assert.equal(stat(gw, 'http.ingress_http.jwt_authn.jwks_fetch_success'), 1);
      } finally {
        await gw.close();
      }
    });
  }
});

describe('jwt_authn configuration', () => {
  const bootstrap = (providers: string, rest = '') =>
    simpleBootstrap({
      httpFilters: `- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
${providers}${rest}`,
      routes: '- match: { prefix: / }\n  route: { cluster: app }',
      clusters: staticCluster('app', 1),
    });
  const relative = (errors: { path: string }[]) => errors.map((e) => e.path.replace(/.*http_filters\[0\]\.typed_config\./, '')).sort();

  it('validate refuses a provider without keys and fields it does not implement, by path', () => {
    const errors = checkYaml(bootstrap(`      nokeys: { issuer: a }
      retry: { remote_jwks: { http_uri: { uri: "http://k/", cluster: app, timeout: 1s }, retry_policy: {} } }`));
    assert.deepEqual(relative(errors), ['providers["nokeys"]', 'providers["retry"].remote_jwks.retry_policy']);
  });

  it('refuses a bad JWKS, a bad URI and names that lead nowhere, every one with its path', async () => {
    const yaml = bootstrap(
      `      badjwks: { local_jwks: { inline_string: "{\\"keys\\": []}" } }
      badurl: { remote_jwks: { http_uri: { uri: "not a uri", cluster: app, timeout: 1s } } }`,
      `
    requirement_map:
      r: { provider_name: missing }
    rules:
    - match: { prefix: / }
      requirement_name: absent`,
    );
    await assert.rejects(startPortico(yaml), (err: ConfigValidationError) => {
      assert.deepEqual(relative(err.errors), [
        'providers["badjwks"].local_jwks',
        'providers["badurl"].remote_jwks.http_uri.uri',
        'requirement_map["r"].provider_name',
        'rules[0].requirement_name',
      ]);
      return true;
    });
  });
});

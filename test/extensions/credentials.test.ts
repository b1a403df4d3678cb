/**
 * `envoy.filters.http.basic_auth` and `envoy.filters.http.api_key_auth` end to end: missing, wrong and right
 * credentials, every key source, hidden keys, the client's name forwarded, per-route users and allowed clients,
 * malformed Authorization headers, and htpasswd problems refused with their place.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ConfigValidationError } from '../../src/config/errors.js';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const sha = (password: string) => `{SHA}${createHash('sha1').update(password).digest('base64')}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('basic_auth filter', () => {
  let app: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    app = await startRecordingUpstream();
    const file = join(mkdtempSync(join(tmpdir(), 'portico-htpasswd-')), 'users');
    writeFileSync(file, `# operators\nops:${sha('s3cret')}\n`);
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: `- name: envoy.filters.http.basic_auth
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth
    users: { inline_string: "alice:${sha('wonderland')}\\nbob:${sha('builder')}" }
    forward_username_header: x-user`,
        routes: `- match: { prefix: "/ops" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.basic_auth:
      "@type": type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute
      users: { filename: ${file} }
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

  const get = (path: string, authorization?: string) => httpRequest(`${gw.url()}${path}`, { headers: authorization === undefined ? {} : { authorization } });

  it('admits a known user with the right password and forwards the name', async () => {
    assert.equal((await get('/x', basic('alice', 'wonderland'))).status, 200);
    assert.equal(app.requests.at(-1)!.headers['x-user'], 'alice');
  });

  it('refuses missing, wrong and malformed credentials with 401 and the realm', async () => {
    const missing = await get('/x');
    assert.equal(missing.status, 401);
    assert.equal(missing.body, 'User authentication failed. Missing username and password.');
    assert.equal(missing.headers['www-authenticate'], `Basic realm="http://127.0.0.1:${gw.port()}"`);
    for (const authorization of [basic('alice', 'nope'), basic('carol', 'wonderland'), 'Basic !!!not-base64', `Basic ${Buffer.from('nocolon').toString('base64')}`]) {
      const res = await get('/x', authorization);
      assert.equal(res.status, 401, authorization);
      assert.equal(res.body, 'User authentication failed. Invalid username/password combination.');
    }
    assert.equal(stat(gw, 'http.ingress_http.basic_auth.denied'), 5);
  });

  it("a route's users (from a file) replace the filter's", async () => {
    assert.equal((await get('/ops', basic('ops', 's3cret'))).status, 200);
    assert.equal((await get('/ops', basic('alice', 'wonderland'))).status, 401);
  });

  it('refuses htpasswd lines it cannot use, naming each', async () => {
    const yaml = simpleBootstrap({
      httpFilters: `- name: envoy.filters.http.basic_auth
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth
    users: { inline_string: "good:${sha('x')}\\nbcrypt:$2y$05$abcdefghijklmnopqrstuv\\nnocolon" }`,
      routes: '- match: { prefix: "/" }\n  route: { cluster: app }',
      clusters: staticCluster('app', 1),
    });
    await assert.rejects(startPortico(yaml), (err: ConfigValidationError) => {
      assert.deepEqual(
        err.errors.map((e) => e.path.replace(/.*typed_config\./, '')),
        ['users line 2', 'users line 3'],
      );
      return true;
    });
  });
});

describe('api_key_auth filter', () => {
  let app: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: `- name: envoy.filters.http.api_key_auth
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
    credentials: [{ key: key-alpha, client: alpha }, { key: key-beta, client: beta }]
    key_sources: [{ header: x-api-key }, { query: api_key }, { cookie: apikey }]
    forwarding: { header: x-client, hide_credentials: true }`,
        routes: `- match: { prefix: "/beta-only" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.api_key_auth:
      "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute
      allowed_clients: [beta]
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

  it('finds the key in a header, a query parameter or a cookie, forwards the client and hides the key', async () => {
    assert.equal((await httpRequest(`${gw.url()}/a`, { headers: { 'x-api-key': 'key-alpha' } })).status, 200);
    let seen = app.requests.at(-1)!;
    assert.equal(seen.headers['x-client'], 'alpha');
    assert.equal(seen.headers['x-api-key'], undefined);
    assert.equal((await httpRequest(`${gw.url()}/a?x=1&api_key=key-beta&y=2`)).status, 200);
    seen = app.requests.at(-1)!;
    assert.equal(seen.url, '/a?x=1&y=2');
    assert.equal(seen.headers['x-client'], 'beta');
    assert.equal((await httpRequest(`${gw.url()}/a`, { headers: { cookie: 'theme=dark; apikey=key-alpha' } })).status, 200);
    assert.equal(app.requests.at(-1)!.headers.cookie, 'theme=dark');
  });

  it('refuses a missing or unknown key with 401, and a client the route does not allow with 403', async () => {
    const missing = await httpRequest(`${gw.url()}/a`);
    assert.equal(missing.status, 401);
    assert.equal(missing.body, 'Client authentication failed.');
    assert.equal((await httpRequest(`${gw.url()}/a`, { headers: { 'x-api-key': 'key-gamma' } })).status, 401);
    const forbidden = await httpRequest(`${gw.url()}/beta-only`, { headers: { 'x-api-key': 'key-alpha' } });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body, 'Client is forbidden.');
    assert.equal((await httpRequest(`${gw.url()}/beta-only`, { headers: { 'x-api-key': 'key-beta' } })).status, 200);
    assert.equal(stat(gw, 'http.ingress_http.api_key_auth.unauthorized'), 2);
    assert.equal(stat(gw, 'http.ingress_http.api_key_auth.forbidden'), 1);
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { hasOpenssl, makeTestPki, OPENSSL_MISSING } from '../support/certificates.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { httpRequest } from '../support/upstreams.js';

describe('control plane API', () => {
  let echo: EchoServer;
  let gw: TestGateway;
  let service: string;
  before(async () => {
    echo = await startEchoServer({ name: 'usersvc' });
    service = `127.0.0.1:${echo.port}`;
    gw = await startTestGateway();
  });
  after(async () => {
    await gw?.close();
    await echo?.close();
  });

  describe("the seed's endpoints", () => {
    it('reports per-mapping health and upstream outcomes at /ambassador/stats', async () => {
      const post = await gw.api('/ambassador/mapping/statsmapping', { method: 'POST', body: { prefix: '/statsuser/', service } });
      assert.equal(post.json.ok, true);
      for (let i = 0; i < 3; i++) assert.equal((await gw.proxy('/statsuser/ok')).status, 200);
      assert.equal((await gw.proxy('/statsuser/status/404')).status, 404);
      assert.equal((await gw.proxy('/statsuser/status/503')).status, 503);
      const stats = await gw.api('/ambassador/stats');
      assert.equal(stats.status, 200);
      const mapping = stats.json.mappings.statsmapping;
      assert.deepEqual(
        [mapping.healthy_members, mapping.total_members, mapping.healthy_percent, mapping.upstream_ok, mapping.upstream_4xx, mapping.upstream_5xx, mapping.upstream_bad],
        [1, 1, 100, 3, 1, 1, 2],
      );
      assert.deepEqual(stats.json.services.statsmapping, mapping);
      assert.equal(typeof stats.json.last_update, 'number');
      assert.equal(typeof stats.json.envoy.cluster, 'object');
      await gw.api('/ambassador/mapping/statsmapping', { method: 'DELETE' });
    });

    it('answers the health check with the envelope', async () => {
      const res = await gw.api('/ambassador/health');
      assert.equal(res.status, 200);
      assert.equal(res.json.ok, true);
      assert.equal(res.json.msg, 'ambassador health check OK');
      assert.equal(typeof res.json.hostname, 'string');
      assert.equal(typeof res.json.version, 'string');
    });

    it('serves a POSTed mapping as soon as the POST has answered, with the default rewrite', async () => {
      const post = await gw.api('/ambassador/mapping/usermapping', { method: 'POST', body: { prefix: '/user/', service } });
      assert.equal(post.status, 200);
      assert.deepEqual([post.json.ok, post.json.name], [true, 'usermapping']);
      const res = await gw.proxy('/user/health');
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).path, '/health');
      const get = await gw.api('/ambassador/mapping/usermapping');
      assert.deepEqual([get.json.ok, get.json.prefix, get.json.service, get.json.rewrite], [true, '/user/', service, '/']);
    });

    it('lists mappings by name with count, and upserts', async () => {
      await gw.api('/ambassador/mapping/gruemapping', { method: 'POST', body: { prefix: '/grue/', service, rewrite: '/grue/', extra: 'ignored' } });
      await gw.api('/ambassador/mapping/gruemapping', { method: 'POST', body: { prefix: '/grue/', service, rewrite: '/grue/' } });
      const list = await gw.api('/ambassador/mappings');
      assert.equal(list.json.count, 2);
      assert.deepEqual(list.json.mappings.map((m: { name: string }) => m.name), ['gruemapping', 'usermapping']);
      assert.deepEqual(list.json.services, list.json.mappings);
      assert.equal(JSON.parse((await gw.proxy('/grue/health')).body).path, '/grue/health');
    });

    it('answers mistakes with ok: false and HTTP 200, as the original', async () => {
      const missing = await gw.api('/ambassador/mapping/x', { method: 'POST', body: { prefix: '/x/' } });
      assert.deepEqual([missing.status, missing.json.ok, missing.json.error], [200, false, 'Required fields missing: service']);
      const both = await gw.api('/ambassador/mapping/x', { method: 'POST', body: {} });
      assert.equal(both.json.error, 'Required fields missing: prefix service');
      const invalid = await gw.api('/ambassador/mapping/x', { method: 'POST', body: '{"prefix": ', headers: { 'content-type': 'application/json' } });
      assert.equal(invalid.json.ok, false);
      assert.match(invalid.json.error, /^invalid JSON: /);
      const bad = await gw.api('/ambassador/mapping/x', { method: 'POST', body: { prefix: 'x/', service: 'a b' } });
      assert.equal(bad.json.ok, false);
      assert.deepEqual(bad.json.errors.map((e: { path: string }) => e.path), ['spec.service', 'spec.prefix']);
      const unknown = await gw.api('/ambassador/mapping/nothing');
      assert.deepEqual([unknown.status, unknown.json.ok], [200, false]);
      assert.match(unknown.json.error, /^nothing: GET failed/);
    });

    it('serves an https:// service over TLS', { skip: hasOpenssl ? false : OPENSSL_MISSING }, async () => {
      const pki = makeTestPki([{ name: 'upstream', commonName: 'upstream' }]);
      const upstream = https.createServer({ cert: readFileSync(pki.file('upstream.crt')), key: readFileSync(pki.file('upstream.key')) }, (req, res) =>
        res.end(`tls ${req.url}`),
      );
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
      try {
        const port = (upstream.address() as AddressInfo).port;
        const post = await gw.api('/ambassador/mapping/secure', { method: 'POST', body: { prefix: '/secure/', service: `https://127.0.0.1:${port}` } });
        assert.equal(post.json.ok, true, post.body);
        const res = await gw.proxy('/secure/x');
        assert.equal(res.status, 200);
        assert.equal(res.body, 'tls /x');
      } finally {
        await gw.api('/ambassador/mapping/secure', { method: 'DELETE' });
        upstream.close();
      }
    });

    it('deletes by name, answering ok also for unknown names, and stops routing at once', async () => {
      const unknown = await gw.api('/ambassador/mapping/nothing', { method: 'DELETE' });
      assert.deepEqual([unknown.json.ok, unknown.json.name], [true, 'nothing']);
      await gw.api('/ambassador/mapping/gruemapping', { method: 'DELETE' });
      await gw.api('/ambassador/mapping/usermapping', { method: 'DELETE' });
      assert.equal((await gw.proxy('/user/health')).status, 404, 'deleting the last mapping reaches the proxy too');
      assert.equal((await gw.api('/ambassador/mappings')).json.count, 0);
    });
  });

  describe('the v1 API', () => {
    const mapping = (prefix: string, extra: Record<string, unknown> = {}) => ({
      apiVersion: 'getambassador.io/v3alpha1',
      kind: 'Mapping',
      metadata: { name: 'api' },
      spec: { prefix, service, ...extra },
    });

    it('creates with 201 and an ETag, and replaces only with the current ETag', async () => {
      const created = await gw.api('/api/v1/mappings/api', { method: 'PUT', body: mapping('/api/') });
      assert.equal(created.status, 201);
      const tag = created.headers.etag as string;
      assert.match(tag, /^"\d+"$/);
      assert.equal(created.json.metadata.resourceVersion, tag.slice(1, -1));
      const got = await gw.api('/api/v1/mappings/api');
      assert.equal(got.headers.etag, tag);
      assert.deepEqual(got.json.spec, { prefix: '/api/', service });
      const stale = await gw.api('/api/v1/mappings/api', { method: 'PUT', body: mapping('/api2/'), headers: { 'if-match': '"1"' } });
      assert.equal(stale.status, 412);
      const replaced = await gw.api('/api/v1/mappings/api', { method: 'PUT', body: mapping('/api2/'), headers: { 'if-match': tag } });
      assert.equal(replaced.status, 200);
      assert.notEqual(replaced.headers.etag, tag);
      assert.equal((await gw.proxy('/api2/x')).status, 200);
      const createOnly = await gw.api('/api/v1/mappings', { method: 'POST', body: mapping('/api3/') });
      assert.equal(createOnly.status, 409);
    });

    it('refuses invalid resources with 400, every problem and its path, and changes nothing', async () => {
      const before = (await gw.api('/api/v1/history')).json.version;
      const res = await gw.api('/api/v1/mappings/api', {
        method: 'PUT',
        body: { kind: 'Mapping', metadata: { name: 'other' }, spec: { prefix: 'nope', service: 'https://', weight: -1, colour: 'red' } },
      });
      assert.equal(res.status, 400);
      assert.deepEqual(res.json.errors.map((e: { path: string; code: string }) => `${e.path} ${e.code}`), [
        'metadata.name invalid_value',
        'spec.service invalid_value',
        'spec.weight invalid_value',
        'spec.colour unknown_field',
        'spec.prefix invalid_value',
      ]);
      const labels = { ambassador: [{ per_client: [{ remote_addr: {} }] }] };
      const badLabel = await gw.api('/api/v1/mappings/api', { method: 'PUT', body: mapping('/api2/', { labels }) });
      assert.equal(badLabel.status, 400);
      assert.deepEqual(badLabel.json.errors.map((e: { resource: string; path: string; code: string }) => `${e.resource} ${e.path} ${e.code}`), [
        'Mapping/api spec.labels.ambassador[0].per_client[0] invalid_value',
      ]);
      assert.match(badLabel.json.errors[0].message, /remote_address/);
      assert.equal((await gw.api('/api/v1/history')).json.version, before);
      assert.deepEqual((await gw.api('/api/v1/mappings/api')).json.spec, { prefix: '/api2/', service });
    });

    it('applies several documents atomically, validates and dry-runs without writing', async () => {
      const yaml = ['a', 'b', 'c'].map((n) => `kind: Mapping\nmetadata: { name: ${n} }\nspec: { prefix: /${n}/, service: "${service}" }\n`).join('---\n');
      const validated = await gw.api('/api/v1/validate', { method: 'POST', body: yaml, headers: { 'content-type': 'application/yaml' } });
      assert.equal(validated.status, 200);
      assert.equal(validated.json.valid, true);
      const dry = await gw.api('/api/v1/apply?dry_run=true', { method: 'POST', body: yaml });
      assert.equal(dry.status, 200);
      assert.equal((await gw.api('/api/v1/mappings')).json.items.length, 1);
      const before = (await gw.api('/api/v1/history')).json.version;
      const applied = await gw.api('/api/v1/apply', { method: 'POST', body: yaml });
      assert.equal(applied.status, 200);
      assert.equal(applied.json.version, before + 1);
      assert.equal(applied.json.changes.length, 3);
      assert.equal((await gw.proxy('/b/x')).status, 200);
      const again = await gw.api('/api/v1/apply', { method: 'POST', body: yaml });
      assert.deepEqual([again.json.version, again.json.changes.length, again.json.unchanged.length], [before + 1, 0, 3]);
      const broken = await gw.api('/api/v1/apply', { method: 'POST', body: `${yaml}---\nkind: Mapping\nmetadata: { name: d }\nspec: { prefix: /d/ }\n` });
      assert.equal(broken.status, 400);
      assert.deepEqual(broken.json.errors.map((e: { resource: string; path: string }) => `${e.resource} ${e.path}`), ['Mapping/d spec.service']);
      assert.equal((await gw.api('/api/v1/history')).json.version, before + 1);
    });

    it('keeps history with diffs and rolls back as a new version', async () => {
      const history = (await gw.api('/api/v1/history?limit=2')).json;
      assert.equal(history.versions.length, 2);
      const target = history.versions[1].version;
      const applied = history.versions[0];
      assert.deepEqual(applied.diff.map((d: { op: string; name: string }) => `${d.op} ${d.name}`), ['create a', 'create b', 'create c']);
      const rolled = await gw.api(`/api/v1/rollback/${target}`, { method: 'POST' });
      assert.equal(rolled.status, 200);
      assert.equal(rolled.json.version, applied.version + 1);
      assert.equal((await gw.proxy('/b/x')).status, 404);
      assert.equal((await gw.api(`/api/v1/history/${rolled.json.version}`)).json.source, `api: rollback to version ${target}`);
      assert.equal((await gw.api('/api/v1/rollback/9999', { method: 'POST' })).status, 404);
    });

    it('deletes with 200, then answers 404', async () => {
      assert.equal((await gw.api('/api/v1/mappings/api', { method: 'DELETE' })).status, 200);
      assert.equal((await gw.api('/api/v1/mappings/api', { method: 'DELETE' })).status, 404);
      assert.equal((await gw.api('/api/v1/mappings/api')).status, 404);
    });

    it('takes a Module as the defaults of every Mapping', async () => {
      const module = { kind: 'Module', metadata: { name: 'ambassador' }, spec: { config: { cluster_request_timeout_ms: 1234, server_name: 'portico-test' } } };
      assert.equal((await gw.api('/api/v1/modules/ambassador', { method: 'PUT', body: module })).status, 201);
      await gw.api('/api/v1/mappings/m', { method: 'PUT', body: { kind: 'Mapping', spec: { prefix: '/m/', service } } });
      const res = await gw.proxy('/m/x');
      assert.equal(res.headers.server, 'portico-test');
      assert.equal(JSON.parse(res.body).headers['x-envoy-expected-rq-timeout-ms'], '1234');
      assert.equal((await gw.api('/api/v1/modules/other', { method: 'PUT', body: { spec: {} } })).status, 400);
    });

    it('shows the translation in the admin /config_dump, as its data plane received it over xDS', async () => {
      const dump = await httpRequest(`http://127.0.0.1:${gw.adminPort}/config_dump?resource=dynamic_active_clusters`);
      const clusters = JSON.parse(dump.body).configs as { version_info: string; cluster: { name: string } }[];
      const names = clusters.map((c) => c.cluster.name);
      assert.ok(names.includes(`cluster_127_0_0_1_${echo.port}`), names.join());
      assert.ok(clusters.every((c) => c.version_info !== ''));
      const routes = await httpRequest(`http://127.0.0.1:${gw.adminPort}/config_dump?resource=dynamic_route_configs`);
      assert.equal(JSON.parse(routes.body).configs[0].route_config.name, 'ambassador-routes-0');
    });

    it('answers unknown kinds, methods and oversized bodies with 404, 405 and 413', async () => {
      assert.equal((await gw.api('/api/v1/widgets')).status, 404);
      assert.equal((await gw.api('/api/v1/mappings', { method: 'DELETE' })).status, 405);
      const big = await gw.api('/api/v1/apply', { method: 'POST', body: 'x'.repeat(1024 * 1024 + 1) });
      assert.equal(big.status, 413);
      const seedBig = await gw.api('/ambassador/mapping/x', { method: 'POST', body: 'x'.repeat(1024 * 1024 + 1) });
      assert.deepEqual([seedBig.status, seedBig.json.ok], [413, false]);
    });
  });

  describe('browsers', () => {
    it('serves the dashboard at / and /ui/ with a strict content security policy', async () => {
      for (const path of ['/', '/ui/']) {
        const page = await gw.api(path);
        assert.equal(page.status, 200);
        assert.match(String(page.headers['content-type']), /^text\/html/);
        assert.match(page.body, /<script type="module" src="\/ui\/app.js">/);
        assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'.*frame-ancestors 'none'/);
      }
      const script = await gw.api('/ui/app.js');
      assert.deepEqual([script.status, script.headers['content-type']], [200, 'text/javascript; charset=utf-8']);
      assert.match(script.body, /\/api\/v1\/mappings/);
      assert.equal((await gw.api('/ui/style.css')).headers['content-type'], 'text/css; charset=utf-8');
      assert.equal((await gw.api('/ui/other.js')).status, 404);
    });

    it('refuses changes from other origins, and takes them from its own pages and from non-browser clients', async () => {
      const own = `127.0.0.1:${gw.apiPort}`;
      const put = (headers: Record<string, string>) =>
        gw.api('/api/v1/mappings/crossorigin', { method: 'PUT', body: { kind: 'Mapping', spec: { prefix: '/crossorigin/', service } }, headers });
      // another site's page; a page served through the proxy (same site, other port); a sandboxed frame
      for (const origin of ['https://evil.example', `http://127.0.0.1:${gw.proxyPort}`, 'null']) {
        const refused = await put({ origin });
        assert.equal(refused.status, 403, origin);
        assert.match(refused.json.message, /cross-origin PUT refused/);
      }
      assert.equal((await put({ 'sec-fetch-site': 'same-site', origin: `http://${own}` })).status, 403);
      const seed = await gw.api('/ambassador/mapping/crossorigin', { method: 'POST', body: { prefix: '/crossorigin/', service }, headers: { 'sec-fetch-site': 'cross-site' } });
      assert.deepEqual([seed.status, seed.json.ok], [403, false]);
      assert.equal((await gw.api('/api/v1/mappings/crossorigin')).status, 404);

      assert.equal((await put({ origin: `http://${own}`, 'sec-fetch-site': 'same-origin' })).status, 201);
      assert.equal((await gw.api('/api/v1/mappings/crossorigin', { method: 'DELETE' })).status, 200);
    });

    it('answers only loopback Host names while listening on loopback (no DNS rebinding)', async () => {
      const rebound = await gw.api('/api/v1/mappings', { headers: { host: `evil.example:${gw.apiPort}` } });
      assert.equal(rebound.status, 421);
      assert.match(rebound.json.message, /answers only for localhost/);
      for (const host of [`localhost:${gw.apiPort}`, `127.0.0.1:${gw.apiPort}`, `[::1]:${gw.apiPort}`, 'localhost']) {
        assert.equal((await gw.api('/api/v1/mappings', { headers: { host } })).status, 200, host);
      }
    });
  });

  it('restores every resource after a restart', async () => {
    await gw.api('/ambassador/mapping/persisted', { method: 'POST', body: { prefix: '/persisted/', service } });
    const version = (await gw.api('/api/v1/history')).json.version;
    await gw.close(true);
    gw = await startTestGateway({ dataDir: gw.dataDir });
    assert.equal((await gw.api('/api/v1/history')).json.version, version);
    assert.equal((await gw.proxy('/persisted/x')).status, 200);
  });
});

describe('control plane API with a token', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({ token: 's3cret' });
  });
  after(async () => gw?.close());

  it('needs Authorization: Bearer on every mutating call, and not to read', async () => {
    const body = { prefix: '/t/', service: 'example.com' };
    const none = await gw.api('/ambassador/mapping/t', { method: 'POST', body });
    assert.deepEqual([none.status, none.json.ok], [401, false]);
    assert.equal((await gw.api('/api/v1/mappings/t', { method: 'DELETE', headers: { authorization: 'Bearer wrong' } })).status, 401);
    const ok = await gw.api('/ambassador/mapping/t', { method: 'POST', body, headers: { authorization: 'Bearer s3cret' } });
    assert.equal(ok.json.ok, true);
    assert.equal((await gw.api('/api/v1/mappings/t')).status, 200);
  });
});

/**
 * A Mapping's `cors` through `portico start`: stored, translated to the CORS filter and a per-route CorsPolicy,
 * and applied by the in-process data plane: preflights answered by the proxy, simple requests given
 * `access-control-allow-origin`, and the Module's `cors` as the default of Mappings without one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { httpRequest } from '../support/upstreams.js';

describe('Mapping cors through portico start', () => {
  let echo: EchoServer;
  let gw: TestGateway;
  let service: string;
  before(async () => {
    echo = await startEchoServer({ name: 'corssvc' });
    service = `127.0.0.1:${echo.port}`;
    gw = await startTestGateway();
  });
  after(async () => {
    await gw?.close();
    await echo?.close();
  });

  const proxy = (path: string, init: { method?: string; headers?: Record<string, string> }) =>
    httpRequest(`http://127.0.0.1:${gw.proxyPort}${path}`, init);
  const put = async (kind: string, name: string, spec: Record<string, unknown>): Promise<void> => {
    const res = await gw.api(`/api/v1/${kind}s/${name}`, { method: 'PUT', body: { kind: kind === 'module' ? 'Module' : 'Mapping', metadata: { name }, spec } });
    assert.ok(res.status === 200 || res.status === 201, `${res.status} ${res.body}`);
  };

  it('answers a preflight from an allowed origin itself, and adds allow-origin to simple requests', async () => {
    await put('mapping', 'app', {
      prefix: '/app/',
      service,
      cors: { origins: 'https://app.example, https://admin.example', methods: ['GET', 'POST'], headers: 'content-type', exposed_headers: ['x-trace'], credentials: true, max_age: '600' },
    });
    const pre = await proxy('/app/items', { method: 'OPTIONS', headers: { origin: 'https://admin.example', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 200);
    assert.equal(pre.body, '', 'answered by the proxy, not the echo upstream');
    assert.equal(pre.headers['access-control-allow-origin'], 'https://admin.example');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET, POST');
    assert.equal(pre.headers['access-control-allow-headers'], 'content-type');
    assert.equal(pre.headers['access-control-allow-credentials'], 'true');
    assert.equal(pre.headers['access-control-max-age'], '600');

    const simple = await proxy('/app/items', { headers: { origin: 'https://app.example' } });
    assert.equal(simple.status, 200);
    assert.equal(JSON.parse(simple.body).path, '/items');
    assert.equal(simple.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(simple.headers['access-control-expose-headers'], 'x-trace');

    const other = await proxy('/app/items', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    assert.equal(JSON.parse(other.body).method, 'OPTIONS', 'a preflight from another origin goes to the service');
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });

  it('takes the Module cors as the default, where origin "*" allows any origin', async () => {
    await put('module', 'ambassador', { config: { cors: { origins: '*', methods: 'GET' } } });
    await put('mapping', 'open', { prefix: '/open/', service });
    const pre = await proxy('/open/x', { method: 'OPTIONS', headers: { origin: 'https://anyone.example', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 200);
    assert.equal(pre.body, '');
    assert.equal(pre.headers['access-control-allow-origin'], 'https://anyone.example');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET');
    // The Mapping's own policy replaces the Module's.
    const own = await proxy('/app/items', { headers: { origin: 'https://anyone.example' } });
    assert.equal(own.headers['access-control-allow-origin'], undefined);
  });
});

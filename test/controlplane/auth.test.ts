/**
 * AuthService, RateLimitService and the Mapping fields that go with them: validation with every problem and its
 * path, the translation the data plane accepts, and `portico start` with an AuthService in front of a real HTTP
 * authorization server (protected Mappings checked, bypass_auth Mappings not) or a real gRPC one, and with a RateLimitService in
 * front of a real `portico ratelimit` service (Mapping labels become the descriptors it counts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import type { ConfigError } from '../../src/config/errors.js';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { checkTranslation, translate } from '../../src/controlplane/translate.js';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { decodeMessage, encodeMessage, envoyMethod } from '../../src/grpc/envoy-protos.js';
import { RateLimitService as RateLimitServer } from '../../src/ratelimit/service.js';
import { createLogger } from '../../src/util/logger.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { startGrpcServer } from '../support/grpc.js';
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

describe('AuthService and RateLimitService validation', () => {
  it('refuses a bad AuthService with every problem and its path', () => {
    assert.deepEqual(
      problems('AuthService', {
        auth_service: 'ftp://auth',
        proto: 'websocket',
        path_prefix: 'extauth',
        allowed_request_headers: ['x-ok', 'bad header'],
        include_body: { allow_partial: 'yes' },
        timeout_ms: 0,
        status_on_error: { code: 99 },
        protocol_version: 'v2',
        add_linkerd_headers: true,
        colour: 'red',
      }),
      [
        'spec.add_linkerd_headers unsupported_field',
        'spec.auth_service invalid_value',
        'spec.proto invalid_value',
        'spec.path_prefix invalid_value',
        'spec.allowed_request_headers[1] invalid_value',
        'spec.include_body.max_bytes missing_required',
        'spec.include_body.allow_partial wrong_type',
        'spec.timeout_ms invalid_value',
        'spec.status_on_error.code invalid_value',
        'spec.protocol_version invalid_value',
        'spec.colour unknown_field',
      ],
    );
    assert.deepEqual(problems('AuthService', {}), ['spec.auth_service missing_required']);
    assert.deepEqual(problems('AuthService', { auth_service: 'a:1', proto: 'grpc', path_prefix: '/p', allowed_request_headers: ['x'], add_auth_headers: { a: 'b' } }), [
      'spec.path_prefix invalid_value',
      'spec.allowed_request_headers invalid_value',
      'spec.add_auth_headers invalid_value',
    ]);
  });

  it('refuses a bad RateLimitService and bad label actions with their paths', () => {
    assert.deepEqual(problems('RateLimitService', { protocol_version: 'v2', timeout_ms: -1, domain: 7, failure_mode_deny: 'no' }), [
      'spec.service missing_required',
      'spec.protocol_version invalid_value',
      'spec.timeout_ms invalid_value',
      'spec.domain wrong_type',
      'spec.failure_mode_deny wrong_type',
    ]);
    const labels = {
      ambassador: [
        {
          group: [
            'literal',
            { request_headers: { header_name: 'x-user' } },
            { generic_key: {} },
            { masked_remote_address: {} },
            { remote_address: {}, source_cluster: {} },
            7,
          ],
        },
      ],
    };
    assert.deepEqual(problems('Mapping', { prefix: '/', service: 'a', labels }), [
      'spec.labels.ambassador[0].group[1].request_headers.key missing_required',
      'spec.labels.ambassador[0].group[2].generic_key.value missing_required',
      'spec.labels.ambassador[0].group[3] invalid_value',
      'spec.labels.ambassador[0].group[4] invalid_value',
      'spec.labels.ambassador[0].group[5] wrong_type',
    ]);
  });

  it('allows one AuthService and one RateLimitService per gateway', () => {
    const t = translate(
      [
        resource('AuthService', 'a', { auth_service: 'auth-a' }),
        resource('AuthService', 'b', { auth_service: 'auth-b' }),
        resource('RateLimitService', 'r1', { service: 'rls' }),
        resource('RateLimitService', 'r2', { service: 'rls' }),
      ],
      OPTIONS,
    );
    assert.deepEqual(t.errors.map((e) => `${e.resource} ${e.path}`), ['AuthService/b metadata.name', 'RateLimitService/r2 metadata.name']);
  });

  it('names the AuthService behind what the data plane refuses in its filter', () => {
    const t = translate([resource('AuthService', 'a', { auth_service: 'auth', status_on_error: { code: 299 } })], OPTIONS);
    const errors = checkTranslation(t, createLogger('off')).errors;
    assert.deepEqual(errors.map((e) => `${e.resource} ${e.path} ${e.code}`), ['AuthService/a spec invalid_value']);
    assert.match(errors[0]!.message, /status_on_error\.code/);
  });

  it('adds no per-route ext_authz config and no rate limits without the services', () => {
    const mapping = resource('Mapping', 'm', { prefix: '/', service: 'a', bypass_auth: true, labels: { ambassador: [{ g: ['x'] }] } });
    const t = translate([mapping], OPTIONS);
    const json = JSON.stringify(t.listeners);
    assert.doesNotMatch(json, /ext_authz|rate_limits|ratelimit/);
    assert.deepEqual(checkTranslation(t, createLogger('off')).errors, []);
    // The same Mapping object, once the services exist, gets both (the route cache must not hide them).
    const withServices = JSON.stringify(
      translate([mapping, resource('AuthService', 'a', { auth_service: 'auth' }), resource('RateLimitService', 'r', { service: 'rls', domain: 'ambassador' })], OPTIONS)
        .listeners,
    );
    assert.match(withServices, /ExtAuthzPerRoute/);
    assert.match(withServices, /"rate_limits":\[\{"actions":\[\{"generic_key":\{"descriptor_value":"x"\}\}\]\}\]/);
  });
});

describe('portico start with an AuthService', () => {
  let echo: EchoServer;
  let authServer: RecordingUpstream;
  let gw: TestGateway;
  before(async () => {
    echo = await startEchoServer({ name: 'backend' });
    // Allows "Bearer good" and tells the upstream who the user is; denies everything else with its own reply.
    authServer = await startRecordingUpstream((req, res) => {
      if (req.headers.authorization === 'Bearer good') {
        res.writeHead(200, { 'x-user': 'alice', 'x-not-allowed': 'dropped' });
        res.end();
      } else {
        res.writeHead(403, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="test"' });
        res.end('no entry');
      }
    });
    gw = await startTestGateway();
    const service = `127.0.0.1:${echo.port}`;
    const yaml = [
      `kind: Mapping\nmetadata: { name: protected }\nspec: { prefix: /protected/, service: "${service}" }\n`,
      `kind: Mapping\nmetadata: { name: public }\nspec: { prefix: /public/, service: "${service}", bypass_auth: true }\n`,
    ].join('---\n');
    assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: yaml })).status, 200);
  });
  after(async () => {
    await gw?.close();
    await authServer?.close();
    await echo?.close();
  });

  const authService = (spec: object = {}) => ({
    kind: 'AuthService',
    metadata: { name: 'authentication' },
    spec: { auth_service: `127.0.0.1:${authServer.port}`, path_prefix: '/extauth', allowed_authorization_headers: ['x-user'], add_auth_headers: { 'x-gateway': 'portico' }, ...spec },
  });

  it('checks protected Mappings with the authorization server and lets bypass_auth Mappings through', async () => {
    assert.equal((await gw.proxy('/protected/x')).status, 200, 'no AuthService yet: open');
    const created = await gw.api('/api/v1/authservices/authentication', { method: 'PUT', body: authService() });
    assert.equal(created.status, 201);

    const denied = await gw.proxy('/protected/x?q=1', { authorization: 'Bearer bad' });
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'no entry');
    assert.equal(denied.headers['www-authenticate'], 'Bearer realm="test"');
    const check = authServer.requests.at(-1)!;
    assert.equal(check.url, '/extauth/protected/x?q=1');
    assert.equal(check.headers.authorization, 'Bearer bad');
    assert.equal(check.headers['x-gateway'], 'portico');

    const allowed = await gw.proxy('/protected/x', { authorization: 'Bearer good' });
    assert.equal(allowed.status, 200);
    const upstream = JSON.parse(allowed.body);
    assert.equal(upstream.headers['x-user'], 'alice');
    assert.equal(upstream.headers['x-not-allowed'], undefined);

    const checks = authServer.requests.length;
    const open = await gw.proxy('/public/y');
    assert.equal(open.status, 200);
    assert.equal(authServer.requests.length, checks, 'bypass_auth: the authorization server was not asked');
  });

  it('refuses a bad AuthService with its problems and keeps serving the old configuration', async () => {
    const version = (await gw.api('/api/v1/history')).json.version;
    const bad = await gw.api('/api/v1/authservices/authentication', { method: 'PUT', body: authService({ proto: 'soap', add_linkerd_headers: true }) });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json.errors.map((e: { path: string; code: string }) => `${e.path} ${e.code}`), [
      'spec.add_linkerd_headers unsupported_field',
      'spec.proto invalid_value',
    ]);
    assert.equal((await gw.api('/api/v1/history')).json.version, version);
    assert.equal((await gw.proxy('/protected/x')).status, 403);
    assert.equal((await gw.proxy('/protected/x', { authorization: 'Bearer good' })).status, 200);
  });

  it('lists, deletes and rolls back AuthServices like any resource', async () => {
    const list = await gw.api('/api/v1/authservices');
    assert.deepEqual([list.json.kind, list.json.items.map((r: Resource) => r.metadata.name)], ['AuthServiceList', ['authentication']]);
    const withAuth = (await gw.api('/api/v1/history')).json.version;
    assert.equal((await gw.api('/api/v1/authservices/authentication', { method: 'DELETE' })).status, 200);
    assert.equal((await gw.proxy('/protected/x')).status, 200, 'no AuthService: open again');
    assert.equal((await gw.api(`/api/v1/rollback/${withAuth}`, { method: 'POST' })).status, 200);
    assert.equal((await gw.proxy('/protected/x')).status, 403);
  });

  it('takes AuthServices through the seed-style endpoints too, with the ok envelope', async () => {
    const spec = authService().spec;
    const second = await gw.api('/ambassador/authservice/second', { method: 'POST', body: spec });
    assert.deepEqual([second.status, second.json.ok], [200, false]);
    assert.match(second.json.error, /only one AuthService per gateway; AuthService\/authentication is already in use/);
    const bad = await gw.api('/ambassador/authservice/authentication', { method: 'POST', body: { ...spec, proto: 'soap' } });
    assert.deepEqual([bad.json.ok, bad.json.errors.map((e: { path: string }) => e.path)], [false, ['spec.proto']]);
    const saved = await gw.api('/ambassador/authservice/authentication', { method: 'POST', body: { ...spec, timeout_ms: 1000 } });
    assert.deepEqual([saved.json.ok, saved.json.name], [true, 'authentication']);
    const got = await gw.api('/ambassador/authservice/authentication');
    assert.deepEqual([got.json.ok, got.json.auth_service, got.json.timeout_ms], [true, spec.auth_service, 1000]);
    const list = await gw.api('/ambassador/authservices');
    assert.deepEqual([list.json.count, list.json.authservices.map((a: { name: string }) => a.name)], [1, ['authentication']]);
    assert.equal((await gw.proxy('/protected/x')).status, 403);
    assert.equal((await gw.api('/ambassador/authservice/authentication', { method: 'DELETE' })).json.ok, true);
    assert.equal((await gw.api('/ambassador/authservice/authentication')).json.ok, false);
    assert.equal((await gw.proxy('/protected/x')).status, 200);
  });

  it('answers status_on_error when the authorization server is down, or lets requests through with failure_mode_allow', async () => {
    const down = { auth_service: '127.0.0.1:1', path_prefix: undefined };
    assert.equal((await gw.api('/api/v1/authservices/authentication', { method: 'PUT', body: authService({ ...down, status_on_error: { code: 503 } }) })).status, 201);
    assert.equal((await gw.proxy('/protected/x')).status, 503);
    assert.equal((await gw.proxy('/public/x')).status, 200);
    assert.equal((await gw.api('/api/v1/authservices/authentication', { method: 'PUT', body: authService({ ...down, failure_mode_allow: true }) })).status, 200);
    assert.equal((await gw.proxy('/protected/x')).status, 200);
  });
});

describe('portico start with a RateLimitService', () => {
  let echo: EchoServer;
  let rls: RateLimitServer;
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    echo = await startEchoServer({ name: 'backend' });
    dir = mkdtempSync(join(tmpdir(), 'portico-rls-'));
    const configPath = join(dir, 'limits.yaml');
    // Hour windows: no test straddles the end of one.
    writeFileSync(
      configPath,
      [
        'domain: edge',
        'descriptors:',
        '  - key: generic_key',
        '    value: api',
        '    descriptors:',
        '      - key: user',
        '        rate_limit: { unit: hour, requests_per_unit: 2 }',
        '',
      ].join('\n'),
    );
    rls = await RateLimitServer.start({ configPath, log: createLogger('off') });
    gw = await startTestGateway();
  });
  after(async () => {
    await gw?.close();
    await rls?.close();
    await echo?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sends the labels of its domain as descriptors and answers 429 over the limit', async () => {
    const labels = {
      edge: [{ per_user: [{ generic_key: { value: 'api' } }, { request_headers: { key: 'user', header_name: 'x-user' } }] }],
      ambassador: [{ everyone: ['other'] }],
    };
    const docs = [
      { kind: 'RateLimitService', metadata: { name: 'limits' }, spec: { service: `127.0.0.1:${rls.grpcPort}`, domain: 'edge', timeout_ms: 2000, protocol_version: 'v3' } },
      { kind: 'Mapping', metadata: { name: 'limited' }, spec: { prefix: '/limited/', service: `127.0.0.1:${echo.port}`, labels } },
    ];
    assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: JSON.stringify(docs) })).status, 200);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await gw.proxy('/limited/x', { 'x-user': 'alice' })).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    // Another user is another descriptor.
    assert.equal((await gw.proxy('/limited/x', { 'x-user': 'bob' })).status, 200);
  });
});

describe('portico start with a gRPC AuthService', () => {
  const CHECK = envoyMethod('envoy/service/auth/v3/external_auth.proto', 'envoy.service.auth.v3.Authorization', 'Check');
  let echo: EchoServer;
  let server: grpc.Server;
  let port: number;
  let gw: TestGateway;
  const paths: string[] = [];
  const extensions: unknown[] = [];
  before(async () => {
    echo = await startEchoServer({ name: 'backend' });
    ({ server, port } = await startGrpcServer({
      Check: {
        path: CHECK.path,
        handler: (call, callback) => {
          const request = decodeMessage<any>(CHECK.requestType, call.request);
          const http = request.attributes.request.http;
          paths.push(http.path);
          extensions.push(request.attributes.context_extensions);
          const allowed = http.headers['x-token'] === 'open-sesame';
          callback(
            null,
            encodeMessage(
              CHECK.responseType,
              allowed
                ? { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-checked', value: 'grpc' } }] } }
                : { status: { code: 7 }, denied_response: { status: { code: 'Unauthorized' }, body: 'denied by grpc' } },
            ),
          );
        },
      },
    }));
    gw = await startTestGateway();
  });
  after(async () => {
    await gw?.close();
    server?.forceShutdown();
    await echo?.close();
  });

  it('asks Authorization/Check over HTTP/2 for protected Mappings only, with their context extensions', async () => {
    const service = `127.0.0.1:${echo.port}`;
    const docs = [
      { kind: 'AuthService', metadata: { name: 'grpc-auth' }, spec: { auth_service: `127.0.0.1:${port}`, proto: 'grpc', protocol_version: 'v3', timeout_ms: 2000 } },
      { kind: 'Mapping', metadata: { name: 'protected' }, spec: { prefix: '/protected/', service, auth_context_extensions: { tenant: 'acme' } } },
      { kind: 'Mapping', metadata: { name: 'public' }, spec: { prefix: '/public/', service, bypass_auth: true } },
    ];
    assert.equal((await gw.api('/api/v1/apply', { method: 'POST', body: JSON.stringify(docs) })).status, 200);
    const denied = await gw.proxy('/protected/a');
    assert.deepEqual([denied.status, denied.body], [401, 'denied by grpc']);
    const allowed = await gw.proxy('/protected/b', { 'x-token': 'open-sesame' });
    assert.equal(allowed.status, 200);
    assert.equal(JSON.parse(allowed.body).headers['x-checked'], 'grpc');
    assert.equal((await gw.proxy('/public/c')).status, 200);
    assert.deepEqual(paths, ['/protected/a', '/protected/b']);
    assert.deepEqual(extensions, [{ tenant: 'acme' }, { tenant: 'acme' }]);
  });
});

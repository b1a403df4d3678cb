/**
 * `envoy.filters.http.basic_auth` through real sockets: missing, malformed, wrong and right credentials, the
 * challenge and bodies of its 401s, the forwarded user name, an htpasswd file, per-route users, its stats; and
 * the htpasswd lines `validate` refuses, with their path.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, type Json, type RunningPortico, startPortico, stat } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const TYPE = 'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute';
const HCM = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';

const sha = (password: string): string => `{SHA}${createHash('sha1').update(password).digest('base64')}`;
const basic = (credential: string): string => `Basic ${Buffer.from(credential).toString('base64')}`;

function bootstrap(filter: Json, routes: Json[], port: number): string {
  const cluster = {
    name: 'backend',
    connect_timeout: '1s',
    load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
  const routeConfig = { name: 'local', virtual_hosts: [{ name: 'all', domains: ['*'], routes }] };
  return JSON.stringify({
    static_resources: { listeners: [httpListener(routeConfig, {}, [{ name: 'envoy.filters.http.basic_auth', typed_config: { '@type': TYPE, ...filter } }])], clusters: [cluster] },
  });
}

describe('basic_auth filter', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  let fromFile: RunningPortico;
  let dir: string;

  before(async () => {
    upstream = await startRecordingUpstream();
    dir = mkdtempSync(join(tmpdir(), 'portico-htpasswd-'));
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `# team\ncarol:${sha('from-file')}\r\n\n`);
    const routes = [
      { match: { prefix: '/admin' }, route: { cluster: 'backend' }, typed_per_filter_config: { 'envoy.filters.http.basic_auth': { '@type': PER_ROUTE, users: { inline_string: `root:${sha('toor')}` } } } },
      { match: { prefix: '/' }, route: { cluster: 'backend' } },
    ];
    gw = await startPortico(
      bootstrap({ users: { inline_string: `alice:${sha('wonderland')}\nbob:${sha('builder')}` }, forward_username_header: 'X-Username' }, routes, upstream.port),
    );
    fromFile = await startPortico(bootstrap({ users: { filename: file } }, [{ match: { prefix: '/' }, route: { cluster: 'backend' } }], upstream.port));
  });

  after(async () => {
    await Promise.all([gw?.close(), fromFile?.close()]);
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (target: RunningPortico, path: string, authorization?: string) =>
    httpRequest(`${target.url()}${path}`, { headers: authorization === undefined ? {} : { authorization } });

  it('lets the right user and password through, with the user name forwarded', async () => {
    const before = upstream.requests.length;
    const allowed = stat(gw, 'http.ingress_http.basic_auth.allowed') ?? 0;
    const res = await get(gw, '/x', basic('alice:wonderland'));
    assert.equal(res.status, 200);
    assert.equal(upstream.requests.length, before + 1);
    assert.equal(upstream.requests.at(-1)!.headers['x-username'], 'alice');
    assert.equal(upstream.requests.at(-1)!.headers.authorization, basic('alice:wonderland'));
    assert.equal(stat(gw, 'http.ingress_http.basic_auth.allowed'), allowed + 1);
  });

  const refusals: [string, string | undefined, string][] = [
    ['no Authorization header', undefined, 'User authentication failed. Missing username and password.'],
    ['another scheme', 'Bearer abc', "User authentication failed. Expected 'Basic' authentication scheme."],
    ['a token that is not base64', 'Basic !!not*base64!!', 'User authentication failed. Invalid basic credential format.'],
    ['a credential without a colon', basic('alicewonderland'), 'User authentication failed. Invalid basic credential format.'],
    ['a wrong password', basic('alice:builder'), 'User authentication failed. Invalid username/password combination.'],
    ['an unknown user', basic('mallory:wonderland'), 'User authentication failed. Invalid username/password combination.'],
    ['an empty password', basic('alice:'), 'User authentication failed. Invalid username/password combination.'],
  ];
  for (const [what, authorization, body] of refusals) {
    it(`refuses ${what} with a 401 and the Basic challenge, never reaching the upstream`, async () => {
      const before = upstream.requests.length;
      const denied = stat(gw, 'http.ingress_http.basic_auth.denied') ?? 0;
      const res = await get(gw, '/some/path?q=1', authorization);
      assert.equal(res.status, 401);
      assert.equal(res.body, body);
      assert.equal(res.headers['www-authenticate'], `Basic realm="http://${new URL(gw.url()).host}/some/path?q=1"`);
      assert.equal(upstream.requests.length, before);
      assert.equal(stat(gw, 'http.ingress_http.basic_auth.denied'), denied + 1);
    });
  }

  it('uses the users of the most specific BasicAuthPerRoute instead of the filter’s', async () => {
    assert.equal((await get(gw, '/admin', basic('root:toor'))).status, 200);
    const res = await get(gw, '/admin', basic('alice:wonderland'));
    assert.equal(res.status, 401);
    assert.equal(res.body, 'User authentication failed. Invalid username/password combination.');
  });

  it('reads users from an htpasswd file, skipping comments, blank lines and CRLF endings', async () => {
    assert.equal((await get(fromFile, '/', basic('carol:from-file'))).status, 200);
    assert.equal((await get(fromFile, '/', basic('carol:wrong'))).status, 401);
    // No forward_username_header: nothing is added.
    assert.equal(upstream.requests.find((r) => r.headers.authorization === basic('carol:from-file'))!.headers['x-username'], undefined);
  });
});

/** Every error of a configuration: schema and support checks, then compilation. */
function configErrors(config: string): ConfigError[] {
  const errors: ConfigError[] = [];
  const checked = checkBootstrap(parseDocument(config, 't.json', errors));
  errors.push(...checked.errors);
  if (errors.length === 0) compileBootstrap(checked.bootstrap, createLogger('off'), errors, EXTENSIONS);
  return errors;
}

describe('basic_auth configuration', () => {
  it('refuses every bad htpasswd line, naming its line, at the path of users', () => {
    const lines = [
      `good:${sha('x')}`,
      'apr:$apr1$abc$def', // an htpasswd MD5 hash
      'bcrypt:$2y$05$abcdefghijklmnopqrstuv',
      'nocolon',
      `good:${sha('again')}`,
      ':{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      'short:{SHA}abc=',
    ];
    const errors = configErrors(bootstrap({ users: { inline_string: lines.join('\n') } }, [{ match: { prefix: '/' }, route: { cluster: 'backend' } }], 1));
    const path = `${HCM}.http_filters[0].typed_config.users`;
    assert.deepEqual(
      errors.map((e) => `${e.path} ${e.message}`),
      [
        `${path} htpasswd line 2: unsupported hash format for user "apr": only {SHA} is supported`,
        `${path} htpasswd line 3: unsupported hash format for user "bcrypt": only {SHA} is supported`,
        `${path} htpasswd line 4: expected user:{SHA}hash`,
        `${path} htpasswd line 5: duplicate user "good"`,
        `${path} htpasswd line 6: empty user name or password hash`,
        `${path} htpasswd line 7: invalid {SHA} hash for user "short": expected the base64 of a 20-byte SHA-1`,
      ],
    );
  });

  it('refuses bad lines of a per-route user list at its path, and a missing htpasswd file', () => {
    const routes = [{ match: { prefix: '/' }, route: { cluster: 'backend' }, typed_per_filter_config: { 'envoy.filters.http.basic_auth': { '@type': PER_ROUTE, users: { inline_string: 'x:plain' } } } }];
    const errors = configErrors(bootstrap({ users: { filename: '/nonexistent/htpasswd' } }, routes, 1));
    assert.deepEqual(
      errors.map((e) => e.path).sort(),
      [
        `${HCM}.http_filters[0].typed_config.users.filename`,
        `${HCM}.route_config.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.basic_auth"].users`,
      ].sort(),
    );
  });

  it('refuses the fields it does not implement, by name', () => {
    const errors = configErrors(bootstrap({ users: { inline_string: '' }, unknown_field: 1 }, [{ match: { prefix: '/' }, route: { cluster: 'backend' } }], 1));
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.message, /unknown_field/);
  });
});

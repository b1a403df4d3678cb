/**
 * `envoy.filters.http.api_key_auth` through real sockets: keys from a header (with and without `Bearer `), a query
 * parameter and a cookie, in order; missing and unknown keys (401), clients not allowed on a route (403), per-route
 * credentials and key sources, the forwarded client name and `hide_credentials` (what the upstream received), its
 * stats; and the configuration errors of its hand-written messages, with their paths.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, type Json, type RunningPortico, startPortico, stat } from '../support/portico.js';
import { httpRequest, type RecordedRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const TYPE = 'type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute';
const HCM = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
const PREFIX = 'http.ingress_http.api_key_auth.';

const perRoute = (config: Json): Json => ({ 'envoy.filters.http.api_key_auth': { '@type': PER_ROUTE, ...config } });

function bootstrap(filter: Json, routes: Json[], port: number): string {
  const cluster = {
    name: 'backend',
    connect_timeout: '1s',
    load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
  const routeConfig = { name: 'local', virtual_hosts: [{ name: 'all', domains: ['*'], routes }] };
  return JSON.stringify({
    static_resources: { listeners: [httpListener(routeConfig, {}, [{ name: 'envoy.filters.http.api_key_auth', typed_config: { '@type': TYPE, ...filter } }])], clusters: [cluster] },
  });
}

describe('api_key_auth filter', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    upstream = await startRecordingUpstream();
    const routes = [
      { match: { prefix: '/ops' }, route: { cluster: 'backend' }, typed_per_filter_config: perRoute({ allowed_clients: ['ops-team'] }) },
      {
        match: { prefix: '/partner' },
        route: { cluster: 'backend' },
        typed_per_filter_config: perRoute({
          credentials: [{ key: 'partner-key', client: 'partner' }],
          key_sources: [{ header: 'x-partner-key' }],
          forwarding: { header: 'x-partner' },
        }),
      },
      { match: { prefix: '/' }, route: { cluster: 'backend' } },
    ];
    gw = await startPortico(
      bootstrap(
        {
          credentials: [
            { key: 'key-one', client: 'one' },
            { key: 'key-ops', client: 'ops-team' },
          ],
          key_sources: [{ header: 'X-API-Key' }, { query: 'api_key' }, { cookie: 'session_key' }],
          forwarding: { header: 'x-client', hide_credentials: true },
        },
        routes,
        upstream.port,
      ),
    );
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  /** The response, the stat deltas and what the upstream received (undefined when nothing arrived). */
  async function send(path: string, headers: Record<string, string> = {}) {
    const counts = () => ['allowed', 'unauthorized', 'forbidden'].map((name) => stat(gw, PREFIX + name) ?? 0);
    const before = counts();
    const received = upstream.requests.length;
    const res = await httpRequest(`${gw.url()}${path}`, { headers });
    const after = counts();
    const arrived: RecordedRequest | undefined = upstream.requests.length > received ? upstream.requests.at(-1) : undefined;
    return { res, arrived, allowed: after[0]! - before[0]!, unauthorized: after[1]! - before[1]!, forbidden: after[2]! - before[2]! };
  }

  it('lets a known key in a header through, with the client forwarded and the key hidden', async () => {
    const { res, arrived, allowed } = await send('/a', { 'x-api-key': 'key-one', 'x-other': 'kept' });
    assert.equal(res.status, 200);
    assert.equal(allowed, 1);
    assert.equal(arrived!.headers['x-client'], 'one');
    assert.equal(arrived!.headers['x-api-key'], undefined);
    assert.equal(arrived!.headers['x-other'], 'kept');
  });

  it('strips a `Bearer ` prefix from a header key', async () => {
    const { res, arrived } = await send('/a', { 'x-api-key': 'Bearer key-one' });
    assert.equal(res.status, 200);
    assert.equal(arrived!.headers['x-client'], 'one');
  });

  it('takes the key from the query string, decoded, and hides only that parameter', async () => {
    const { res, arrived } = await send('/q?a=1&api_key=key%2Done&b=2');
    assert.equal(res.status, 200);
    assert.equal(arrived!.headers['x-client'], 'one');
    assert.equal(arrived!.url, '/q?a=1&b=2');
    assert.equal((await send('/q?api_key=key-one')).arrived!.url, '/q');
    // The first of repeated parameters counts; hiding removes them all.
    const repeated = await send('/q?api_key=key-ops&x&api_key=key-one');
    assert.equal(repeated.arrived!.headers['x-client'], 'ops-team');
    assert.equal(repeated.arrived!.url, '/q?x');
  });

  it('takes the key from a cookie and hides only that cookie', async () => {
    const { res, arrived } = await send('/c', { cookie: 'theme=dark; session_key="key-one"; lang=fr' });
    assert.equal(res.status, 200);
    assert.equal(arrived!.headers['x-client'], 'one');
    assert.equal(arrived!.headers.cookie, 'theme=dark; lang=fr');
  });

  it('tries the sources in order: the header before the query before the cookie; an empty value is no key', async () => {
    const { res, arrived } = await send('/o?api_key=key-ops', { 'x-api-key': 'key-one', cookie: 'session_key=nope' });
    assert.equal(res.status, 200);
    assert.equal(arrived!.headers['x-client'], 'one');
    // hide_credentials removes the key from every source, not only the one it came from.
    assert.equal(arrived!.url, '/o');
    assert.equal(arrived!.headers.cookie, undefined);
    const empty = await send('/o?api_key=key-ops', { 'x-api-key': '' });
    assert.equal(empty.arrived!.headers['x-client'], 'ops-team');
  });

  for (const [what, headers, path] of [
    ['a missing key', {}, '/a'],
    ['an unknown key', { 'x-api-key': 'key-nope' }, '/a'],
    ['an empty query key', {}, '/a?api_key='],
    ['a query parameter without a value', {}, '/a?api_key&b=key-one'],
    ['a cookie of another name', { cookie: 'api_key=key-one; session_keyx=key-one' }, '/a'],
  ] as const) {
    it(`refuses ${what} with a 401, never reaching the upstream`, async () => {
      const { res, arrived, unauthorized } = await send(path, headers);
      assert.equal(res.status, 401);
      assert.equal(res.body, 'Client authentication failed.');
      assert.equal(arrived, undefined);
      assert.equal(unauthorized, 1);
    });
  }

  it('refuses a known client that the route does not allow with a 403, and lets the allowed one through', async () => {
    const denied = await send('/ops', { 'x-api-key': 'key-one' });
    assert.equal(denied.res.status, 403);
    assert.equal(denied.res.body, 'Client is forbidden.');
    assert.equal(denied.arrived, undefined);
    assert.equal(denied.forbidden, 1);
    const allowed = await send('/ops', { 'x-api-key': 'key-ops' });
    assert.equal(allowed.res.status, 200);
    assert.equal(allowed.arrived!.headers['x-client'], 'ops-team');
    // An unknown key is still a 401 there.
    assert.equal((await send('/ops', { 'x-api-key': 'key-nope' })).res.status, 401);
  });

  it('uses a route’s own credentials, key sources and forwarding instead of the filter’s', async () => {
    assert.equal((await send('/partner', { 'x-api-key': 'key-one' })).res.status, 401);
    assert.equal((await send('/partner', { 'x-partner-key': 'key-one' })).res.status, 401);
    const { res, arrived } = await send('/partner', { 'x-partner-key': 'partner-key' });
    assert.equal(res.status, 200);
    assert.equal(arrived!.headers['x-partner'], 'partner');
    assert.equal(arrived!.headers['x-client'], undefined);
    // The route's forwarding does not hide credentials.
    assert.equal(arrived!.headers['x-partner-key'], 'partner-key');
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

describe('api_key_auth configuration', () => {
  const ROUTE = { match: { prefix: '/' }, route: { cluster: 'backend' } };
  const FILTER = `${HCM}.http_filters[0].typed_config`;

  it('decodes the hand-written messages, camelCase spellings included', () => {
    const config = { credentials: [{ key: 'k', client: 'c' }], keySources: [{ header: 'x-k' }], forwarding: { hideCredentials: true } };
    const routes = [{ ...ROUTE, typed_per_filter_config: perRoute({ allowedClients: ['c'] }) }];
    assert.deepEqual(configErrors(bootstrap(config, routes, 1)), []);
  });

  it('reports empty keys and clients, duplicate keys, empty key sources and unknown fields with their paths', () => {
    const config = {
      credentials: [{ key: 'k', client: 'c' }, { key: '', client: 'c' }, { key: 'k2' }],
      key_sources: [{ header: 'x-k' }, {}],
    };
    const errors = configErrors(bootstrap(config, [ROUTE], 1));
    assert.deepEqual(
      errors.map((e) => e.path),
      [`${FILTER}.credentials[1].key`, `${FILTER}.credentials[2].client`],
      JSON.stringify(errors),
    );
    const compiled = configErrors(bootstrap({ credentials: [{ key: 'k', client: 'a' }, { key: 'k', client: 'b' }], key_sources: [{ header: 'x-k' }, {}] }, [ROUTE], 1));
    assert.deepEqual(
      compiled.map((e) => `${e.path} ${e.message}`),
      [`${FILTER}.credentials[1] duplicate API key`, `${FILTER}.key_sources[1] one of 'header', 'query' or 'cookie' must be set`],
    );
    const unknown = configErrors(bootstrap({ credentials: [{ key: 'k', client: 'a', secret: 1 }] }, [ROUTE], 1));
    assert.equal(unknown.length, 1, JSON.stringify(unknown));
    assert.equal(unknown[0]!.path, `${FILTER}.credentials[0].secret`);
  });
});

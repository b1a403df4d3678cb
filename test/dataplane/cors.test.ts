/**
 * The HTTP filter chain with `envoy.filters.http.cors`, end to end through real sockets: preflights answered,
 * refused or forwarded, simple requests, the per-attribute merge of route, virtual host and route configuration
 * policies, disabled and shadow policies, local replies, the deprecated `cors` fields, stats and response flags.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, type Json, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, refusedPort, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';

const CORS_FILTER = { name: 'envoy.filters.http.cors', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors' } };

function corsPolicy(policy: Json): Json {
  return { 'envoy.filters.http.cors': { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy', ...policy } };
}

const percent = (numerator: number): Json => ({ default_value: { numerator, denominator: 'HUNDRED' } });

function cluster(name: string, port: number): Json {
  return {
    name,
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
}

function bootstrap(routeConfig: Json, clusters: Json[], httpFilters: Json[] = [CORS_FILTER], extra: Json = {}): string {
  return JSON.stringify({ ...extra, static_resources: { listeners: [httpListener(routeConfig, {}, httpFilters)], clusters } });
}

const VALID = 'http.ingress_http.cors.origin_valid';
const INVALID = 'http.ingress_http.cors.origin_invalid';

/** The stat deltas a request caused. */
async function counted<T>(gw: RunningPortico, run: () => Promise<T>): Promise<{ result: T; valid: number; invalid: number }> {
  const valid = stat(gw, VALID) ?? 0;
  const invalid = stat(gw, INVALID) ?? 0;
  const result = await run();
  return { result, valid: (stat(gw, VALID) ?? 0) - valid, invalid: (stat(gw, INVALID) ?? 0) - invalid };
}

const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
];

function assertNoCorsHeaders(headers: Record<string, unknown>): void {
  for (const name of CORS_HEADERS) assert.equal(headers[name], undefined, `unexpected ${name}`);
}

describe('CORS filter', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  let legacy: RunningPortico;
  let routerOnly: RunningPortico;

  const route = (prefix: string, extra: Json = {}, cluster = 'backend'): Json => ({ match: { prefix }, route: { cluster }, ...extra });

  before(async () => {
    upstream = await startRecordingUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'access-control-allow-origin': 'upstream-value' });
      res.end('from upstream');
    });
    const clusters = [cluster('backend', upstream.port), cluster('dead', await refusedPort())];
    gw = await startPortico(
      bootstrap(
        {
          name: 'local',
          // Response flags and details of every routed reply, and a route configuration level policy.
          response_headers_to_add: [
            { header: { key: 'x-flags', value: '%RESPONSE_FLAGS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
            { header: { key: 'x-details', value: '%RESPONSE_CODE_DETAILS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
          ],
          typed_per_filter_config: corsPolicy({ max_age: '600', expose_headers: 'x-exposed' }),
          virtual_hosts: [
            {
              name: 'app',
              domains: ['*'],
              typed_per_filter_config: corsPolicy({
                allow_origin_string_match: [{ exact: 'https://app.example' }, { suffix: '.trusted.example' }],
                allow_methods: 'GET, POST',
                allow_headers: 'x-a, x-b',
                allow_credentials: true,
              }),
              routes: [
                route('/restricted', { typed_per_filter_config: corsPolicy({ allow_origin_string_match: [{ safe_regex: { regex: '.*\\.envoyproxy\\.io' } }], allow_methods: 'GET' }) }),
                route('/disabled', { typed_per_filter_config: corsPolicy({ filter_enabled: percent(0) }) }),
                route('/shadow', { typed_per_filter_config: corsPolicy({ filter_enabled: percent(0), shadow_enabled: percent(100) }) }),
                route('/runtime-off', { typed_per_filter_config: corsPolicy({ filter_enabled: { ...percent(100), runtime_key: 'cors.off' } }) }),
                route('/strict', { typed_per_filter_config: corsPolicy({ forward_not_matching_preflights: false, allow_credentials: false }) }),
                route('/any', {
                  typed_per_filter_config: corsPolicy({ allow_origin_string_match: [{ safe_regex: { regex: '\\*' } }], allow_methods: '*', allow_headers: '*', allow_private_network_access: true }),
                }),
                route('/dead', {}, 'dead'),
                { match: { prefix: '/direct' }, direct_response: { status: 200, body: { inline_string: 'direct' } } },
                route('/'),
              ],
            },
          ],
        },
        clusters,
        [CORS_FILTER],
        { layered_runtime: { layers: [{ name: 'static', static_layer: { 'cors.off': 0 } }] } },
      ),
    );
    legacy = await startPortico(
      bootstrap(
        {
          name: 'legacy',
          virtual_hosts: [
            {
              name: 'legacy',
              domains: ['*'],
              cors: { allow_origin_string_match: [{ exact: 'https://old.example' }], allow_methods: 'PUT', expose_headers: 'x-old' },
              routes: [
                { match: { prefix: '/own' }, route: { cluster: 'backend', cors: { allow_origin_string_match: [{ exact: 'https://own.example' }] } } },
                route('/'),
              ],
            },
          ],
        },
        clusters,
      ),
    );
    routerOnly = await startPortico(bootstrap({ name: 'plain', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [route('/')] }] }, clusters, []));
  });

  after(async () => {
    await Promise.all([gw?.close(), legacy?.close(), routerOnly?.close()]);
    await upstream?.close();
  });

  const preflight = (origin: string, method = 'POST', extra: Record<string, string> = {}): { method: string; headers: Record<string, string> } => ({
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, ...extra },
  });

  it('answers an allowed preflight itself with 200 and the merged allow headers', async () => {
    const before = upstream.requests.length;
    const { result: res, valid, invalid } = await counted(gw, () => httpRequest(`${gw.url()}/open`, preflight('https://app.example')));
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers['content-length'], '0');
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(res.headers['access-control-allow-methods'], 'GET, POST');
    assert.equal(res.headers['access-control-allow-headers'], 'x-a, x-b');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    // From the route configuration level: the merge is per attribute.
    assert.equal(res.headers['access-control-max-age'], '600');
    // As Envoy, the preflight answer passes the filter's encodeHeaders too.
    assert.equal(res.headers['access-control-expose-headers'], 'x-exposed');
    assert.equal(res.headers['x-details'], 'cors_response');
    assert.equal(res.headers['x-flags'], '-');
    assert.equal(upstream.requests.length, before, 'the preflight must not reach the upstream');
    assert.deepEqual([valid, invalid], [1, 0]);
  });

  it('forwards a preflight from an origin that is not allowed (forward_not_matching_preflights defaults to true)', async () => {
    const before = upstream.requests.length;
    const { result: res, valid, invalid } = await counted(gw, () => httpRequest(`${gw.url()}/open`, preflight('https://evil.example')));
    assert.equal(res.status, 200);
    assert.equal(res.body, 'from upstream');
    assert.equal(res.headers['access-control-allow-origin'], 'upstream-value', 'the upstream answer is left alone');
    assert.equal(upstream.requests.length, before + 1);
    assert.equal(upstream.requests.at(-1)!.method, 'OPTIONS');
    assert.deepEqual([valid, invalid], [0, 1]);
  });

  it('answers a preflight from an origin that is not allowed without allow-origin when forward_not_matching_preflights is false', async () => {
    const before = upstream.requests.length;
    const res = await httpRequest(`${gw.url()}/strict`, preflight('https://evil.example'));
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
    assert.equal(res.headers['access-control-allow-credentials'], undefined, 'the route sets allow_credentials false');
    assert.equal(res.headers['access-control-allow-methods'], 'GET, POST');
    assert.equal(upstream.requests.length, before);
  });

  it('gives a simple request from an allowed origin allow-origin (the Origin echoed), credentials and expose headers', async () => {
    const { result: res, valid } = await counted(gw, () => httpRequest(`${gw.url()}/open`, { headers: { origin: 'https://api.trusted.example' } }));
    assert.equal(res.status, 200);
    assert.equal(res.body, 'from upstream');
    assert.equal(res.headers['access-control-allow-origin'], 'https://api.trusted.example');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    assert.equal(res.headers['access-control-expose-headers'], 'x-exposed');
    assert.equal(res.headers['access-control-allow-methods'], undefined, 'allow-methods is for preflights only');
    assert.equal(res.headers.vary, undefined, 'Envoy adds no vary');
    assert.equal(upstream.requests.at(-1)!.headers.origin, 'https://api.trusted.example');
    assert.equal(valid, 1);
  });

  it('leaves responses to other origins, and requests without Origin, alone', async () => {
    const { result: denied, invalid } = await counted(gw, () => httpRequest(`${gw.url()}/open`, { headers: { origin: 'https://evil.example' } }));
    assert.equal(denied.status, 200, 'a disallowed origin is still proxied');
    assert.equal(denied.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(denied.headers['access-control-expose-headers'], undefined);
    assert.equal(invalid, 1);
    const { result: none, valid, invalid: invalid2 } = await counted(gw, () => httpRequest(`${gw.url()}/open`));
    assert.equal(none.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(none.headers['access-control-allow-credentials'], undefined);
    assert.deepEqual([valid, invalid2], [0, 0], 'requests without Origin are not counted');
  });

  it('takes a route override attribute by attribute', async () => {
    const other = await httpRequest(`${gw.url()}/restricted`, { headers: { origin: 'http://example.com' } });
    assert.equal(other.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(other.headers['access-control-allow-credentials'], undefined);
    const allowed = await httpRequest(`${gw.url()}/restricted`, { headers: { origin: 'http://foo.envoyproxy.io' } });
    assert.equal(allowed.headers['access-control-allow-origin'], 'http://foo.envoyproxy.io');
    assert.equal(allowed.headers['access-control-allow-credentials'], 'true', 'inherited from the virtual host');
    const pre = await httpRequest(`${gw.url()}/restricted`, preflight('http://foo.envoyproxy.io', 'GET'));
    assert.equal(pre.headers['access-control-allow-methods'], 'GET');
    assert.equal(pre.headers['access-control-allow-headers'], 'x-a, x-b', 'inherited from the virtual host');
    // The regex matches the whole origin, as RE2's full match.
    const partial = await httpRequest(`${gw.url()}/restricted`, { headers: { origin: 'http://foo.envoyproxy.io.evil' } });
    assert.equal(partial.headers['access-control-allow-origin'], 'upstream-value');
  });

  it('does nothing on a route whose policy is disabled, nor counts', async () => {
    for (const path of ['/disabled', '/runtime-off']) {
      const before = upstream.requests.length;
      const { result: res, valid, invalid } = await counted(gw, () => httpRequest(`${gw.url()}${path}`, preflight('https://app.example')));
      assert.equal(res.body, 'from upstream', `${path}: the preflight goes upstream`);
      assert.equal(res.headers['access-control-allow-origin'], 'upstream-value');
      assert.equal(upstream.requests.length, before + 1);
      assert.deepEqual([valid, invalid], [0, 0], path);
    }
  });

  it('only counts in shadow mode', async () => {
    const { result: pre, valid } = await counted(gw, () => httpRequest(`${gw.url()}/shadow`, preflight('https://app.example')));
    assert.equal(pre.body, 'from upstream');
    assert.equal(pre.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(valid, 1);
    const { result: simple, invalid } = await counted(gw, () => httpRequest(`${gw.url()}/shadow`, { headers: { origin: 'https://evil.example' } }));
    assert.equal(simple.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(invalid, 1);
  });

  it('allows any origin with a matcher of the literal "*", and echoes the request with allow_methods and allow_headers "*"', async () => {
    const res = await httpRequest(
      `${gw.url()}/any`,
      preflight('https://anyone.example', 'DELETE', { 'access-control-request-headers': 'x-custom', 'access-control-request-private-network': 'true' }),
    );
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers['access-control-allow-origin'], 'https://anyone.example');
    assert.equal(res.headers['access-control-allow-methods'], 'DELETE');
    assert.equal(res.headers['access-control-allow-headers'], 'x-custom');
    assert.equal(res.headers['access-control-allow-private-network'], 'true');
  });

  it('adds CORS headers to the router\'s local replies, but not to direct responses (no route entry, as Envoy)', async () => {
    const dead = await httpRequest(`${gw.url()}/dead`, { headers: { origin: 'https://app.example' } });
    assert.equal(dead.status, 503);
    assert.equal(dead.headers['x-flags'], 'UF');
    assert.equal(dead.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(dead.headers['access-control-allow-credentials'], 'true');
    const { result: direct, valid } = await counted(gw, () => httpRequest(`${gw.url()}/direct`, preflight('https://app.example')));
    assert.equal(direct.body, 'direct');
    assertNoCorsHeaders(direct.headers);
    assert.equal(valid, 0);
  });

  it('reads the deprecated cors fields of the route action and virtual host when no typed_per_filter_config is set', async () => {
    const vhost = await httpRequest(`${legacy.url()}/x`, preflight('https://old.example', 'PUT'));
    assert.equal(vhost.body, '');
    assert.equal(vhost.headers['access-control-allow-origin'], 'https://old.example');
    assert.equal(vhost.headers['access-control-allow-methods'], 'PUT');
    const own = await httpRequest(`${legacy.url()}/own`, { headers: { origin: 'https://own.example' } });
    assert.equal(own.headers['access-control-allow-origin'], 'https://own.example');
    assert.equal(own.headers['access-control-expose-headers'], 'x-old', 'merged with the virtual host policy');
    const old = await httpRequest(`${legacy.url()}/own`, { headers: { origin: 'https://old.example' } });
    assert.equal(old.headers['access-control-allow-origin'], 'upstream-value');
  });

  it('a chain with only the router leaves CORS to the upstream and creates no cors stats', async () => {
    const before = upstream.requests.length;
    const res = await httpRequest(`${routerOnly.url()}/x`, preflight('https://app.example'));
    assert.equal(res.body, 'from upstream');
    assert.equal(res.headers['access-control-allow-origin'], 'upstream-value');
    assert.equal(upstream.requests.length, before + 1);
    assert.deepEqual(routerOnly.plane.stats.snapshot().counters.filter(([name]) => name.includes('.cors.')), []);
  });
});

/** Every error of a configuration: schema and support checks, then compilation. */
function configErrors(yaml: string): ConfigError[] {
  const errors: ConfigError[] = [];
  const checked = checkBootstrap(parseDocument(yaml, 't.yaml', errors));
  errors.push(...checked.errors);
  if (errors.length === 0) compileBootstrap(checked.bootstrap, createLogger('off'), errors, EXTENSIONS);
  return errors;
}

describe('CORS filter configuration', () => {
  const CORS = '- name: envoy.filters.http.cors\n  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }';
  const HCM = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
  const config = (routeExtra: string, httpFilters = CORS): string =>
    simpleBootstrap({ routes: `- match: { prefix: "/" }\n  route: { cluster: a }\n${routeExtra}`, clusters: staticCluster('a', 1), httpFilters });

  it('loads the filter with per-route policies', () => {
    const policy = '  typed_per_filter_config:\n    envoy.filters.http.cors: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_methods: GET }';
    assert.deepEqual(configErrors(config(policy)), []);
  });

  it('still refuses a filter it does not implement, by name, next to the CORS filter', () => {
    const lua = `${CORS}\n- name: envoy.filters.http.lua\n  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua }`;
    const errors = configErrors(config('', lua));
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.code, 'unsupported_extension');
    assert.equal(errors[0]!.path, `${HCM}.http_filters[1]`);
    assert.match(errors[0]!.message, /unsupported extension envoy\.filters\.http\.lua/);
  });

  it('refuses a per-route policy given as a filter, and a filter config given as a per-route policy', () => {
    const policyAsFilter = '- name: envoy.filters.http.cors\n  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy }';
    const filterAsPolicy = '  typed_per_filter_config:\n    envoy.filters.http.cors: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }';
    const errors = configErrors(config(filterAsPolicy, policyAsFilter));
    assert.deepEqual(
      errors.map((e) => `${e.code} ${e.path}`),
      [
        `unsupported_extension ${HCM}.http_filters[0]`,
        `unsupported_extension ${HCM}.route_config.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.cors"]`,
      ],
    );
  });

  it('reports a bad origin regex with its path', () => {
    const policy =
      '  typed_per_filter_config:\n    envoy.filters.http.cors: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [{ exact: a }, { safe_regex: { regex: "[" } }] }';
    const errors = configErrors(config(policy));
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.code, 'invalid_regex');
    assert.match(errors[0]!.path, /routes\[0\]\.typed_per_filter_config\["envoy\.filters\.http\.cors"\]\.allow_origin_string_match\[1\]\.safe_regex/);
  });
});

/**
 * `envoy.filters.http.local_ratelimit` end to end through real sockets: the listener's bucket and routes' own
 * replacements, refill, enabled but not enforced, the default 0 %, descriptors from route rate_limits,
 * per-connection buckets, x-ratelimit headers, stats and configuration errors.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Agent, request as undiciRequest } from 'undici';
import { checkBootstrap, parseDocument } from '../../src/config/load.js';
import type { ConfigError } from '../../src/config/errors.js';
import { compileBootstrap } from '../../src/dataplane/data-plane.js';
import { EXTENSIONS } from '../../src/extensions/registry.js';
import { createLogger } from '../../src/util/logger.js';
import { httpListener, type Json, parseBootstrap, type RunningPortico, startPortico, stat } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';

const TYPE = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
const ALL = { default_value: { numerator: 100, denominator: 'HUNDRED' } };
const HOUR = '3600s';

function limit(config: Json): Json {
  return { '@type': TYPE, filter_enabled: ALL, filter_enforced: ALL, ...config };
}

const bucket = (max_tokens: number, fill_interval = HOUR, tokens_per_fill?: number): Json => ({ max_tokens, fill_interval, ...(tokens_per_fill ? { tokens_per_fill } : {}) });

function route(prefix: string, perRoute?: Json, rateLimits?: Json[]): Json {
  return {
    match: { prefix },
    route: { cluster: 'backend', ...(rateLimits ? { rate_limits: rateLimits } : {}) },
    ...(perRoute ? { typed_per_filter_config: { 'envoy.filters.http.local_ratelimit': limit(perRoute) } } : {}),
  };
}

function bootstrap(port: number): string {
  const routeConfig = {
    name: 'local',
    response_headers_to_add: [
      { header: { key: 'x-flags', value: '%RESPONSE_FLAGS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
      { header: { key: 'x-details', value: '%RESPONSE_CODE_DETAILS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    ],
    virtual_hosts: [
      {
        name: 'app',
        domains: ['*'],
        rate_limits: [{ actions: [{ generic_key: { descriptor_value: 'from-vhost' } }] }],
        routes: [
          route('/listener'),
          route('/basic', {
            stat_prefix: 'basic',
            token_bucket: bucket(2),
            response_headers_to_add: [{ header: { key: 'x-local-rate-limit', value: 'true' } }],
          }),
          route('/refill', { stat_prefix: 'refill', token_bucket: bucket(1, '1s') }),
          route('/shadow', {
            stat_prefix: 'shadow',
            token_bucket: bucket(1),
            filter_enforced: undefined,
            request_headers_to_add_when_not_enforced: [{ header: { key: 'x-would-limit', value: 'true' } }],
          }),
          route('/off', { stat_prefix: 'off', token_bucket: bucket(1), filter_enabled: undefined, filter_enforced: undefined }),
          route(
            '/desc',
            {
              stat_prefix: 'desc',
              token_bucket: bucket(100),
              enable_x_ratelimit_headers: 'DRAFT_VERSION_03',
              always_consume_default_token_bucket: false,
              descriptors: [
                { entries: [{ key: 'generic_key', value: 'desc' }], token_bucket: bucket(3, '60s') },
                { entries: [{ key: 'user', value: 'ann' }], token_bucket: bucket(1) },
              ],
            },
            [{ actions: [{ request_headers: { header_name: 'x-user', descriptor_key: 'user' } }] }, { actions: [{ generic_key: { descriptor_value: 'desc' } }] }],
          ),
          route('/conn', { stat_prefix: 'conn', token_bucket: bucket(1), local_rate_limit_per_downstream_connection: true }),
          route('/headers', { stat_prefix: 'headers', token_bucket: bucket(5, '60s'), enable_x_ratelimit_headers: 'DRAFT_VERSION_03' }),
          route('/grpc', { stat_prefix: 'grpc', token_bucket: bucket(1), rate_limited_as_resource_exhausted: true }),
          // No rate_limits of its own: the virtual host's apply (vh_rate_limits OVERRIDE, the default).
          route('/vhost', {
            stat_prefix: 'vhost',
            descriptors: [{ entries: [{ key: 'generic_key', value: 'from-vhost' }], token_bucket: bucket(1) }],
          }),
        ],
      },
    ],
  };
  const filter = { name: 'envoy.filters.http.local_ratelimit', typed_config: limit({ stat_prefix: 'listener', token_bucket: bucket(1) }) };
  const cluster = {
    name: 'backend',
    connect_timeout: '1s',
    load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
  return JSON.stringify({ static_resources: { listeners: [httpListener(routeConfig, {}, [filter])], clusters: [cluster] } });
}

describe('local rate limit filter', () => {
  let upstream: RecordingUpstream;
  let gw: RunningPortico;
  const statuses = async (path: string, n: number, headers: Record<string, string> = {}): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await httpRequest(`${gw.url()}${path}`, { headers })).status);
    return out;
  };
  const counters = (prefix: string) =>
    Object.fromEntries(['enabled', 'enforced', 'rate_limited', 'ok'].map((name) => [name, stat(gw, `${prefix}.http_local_rate_limit.${name}`) ?? 0]));

  before(async () => {
    upstream = await startRecordingUpstream();
    gw = await startPortico(bootstrap(upstream.port));
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('answers 429 local_rate_limited once the bucket is empty, with response_headers_to_add and the RL flag', async () => {
    assert.deepEqual(await statuses('/basic', 2), [200, 200]);
    const res = await httpRequest(`${gw.url()}/basic`);
    assert.equal(res.status, 429);
    assert.equal(res.body, 'local_rate_limited');
    assert.equal(res.headers['x-local-rate-limit'], 'true');
    assert.equal(res.headers['x-flags'], 'RL');
    assert.equal(res.headers['x-details'], 'local_rate_limited');
    assert.deepEqual(counters('basic'), { enabled: 3, enforced: 1, rate_limited: 1, ok: 2 });
  });

  it("uses the listener's bucket on routes without their own config; a route's own config replaces it", async () => {
    assert.deepEqual(await statuses('/listener', 2), [200, 429]);
    assert.deepEqual(counters('listener'), { enabled: 2, enforced: 1, rate_limited: 1, ok: 1 });
  });

  it('refills after fill_interval', async () => {
    assert.deepEqual(await statuses('/refill', 2), [200, 429]);
    await sleep(1100);
    assert.deepEqual(await statuses('/refill', 2), [200, 429]);
  });

  it('counts but forwards when enforcement is 0 %, adding request_headers_to_add_when_not_enforced', async () => {
    const before = upstream.requests.length;
    assert.deepEqual(await statuses('/shadow', 2), [200, 200]);
    const seen = upstream.requests.slice(before);
    assert.equal(seen[0]!.headers['x-would-limit'], undefined);
    assert.equal(seen[1]!.headers['x-would-limit'], 'true');
    assert.deepEqual(counters('shadow'), { enabled: 2, enforced: 0, rate_limited: 1, ok: 1 });
  });

  it('does nothing without filter_enabled (0 % by default)', async () => {
    assert.deepEqual(await statuses('/off', 3), [200, 200, 200]);
    assert.deepEqual(counters('off'), { enabled: 0, enforced: 0, rate_limited: 0, ok: 0 });
  });

  it("limits by the descriptors the route's request_headers and generic_key actions produce", async () => {
    // ann matches both descriptors: her own bucket of 1 runs out first (the slowest is consumed first).
    const ann = await httpRequest(`${gw.url()}/desc`, { headers: { 'x-user': 'ann' } });
    assert.equal(ann.status, 200);
    assert.equal(ann.headers['x-ratelimit-limit'], '1');
    assert.equal(ann.headers['x-ratelimit-remaining'], '0');
    assert.deepEqual(await statuses('/desc', 1, { 'x-user': 'ann' }), [429]);
    // Everyone else only matches generic_key=desc, of which ann took one of 3.
    const bob = await httpRequest(`${gw.url()}/desc`, { headers: { 'x-user': 'bob' } });
    assert.equal(bob.status, 200);
    assert.equal(bob.headers['x-ratelimit-limit'], '3');
    assert.equal(bob.headers['x-ratelimit-remaining'], '1');
    assert.deepEqual(await statuses('/desc', 2), [200, 429]);
  });

  it('gives each downstream connection its own bucket with local_rate_limit_per_downstream_connection', async () => {
    const agent = new Agent({ connections: 1, pipelining: 1 });
    try {
      const onConnection = async () => (await undiciRequest(`${gw.url()}/conn`, { dispatcher: agent }).then(async (r) => (await r.body.text(), r.statusCode)));
      assert.deepEqual([await onConnection(), await onConnection()], [200, 429]);
      assert.deepEqual(await statuses('/conn', 2), [200, 200]);
    } finally {
      await agent.destroy();
    }
  });

  it('answers gRPC requests with UNAVAILABLE, or RESOURCE_EXHAUSTED given rate_limited_as_resource_exhausted', async () => {
    const grpc = { 'content-type': 'application/grpc' };
    assert.equal((await httpRequest(`${gw.url()}/grpc`, { method: 'POST', headers: grpc })).status, 200);
    const limited = await httpRequest(`${gw.url()}/grpc`, { method: 'POST', headers: grpc });
    assert.equal(limited.status, 200);
    assert.equal(limited.headers['grpc-status'], '8');
    // Without it, 429's gRPC mapping (the listener's bucket is empty since the test above).
    assert.equal((await httpRequest(`${gw.url()}/listener`, { method: 'POST', headers: grpc })).headers['grpc-status'], '14');
  });

  it("uses the virtual host's rate_limits on a route without its own", async () => {
    assert.deepEqual(await statuses('/vhost', 2), [200, 429]);
  });

  it('adds x-ratelimit-limit, -remaining and -reset (DRAFT_VERSION_03)', async () => {
    const res = await httpRequest(`${gw.url()}/headers`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-ratelimit-limit'], '5');
    assert.equal(res.headers['x-ratelimit-remaining'], '4');
    const reset = Number(res.headers['x-ratelimit-reset']);
    assert.ok(reset > 0 && reset <= 60, `reset ${reset}`);
    assert.equal((await httpRequest(`${gw.url()}/basic`)).headers['x-ratelimit-limit'], undefined);
  });
});

describe('local rate limit buckets across configuration updates', () => {
  it('keeps the tokens of a bucket a new configuration keeps, and starts a changed bucket full', async () => {
    const upstream = await startRecordingUpstream();
    const config = (maxTokens: number, routeHeader: string) => {
      const filter = { name: 'envoy.filters.http.local_ratelimit', typed_config: limit({ stat_prefix: 'reload', token_bucket: bucket(maxTokens) }) };
      const routes = [{ match: { prefix: '/' }, route: { cluster: 'backend' }, response_headers_to_add: [{ header: { key: 'x-config', value: routeHeader } }] }];
      const cluster = {
        name: 'backend',
        connect_timeout: '1s',
        load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstream.port } } } }] }] },
      };
      const listener = { name: 'main', ...httpListener({ virtual_hosts: [{ name: 'app', domains: ['*'], routes }] }, {}, [filter]) };
      return JSON.stringify({ static_resources: { listeners: [listener], clusters: [cluster] } });
    };
    const gw = await startPortico(config(2, 'a'));
    try {
      const get = async () => {
        const res = await httpRequest(`${gw.url()}/`);
        return `${res.status} ${res.headers['x-config']}`;
      };
      assert.equal(await get(), '200 a');
      await gw.plane.update(parseBootstrap(config(2, 'b')), 0);
      assert.deepEqual([await get(), await get()], ['200 b', '429 b']);
      await gw.plane.update(parseBootstrap(config(3, 'c')), 0);
      assert.equal(await get(), '200 c');
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});

describe('local rate limit configuration', () => {
  function compileErrors(typedConfig: Json): ConfigError[] {
    const errors: ConfigError[] = [];
    const json = parseDocument(
      JSON.stringify({ static_resources: { listeners: [httpListener({ virtual_hosts: [] }, {}, [{ name: 'rl', typed_config: { '@type': TYPE, ...typedConfig } }])] } }),
      'test.json',
      errors,
    );
    const checked = checkBootstrap(json);
    errors.push(...checked.errors);
    if (errors.length === 0) compileBootstrap(checked.bootstrap, createLogger('off'), errors, EXTENSIONS);
    return errors;
  }

  it('reports every problem with its path', () => {
    const at = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config';
    const paths = (config: Json) => compileErrors(config).map((e) => e.path).sort();
    assert.deepEqual(paths({ token_bucket: { max_tokens: 0, fill_interval: '1s' }, descriptors: [{ entries: [], token_bucket: { max_tokens: 1, fill_interval: '1s' } }] }), [
      `${at}.descriptors[0].entries`,
      `${at}.stat_prefix`,
      `${at}.token_bucket.max_tokens`,
    ]);
    assert.deepEqual(paths({ stat_prefix: 'x', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] }), [`${at}.descriptors[0].token_bucket`]);
    assert.deepEqual(paths({ stat_prefix: 'x', token_bucket: { max_tokens: 1, fill_interval: '0.01s' } }), [`${at}.token_bucket.fill_interval`]);
    assert.deepEqual(
      compileErrors({ stat_prefix: 'x', local_cluster_rate_limit: {} }).map((e) => [e.code, e.path]),
      [['unsupported_field', `${at}.local_cluster_rate_limit`]],
    );
  });
});

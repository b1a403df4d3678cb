/**
 * RateLimit resources: validation with every problem and its path, their translation into the descriptor tree
 * of Portico's own rate limit service and a ratelimit filter pointed at it, and `portico start` counting real
 * requests through the proxy in memory and in a real Redis, with limits edited mid-window through the API.
 * Windows are hours, so that no test straddles the end of one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { parseResource, type Resource } from '../../src/controlplane/resources.js';
import { checkTranslation, translate } from '../../src/controlplane/translate.js';
import { type EchoServer, startEchoServer } from '../../src/echo/echo-server.js';
import { findLimit } from '../../src/ratelimit/config.js';
import { createLogger } from '../../src/util/logger.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { hasRedis, REDIS_MISSING, startRedis, type TestRedis } from '../support/redis.js';

function problems(spec: unknown): string[] {
  const errors: ConfigError[] = [];
  parseResource({ kind: 'RateLimit', metadata: { name: 'x' }, spec }, errors);
  return errors.map((e) => `${e.path} ${e.code}`);
}

function resource(kind: string, name: string, spec: object): Resource {
  const errors: ConfigError[] = [];
  const r = parseResource({ kind, metadata: { name }, spec }, errors);
  assert.deepEqual(errors, []);
  return r!;
}

const OPTIONS = { listenerAddress: '127.0.0.1', listenerPort: 8080, rateLimitPort: 18081 };
const quiet = createLogger('off');
const entries = (pairs: [string, string][]) => pairs.map(([key, value]) => ({ key, value }));

describe('RateLimit validation', () => {
  it('refuses a bad RateLimit with every problem and its path', () => {
    assert.deepEqual(
      problems({
        domain: 3,
        limits: [
          { pattern: [{ generic_key: 'api' }], rate: 0, unit: 'week', action: 'Deny' },
          { pattern: [], rate: 1.5 },
          { pattern: [{ a: 'x', b: 'y' }, {}, { '': 'v' }, { c: 7 }, 'remote_address'], rate: 1, unit: 'second' },
          { pattern: [{ user: '*' }], rate: 5, unit: 'minute', burstFactor: 2, colour: 'red' },
          'fast',
        ],
        extra: true,
      }),
      [
        'spec.domain wrong_type',
        'spec.limits[0].rate invalid_value',
        'spec.limits[0].unit invalid_value',
        'spec.limits[0].action invalid_value',
        'spec.limits[1].unit missing_required',
        'spec.limits[1].pattern invalid_value',
        'spec.limits[1].rate wrong_type',
        'spec.limits[2].pattern[0] invalid_value',
        'spec.limits[2].pattern[1] invalid_value',
        'spec.limits[2].pattern[2] invalid_value',
        'spec.limits[2].pattern[3].c wrong_type',
        'spec.limits[2].pattern[4] wrong_type',
        'spec.limits[3].burstFactor unsupported_field',
        'spec.limits[3].colour unknown_field',
        'spec.limits[4] wrong_type',
        'spec.extra unknown_field',
      ],
    );
    assert.deepEqual(problems({}), ['spec.limits missing_required']);
    assert.deepEqual(problems({ limits: [{ pattern: [{ remote_address: '*' }], rate: 10, unit: 'hour', action: 'LogOnly', name: 'per-client' }] }), []);
  });
});

describe('RateLimit translation', () => {
  const mapping = resource('Mapping', 'api', { prefix: '/api/', service: 'api', labels: { ambassador: [{ per_user: ['api', { request_headers: { key: 'user', header_name: 'x-user' } }] }] } });
  const perUser = resource('RateLimit', 'per-user', {
    limits: [
      { name: 'user', pattern: [{ generic_key: 'api' }, { user: '*' }], rate: 2, unit: 'hour' },
      { pattern: [{ generic_key: 'api' }, { user: 'robot' }], rate: 100, unit: 'minute', action: 'LogOnly' },
    ],
  });
  const perClient = resource('RateLimit', 'clients', { domain: 'ambassador', limits: [{ pattern: [{ remote_address: '' }], rate: 50, unit: 'second' }] });

  it('points the ratelimit filter at the in-process service and sends the labels of its domain', () => {
    const t = translate([perUser, mapping, perClient], OPTIONS);
    assert.deepEqual(t.errors, []);
    assert.deepEqual(checkTranslation(t, quiet).errors, []);
    const hcm = (t.listeners[0] as any).filter_chains[0].filters[0].typed_config;
    const filter = hcm.http_filters.find((f: { name: string }) => f.name === 'envoy.filters.http.ratelimit');
    assert.deepEqual(filter.typed_config, {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit',
      domain: 'ambassador',
      timeout: '1s',
      failure_mode_deny: false,
      rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: 'cluster_ratelimit_127_0_0_1_18081' } }, transport_api_version: 'V3' },
    });
    const cluster = t.clusters.find((c) => c.name === 'cluster_ratelimit_127_0_0_1_18081') as any;
    assert.deepEqual(cluster.http2_protocol_options, {});
    assert.deepEqual(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: '127.0.0.1', port_value: 18081 });
    assert.deepEqual(hcm.route_config.virtual_hosts[0].routes[0].route.rate_limits, [
      { actions: [{ generic_key: { descriptor_value: 'api' } }, { request_headers: { header_name: 'x-user', descriptor_key: 'user', skip_if_absent: false } }] },
    ]);
    // The same bytes whatever the order.
    assert.equal(JSON.stringify(translate([perClient, mapping, perUser], OPTIONS).listeners), JSON.stringify(t.listeners));
  });

  it('builds the descriptor tree: a value per node, "" and "*" for any value, LogOnly as shadow mode', () => {
    const { config, limits, domain } = translate([perUser, perClient], OPTIONS).rateLimits;
    assert.equal(domain, 'ambassador');
    const alice = findLimit(config, 'ambassador', entries([['generic_key', 'api'], ['user', 'alice']]));
    assert.deepEqual([alice?.requestsPerUnit, alice?.unit, alice?.name, alice?.shadowMode, alice?.statKey], [2, 'HOUR', 'user', false, 'ambassador.generic_key_api.user']);
    const robot = findLimit(config, 'ambassador', entries([['generic_key', 'api'], ['user', 'robot']]));
    assert.deepEqual([robot?.requestsPerUnit, robot?.unit, robot?.shadowMode], [100, 'MINUTE', true]);
    assert.equal(findLimit(config, 'ambassador', entries([['remote_address', '10.0.0.1']]))?.requestsPerUnit, 50);
    assert.equal(findLimit(config, 'ambassador', entries([['generic_key', 'api']])), undefined, 'no limit on the inner node');
    assert.equal(findLimit(config, 'other', entries([['remote_address', '10.0.0.1']])), undefined);
    assert.deepEqual(
      limits.map((l) => `${l.resource}[${l.index}] ${l.rate}/${l.unit} ${l.action} ${l.statKey}`),
      [
        'RateLimit/clients[0] 50/second Enforce ambassador.remote_address',
        'RateLimit/per-user[0] 2/hour Enforce ambassador.generic_key_api.user',
        'RateLimit/per-user[1] 100/minute LogOnly ambassador.generic_key_api.user_robot',
      ],
    );
  });

  it('refuses colliding patterns naming both, other domains, and RateLimits beside a RateLimitService', () => {
    const twin = resource('RateLimit', 'twin', { limits: [{ pattern: [{ generic_key: 'api' }, { user: '' }], rate: 9, unit: 'day' }] });
    const elsewhere = resource('RateLimit', 'zz-elsewhere', { domain: 'edge', limits: [{ pattern: [{ generic_key: 'x' }], rate: 1, unit: 'day' }] });
    const t = translate([perUser, twin, elsewhere, mapping], OPTIONS);
    assert.deepEqual(t.errors.map((e) => `${e.resource} ${e.path}: ${e.message}`), [
      'RateLimit/twin spec.limits[0].pattern: the same pattern as RateLimit/per-user spec.limits[0]: a request can have one limit per descriptor',
      'RateLimit/zz-elsewhere spec.domain: the gateway sends one domain, "ambassador" of RateLimit/per-user; "edge" would never be asked',
    ]);
    const inOne = resource('RateLimit', 'one', { limits: [{ pattern: [{ a: 'b' }], rate: 1, unit: 'day' }, { pattern: [{ a: 'b' }], rate: 2, unit: 'day' }] });
    assert.deepEqual(translate([inOne], OPTIONS).errors.map((e) => e.path), ['spec.limits[1].pattern']);

    const rls = resource('RateLimitService', 'external', { service: 'rls.example:8081' });
    const beside = translate([perUser, rls, mapping], OPTIONS);
    assert.deepEqual(beside.errors.map((e) => `${e.resource} ${e.path} ${e.code}`), ['RateLimit/per-user spec oneof_conflict']);
    assert.match(beside.errors[0]!.message, /not called while RateLimitService\/external is in use/);
    assert.deepEqual(translate([perUser], { listenerAddress: '127.0.0.1', listenerPort: 8080 }).errors.map((e) => e.path), ['spec']);
  });
});

/** Creates a labelled Mapping and a RateLimit of 2 per hour and user through the API, then drives requests through the proxy. */
async function limitsEndToEnd(gw: TestGateway, echo: EchoServer): Promise<void> {
  const labels = { ambassador: [{ per_user: [{ generic_key: { value: 'api' } }, { request_headers: { key: 'user', header_name: 'x-user' } }] }] };
  const mapping = await gw.api('/api/v1/mappings/limited', { method: 'PUT', body: { kind: 'Mapping', spec: { prefix: '/limited/', service: `127.0.0.1:${echo.port}`, labels } } });
  assert.equal(mapping.status, 201);
  const rateLimit = (rate: number) => ({ kind: 'RateLimit', spec: { limits: [{ name: 'per-user', pattern: [{ generic_key: 'api' }, { user: '*' }], rate, unit: 'hour' }] } });
  assert.equal((await gw.api('/api/v1/ratelimits/users', { method: 'PUT', body: rateLimit(2) })).status, 201);

  const send = async (user: string) => {
    const res = await gw.proxy('/limited/x', { 'x-user': user });
    return res.status === 429 ? `429 ${res.headers['x-envoy-ratelimited']}` : String(res.status);
  };
  const statuses: string[] = [];
  for (let i = 0; i < 3; i++) statuses.push(await send('alice'));
  assert.deepEqual(statuses, ['200', '200', '429 true']);
  assert.equal(await send('bob'), '200', 'another user is another descriptor');

  // Raised to 4 mid-window: alice's 3 hits are kept, so one more passes, not four.
  assert.equal((await gw.api('/api/v1/ratelimits/users', { method: 'PUT', body: rateLimit(4) })).status, 200);
  assert.deepEqual([await send('alice'), await send('alice')], ['200', '429 true']);

  const stats = await gw.api('/api/v1/stats/ratelimits');
  assert.equal(stats.status, 200);
  assert.deepEqual(stats.json.limits, [
    { resource: 'RateLimit/users', index: 0, name: 'per-user', domain: 'ambassador', pattern: [{ generic_key: 'api' }, { user: '*' }], rate: 4, unit: 'hour', action: 'Enforce', hits: 6, near_limit: 2, over_limit: 2, rejected: 2 },
  ]);

  // A bad edit is refused with its path; the limit keeps serving.
  const bad = await gw.api('/api/v1/ratelimits/users', { method: 'PUT', body: { kind: 'RateLimit', spec: { limits: [{ pattern: [{ user: '*' }], rate: -1, unit: 'hour' }] } } });
  assert.deepEqual([bad.status, bad.json.errors.map((e: { path: string }) => e.path)], [400, ['spec.limits[0].rate']]);
  assert.equal(await send('alice'), '429 true');

  // Deleted: nothing is limited any more.
  assert.equal((await gw.api('/api/v1/ratelimits/users', { method: 'DELETE' })).status, 200);
  assert.equal(await send('alice'), '200');
  assert.deepEqual((await gw.api('/api/v1/stats/ratelimits')).json.limits, []);
}

describe('portico start with RateLimits', () => {
  let echo: EchoServer;
  before(async () => {
    echo = await startEchoServer({ name: 'backend' });
  });
  after(async () => echo?.close());

  it('counts in memory: 429 over the limit, counts kept across an edit, hits and rejections in the stats', async () => {
    const gw = await startTestGateway();
    try {
      await limitsEndToEnd(gw, echo);
    } finally {
      await gw.close();
    }
  });

  describe('with --redis-url', () => {
    let redis: TestRedis | undefined;
    before(async () => {
      if (hasRedis()) redis = await startRedis();
    });
    after(async () => redis?.stop());

    it('counts in Redis, where another gateway sees the same counts', async (t) => {
      if (!redis) return t.skip(REDIS_MISSING);
      const gw = await startTestGateway({ redisUrl: redis.url });
      let other: TestGateway | undefined;
      try {
        await limitsEndToEnd(gw, echo);
        // A second gateway on the same Redis, with its own store: alice's hits of this hour are already there.
        other = await startTestGateway({ redisUrl: redis.url });
        const docs = [
          { kind: 'Mapping', metadata: { name: 'limited' }, spec: { prefix: '/limited/', service: `127.0.0.1:${echo.port}`, labels: { ambassador: [{ per_user: [{ generic_key: { value: 'api' } }, { request_headers: { key: 'user', header_name: 'x-user' } }] }] } } },
          { kind: 'RateLimit', metadata: { name: 'users' }, spec: { limits: [{ pattern: [{ generic_key: 'api' }, { user: '*' }], rate: 7, unit: 'hour' }] } },
        ];
        assert.equal((await other.api('/api/v1/apply', { method: 'POST', body: JSON.stringify(docs) })).status, 200);
        // alice has 6 hits in this hour's Redis key (the one sent without a limit was not counted): one more passes.
        assert.deepEqual([(await other.proxy('/limited/x', { 'x-user': 'alice' })).status, (await other.proxy('/limited/x', { 'x-user': 'alice' })).status], [200, 429]);
      } finally {
        await other?.close();
        await gw.close();
      }
    });

    it('refuses to start when Redis cannot be reached', async (t) => {
      if (!redis) return t.skip(REDIS_MISSING);
      await assert.rejects(startTestGateway({ redisUrl: 'redis://127.0.0.1:1' }), /Redis not reachable/);
    });
  });
});

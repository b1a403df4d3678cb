/**
 * `envoy.filters.http.local_ratelimit` end to end through real sockets: the filter's bucket, refills, runtime
 * enabling and enforcing, descriptor buckets fed by route `rate_limits`, buckets per connection, x-ratelimit
 * headers, and a route's own LocalRateLimit replacing the filter's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from 'undici';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest, type RecordingUpstream, startRecordingUpstream } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

const ALWAYS = '{ default_value: { numerator: 100, denominator: HUNDRED }, runtime_key: lrl.enabled }';
const NEVER = '{ default_value: { numerator: 0, denominator: HUNDRED }, runtime_key: lrl.enforced }';

function filter(body: string): string {
  return `- name: envoy.filters.http.local_ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
${body
  .split('\n')
  .map((line) => `    ${line}`)
  .join('\n')}`;
}

describe('local rate limit filter', () => {
  let app: RecordingUpstream;
  let gw: RunningPortico;

  before(async () => {
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: filter(`stat_prefix: edge
token_bucket: { max_tokens: 3, tokens_per_fill: 3, fill_interval: 3600s }
filter_enabled: ${ALWAYS}
filter_enforced: ${ALWAYS}
enable_x_ratelimit_headers: DRAFT_VERSION_03
response_headers_to_add: [{ header: { key: x-limited-by, value: edge } }]
descriptors:
- entries: [{ key: user, value: alice }]
  token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }`),
        routes: `- match: { prefix: "/users" }
  route:
    cluster: app
    rate_limits: [{ actions: [{ request_headers: { header_name: x-user, descriptor_key: user } }] }]
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: users
      token_bucket: { max_tokens: 100, tokens_per_fill: 100, fill_interval: 3600s }
      filter_enabled: ${ALWAYS}
      filter_enforced: ${ALWAYS}
      always_consume_default_token_bucket: false
      descriptors:
      - entries: [{ key: user, value: alice }]
        token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }
- match: { prefix: "/refill" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: refill
      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 0.2s }
      filter_enabled: ${ALWAYS}
      filter_enforced: ${ALWAYS}
- match: { prefix: "/shadow" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: shadow
      token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s }
      filter_enabled: ${ALWAYS}
      filter_enforced: ${NEVER}
      request_headers_to_add_when_not_enforced: [{ header: { key: x-would-be-limited, value: "yes" } }]
- match: { prefix: "/per-connection" }
  route: { cluster: app }
  typed_per_filter_config:
    envoy.filters.http.local_ratelimit:
      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
      stat_prefix: conn
      token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s }
      filter_enabled: ${ALWAYS}
      filter_enforced: ${ALWAYS}
      local_rate_limit_per_downstream_connection: true
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

  it('admits max_tokens, then answers 429 local_rate_limited with its headers, counting each', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await httpRequest(`${gw.url()}/any`));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429]);
    assert.deepEqual(answers.map((a) => a.headers['x-ratelimit-remaining']), ['2', '1', '0', '0']);
    assert.equal(answers[0]!.headers['x-ratelimit-limit'], '3');
    const limited = answers[3]!;
    assert.equal(limited.body, 'local_rate_limited');
    assert.equal(limited.headers['x-envoy-ratelimited'], 'true');
    assert.equal(limited.headers['x-limited-by'], 'edge');
    assert.equal(answers[0]!.headers['x-limited-by'], undefined);
    assert.equal(stat(gw, 'edge.http_local_rate_limit.enabled'), 4);
    assert.equal(stat(gw, 'edge.http_local_rate_limit.ok'), 3);
    assert.equal(stat(gw, 'edge.http_local_rate_limit.rate_limited'), 1);
    assert.equal(stat(gw, 'edge.http_local_rate_limit.enforced'), 1);
  });

  it("a route's own LocalRateLimit replaces the filter's; its descriptor bucket limits the matching requests only", async () => {
    assert.equal((await httpRequest(`${gw.url()}/users`, { headers: { 'x-user': 'alice' } })).status, 200);
    assert.equal((await httpRequest(`${gw.url()}/users`, { headers: { 'x-user': 'alice' } })).status, 429);
    for (let i = 0; i < 5; i++) assert.equal((await httpRequest(`${gw.url()}/users`, { headers: { 'x-user': 'bob' } })).status, 200);
    assert.equal(stat(gw, 'users.http_local_rate_limit.rate_limited'), 1);
  });

  it('refills every fill_interval', async () => {
    assert.equal((await httpRequest(`${gw.url()}/refill`)).status, 200);
    assert.equal((await httpRequest(`${gw.url()}/refill`)).status, 429);
    await eventually(async () => assert.equal((await httpRequest(`${gw.url()}/refill`)).status, 200));
  });

  it('limited but not enforced: the request goes on, with request_headers_to_add_when_not_enforced', async () => {
    assert.equal((await httpRequest(`${gw.url()}/shadow`)).status, 200);
    const res = await httpRequest(`${gw.url()}/shadow`);
    assert.equal(res.status, 200);
    assert.equal(app.requests.at(-1)!.headers['x-would-be-limited'], 'yes');
    assert.equal(app.requests.at(-2)!.headers['x-would-be-limited'], undefined);
    assert.equal(stat(gw, 'shadow.http_local_rate_limit.rate_limited'), 1);
    assert.equal(stat(gw, 'shadow.http_local_rate_limit.enforced') ?? 0, 0);
  });

  it('local_rate_limit_per_downstream_connection gives each connection its own bucket', async () => {
    const statuses = async (client: Client) => {
      const out = [];
      for (let i = 0; i < 3; i++) {
        const res = await client.request({ path: '/per-connection', method: 'GET' });
        await res.body.text();
        out.push(res.statusCode);
      }
      return out;
    };
    const first = new Client(gw.url());
    const second = new Client(gw.url());
    try {
      assert.deepEqual(await statuses(first), [200, 200, 429]);
      assert.deepEqual(await statuses(second), [200, 200, 429]);
    } finally {
      await first.close();
      await second.close();
    }
  });
});

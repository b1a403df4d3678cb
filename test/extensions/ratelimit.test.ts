/**
 * `envoy.filters.http.ratelimit` end to end: requests through Portico, whose route `rate_limits` make descriptors
 * that go to a real rate limit service on @grpc/grpc-js speaking Envoy's RLS protocol; its answers decide.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeMessage, envoyMethod } from '../../src/grpc/envoy-protos.js';
import type { ConfigValidationError } from '../../src/config/errors.js';
import { checkYaml, type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { startGrpcServer } from '../support/grpc.js';
import { startRecordingUpstream, httpRequest, refusedPort, type RecordingUpstream } from '../support/upstreams.js';

const RLS = envoyMethod('envoy/service/ratelimit/v3/rls.proto', 'envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');

const H2 = `
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: {} }`;

interface SeenRequest {
  domain: string;
  descriptors: { entries: { key: string; value: string }[] }[];
}

function filterYaml(cluster: string, extra = ''): string {
  return `- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    domain: edge
    timeout: 0.5s
    enable_x_ratelimit_headers: DRAFT_VERSION_03
    rate_limited_as_resource_exhausted: true
    rate_limit_service:
      transport_api_version: V3
      grpc_service: { envoy_grpc: { cluster_name: ${cluster} } }${extra}`;
}

const ROUTES = `- match: { prefix: "/limited" }
  route:
    cluster: app
    rate_limits:
    - actions:
      - generic_key: { descriptor_value: limited }
      - request_headers: { header_name: x-user, descriptor_key: user }
- match: { prefix: "/free" }
  route: { cluster: app }`;

describe('global rate limit filter', () => {
  let service: grpc.Server;
  let servicePort: number;
  let app: RecordingUpstream;
  let gw: RunningPortico;
  let seen: SeenRequest[] = [];

  before(async () => {
    ({ server: service, port: servicePort } = await startGrpcServer({
      ShouldRateLimit: {
        path: RLS.path,
        handler: (call, callback) => {
          const request = decodeMessage<SeenRequest>(RLS.requestType, call.request);
          seen.push(request);
          const user = request.descriptors[0]?.entries.find((e) => e.key === 'user')?.value;
          if (user === 'hang') return;
          if (user === 'garbage') {
            callback(null, Buffer.from([0xff, 0xff, 0xff]));
            return;
          }
          const over = user === 'greedy';
          callback(
            null,
            encodeMessage(RLS.responseType, {
              overall_code: over ? 'OVER_LIMIT' : 'OK',
              statuses: [
                {
                  code: over ? 'OVER_LIMIT' : 'OK',
                  current_limit: { requests_per_unit: 10, unit: 'MINUTE', name: 'per-user' },
                  limit_remaining: over ? 0 : 7,
                  duration_until_reset: { seconds: 42 },
                },
              ],
              response_headers_to_add: [{ key: 'x-limit-policy', value: 'per-user' }],
            }),
          );
        },
      },
    }));
    app = await startRecordingUpstream();
    gw = await startPortico(
      simpleBootstrap({
        httpFilters: filterYaml('rls'),
        routes: ROUTES,
        clusters: `${staticCluster('app', app.port)}${staticCluster('rls', servicePort)}${H2}`,
      }),
    );
  });

  after(async () => {
    await gw.close();
    await app.close();
    service.forceShutdown();
  });

  beforeEach(() => {
    seen = [];
  });

  it('asks the service with the route descriptors and passes what it allows', async () => {
    const res = await httpRequest(`${gw.url()}/limited`, { headers: { 'x-user': 'alice' } });
    assert.equal(res.status, 200);
    assert.deepEqual(seen, [
      {
        domain: 'edge',
        descriptors: [
          {
            entries: [
              { key: 'generic_key', value: 'limited' },
              { key: 'user', value: 'alice' },
            ],
          },
        ],
        hits_addend: 1,
      },
    ]);
    assert.equal(res.headers['x-ratelimit-limit'], '10, 10;w=60;name="per-user"');
    assert.equal(res.headers['x-ratelimit-remaining'], '7');
    assert.equal(res.headers['x-ratelimit-reset'], '42');
    assert.equal(res.headers['x-limit-policy'], 'per-user');
    assert.equal(stat(gw, 'cluster.app.ratelimit.ok'), 1);
  });

  it('answers 429 with x-envoy-ratelimited when the service says OVER_LIMIT, and the upstream never sees it', async () => {
    const before = app.requests.length;
    const res = await httpRequest(`${gw.url()}/limited`, { headers: { 'x-user': 'greedy' } });
    assert.equal(res.status, 429);
    assert.equal(res.headers['x-envoy-ratelimited'], 'true');
    assert.equal(res.headers['x-ratelimit-remaining'], '0');
    assert.equal(app.requests.length, before);
    assert.equal(stat(gw, 'cluster.app.ratelimit.over_limit'), 1);
  });

  it('answers a gRPC client RESOURCE_EXHAUSTED with rate_limited_as_resource_exhausted', async () => {
    const res = await httpRequest(`${gw.url()}/limited`, { method: 'POST', headers: { 'x-user': 'greedy', 'content-type': 'application/grpc' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED));
  });

  it('asks nothing for a request whose route makes no descriptor', async () => {
    assert.equal((await httpRequest(`${gw.url()}/free`)).status, 200);
    // A descriptor with an action that finds no value (no x-user header) is dropped whole, so nothing is asked.
    assert.equal((await httpRequest(`${gw.url()}/limited`)).status, 200);
    assert.deepEqual(seen, []);
  });

  it('makes a descriptor of every action, drops those missing a value, and adds the virtual host\'s as Envoy does', async () => {
    const actions = await startPortico(
      `node: { id: gw-1, cluster: edge-gw }
${simpleBootstrap({
  httpFilters: filterYaml('rls'),
  domains: `["*"]
              rate_limits:
              - actions: [{ generic_key: { descriptor_value: from-vhost } }]`,
  routes: `- match: { prefix: "/actions" }
  route:
    cluster: app
    include_vh_rate_limits: true
    rate_limits:
    - actions: [{ source_cluster: {} }, { destination_cluster: {} }]
    - actions: [{ remote_address: {} }]
    - actions: [{ masked_remote_address: { v4_prefix_mask_len: 24 } }]
    - actions:
      - header_value_match: { descriptor_value: is-get, headers: [{ name: ":method", string_match: { exact: GET } }] }
    - actions:
      - header_value_match: { descriptor_value: never, expect_match: true, headers: [{ name: x-missing, present_match: true }] }
    - actions:
      - query_parameter_value_match: { descriptor_value: gold, query_parameters: [{ name: tier, string_match: { exact: gold } }] }
    - actions: [{ query_parameters: { query_parameter_name: tier, descriptor_key: tier } }]
    - actions:
      - metadata: { descriptor_key: m, metadata_key: { key: some.filter, path: [{ key: user }] }, default_value: anonymous }
    - actions:
      - request_headers: { header_name: x-absent, descriptor_key: a, skip_if_absent: true }
      - generic_key: { descriptor_value: kept, descriptor_key: k }
    - actions: [{ request_headers: { header_name: x-absent, descriptor_key: a } }]
    - stage: 1
      actions: [{ generic_key: { descriptor_value: other-stage } }]
- match: { prefix: "/vhost-only" }
  route: { cluster: app }`,
  clusters: `${staticCluster('app', app.port)}${staticCluster('rls', servicePort)}${H2}`,
})}`,
    );
    try {
      assert.equal((await httpRequest(`${actions.url()}/actions?tier=gold`)).status, 200);
      assert.deepEqual(
        seen[0]!.descriptors.map((d) => d.entries.map((e) => `${e.key}=${e.value}`).join(',')),
        [
          'source_cluster=edge-gw,destination_cluster=app',
          'remote_address=127.0.0.1',
          'masked_remote_address=127.0.0.0/24',
          'header_match=is-get',
          'query_match=gold',
          'tier=gold',
          'm=anonymous',
          'k=kept',
          'generic_key=from-vhost',
        ],
      );
      assert.equal((await httpRequest(`${actions.url()}/vhost-only`)).status, 200);
      assert.deepEqual(seen[1]!.descriptors, [{ entries: [{ key: 'generic_key', value: 'from-vhost' }] }]);
    } finally {
      await actions.close();
    }
  });

  it('lets requests through on a timeout or a garbled answer (failure_mode_deny false), counting both', async () => {
    const errors = stat(gw, 'cluster.app.ratelimit.error') ?? 0;
    assert.equal((await httpRequest(`${gw.url()}/limited`, { headers: { 'x-user': 'hang' } })).status, 200);
    assert.equal((await httpRequest(`${gw.url()}/limited`, { headers: { 'x-user': 'garbage' } })).status, 200);
    assert.equal(stat(gw, 'cluster.app.ratelimit.error'), errors + 2);
    assert.equal(stat(gw, 'cluster.app.ratelimit.failure_mode_allowed'), errors + 2);
  });

  it('with failure_mode_deny, a service that is down gets the request a 500 (RLSE)', async () => {
    const denying = await startPortico(
      simpleBootstrap({
        httpFilters: filterYaml('down', '\n    failure_mode_deny: true'),
        routes: ROUTES,
        clusters: `${staticCluster('app', app.port)}${staticCluster('down', await refusedPort())}${H2}`,
      }),
    );
    try {
      const res = await httpRequest(`${denying.url()}/limited`, { headers: { 'x-user': 'alice' } });
      assert.equal(res.status, 500);
      assert.equal(stat(denying, 'cluster.app.ratelimit.error'), 1);
      assert.equal(stat(denying, 'cluster.app.ratelimit.failure_mode_allowed') ?? 0, 0);
    } finally {
      await denying.close();
    }
  });

  it('refuses a filter without a domain or a service, and a service cluster that speaks HTTP/1.1, with their paths', async () => {
    const filter = (body: string) => `- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    ${body}`;
    const incomplete = simpleBootstrap({ httpFilters: filter('rate_limit_service: { transport_api_version: V3 }'), routes: ROUTES, clusters: staticCluster('app', 1) });
    const paths = checkYaml(incomplete).map((e) => e.path.replace(/.*http_filters\[0\]\.typed_config\./, ''));
    assert.deepEqual(paths.sort(), ['domain', 'rate_limit_service.grpc_service']);
    const http1Service = simpleBootstrap({
      httpFilters: filter('domain: d\n    rate_limit_service: { transport_api_version: V3, grpc_service: { envoy_grpc: { cluster_name: app } } }'),
      routes: ROUTES,
      clusters: staticCluster('app', 1),
    });
    await assert.rejects(startPortico(http1Service), (err: ConfigValidationError) => {
      assert.deepEqual(
        err.errors.map((e) => e.path.replace(/.*http_filters\[0\]\.typed_config\./, '')),
        ['rate_limit_service.grpc_service.envoy_grpc.cluster_name'],
      );
      return true;
    });
  });
});

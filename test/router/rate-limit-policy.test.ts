import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import type { envoy } from '../../src/generated/envoy.js';
import { type Descriptor, maskAddress, RateLimitPolicy, type RateLimitInput } from '../../src/dataplane/router/rate-limit-policy.js';
import { newStreamInfo, type RequestHead } from '../../src/dataplane/stream-info.js';

function input(over: { headers?: Record<string, string>; path?: string; address?: string; dynamic?: Record<string, Record<string, unknown>>; route?: Record<string, Record<string, unknown>> } = {}): RateLimitInput {
  const head: RequestHead = { method: 'GET', path: over.path ?? '/p', authority: 'example.com', scheme: 'http', headers: over.headers ?? {} };
  const info = newStreamInfo(head, 1);
  info.downstreamRemoteAddress = over.address ?? '10.1.2.3';
  info.dynamicMetadata = over.dynamic;
  return { head, info, routeMetadata: over.route, targetCluster: 'backend', localCluster: 'edge', query: undefined };
}

function descriptors(rateLimits: envoy.config.route.v3.RateLimit[], at: RateLimitInput = input(), stage = 0): Descriptor[] {
  const errors: ConfigError[] = [];
  const policy = new RateLimitPolicy(rateLimits, 'rate_limits', errors);
  assert.deepEqual(errors, []);
  const out: Descriptor[] = [];
  for (const entry of policy.entriesForStage(stage)) {
    const descriptor = entry.populate(at);
    if (descriptor !== undefined) out.push(descriptor);
  }
  return out;
}

const one = (action: envoy.config.route.v3.RateLimit.Action, at?: RateLimitInput) => descriptors([{ actions: [action] }], at);

describe('rate limit policy: descriptors as Envoy builds them', () => {
  it('source_cluster, destination_cluster, remote_address, generic_key', () => {
    assert.deepEqual(one({ source_cluster: {} }), [{ entries: [{ key: 'source_cluster', value: 'edge' }] }]);
    assert.deepEqual(one({ destination_cluster: {} }), [{ entries: [{ key: 'destination_cluster', value: 'backend' }] }]);
    assert.deepEqual(one({ remote_address: {} }), [{ entries: [{ key: 'remote_address', value: '10.1.2.3' }] }]);
    assert.deepEqual(one({ generic_key: { descriptor_value: 'v' } }), [{ entries: [{ key: 'generic_key', value: 'v' }] }]);
    assert.deepEqual(one({ generic_key: { descriptor_value: 'v', descriptor_key: 'k' } }), [{ entries: [{ key: 'k', value: 'v' }] }]);
  });

  it('request_headers: the value, a dropped descriptor when absent, or a skipped entry with skip_if_absent', () => {
    const action = { request_headers: { header_name: 'X-User', descriptor_key: 'user' } };
    assert.deepEqual(one(action, input({ headers: { 'x-user': 'ann' } })), [{ entries: [{ key: 'user', value: 'ann' }] }]);
    assert.deepEqual(descriptors([{ actions: [{ generic_key: { descriptor_value: 'g' } }, action] }]), []);
    const skipping = { request_headers: { ...action.request_headers, skip_if_absent: true } };
    assert.deepEqual(descriptors([{ actions: [{ generic_key: { descriptor_value: 'g' } }, skipping] }]), [{ entries: [{ key: 'generic_key', value: 'g' }] }]);
    assert.deepEqual(one({ request_headers: { header_name: ':path', descriptor_key: 'path' } }), [{ entries: [{ key: 'path', value: '/p' }] }]);
  });

  it('header_value_match with expect_match both ways', () => {
    const headers = [{ name: 'x-tier', string_match: { exact: 'free' } }];
    const free = input({ headers: { 'x-tier': 'free' } });
    assert.deepEqual(one({ header_value_match: { descriptor_value: 'free', headers } }, free), [{ entries: [{ key: 'header_match', value: 'free' }] }]);
    assert.deepEqual(one({ header_value_match: { descriptor_value: 'free', headers } }), []);
    assert.deepEqual(one({ header_value_match: { descriptor_value: 'paid', descriptor_key: 't', expect_match: false, headers } }), [{ entries: [{ key: 't', value: 'paid' }] }]);
    assert.deepEqual(one({ header_value_match: { descriptor_value: 'paid', expect_match: false, headers } }, free), []);
  });

  it('query_parameter_value_match', () => {
    const action = { query_parameter_value_match: { descriptor_value: 'beta', query_parameters: [{ name: 'mode', string_match: { exact: 'beta' } }] } };
    assert.deepEqual(one(action, input({ path: '/p?mode=beta' })), [{ entries: [{ key: 'query_match', value: 'beta' }] }]);
    assert.deepEqual(one(action, input({ path: '/p?mode=alpha' })), []);
  });

  it('masked_remote_address: /32 and /128 by default, the masked network otherwise', () => {
    assert.deepEqual(one({ masked_remote_address: {} }), [{ entries: [{ key: 'masked_remote_address', value: '10.1.2.3/32' }] }]);
    assert.deepEqual(one({ masked_remote_address: { v4_prefix_mask_len: 16 } }), [{ entries: [{ key: 'masked_remote_address', value: '10.1.0.0/16' }] }]);
    assert.deepEqual(one({ masked_remote_address: { v6_prefix_mask_len: 64 } }, input({ address: '2001:db8:1:2:3:4:5:6' })), [
      { entries: [{ key: 'masked_remote_address', value: '2001:db8:1:2::/64' }] },
    ]);
    assert.equal(maskAddress('::1', 32, 128), '::1/128');
    assert.equal(maskAddress('::ffff:10.0.0.1', 32, 96), '::ffff:0:0/96');
    assert.equal(maskAddress('1:0:0:2:0:0:0:3', 32, 128), '1:0:0:2::3/128');
    assert.equal(maskAddress('10.9.9.9', 0, 128), '0.0.0.0/0');
    assert.equal(maskAddress('not-an-ip', 32, 128), undefined);
  });

  it('metadata from dynamic metadata or the route entry, with default_value and skip_if_absent', () => {
    const key = { key: 'acme', path: [{ key: 'user' }, { key: 'tier' }] };
    const dynamic = input({ dynamic: { acme: { user: { tier: 'gold' } } }, route: { acme: { user: { tier: 'route-gold' } } } });
    assert.deepEqual(one({ metadata: { descriptor_key: 'tier', metadata_key: key } }, dynamic), [{ entries: [{ key: 'tier', value: 'gold' }] }]);
    assert.deepEqual(one({ metadata: { descriptor_key: 'tier', metadata_key: key, source: 'ROUTE_ENTRY' } }, dynamic), [{ entries: [{ key: 'tier', value: 'route-gold' }] }]);
    assert.deepEqual(one({ metadata: { descriptor_key: 'tier', metadata_key: key } }), []);
    assert.deepEqual(one({ metadata: { descriptor_key: 'tier', metadata_key: key, default_value: 'none' } }), [{ entries: [{ key: 'tier', value: 'none' }] }]);
    assert.deepEqual(one({ dynamic_metadata: { descriptor_key: 'tier', metadata_key: key } }, dynamic), [{ entries: [{ key: 'tier', value: 'gold' }] }]);
    const skipping = { metadata: { descriptor_key: 'tier', metadata_key: key, skip_if_absent: true } };
    assert.deepEqual(descriptors([{ actions: [{ generic_key: { descriptor_value: 'g' } }, skipping] }]), [{ entries: [{ key: 'generic_key', value: 'g' }] }]);
  });

  it('one descriptor per entry of the stage asked for, in order', () => {
    const limits = [
      { actions: [{ generic_key: { descriptor_value: 'a' } }, { remote_address: {} }] },
      { stage: 1, actions: [{ generic_key: { descriptor_value: 'b' } }] },
      { actions: [{ destination_cluster: {} }] },
    ];
    assert.deepEqual(descriptors(limits), [
      { entries: [{ key: 'generic_key', value: 'a' }, { key: 'remote_address', value: '10.1.2.3' }] },
      { entries: [{ key: 'destination_cluster', value: 'backend' }] },
    ]);
    assert.deepEqual(descriptors(limits, input(), 1), [{ entries: [{ key: 'generic_key', value: 'b' }] }]);
  });

  it('bad entries are errors with their paths', () => {
    const errors: ConfigError[] = [];
    new RateLimitPolicy(
      [{ stage: 11, actions: [{ generic_key: {} }, {}, { masked_remote_address: { v4_prefix_mask_len: 33 } }] }, { actions: [] }],
      'rate_limits',
      errors,
    );
    assert.deepEqual(
      errors.map((e) => e.path),
      [
        'rate_limits[0].stage',
        'rate_limits[0].actions[0].generic_key.descriptor_value',
        'rate_limits[0].actions[1]',
        'rate_limits[0].actions[2].masked_remote_address.v4_prefix_mask_len',
        'rate_limits[1].actions',
      ],
    );
  });
});

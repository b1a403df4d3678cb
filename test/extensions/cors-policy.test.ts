/**
 * CORS policies: origin matching (the literal `*` rule, whole-string regexes, ignore_case) and the merge of a
 * route's levels as Envoy's CORS filter reads them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import { Runtime } from '../../src/dataplane/runtime/runtime.js';
import { CorsPolicy, EffectiveCorsPolicy } from '../../src/extensions/filters/http/cors/cors-policy.js';
import type { envoy } from '../../src/generated/envoy.js';

type PolicyConfig = envoy.extensions.filters.http.cors.v3.CorsPolicy;

function policy(config: PolicyConfig, runtime = new Runtime(undefined)): CorsPolicy {
  const errors: ConfigError[] = [];
  const compiled = new CorsPolicy(config, runtime, 'p', errors);
  assert.deepEqual(errors, []);
  return compiled;
}

const merged = (...levels: PolicyConfig[]): EffectiveCorsPolicy => new EffectiveCorsPolicy(levels.map((l) => policy(l)));

describe('CORS origin matching', () => {
  it('allows every origin when a matcher matches the literal "*"', () => {
    for (const matcher of [{ safe_regex: { regex: '\\*' } }, { exact: '*' }, { safe_regex: { regex: '.*' } }, { prefix: '*' }]) {
      const p = merged({ allow_origin_string_match: [{ exact: 'https://a.example' }, matcher] });
      assert.equal(p.anyOrigin, true, JSON.stringify(matcher));
      assert.equal(p.isOriginAllowed('http://anything.example:8080'), true);
    }
  });

  it('otherwise allows the origins a matcher matches, regexes matching the whole origin', () => {
    const p = merged({
      allow_origin_string_match: [{ safe_regex: { regex: '.*\\.envoyproxy\\.io' } }, { exact: 'HTTPS://Mixed.Example', ignore_case: true }],
    });
    assert.equal(p.anyOrigin, false);
    assert.equal(p.isOriginAllowed('http://foo.envoyproxy.io'), true);
    assert.equal(p.isOriginAllowed('http://foo.envoyproxy.io.evil'), false);
    assert.equal(p.isOriginAllowed('https://mixed.example'), true);
    assert.equal(p.isOriginAllowed('http://example.com'), false);
    assert.equal(p.isOriginAllowed('*'), false, 'only a matcher of "*" allows "*"');
  });

  it('allows no origin without matchers', () => {
    assert.equal(merged({ allow_methods: 'GET' }).isOriginAllowed('https://a.example'), false);
  });
});

describe('CORS policy merge', () => {
  it('takes each attribute from the most specific level that sets it', () => {
    const route: PolicyConfig = { allow_origin_string_match: [{ exact: 'https://route.example' }], allow_methods: 'GET' };
    const vhost: PolicyConfig = { allow_origin_string_match: [{ exact: 'https://vhost.example' }], allow_methods: 'GET, POST', allow_headers: 'x-v', allow_credentials: true };
    const table: PolicyConfig = { allow_headers: 'x-t', expose_headers: 'x-e', max_age: '60', allow_credentials: false, forward_not_matching_preflights: false };
    const p = merged(route, vhost, table);
    assert.equal(p.isOriginAllowed('https://route.example'), true);
    assert.equal(p.isOriginAllowed('https://vhost.example'), false, 'origins are replaced as a whole, not added');
    assert.equal(p.allowMethods, 'GET');
    assert.equal(p.allowHeaders, 'x-v');
    assert.equal(p.exposeHeaders, 'x-e');
    assert.equal(p.maxAge, '60');
    assert.equal(p.allowCredentials, true, 'a set false is overridden by a more specific true');
    assert.equal(p.forwardNotMatchingPreflights, false);
  });

  it('a set false wins over a less specific true; unset booleans take Envoy defaults', () => {
    const p = merged({ allow_credentials: false, allow_private_network_access: false }, { allow_credentials: true, allow_private_network_access: true });
    assert.equal(p.allowCredentials, false);
    assert.equal(p.allowPrivateNetworkAccess, false);
    const defaults = merged({});
    assert.equal(defaults.allowCredentials, false);
    assert.equal(defaults.allowPrivateNetworkAccess, false);
    assert.equal(defaults.forwardNotMatchingPreflights, true);
    assert.equal(defaults.allowMethods, '');
  });

  it('decides filter_enabled and shadow_enabled from the most specific policy only', () => {
    const off = { default_value: { numerator: 0, denominator: 'HUNDRED' as const } };
    const on = { default_value: { numerator: 100, denominator: 'HUNDRED' as const } };
    const p = merged({ allow_methods: 'GET' }, { filter_enabled: off, shadow_enabled: on });
    assert.equal(p.decider.enabled(), true, 'unset filter_enabled is enabled, whatever the virtual host says');
    assert.equal(p.decider.shadowed(), false);
    const shadow = merged({ filter_enabled: off, shadow_enabled: on }, { filter_enabled: on });
    assert.equal(shadow.decider.enabled(), false);
    assert.equal(shadow.decider.shadowed(), true);
  });

  it('reads filter_enabled from the runtime key first', () => {
    const runtime = new Runtime({ layers: [{ name: 'static', static_layer: { 'cors.on': 100, 'cors.off': 0 } }] });
    const fraction = (key: string, numerator: number) => ({ runtime_key: key, default_value: { numerator, denominator: 'HUNDRED' as const } });
    assert.equal(policy({ filter_enabled: fraction('cors.off', 100) }, runtime).enabled(), false);
    assert.equal(policy({ filter_enabled: fraction('cors.on', 0) }, runtime).enabled(), true);
    assert.equal(policy({ filter_enabled: fraction('cors.absent', 0) }, runtime).enabled(), false);
  });
});

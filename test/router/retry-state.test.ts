/**
 * Retry state and circuit breaker arithmetic without sockets: `retry_on` parsing, Envoy's jittered back-off
 * bounds, the retry decision against the policy and the retry circuit breaker, and the retry budget.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfigError } from '../../src/config/errors.js';
import {
  compileRetryPolicy,
  jitteredBackOffMs,
  parseRetryOn,
  ResetReason,
  RetryOn,
  RetryState,
  RetryStatus,
} from '../../src/dataplane/router/retry-policy.js';
import { CIRCUIT_BREAKER_REMAINING_STATS, ResourceManager, retryBudgetMax } from '../../src/dataplane/upstream/resource-manager.js';
import { CLUSTER_STATS } from '../../src/dataplane/upstream/stats.js';
import { StatScope } from '../../src/stats/store.js';

const C = CLUSTER_STATS.c;
const G = CIRCUIT_BREAKER_REMAINING_STATS.g;

function setup(policyConfig: object, thresholds: object = {}, headers?: Record<string, string>) {
  const errors: ConfigError[] = [];
  const policy = compileRetryPolicy(policyConfig, 'retry_policy', errors);
  assert.deepEqual(errors, []);
  const stats = new StatScope(CLUSTER_STATS, 'cluster.c.');
  const breakers = new StatScope(CIRCUIT_BREAKER_REMAINING_STATS, 'cluster.c.circuit_breakers.default.');
  const resources = new ResourceManager({ track_remaining: true, ...thresholds }, breakers);
  return { state: new RetryState(policy, headers, stats, resources), stats, breakers, resources };
}

describe('retry_on', () => {
  it('parses Envoy condition lists and reports unknown ones', () => {
    assert.deepEqual(parseRetryOn('5xx, connect-failure,,reset'), { bits: RetryOn.FiveXx | RetryOn.ConnectFailure | RetryOn.Reset, unknown: [] });
    assert.deepEqual(parseRetryOn('gateway-error,sometimes'), { bits: RetryOn.GatewayError, unknown: ['sometimes'] });
  });

  it('refuses unknown conditions in configuration, with the path; gRPC conditions are accepted', () => {
    const errors: ConfigError[] = [];
    compileRetryPolicy({ retry_on: '5xx,sometimes,unavailable', retry_back_off: { base_interval: 100, max_interval: 50 } }, 'r.retry_policy', errors);
    assert.deepEqual(
      errors.map((e) => [e.path, e.code]),
      [
        ['r.retry_policy.retry_on', 'invalid_value'],
        ['r.retry_policy.retry_back_off.max_interval', 'invalid_value'],
      ],
    );
  });

  it('retries gRPC statuses of trailers-only responses for the gRPC conditions only', () => {
    const { state } = setup({ retry_on: 'unavailable,deadline-exceeded' });
    assert.equal(state.wouldRetryFromResponse(200, { 'grpc-status': '14' }), true);
    assert.equal(state.wouldRetryFromResponse(200, { 'grpc-status': '4' }), true);
    assert.equal(state.wouldRetryFromResponse(200, { 'grpc-status': '13' }), false);
    assert.equal(state.wouldRetryFromResponse(200, { 'grpc-status': '0' }), false);
    assert.equal(state.wouldRetryFromResponse(503, {}), false, 'gRPC conditions say nothing of HTTP statuses');
  });

  it('decides on responses and resets as Envoy does', () => {
    const { state } = setup({ retry_on: 'gateway-error,retriable-4xx,retriable-status-codes', retriable_status_codes: [418] });
    assert.equal(state.wouldRetryFromResponse(500, {}), false);
    assert.equal(state.wouldRetryFromResponse(503, {}), true);
    assert.equal(state.wouldRetryFromResponse(409, {}), true);
    assert.equal(state.wouldRetryFromResponse(418, {}), true);
    assert.equal(state.wouldRetryFromResponse(503, { 'x-envoy-ratelimited': 'true' }), false, 'only envoy-ratelimited retries those');
    // A reset counts as a 5xx for 5xx and gateway-error.
    assert.equal(state.wouldRetryFromReset(ResetReason.Reset, true), true);
    const connectOnly = setup({ retry_on: 'connect-failure' }).state;
    assert.equal(connectOnly.wouldRetryFromReset(ResetReason.Reset, true), false);
    assert.equal(connectOnly.wouldRetryFromReset(ResetReason.ConnectFailure, false), true);
    const beforeRequest = setup({ retry_on: 'reset-before-request' }).state;
    assert.equal(beforeRequest.wouldRetryFromReset(ResetReason.Reset, false), true);
    assert.equal(beforeRequest.wouldRetryFromReset(ResetReason.Reset, true), false);
  });

  it('merges trusted x-envoy-* headers into the policy', () => {
    const { state } = setup(
      { retry_on: 'connect-failure' },
      {},
      { 'x-envoy-retry-on': 'retriable-status-codes,retriable-headers', 'x-envoy-max-retries': '4', 'x-envoy-retriable-status-codes': '429, 418', 'x-envoy-retriable-header-names': 'X-Retry' },
    );
    assert.equal(state.retriesRemaining, 4);
    assert.equal(state.wouldRetryFromResponse(429, {}), true);
    assert.equal(state.wouldRetryFromResponse(200, { 'x-retry': '1' }), true);
    assert.equal(state.wouldRetryFromResponse(200, {}), false);
  });
});

describe('back-off', () => {
  it('is full jitter over (2^n - 1) × base, capped at max_interval', () => {
    assert.equal(jitteredBackOffMs(1, 25, 250, 0), 0);
    assert.equal(jitteredBackOffMs(1, 25, 250, 0.999), 24);
    assert.equal(jitteredBackOffMs(2, 25, 250, 0.999), 74);
    assert.equal(jitteredBackOffMs(3, 25, 250, 0.5), 87);
    assert.equal(jitteredBackOffMs(10, 25, 250, 0.999), 249);
    const { state } = setup({ retry_on: '5xx', retry_back_off: { base_interval: 10 } });
    const backOffs = [0.999, 0.999, 0.999, 0.999, 0.999].map((r) => state.nextBackOffMs(r));
    assert.deepEqual(backOffs, [9, 29, 69, 99, 99]);
  });
});

describe('retry decisions', () => {
  it('counts retries, their success, and the limit', () => {
    const { state, stats, breakers } = setup({ retry_on: '5xx', num_retries: 2 });
    assert.equal(state.shouldRetry(true), RetryStatus.Yes);
    assert.equal(breakers.gauges[G.remaining_retries], 2);
    assert.equal(state.shouldRetry(true), RetryStatus.Yes);
    assert.equal(state.shouldRetry(true), RetryStatus.LimitExceeded);
    assert.equal(breakers.gauges[G.remaining_retries], 3, 'the last retry gave its resource back');
    assert.equal(stats.counters[C.upstream_rq_retry], 2);
    assert.equal(stats.counters[C.upstream_rq_retry_limit_exceeded], 1);
    assert.equal(stats.counters[C.upstream_rq_retry_success], 0);

    const second = setup({ retry_on: '5xx' });
    assert.equal(second.state.shouldRetry(true), RetryStatus.Yes);
    assert.equal(second.state.shouldRetry(false), RetryStatus.No);
    assert.equal(second.stats.counters[C.upstream_rq_retry_success], 1);
  });

  it('overflows the max_retries circuit breaker', () => {
    const { state, stats, breakers, resources } = setup({ retry_on: '5xx', num_retries: 5 }, { max_retries: 1 });
    const other = new RetryState(state.policy, undefined, stats, resources);
    assert.equal(state.shouldRetry(true), RetryStatus.Yes);
    assert.equal(breakers.gauges[G.rq_retry_open], 1);
    assert.equal(other.shouldRetry(true), RetryStatus.Overflow);
    assert.equal(stats.counters[C.upstream_rq_retry_overflow], 1);
    state.release();
    assert.equal(breakers.gauges[G.rq_retry_open], 0);
    assert.equal(other.shouldRetry(true), RetryStatus.Yes);
  });
});

describe('retry budget', () => {
  it('allows budget_percent of active and pending requests, never fewer than min_retry_concurrency', () => {
    assert.equal(retryBudgetMax(20, 3, 0), 3);
    assert.equal(retryBudgetMax(20, 3, 100), 20);
    assert.equal(retryBudgetMax(20, 3, 19), 3);
    assert.equal(retryBudgetMax(50, 0, 5), 2);
  });

  it('moves with the requests in flight', () => {
    const breakers = new StatScope(CIRCUIT_BREAKER_REMAINING_STATS, 'b.');
    const resources = new ResourceManager({ track_remaining: true, retry_budget: { budget_percent: { value: 50 }, min_retry_concurrency: 1 } }, breakers);
    assert.equal(resources.retries.max(), 1);
    for (let i = 0; i < 4; i++) resources.requests.inc();
    resources.pendingRequests.inc();
    resources.requestsChanged();
    assert.equal(resources.retries.max(), 2);
    assert.equal(breakers.gauges[G.remaining_retries], 2);
    assert.equal(breakers.gauges[G.remaining_rq], 1020);
  });
});

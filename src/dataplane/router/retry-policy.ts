/**
 * Envoy's route `retry_policy`, compiled once per route (RetryPolicyImpl), and the per-request retry state
 * (RetryStateImpl): which responses and resets are retried, how many times, after which back-off, and on which
 * hosts. Only a request that can be retried gets a RetryState; every other request pays nothing.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';
import { compileHeaderMatcher, type HeaderMatchFn } from '../matching/header-matcher.js';
import type { RequestHead } from '../stream-info.js';
import type { StatScope } from '../../stats/store.js';
import type { Host } from '../upstream/host.js';
import type { ResourceManager } from '../upstream/resource-manager.js';
import { CLUSTER_STATS } from '../upstream/stats.js';

const CS = CLUSTER_STATS.c;

type RetryPolicyConfig = envoy.config.route.v3.RetryPolicy;

/** `retry_on` conditions, as bits. */
export const RetryOn = {
  FiveXx: 1 << 0,
  GatewayError: 1 << 1,
  Reset: 1 << 2,
  ResetBeforeRequest: 1 << 3,
  ConnectFailure: 1 << 4,
  Retriable4xx: 1 << 5,
  RefusedStream: 1 << 6,
  RetriableStatusCodes: 1 << 7,
  RetriableHeaders: 1 << 8,
  EnvoyRateLimited: 1 << 9,
  Http3PostConnectFailure: 1 << 10,
  // gRPC conditions, read from the `grpc-status` of a trailers-only response (Envoy's retry_grpc_on).
  GrpcCancelled: 1 << 11,
  GrpcDeadlineExceeded: 1 << 12,
  GrpcResourceExhausted: 1 << 13,
  GrpcUnavailable: 1 << 14,
  GrpcInternal: 1 << 15,
} as const;

/** The gRPC status each gRPC condition retries on. */
const GRPC_STATUS_CONDITIONS: readonly (readonly [status: string, bit: number])[] = [
  ['1', RetryOn.GrpcCancelled],
  ['4', RetryOn.GrpcDeadlineExceeded],
  ['8', RetryOn.GrpcResourceExhausted],
  ['14', RetryOn.GrpcUnavailable],
  ['13', RetryOn.GrpcInternal],
];
const ANY_GRPC = RetryOn.GrpcCancelled | RetryOn.GrpcDeadlineExceeded | RetryOn.GrpcResourceExhausted | RetryOn.GrpcUnavailable | RetryOn.GrpcInternal;

const RETRY_ON_NAMES: ReadonlyMap<string, number> = new Map([
  ['5xx', RetryOn.FiveXx],
  ['gateway-error', RetryOn.GatewayError],
  ['reset', RetryOn.Reset],
  ['reset-before-request', RetryOn.ResetBeforeRequest],
  ['connect-failure', RetryOn.ConnectFailure],
  ['retriable-4xx', RetryOn.Retriable4xx],
  ['refused-stream', RetryOn.RefusedStream],
  ['retriable-status-codes', RetryOn.RetriableStatusCodes],
  ['retriable-headers', RetryOn.RetriableHeaders],
  ['envoy-ratelimited', RetryOn.EnvoyRateLimited],
  // HTTP/3 is never used upstream, so there is never an HTTP/3 failure to retry: accepted, never true.
  ['http3-post-connect-failure', RetryOn.Http3PostConnectFailure],
  ['cancelled', RetryOn.GrpcCancelled],
  ['deadline-exceeded', RetryOn.GrpcDeadlineExceeded],
  ['resource-exhausted', RetryOn.GrpcResourceExhausted],
  ['unavailable', RetryOn.GrpcUnavailable],
  ['internal', RetryOn.GrpcInternal],
]);

/**
 * Parses a `retry_on` list (config or `x-envoy-retry-on`): Envoy's parseRetryOn, which skips unknown
 * conditions (returned in `unknown` so that configuration can refuse them).
 */
export function parseRetryOn(value: string): { bits: number; unknown: string[] } {
  let bits = 0;
  const unknown: string[] = [];
  for (const raw of value.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const bit = RETRY_ON_NAMES.get(name);
    if (bit === undefined) unknown.push(name);
    else bits |= bit;
  }
  return { bits, unknown };
}

/** Why an upstream attempt failed without a response, as the retry policy distinguishes it. */
export const enum ResetReason {
  ConnectFailure,
  /** The connection closed or reset, or the proxy reset the attempt itself (per-try timeout). */
  Reset,
  ProtocolError,
}

export const DEFAULT_BASE_INTERVAL_MS = 25;

/** A route's (or virtual host's) retry policy, compiled. */
export interface RetryPolicy {
  readonly retryOn: number;
  readonly numRetries: number;
  /** 0: none. */
  readonly perTryTimeoutMs: number;
  readonly perTryIdleTimeoutMs: number;
  readonly baseIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly retriableStatusCodes: readonly number[];
  readonly retriableHeaders: readonly HeaderMatchFn[];
  /** Empty: every request may be retried; otherwise only requests matching one of them. */
  readonly retriableRequestHeaders: readonly HeaderMatchFn[];
  /** `envoy.retry_host_predicates.previous_hosts`: retries avoid hosts already tried. */
  readonly avoidPreviousHosts: boolean;
  readonly hostSelectionMaxAttempts: number;
}

/** A policy for requests whose route has none but that carry `x-envoy-retry-on` (Envoy's defaults). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  retryOn: 0,
  numRetries: 1,
  perTryTimeoutMs: 0,
  perTryIdleTimeoutMs: 0,
  baseIntervalMs: DEFAULT_BASE_INTERVAL_MS,
  maxIntervalMs: DEFAULT_BASE_INTERVAL_MS * 10,
  retriableStatusCodes: [],
  retriableHeaders: [],
  retriableRequestHeaders: [],
  avoidPreviousHosts: false,
  hostSelectionMaxAttempts: 1,
};

const PREVIOUS_HOSTS_TYPE = 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate';

export function compileRetryPolicy(config: RetryPolicyConfig, path: string, errors: ConfigError[]): RetryPolicy {
  const retryOn = parseRetryOn(config.retry_on ?? '');
  for (const name of retryOn.unknown) {
    errors.push({ code: 'invalid_value', path: childPath(path, 'retry_on'), message: `unknown retry condition "${name}"` });
  }
  // Other predicate extensions are refused by the support check (src/config/support.ts).
  const avoidPreviousHosts = (config.retry_host_predicate ?? []).some((p) => p.typed_config?.type_url.endsWith(PREVIOUS_HOSTS_TYPE));
  const base = config.retry_back_off?.base_interval ?? DEFAULT_BASE_INTERVAL_MS;
  const max = config.retry_back_off?.max_interval ?? base * 10;
  if (config.retry_back_off !== undefined && base <= 0) {
    errors.push({ code: 'invalid_value', path: childPath(path, 'retry_back_off.base_interval'), message: 'base_interval must be greater than 0' });
  }
  if (max < base) {
    errors.push({
      code: 'invalid_value',
      path: childPath(path, 'retry_back_off.max_interval'),
      message: 'max_interval must be greater than or equal to base_interval',
    });
  }
  const matchers = (list: envoy.config.route.v3.HeaderMatcher[] | undefined, field: string) =>
    (list ?? []).map((m, i) => compileHeaderMatcher(m, childPath(childPath(path, field), i), errors));
  return {
    retryOn: retryOn.bits,
    numRetries: config.num_retries ?? 1,
    perTryTimeoutMs: config.per_try_timeout ?? 0,
    perTryIdleTimeoutMs: config.per_try_idle_timeout ?? 0,
    baseIntervalMs: base,
    maxIntervalMs: max,
    retriableStatusCodes: config.retriable_status_codes ?? [],
    retriableHeaders: matchers(config.retriable_headers, 'retriable_headers'),
    retriableRequestHeaders: matchers(config.retriable_request_headers, 'retriable_request_headers'),
    avoidPreviousHosts,
    hostSelectionMaxAttempts: config.host_selection_retry_max_attempts ?? 1,
  };
}

/**
 * Envoy's JitteredExponentialBackOffStrategy: the n-th back-off (n from 1) is uniform in
 * [0, min((2^n - 1) × base, max)).
 */
export function jitteredBackOffMs(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min((2 ** attempt - 1) * baseMs, maxMs);
  return Math.floor(random * ceiling);
}

/** What the retry state says about a failed or retriable attempt. */
export const enum RetryStatus {
  No,
  Yes,
  /** Retries were wanted but none is left (URX). */
  LimitExceeded,
  /** Retries were wanted but the cluster's retry circuit breaker is open (UO). */
  Overflow,
}

/** Request headers that configure retries and timeouts, honoured from trusted clients only. */
export const RETRY_REQUEST_HEADERS = [
  'x-envoy-retry-on',
  'x-envoy-retry-grpc-on',
  'x-envoy-max-retries',
  'x-envoy-retriable-status-codes',
  'x-envoy-retriable-header-names',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-hedge-on-per-try-timeout',
] as const;

/**
 * The retry state of one request, created only when it can be retried (a policy with `retry_on`, or
 * `x-envoy-retry-on` from a trusted client). It decides whether an outcome is retried, counts what is left
 * against the policy and the cluster's retry circuit breaker, computes back-offs and remembers the hosts tried.
 */
export class RetryState {
  retryOn: number;
  retriesRemaining: number;
  private statusCodes: readonly number[];
  /** Header names from `x-envoy-retriable-header-names`: any response carrying one is retried. */
  private headerNames: readonly string[] | undefined;
  /** Back-offs taken so far. */
  private backOffs = 0;
  /** A retry holds the cluster's retry resource until its outcome is known. */
  private retryOpen = false;
  /** Hosts tried, with the previous-hosts predicate. */
  private attempted: Host[] | undefined;

  constructor(
    readonly policy: RetryPolicy,
    /** Trusted request headers (undefined for external requests, whose retry headers were removed). */
    headers: RequestHead['headers'] | undefined,
    /** `cluster.<name>.` */
    private readonly stats: StatScope,
    private readonly resources: ResourceManager,
  ) {
    this.retryOn = policy.retryOn;
    this.retriesRemaining = policy.numRetries;
    this.statusCodes = policy.retriableStatusCodes;
    if (policy.avoidPreviousHosts) this.attempted = [];
    if (headers === undefined) return;
    const retryOn = headers['x-envoy-retry-on'];
    if (typeof retryOn === 'string') this.retryOn |= parseRetryOn(retryOn).bits & ~ANY_GRPC;
    const grpcOn = headers['x-envoy-retry-grpc-on'];
    if (typeof grpcOn === 'string') this.retryOn |= parseRetryOn(grpcOn).bits & ANY_GRPC;
    const maxRetries = headers['x-envoy-max-retries'];
    if (typeof maxRetries === 'string' && /^\d+$/.test(maxRetries.trim())) this.retriesRemaining = Number(maxRetries.trim());
    const codes = headers['x-envoy-retriable-status-codes'];
    if (typeof codes === 'string') {
      const parsed = codes.split(',').map((c) => Number(c.trim())).filter((c) => Number.isInteger(c) && c > 0);
      this.statusCodes = [...this.statusCodes, ...parsed];
    }
    const names = headers['x-envoy-retriable-header-names'];
    if (typeof names === 'string') this.headerNames = names.split(',').map((n) => n.trim().toLowerCase()).filter((n) => n !== '');
  }

  /** Envoy's wouldRetryFromHeaders. */
  wouldRetryFromResponse(status: number, headers: RequestHead['headers']): boolean {
    const on = this.retryOn;
    if (headers['x-envoy-ratelimited'] !== undefined) return (on & RetryOn.EnvoyRateLimited) !== 0;
    if (on & ANY_GRPC) {
      const grpcStatus = headers['grpc-status'];
      if (typeof grpcStatus === 'string') for (const [code, bit] of GRPC_STATUS_CONDITIONS) if (on & bit && grpcStatus === code) return true;
    }
    if (on & RetryOn.FiveXx && status >= 500 && status < 600) return true;
    if (on & RetryOn.GatewayError && status >= 502 && status <= 504) return true;
    if (on & RetryOn.Retriable4xx && status === 409) return true;
    if (on & RetryOn.RetriableStatusCodes && this.statusCodes.includes(status)) return true;
    if (on & RetryOn.RetriableHeaders) {
      const matchers = this.policy.retriableHeaders;
      if (matchers.length > 0) {
        const head: RequestHead = { method: '', path: '', authority: '', scheme: '', headers };
        for (const matches of matchers) if (matches(head)) return true;
      }
      if (this.headerNames !== undefined) for (const name of this.headerNames) if (headers[name] !== undefined) return true;
    }
    return false;
  }

  /** Envoy's wouldRetryFromReset; `requestSent`: the attempt reached a connection (reset-before-request). */
  wouldRetryFromReset(reason: ResetReason, requestSent: boolean): boolean {
    const on = this.retryOn;
    if (on & (RetryOn.FiveXx | RetryOn.GatewayError | RetryOn.Reset)) return true;
    if (on & RetryOn.ResetBeforeRequest && !requestSent) return true;
    return (on & RetryOn.ConnectFailure) !== 0 && reason === ResetReason.ConnectFailure;
  }

  /**
   * Envoy's RetryStateImpl::shouldRetry, given whether the outcome calls for a retry: a retry needs one left in
   * the policy and room in the retry circuit breaker, and holds the breaker until its own outcome is known.
   * An outcome that needs no retry after a retry counts as the retry's success.
   */
  shouldRetry(wanted: boolean): RetryStatus {
    const counters = this.stats.counters;
    if (this.retryOpen && !wanted) counters[CS.upstream_rq_retry_success]++;
    this.release();
    if (!wanted) return RetryStatus.No;
    if (this.retriesRemaining === 0) {
      counters[CS.upstream_rq_retry_limit_exceeded]++;
      return RetryStatus.LimitExceeded;
    }
    this.retriesRemaining--;
    if (!this.resources.retries.canCreate()) {
      counters[CS.upstream_rq_retry_overflow]++;
      return RetryStatus.Overflow;
    }
    this.resources.retries.inc();
    this.retryOpen = true;
    counters[CS.upstream_rq_retry]++;
    counters[CS.upstream_rq_retry_backoff_exponential]++;
    return RetryStatus.Yes;
  }

  /** Gives back the retry circuit breaker held by a retry in flight (its outcome is known, or the stream ended). */
  release(): void {
    if (!this.retryOpen) return;
    this.retryOpen = false;
    this.resources.retries.dec();
  }

  /** The next back-off, in ms. */
  nextBackOffMs(random: number): number {
    return jitteredBackOffMs(++this.backOffs, this.policy.baseIntervalMs, this.policy.maxIntervalMs, random);
  }

  onHostAttempted(host: Host): void {
    this.attempted?.push(host);
  }

  /** The previous-hosts predicate: whether a host chosen for a retry should be replaced by another choice. */
  rejectsHost(host: Host): boolean {
    return this.attempted !== undefined && this.attempted.includes(host);
  }
}

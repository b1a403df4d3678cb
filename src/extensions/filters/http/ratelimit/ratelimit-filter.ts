/**
 * `envoy.filters.http.ratelimit`: global rate limiting. The descriptors the route's (and its virtual host's)
 * `rate_limits` produce for a request are sent to a rate limit service over Envoy's RLS protocol
 * (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), and the request waits for the answer: OK
 * passes it on, OVER_LIMIT answers 429 (RL), an error or a timeout lets it pass unless `failure_mode_deny`
 * (then 500, RLSE). Stats are the route target cluster's, as Envoy keeps them:
 * `cluster.<name>.ratelimit.{ok,over_limit,error,failure_mode_allowed}`.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import { GrpcStatus } from '../../../../dataplane/grpc.js';
import {
  type DecoderFilterCallbacks,
  type EncoderFilterCallbacks,
  type FilterFactoryContext,
  FilterHeadersStatus,
  type HttpFilterConfig,
  type HttpFilterFactory,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { ResponseFlag } from '../../../../dataplane/response-flags.js';
import { applyHeaderMutations, compileHeaderMutation, type HeaderMutation } from '../../../../dataplane/router/header-mutation.js';
import { destinationCluster, rateLimitDescriptors } from '../../../../dataplane/router/rate-limit-policy.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { envoyMethod, type ProtoMethod } from '../../../../grpc/envoy-protos.js';
import { compileGrpcService, type GrpcServiceClient } from '../../../../grpc/grpc-service-client.js';
import { httpStatus } from '../../common/http-status.js';
import { ServiceCheckFilter } from '../../common/service-check.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';

type RateLimitConfig = envoy.extensions.filters.http.ratelimit.v3.RateLimit;
type RateLimitResponse = {
  overall_code?: string;
  statuses?: DescriptorStatus[];
  response_headers_to_add?: { key?: string; value?: string }[];
  request_headers_to_add?: { key?: string; value?: string }[];
  raw_body?: Buffer;
};
type DescriptorStatus = {
  code?: string;
  current_limit?: { requests_per_unit?: number; unit?: string; name?: string };
  limit_remaining?: number;
  duration_until_reset?: { seconds?: number; nanos?: number };
};

/** `cluster.<name>.[<stat_prefix>.]ratelimit.` */
export const RATELIMIT_STATS = defineStats({
  counters: ['ok', 'over_limit', 'error', 'failure_mode_allowed'],
  gauges: [],
  histograms: [],
});
const S = RATELIMIT_STATS.c;

/** Envoy's runtime keys for the filter (both 100% by default). */
const ENABLED_KEY = 'ratelimit.http_filter_enabled';
const ENFORCING_KEY = 'ratelimit.http_filter_enforcing';
const DEFAULT_TIMEOUT_MS = 20;
const UNIT_SECONDS: Record<string, number> = { SECOND: 1, MINUTE: 60, HOUR: 3600, DAY: 86_400, WEEK: 604_800, MONTH: 2_592_000, YEAR: 31_536_000 };

let shouldRateLimit: ProtoMethod | undefined;

class RateLimitFilterConfig implements HttpFilterConfig {
  readonly domain: string;
  readonly stage: number;
  readonly timeoutMs: number;
  readonly failureModeDeny: boolean;
  readonly resourceExhausted: boolean;
  readonly xRateLimitHeaders: boolean;
  readonly envoyRateLimitedHeader: boolean;
  readonly rateLimitedStatus: number;
  readonly errorStatus: number;
  readonly responseHeaders: HeaderMutation | undefined;
  /** `request_type`: which requests are checked. */
  private readonly internal: boolean;
  private readonly external: boolean;
  private readonly statPrefix: string;
  /** Per route target cluster, made on its first check. */
  private readonly scopes = new Map<string, StatScope>();

  constructor(
    config: RateLimitConfig,
    readonly service: GrpcServiceClient,
    private readonly stats: StatsStore,
    readonly runtime: Runtime,
    readonly localCluster: string,
    path: string,
    errors: ConfigError[],
  ) {
    this.domain = config.domain ?? '';
    this.stage = config.stage ?? 0;
    this.timeoutMs = config.timeout ?? DEFAULT_TIMEOUT_MS;
    this.failureModeDeny = config.failure_mode_deny ?? false;
    this.resourceExhausted = config.rate_limited_as_resource_exhausted ?? false;
    this.xRateLimitHeaders = config.enable_x_ratelimit_headers === 'DRAFT_VERSION_03';
    this.envoyRateLimitedHeader = !(config.disable_x_envoy_ratelimited_header ?? false);
    this.rateLimitedStatus = httpStatus(config.rate_limited_status, 429);
    this.errorStatus = httpStatus(config.status_on_error, 500);
    this.responseHeaders = compileHeaderMutation(config.response_headers_to_add, undefined, path, 'response_headers_to_add', '', errors);
    const requestType = config.request_type || 'both';
    if (requestType !== 'both' && requestType !== 'internal' && requestType !== 'external') {
      errors.push({ code: 'invalid_value', path: `${path}.request_type`, message: `request_type must be internal, external or both, not "${requestType}"` });
    }
    this.internal = requestType !== 'external';
    this.external = requestType !== 'internal';
    this.statPrefix = config.stat_prefix ? `${config.stat_prefix}.` : '';
  }

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks): StreamFilter | undefined {
    if (callbacks.route === undefined) return undefined;
    if (!(callbacks.external ? this.external : this.internal)) return undefined;
    return new RateLimitFilter(this, callbacks);
  }

  scope(cluster: string): StatScope {
    let scope = this.scopes.get(cluster);
    if (scope === undefined) {
      scope = this.stats.scope(RATELIMIT_STATS, `cluster.${cluster}.${this.statPrefix}ratelimit.`);
      this.scopes.set(cluster, scope);
    }
    return scope;
  }

  release(): void {
    for (const scope of this.scopes.values()) this.stats.release(scope);
    this.scopes.clear();
    this.service.close();
  }
}

const ALWAYS: envoy.type.v3.FractionalPercent = { numerator: 100, denominator: 'HUNDRED' };

class RateLimitFilter extends ServiceCheckFilter implements StreamFilter {
  private clusterName = '';

  constructor(
    private readonly config: RateLimitFilterConfig,
    callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
  ) {
    super(callbacks);
  }

  decodeHeaders(): FilterHeadersStatus {
    const config = this.config;
    const callbacks = this.callbacks;
    if (!config.runtime.fractionEnabled(ENABLED_KEY, ALWAYS, Math.random())) return FilterHeadersStatus.Continue;
    const route = callbacks.route!;
    const descriptors = rateLimitDescriptors(route, callbacks.virtualHost, config.stage, callbacks, config.localCluster);
    if (descriptors.length === 0) return FilterHeadersStatus.Continue;
    this.clusterName = destinationCluster(callbacks, route) ?? '';
    shouldRateLimit ??= envoyMethod('envoy/service/ratelimit/v3/rls.proto', 'envoy.service.ratelimit.v3.RateLimitService', 'ShouldRateLimit');
    const method = shouldRateLimit;
    if (this.ask(() => config.service.unary(method, { domain: config.domain, descriptors, hits_addend: 1 }, config.timeoutMs, this))) return FilterHeadersStatus.Continue;
    return this.pending ? FilterHeadersStatus.StopAllIterationAndWatermark : FilterHeadersStatus.StopIteration;
  }

  // ---- the service's answer (GrpcUnaryCallbacks) ---------------------------------------------------------------

  onSuccess(response: RateLimitResponse): void {
    const overLimit = response.overall_code === 'OVER_LIMIT';
    if (response.overall_code !== 'OK' && !overLimit) {
      // UNKNOWN (or nothing): an answer that decides nothing is an error, never an allow.
      this.onFailure();
      return;
    }
    const config = this.config;
    const callbacks = this.callbacks;
    config.scope(this.clusterName).counters[overLimit ? S.over_limit : S.ok]++;
    this.collectHeaders(response);
    if (response.request_headers_to_add?.length) {
      const headers = callbacks.head.headers;
      for (const header of response.request_headers_to_add) if (header.key) headers[header.key.toLowerCase()] = header.value ?? '';
    }
    if (!overLimit || !config.runtime.fractionEnabled(ENFORCING_KEY, ALWAYS, Math.random())) {
      this.resume();
      return;
    }
    if (config.responseHeaders !== undefined) applyHeaderMutations([config.responseHeaders], (this.responseHeaders ??= {}), callbacks.info);
    if (config.envoyRateLimitedHeader) (this.responseHeaders ??= {})['x-envoy-ratelimited'] = 'true';
    const grpcStatus = config.resourceExhausted ? GrpcStatus.ResourceExhausted : undefined;
    this.answer(config.rateLimitedStatus, response.raw_body?.toString() ?? '', ResponseFlag.RL, 'request_rate_limited', grpcStatus);
  }

  onFailure(): void {
    const config = this.config;
    const counters = config.scope(this.clusterName).counters;
    counters[S.error]++;
    if (config.failureModeDeny) {
      this.answer(config.errorStatus, '', ResponseFlag.RLSE, 'rate_limiter_error');
      return;
    }
    counters[S.failure_mode_allowed]++;
    this.resume();
  }

  /** The service's response headers, and `x-ratelimit-*` from the descriptor closest to its limit. */
  private collectHeaders(response: RateLimitResponse): void {
    for (const header of response.response_headers_to_add ?? []) {
      if (header.key) (this.responseHeaders ??= {})[header.key.toLowerCase()] = header.value ?? '';
    }
    if (!this.config.xRateLimitHeaders) return;
    let closest: DescriptorStatus | undefined;
    const quotas: string[] = [];
    for (const status of response.statuses ?? []) {
      const limit = status.current_limit;
      if (limit?.requests_per_unit === undefined) continue;
      if (closest === undefined || (status.limit_remaining ?? 0) < (closest.limit_remaining ?? 0)) closest = status;
      const window = UNIT_SECONDS[limit.unit ?? ''] ?? 0;
      quotas.push(limit.name ? `${limit.requests_per_unit};w=${window};name="${limit.name}"` : `${limit.requests_per_unit};w=${window}`);
    }
    if (closest === undefined) return;
    const headers = (this.responseHeaders ??= {});
    headers['x-ratelimit-limit'] = `${closest.current_limit!.requests_per_unit}, ${quotas.join(', ')}`;
    headers['x-ratelimit-remaining'] = String(closest.limit_remaining ?? 0);
    const reset = closest.duration_until_reset;
    if (reset !== undefined) headers['x-ratelimit-reset'] = String(reset.seconds ?? 0);
  }

}

export const RATELIMIT_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.ratelimit',
  configType: 'envoy.extensions.filters.http.ratelimit.v3.RateLimit',
  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const rateLimit = config as RateLimitConfig;
    // The schema already requires domain and rate_limit_service.grpc_service.
    const serviceConfig = rateLimit.rate_limit_service!;
    const version = serviceConfig.transport_api_version;
    if (version !== undefined && version !== 'V3') {
      errors.push({ code: 'invalid_value', path: `${path}.rate_limit_service.transport_api_version`, message: 'only the V3 rate limit protocol is spoken' });
    }
    const service = compileGrpcService(serviceConfig.grpc_service!, context.clusters, `${path}.rate_limit_service.grpc_service`, errors);
    return new RateLimitFilterConfig(rateLimit, service ?? UNREACHABLE_SERVICE, context.stats, context.runtime, context.localCluster, path, errors);
  },
};

/** Stands in for a service whose config was refused: the configuration is not applied anyway. */
const UNREACHABLE_SERVICE: GrpcServiceClient = {
  unary(_method, _request, _timeout, callbacks) {
    callbacks.onFailure(GrpcStatus.Unavailable, 'no rate limit service');
    return { cancel() {} };
  },
  close() {},
};

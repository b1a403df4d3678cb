/**
 * `envoy.filters.http.local_ratelimit`: token buckets in the gateway itself. The filter's `token_bucket` (or a
 * route's own LocalRateLimit in `typed_per_filter_config`, which replaces it) admits requests while it has
 * tokens; `descriptors` add buckets for the descriptors the route's `rate_limits` make (rate-limit-policy.ts).
 * `filter_enabled` decides which requests are checked and `filter_enforced` which of the limited ones are refused
 * (429 `local_rate_limited`, flag RL); both default to 0%, as in Envoy. Stats under
 * `<stat_prefix>.http_local_rate_limit.`. The decision is synchronous: no request waits.
 */
import type { Socket } from 'node:net';
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
  type ResponseHead,
  type StreamFilter,
} from '../../../../dataplane/http/filter.js';
import { ResponseFlag } from '../../../../dataplane/response-flags.js';
import { applyHeaderMutations, compileHeaderMutation, type HeaderMap, type HeaderMutation } from '../../../../dataplane/router/header-mutation.js';
import { type DescriptorEntry, rateLimitDescriptors, type VhRateLimits } from '../../../../dataplane/router/rate-limit-policy.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
import { httpStatus } from '../../common/http-status.js';
import { TokenBucket } from '../../common/token-bucket.js';

type LocalRateLimitConfig = envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit;
type TokenBucketConfig = envoy.type.v3.TokenBucket;

/** `<stat_prefix>.http_local_rate_limit.` */
export const LOCAL_RATELIMIT_STATS = defineStats({
  counters: ['enabled', 'enforced', 'rate_limited', 'ok'],
  gauges: [],
  histograms: [],
});
const S = LOCAL_RATELIMIT_STATS.c;

/** A bucket's shape; its tokens live in a TokenBucket (one per settings, or per connection). */
interface BucketSpec {
  readonly maxTokens: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
}

interface DescriptorSpec {
  /** `key` and `value`; an empty value matches any. */
  readonly entries: readonly DescriptorEntry[];
  readonly bucket: BucketSpec;
}

function bucketSpec(config: TokenBucketConfig | undefined, path: string, errors: ConfigError[]): BucketSpec | undefined {
  if (config === undefined) return undefined;
  const fillIntervalMs = config.fill_interval ?? 0;
  if (fillIntervalMs < 50) errors.push({ code: 'invalid_value', path: `${path}.fill_interval`, message: 'fill_interval must be at least 50ms' });
  return { maxTokens: config.max_tokens ?? 0, tokensPerFill: config.tokens_per_fill ?? 1, fillIntervalMs: Math.max(fillIntervalMs, 50) };
}

const newBucket = (spec: BucketSpec): TokenBucket => new TokenBucket(spec.maxTokens, spec.tokensPerFill, spec.fillIntervalMs);

/** One LocalRateLimit, compiled: the filter's own, or a route's. */
class LocalRateLimitSettings {
  readonly statPrefix: string;
  readonly enabled: envoy.config.core.v3.RuntimeFractionalPercent | undefined;
  readonly enforced: envoy.config.core.v3.RuntimeFractionalPercent | undefined;
  readonly status: number;
  readonly responseHeaders: HeaderMutation | undefined;
  readonly requestHeadersWhenNotEnforced: HeaderMutation | undefined;
  readonly stage: number;
  readonly perConnection: boolean;
  readonly xRateLimitHeaders: boolean;
  readonly vhRateLimits: VhRateLimits;
  readonly alwaysConsumeDefault: boolean;
  readonly resourceExhausted: boolean;
  readonly defaultSpec: BucketSpec | undefined;
  readonly descriptors: readonly DescriptorSpec[];
  /** The shared buckets (not per connection): the default one, then one per descriptor. */
  private readonly shared: (TokenBucket | undefined)[] | undefined;
  /** Per connection, its own buckets, made on its first request. */
  private readonly byConnection = new WeakMap<Socket, (TokenBucket | undefined)[]>();

  constructor(config: LocalRateLimitConfig, path: string, errors: ConfigError[]) {
    this.statPrefix = config.stat_prefix ?? '';
    this.enabled = config.filter_enabled;
    this.enforced = config.filter_enforced;
    this.status = httpStatus(config.status, 429);
    this.responseHeaders = compileHeaderMutation(config.response_headers_to_add, undefined, path, 'response_headers_to_add', '', errors);
    this.requestHeadersWhenNotEnforced = compileHeaderMutation(
      config.request_headers_to_add_when_not_enforced,
      undefined,
      path,
      'request_headers_to_add_when_not_enforced',
      '',
      errors,
    );
    this.stage = config.stage ?? 0;
    this.perConnection = config.local_rate_limit_per_downstream_connection ?? false;
    this.xRateLimitHeaders = config.enable_x_ratelimit_headers === 'DRAFT_VERSION_03';
    this.vhRateLimits = config.vh_rate_limits ?? 'OVERRIDE';
    this.alwaysConsumeDefault = config.always_consume_default_token_bucket ?? true;
    this.resourceExhausted = config.rate_limited_as_resource_exhausted ?? false;
    this.defaultSpec = bucketSpec(config.token_bucket, `${path}.token_bucket`, errors);
    this.descriptors = (config.descriptors ?? []).map((descriptor, i) => {
      const at = `${path}.descriptors[${i}]`;
      const entries = (descriptor.entries ?? []).map((entry) => ({ key: entry.key ?? '', value: entry.value ?? '' }));
      if (entries.length === 0) errors.push({ code: 'missing_required', path: `${at}.entries`, message: 'a descriptor needs entries' });
      const bucket = bucketSpec(descriptor.token_bucket, `${at}.token_bucket`, errors);
      if (bucket === undefined) errors.push({ code: 'missing_required', path: `${at}.token_bucket`, message: 'a descriptor needs a token_bucket' });
      return { entries, bucket: bucket ?? { maxTokens: 0, tokensPerFill: 1, fillIntervalMs: 1000 } };
    });
    this.shared = this.perConnection ? undefined : this.newBuckets();
  }

  private newBuckets(): (TokenBucket | undefined)[] {
    return [this.defaultSpec === undefined ? undefined : newBucket(this.defaultSpec), ...this.descriptors.map((d) => newBucket(d.bucket))];
  }

  /** Index 0 the default bucket (undefined without token_bucket), then the descriptors'. */
  buckets(connection: Socket): (TokenBucket | undefined)[] {
    if (this.shared !== undefined) return this.shared;
    let buckets = this.byConnection.get(connection);
    if (buckets === undefined) this.byConnection.set(connection, (buckets = this.newBuckets()));
    return buckets;
  }
}

/** Whether a configured descriptor matches a request descriptor: the same keys in order, values equal or any. */
function descriptorMatches(spec: readonly DescriptorEntry[], entries: readonly DescriptorEntry[]): boolean {
  if (spec.length !== entries.length) return false;
  for (let i = 0; i < spec.length; i++) {
    const want = spec[i]!;
    const have = entries[i]!;
    if (want.key !== have.key || (want.value !== '' && want.value !== have.value)) return false;
  }
  return true;
}

class LocalRateLimitFilterConfig implements HttpFilterConfig {
  private readonly scopes = new Map<string, StatScope>();

  constructor(
    private readonly settings: LocalRateLimitSettings,
    private readonly stats: StatsStore,
    readonly runtime: Runtime,
    readonly localCluster: string,
  ) {}

  createFilter(callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter | undefined {
    const settings = (routeConfig as LocalRateLimitSettings | undefined) ?? this.settings;
    // Without buckets (a filter that only routes configure) there is nothing to check.
    if (settings.defaultSpec === undefined && settings.descriptors.length === 0) return undefined;
    return new LocalRateLimitFilter(this, settings, callbacks);
  }

  scope(statPrefix: string): StatScope {
    let scope = this.scopes.get(statPrefix);
    if (scope === undefined) this.scopes.set(statPrefix, (scope = this.stats.scope(LOCAL_RATELIMIT_STATS, `${statPrefix}.http_local_rate_limit.`)));
    return scope;
  }

  release(): void {
    for (const scope of this.scopes.values()) this.stats.release(scope);
    this.scopes.clear();
  }
}

class LocalRateLimitFilter implements StreamFilter {
  private responseHeaders: HeaderMap | undefined;

  constructor(
    private readonly config: LocalRateLimitFilterConfig,
    private readonly settings: LocalRateLimitSettings,
    private readonly callbacks: DecoderFilterCallbacks & EncoderFilterCallbacks,
  ) {}

  decodeHeaders(): FilterHeadersStatus {
    const { config, settings, callbacks } = this;
    const runtime = config.runtime;
    if (!runtime.fractionEnabled(settings.enabled?.runtime_key, settings.enabled?.default_value, Math.random())) return FilterHeadersStatus.Continue;
    const counters = config.scope(settings.statPrefix).counters;
    counters[S.enabled]++;
    const buckets = settings.buckets(callbacks.connection);
    // The most restrictive bucket consulted speaks for the x-ratelimit headers.
    let limiting: TokenBucket | undefined;
    let allowed = true;
    let matchedDescriptor = false;
    if (settings.descriptors.length > 0 && callbacks.route !== undefined) {
      const requested = rateLimitDescriptors(callbacks.route, callbacks.virtualHost, settings.stage, callbacks, config.localCluster, settings.vhRateLimits);
      for (const descriptor of requested) {
        const index = settings.descriptors.findIndex((spec) => descriptorMatches(spec.entries, descriptor.entries));
        if (index < 0) continue;
        matchedDescriptor = true;
        const bucket = buckets[index + 1]!;
        if (limiting === undefined || bucket.remaining() < limiting.remaining()) limiting = bucket;
        if (!bucket.consume()) {
          allowed = false;
          limiting = bucket;
          break;
        }
      }
    }
    const fallback = buckets[0];
    if (allowed && fallback !== undefined && (!matchedDescriptor || settings.alwaysConsumeDefault)) {
      if (!fallback.consume()) allowed = false;
      if (!allowed || limiting === undefined || fallback.remaining() < limiting.remaining()) limiting = fallback;
    }
    if (settings.xRateLimitHeaders && limiting !== undefined) {
      const headers = (this.responseHeaders ??= {});
      headers['x-ratelimit-limit'] = String(limiting.maxTokens);
      headers['x-ratelimit-remaining'] = String(limiting.remaining());
      headers['x-ratelimit-reset'] = String(limiting.secondsUntilFill());
    }
    if (allowed) {
      counters[S.ok]++;
      return FilterHeadersStatus.Continue;
    }
    counters[S.rate_limited]++;
    if (!runtime.fractionEnabled(settings.enforced?.runtime_key, settings.enforced?.default_value, Math.random())) {
      if (settings.requestHeadersWhenNotEnforced !== undefined) applyHeaderMutations([settings.requestHeadersWhenNotEnforced], callbacks.head.headers, callbacks.info);
      return FilterHeadersStatus.Continue;
    }
    counters[S.enforced]++;
    const headers = (this.responseHeaders ??= {});
    headers['x-envoy-ratelimited'] = 'true';
    if (settings.responseHeaders !== undefined) applyHeaderMutations([settings.responseHeaders], headers, callbacks.info);
    const grpcStatus = settings.resourceExhausted ? GrpcStatus.ResourceExhausted : undefined;
    callbacks.sendLocalReply(settings.status, 'local_rate_limited', ResponseFlag.RL, 'local_rate_limited', undefined, grpcStatus);
    return FilterHeadersStatus.StopIteration;
  }

  // Local replies pass here too: the limited answer gets its headers this way.
  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (const name in add) response.headers[name] = add[name];
    return FilterHeadersStatus.Continue;
  }
}

export const LOCAL_RATELIMIT_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.local_ratelimit',
  configType: 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
  routeConfigType: 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    const settings = new LocalRateLimitSettings(config as LocalRateLimitConfig, path, errors);
    return new LocalRateLimitFilterConfig(settings, context.stats, context.runtime, context.localCluster);
  },

  compileRouteConfig(config: unknown, _runtime: Runtime, path: string, errors: ConfigError[]): LocalRateLimitSettings {
    return new LocalRateLimitSettings(config as LocalRateLimitConfig, path, errors);
  },
};

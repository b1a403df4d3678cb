/**
 * `envoy.filters.http.local_ratelimit`: token buckets in the gateway itself, as Envoy's filter:
 * - `filter_enabled` decides, per request, whether the limit is looked at at all (`enabled`), and
 *   `filter_enforced` whether a request over it is answered (`enforced`) or forwarded with
 *   `request_headers_to_add_when_not_enforced`; both are 0 % when absent, so a filter without them does nothing;
 * - the route's (and virtual host's) `rate_limits` of the filter's `stage` make the request's descriptors; each
 *   configured `descriptors` entry they match exactly has its own bucket, and every matched bucket is consumed,
 *   the slowest-filling first, stopping at the first empty one; the default `token_bucket` is consumed too when no
 *   descriptor matched or `always_consume_default_token_bucket` (true by default);
 * - a limited, enforced request gets `status` (429) with body and details `local_rate_limited`, the response flag
 *   RL and `response_headers_to_add`; gRPC clients get the status's gRPC mapping (UNAVAILABLE for 429), or
 *   RESOURCE_EXHAUSTED with `rate_limited_as_resource_exhausted`;
 * - a route's own `typed_per_filter_config` LocalRateLimit replaces the filter's (buckets and stats included).
 * Stats `<stat_prefix>.http_local_rate_limit.enabled/enforced/rate_limited/ok`, in the root scope, as Envoy.
 *
 * Buckets come from the program's TokenBuckets: shared by every worker process of `portico run`, so that
 * `--concurrency N` admits one bucket's rate; a bucket whose answer needs the primary pauses the request
 * (StopIteration) until it comes. `local_rate_limit_per_downstream_connection` gives every connection buckets of
 * its own, in its process.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';
import { defineStats, type StatScope, type StatsStore } from '../../../../stats/store.js';
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
import { applyHeaderMutation, compileHeaderMutation, type HeaderMutation } from '../../../../dataplane/router/header-mutation.js';
import { type Descriptor, type DescriptorEntry, rateLimitDescriptors, rateLimitInput, type RateLimitPolicyEntry, type VhRateLimits } from '../../../../dataplane/router/rate-limit-policy.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { ResponseFlag } from '../../../../dataplane/response-flags.js';
import type { RequestHead } from '../../../../dataplane/stream-info.js';
import { checkTokenBucket, type RateLimitBucket, TokenBucket, type TokenBuckets } from '../../../../dataplane/ratelimit/token-bucket.js';

type LocalRateLimitConfig = envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit;
type RuntimeFractionalPercent = envoy.config.core.v3.RuntimeFractionalPercent;

export const LOCAL_RATE_LIMIT_STATS = defineStats({ counters: ['enabled', 'enforced', 'rate_limited', 'ok'], gauges: [], histograms: [] });
const S = LOCAL_RATE_LIMIT_STATS.c;

/** Envoy's StatusCode enum names (`TooManyRequests`) are Node's reason phrases without spaces and punctuation. */
const STATUS_BY_NAME = new Map(Object.entries(STATUS_CODES).map(([code, phrase]) => [phrase!.replace(/[^A-Za-z]/g, ''), Number(code)]));

const GRPC_RESOURCE_EXHAUSTED = 8;

/** A configured descriptor: the entries a request descriptor must equal, and its bucket's settings. */
interface DescriptorRule {
  readonly entries: readonly DescriptorEntry[];
  readonly bucket: envoy.type.v3.TokenBucket;
  /** Its bucket's index in a bucket set (the default bucket, when there is one, is last). */
  readonly index: number;
}

/** The buckets of one LocalRateLimit (for every connection, or for one): one per descriptor by index, then the default one. */
interface BucketSet {
  readonly buckets: readonly (RateLimitBucket | undefined)[];
  /** What a request consumes when there are no descriptors, made once. */
  readonly defaultOnly: readonly RateLimitBucket[];
}

/** One LocalRateLimit compiled: the filter's own, or a route's replacement. */
class LocalRateLimitRules {
  readonly status: number;
  /** RESOURCE_EXHAUSTED, or undefined for the status's usual gRPC mapping (UNAVAILABLE for 429). */
  readonly grpcStatus: number | undefined;
  readonly stage: number;
  readonly vhRateLimits: VhRateLimits;
  readonly xRateLimitHeaders: boolean;
  readonly alwaysConsumeDefault: boolean;
  readonly responseHeaders: HeaderMutation | undefined;
  readonly requestHeadersWhenNotEnforced: HeaderMutation | undefined;
  /** Slowest-filling first, the order Envoy consumes matched descriptors in. */
  readonly descriptors: readonly DescriptorRule[];
  private readonly defaultBucket: envoy.type.v3.TokenBucket | undefined;
  private readonly enabledFraction: RuntimeFractionalPercent | undefined;
  private readonly enforcedFraction: RuntimeFractionalPercent | undefined;
  private readonly statPrefix: string;
  /** Bound on first use: a route's rules are compiled before any stats store is at hand. */
  private statScope: StatScope | undefined;
  /** The buckets shared by every connection, made on first use; never with per-connection buckets. */
  private shared: BucketSet | undefined;
  private readonly byConnection: WeakMap<Socket, BucketSet> | undefined;

  constructor(
    config: LocalRateLimitConfig,
    private readonly runtime: Runtime,
    path: string,
    errors: ConfigError[],
  ) {
    this.statPrefix = config.stat_prefix ?? '';
    if (this.statPrefix === '') errors.push({ code: 'missing_required', path: childPath(path, 'stat_prefix'), message: 'stat_prefix is required' });
    this.status = compileStatus(config.status, childPath(path, 'status'), errors);
    this.grpcStatus = config.rate_limited_as_resource_exhausted ? GRPC_RESOURCE_EXHAUSTED : undefined;
    this.stage = config.stage ?? 0;
    if (this.stage > 10) errors.push({ code: 'invalid_value', path: childPath(path, 'stage'), message: 'stage must be at most 10' });
    this.vhRateLimits = config.vh_rate_limits ?? 'OVERRIDE';
    this.xRateLimitHeaders = config.enable_x_ratelimit_headers === 'DRAFT_VERSION_03';
    this.alwaysConsumeDefault = config.always_consume_default_token_bucket ?? true;
    this.responseHeaders = compileHeaderMutation(config.response_headers_to_add, undefined, path, 'response_headers_to_add', '', errors);
    this.requestHeadersWhenNotEnforced = compileHeaderMutation(
      config.request_headers_to_add_when_not_enforced,
      undefined,
      path,
      'request_headers_to_add_when_not_enforced',
      '',
      errors,
    );
    this.enabledFraction = config.filter_enabled;
    this.enforcedFraction = config.filter_enforced;
    this.defaultBucket = config.token_bucket;
    if (config.token_bucket !== undefined) checkTokenBucket(config.token_bucket, childPath(path, 'token_bucket'), errors);
    const descriptorsPath = childPath(path, 'descriptors');
    const rules = (config.descriptors ?? []).map((d, i): DescriptorRule => {
      const at = childPath(descriptorsPath, i);
      const entries = (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' }));
      if (entries.length === 0) errors.push({ code: 'missing_required', path: childPath(at, 'entries'), message: 'a descriptor needs entries' });
      if (d.token_bucket === undefined) errors.push({ code: 'missing_required', path: childPath(at, 'token_bucket'), message: 'a descriptor needs a token_bucket' });
      else checkTokenBucket(d.token_bucket, childPath(at, 'token_bucket'), errors);
      return { entries, bucket: d.token_bucket ?? {}, index: i };
    });
    const rate = (b: envoy.type.v3.TokenBucket) => (b.tokens_per_fill ?? 1) / (b.fill_interval || 1);
    this.descriptors = rules.sort((a, b) => rate(a.bucket) - rate(b.bucket));
    if (config.local_rate_limit_per_downstream_connection) this.byConnection = new WeakMap();
  }

  stats(store: StatsStore): StatScope {
    return (this.statScope ??= store.scope(LOCAL_RATE_LIMIT_STATS, `${this.statPrefix}.http_local_rate_limit.`));
  }

  release(store: StatsStore): void {
    if (this.statScope !== undefined) store.release(this.statScope);
  }

  enabled(): boolean {
    const f = this.enabledFraction;
    return f !== undefined && this.runtime.fractionEnabled(f.runtime_key, f.default_value, Math.random());
  }

  enforced(): boolean {
    const f = this.enforcedFraction;
    return f !== undefined && this.runtime.fractionEnabled(f.runtime_key, f.default_value, Math.random());
  }

  /** The buckets this connection draws from. */
  buckets(connection: Socket, provider: TokenBuckets): BucketSet {
    const byConnection = this.byConnection;
    if (byConnection === undefined) return (this.shared ??= this.newBuckets(provider));
    let buckets = byConnection.get(connection);
    if (buckets === undefined) byConnection.set(connection, (buckets = this.newBuckets(CONNECTION_BUCKETS)));
    return buckets;
  }

  /** The default bucket's index in a bucket set. */
  get defaultIndex(): number {
    return this.descriptors.length;
  }

  /**
   * A bucket's identity is the filter's stat_prefix, its descriptor's entries (none for the default bucket) and
   * its settings: a new configuration that keeps those keeps the bucket and its tokens.
   */
  private newBuckets(provider: TokenBuckets): BucketSet {
    const id = (entries: readonly DescriptorEntry[], config: envoy.type.v3.TokenBucket) => JSON.stringify([this.statPrefix, entries, config]);
    const buckets: (RateLimitBucket | undefined)[] = new Array(this.descriptors.length);
    for (const rule of this.descriptors) buckets[rule.index] = provider.bucket(id(rule.entries, rule.bucket), rule.bucket);
    const fallback = this.defaultBucket === undefined ? undefined : provider.bucket(id([], this.defaultBucket), this.defaultBucket);
    buckets.push(fallback);
    return { buckets, defaultOnly: fallback === undefined ? [] : [fallback] };
  }
}

/** A connection's own buckets: new ones for each connection, in its process. */
const CONNECTION_BUCKETS: TokenBuckets = { bucket: (_id, config) => new TokenBucket(config, performance.now()) };

function compileStatus(status: envoy.type.v3.HttpStatus | undefined, path: string, errors: ConfigError[]): number {
  const code = status?.code as string | number | undefined;
  if (code === undefined) return 429;
  const n = typeof code === 'number' ? code : STATUS_BY_NAME.get(code);
  if (n === undefined) {
    errors.push({ code: 'invalid_value', path: childPath(path, 'code'), message: `unknown status code ${code}` });
    return 429;
  }
  // Envoy answers 429 for a configured status below 400.
  return n < 400 ? 429 : n;
}

function sameEntries(a: readonly DescriptorEntry[], b: readonly DescriptorEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.key !== b[i]!.key || a[i]!.value !== b[i]!.value) return false;
  return true;
}

class LocalRateLimitFilterConfig implements HttpFilterConfig {
  constructor(
    private readonly rules: LocalRateLimitRules,
    private readonly context: FilterFactoryContext,
  ) {
    rules.stats(context.stats);
  }

  createFilter(stream: DecoderFilterCallbacks & EncoderFilterCallbacks, routeConfig: unknown): StreamFilter {
    const rules = (routeConfig as LocalRateLimitRules | undefined) ?? this.rules;
    return new LocalRateLimitFilter(rules, rules.stats(this.context.stats), stream, this.context);
  }

  release(): void {
    this.rules.release(this.context.stats);
  }
}

class LocalRateLimitFilter implements StreamFilter {
  /** The bucket whose state the x-ratelimit headers report; undefined when the limit was not looked at. */
  private reported: RateLimitBucket | undefined;
  private limited = false;
  /** While waiting on a shared bucket: the buckets to consume in order, and the one waited on. */
  private plan: readonly RateLimitBucket[] | undefined;
  private step = 0;
  private destroyed = false;

  constructor(
    private readonly rules: LocalRateLimitRules,
    private readonly stats: StatScope,
    private readonly stream: DecoderFilterCallbacks & EncoderFilterCallbacks,
    private readonly context: FilterFactoryContext,
  ) {}

  decodeHeaders(head: RequestHead): FilterHeadersStatus {
    if (!this.rules.enabled()) return FilterHeadersStatus.Continue;
    this.stats.counters[S.enabled]++;
    const plan = this.bucketsFor(head);
    const allowed = this.consume(plan, 0);
    if (allowed === undefined) {
      this.plan = plan;
      return FilterHeadersStatus.StopIteration;
    }
    return this.decide(allowed, head) ? FilterHeadersStatus.Continue : FilterHeadersStatus.StopIteration;
  }

  encodeHeaders(response: ResponseHead): FilterHeadersStatus {
    if (this.limited) {
      // As Envoy's local filter documents it: a limited answer says so.
      response.headers['x-envoy-ratelimited'] = 'true';
      if (this.rules.responseHeaders !== undefined) applyHeaderMutation(this.rules.responseHeaders, response.headers, this.stream.info);
    }
    const bucket = this.reported;
    if (bucket !== undefined && this.rules.xRateLimitHeaders) {
      const headers = response.headers;
      headers['x-ratelimit-limit'] = String(bucket.maxTokens);
      headers['x-ratelimit-remaining'] = String(Math.max(0, Math.floor(bucket.remaining)));
      headers['x-ratelimit-reset'] = String(bucket.resetSeconds(performance.now()));
    }
    return FilterHeadersStatus.Continue;
  }

  onDestroy(): void {
    this.destroyed = true;
  }

  /** Counts the outcome and acts on it; true when the request goes on. */
  private decide(allowed: boolean, head: RequestHead): boolean {
    const rules = this.rules;
    const counters = this.stats.counters;
    if (allowed) {
      counters[S.ok]++;
      return true;
    }
    counters[S.rate_limited]++;
    if (!rules.enforced()) {
      if (rules.requestHeadersWhenNotEnforced !== undefined) applyHeaderMutation(rules.requestHeadersWhenNotEnforced, head.headers, this.stream.info);
      return true;
    }
    counters[S.enforced]++;
    this.limited = true;
    this.stream.sendLocalReply(rules.status, 'local_rate_limited', ResponseFlag.RL, 'local_rate_limited', undefined, rules.grpcStatus);
    return false;
  }

  /**
   * Takes a token from each bucket of `plan` from `from` on, stopping at the first empty one (Envoy's
   * LocalRateLimiterImpl::requestAllowed); undefined when a shared bucket's answer is awaited.
   */
  private consume(plan: readonly RateLimitBucket[], from: number): boolean | undefined {
    const now = performance.now();
    for (let i = from; i < plan.length; i++) {
      const bucket = plan[i]!;
      const ok = bucket.tryConsume(now);
      if (ok === undefined) {
        this.step = i;
        bucket.consumeLater((granted) => this.resume(granted));
        return undefined;
      }
      if (!ok) {
        this.reported = bucket;
        return false;
      }
    }
    return true;
  }

  private resume(granted: boolean): void {
    if (this.destroyed) return;
    const plan = this.plan!;
    let allowed: boolean | undefined = granted;
    if (!granted) this.reported = plan[this.step];
    else allowed = this.consume(plan, this.step + 1);
    if (allowed === undefined) return;
    if (this.decide(allowed, this.stream.head)) this.stream.continueDecoding();
  }

  /**
   * The buckets that apply, in the order they are consumed: the matched descriptors' (slowest-filling first),
   * then the default one when nothing matched or `always_consume_default_token_bucket`. Sets the bucket the
   * headers report: the first of them.
   */
  private bucketsFor(head: RequestHead): readonly RateLimitBucket[] {
    const rules = this.rules;
    const set = rules.buckets(this.stream.connection, this.context.tokenBuckets);
    if (rules.descriptors.length === 0) {
      this.reported = set.defaultOnly[0];
      return set.defaultOnly;
    }
    const buckets = set.buckets;
    const plan: RateLimitBucket[] = [];
    const requested = this.requestDescriptors(head);
    if (requested.length > 0) {
      for (const rule of rules.descriptors) {
        if (requested.some((d) => sameEntries(d.entries, rule.entries))) plan.push(buckets[rule.index]!);
      }
    }
    const fallback = buckets[rules.defaultIndex];
    if (fallback !== undefined && (plan.length === 0 || rules.alwaysConsumeDefault)) plan.push(fallback);
    this.reported = plan[0];
    return plan;
  }

  /** The descriptors of the route's rate limits, and the virtual host's as `vh_rate_limits` says. */
  private requestDescriptors(head: RequestHead): Descriptor[] {
    const stream = this.stream;
    const route = stream.route;
    if (route === undefined) return [];
    const input = rateLimitInput(route, head, stream.info, this.context.localCluster);
    return rateLimitDescriptors(route, stream.virtualHost, this.rules.stage, input, this.rules.vhRateLimits, withoutDisableKey);
  }
}

/** An entry with a disable_key is for the global filter's runtime switch: Envoy's local filter skips it. */
const withoutDisableKey = (entry: RateLimitPolicyEntry): boolean => entry.disableKey === '';

export const LOCAL_RATE_LIMIT_FILTER_FACTORY: HttpFilterFactory = {
  name: 'envoy.filters.http.local_ratelimit',
  configType: 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
  routeConfigType: 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',

  createFilterConfig(config: unknown, context: FilterFactoryContext, path: string, errors: ConfigError[]): HttpFilterConfig {
    return new LocalRateLimitFilterConfig(new LocalRateLimitRules(config as LocalRateLimitConfig, context.runtime, path, errors), context);
  },

  compileRouteConfig(config: unknown, runtime: Runtime, path: string, errors: ConfigError[]): LocalRateLimitRules {
    return new LocalRateLimitRules(config as LocalRateLimitConfig, runtime, path, errors);
  },
};

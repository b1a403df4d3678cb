/**
 * `envoy.filters.network.local_ratelimit`: a token bucket for the connections of a filter chain; a connection
 * that finds no token is closed at once (a TCP proxy never dials its upstream for it). `runtime_enabled` turns it
 * off. Stats: `local_ratelimit.<stat_prefix>.rate_limited`, as Envoy's.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import type { NetworkFilter, NetworkFilterContext, NetworkFilterFactory, NetworkFilterStatus } from '../../../../dataplane/listener/network-filter.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import { TokenBucket } from '../../common/token-bucket.js';

type LocalRateLimitConfig = envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit;

/** `local_ratelimit.<stat_prefix>.` */
export const NETWORK_LOCAL_RATELIMIT_STATS = defineStats({ counters: ['rate_limited'], gauges: [], histograms: [] });
const S = NETWORK_LOCAL_RATELIMIT_STATS.c;

class NetworkLocalRateLimit implements NetworkFilter {
  constructor(
    private readonly bucket: TokenBucket,
    private readonly runtime: Runtime,
    private readonly enabled: envoy.config.core.v3.RuntimeFeatureFlag | undefined,
    private readonly stats: StatScope,
    private readonly releaseStats: () => void,
  ) {}

  onNewConnection(): NetworkFilterStatus {
    const flag = this.enabled;
    if (flag !== undefined && this.runtime.getInteger(flag.runtime_key ?? '', flag.default_value === false ? 0 : 1) === 0) return 'continue';
    if (this.bucket.consume()) return 'continue';
    this.stats.counters[S.rate_limited]++;
    return 'close';
  }

  release(): void {
    this.releaseStats();
  }
}

export const NETWORK_LOCAL_RATELIMIT_FILTER_FACTORY: NetworkFilterFactory = {
  name: 'envoy.filters.network.local_ratelimit',
  configType: 'envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit',
  create(config: unknown, context: NetworkFilterContext, path: string, errors: ConfigError[]): NetworkFilter {
    const limit = config as LocalRateLimitConfig;
    // The schema requires stat_prefix and token_bucket.
    const bucket = limit.token_bucket!;
    const fillIntervalMs = bucket.fill_interval ?? 0;
    if (fillIntervalMs < 50) errors.push({ code: 'invalid_value', path: `${path}.token_bucket.fill_interval`, message: 'fill_interval must be at least 50ms' });
    const stats = context.stats.scope(NETWORK_LOCAL_RATELIMIT_STATS, `local_ratelimit.${limit.stat_prefix ?? ''}.`);
    return new NetworkLocalRateLimit(
      new TokenBucket(bucket.max_tokens ?? 0, bucket.tokens_per_fill ?? 1, Math.max(fillIntervalMs, 50)),
      context.runtime,
      limit.runtime_enabled,
      stats,
      () => context.stats.release(stats),
    );
  },
};

/**
 * `envoy.filters.network.local_ratelimit`: a token bucket for the connections of a filter chain; a connection
 * that finds no token is closed at once (a TCP proxy never dials its upstream for it). `runtime_enabled` turns it
 * off. The bucket is this process's (connections are not paused to wait for a shared one). Stats: `local_ratelimit.<stat_prefix>.rate_limited`, as Envoy's.
 */
import type { envoy } from '../../../../generated/envoy.js';
import type { ConfigError } from '../../../../config/errors.js';
import type { NetworkFilter, NetworkFilterContext, NetworkFilterFactory, NetworkFilterStatus } from '../../../../dataplane/listener/network-filter.js';
import type { Runtime } from '../../../../dataplane/runtime/runtime.js';
import { defineStats, type StatScope } from '../../../../stats/store.js';
import { checkTokenBucket, TokenBucket } from '../../../../dataplane/ratelimit/token-bucket.js';

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
    if (this.bucket.tryConsume(performance.now())) return 'continue';
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
    checkTokenBucket(bucket, `${path}.token_bucket`, errors);
    const stats = context.stats.scope(NETWORK_LOCAL_RATELIMIT_STATS, `local_ratelimit.${limit.stat_prefix ?? ''}.`);
    return new NetworkLocalRateLimit(
      new TokenBucket(bucket, performance.now()),
      context.runtime,
      limit.runtime_enabled,
      stats,
      () => context.stats.release(stats),
    );
  },
};

/**
 * Envoy's token bucket (`envoy.type.v3.TokenBucket`): it starts full at `max_tokens`, gains `tokens_per_fill`
 * every `fill_interval` up to `max_tokens`, and a request takes one token. Filled lazily from the monotonic clock
 * when someone looks at it, so that idle buckets cost nothing and no bucket owns a timer.
 *
 * A filter gets its buckets from a `TokenBuckets` provider: in a single process (`--concurrency 1`, the control
 * plane's data plane) they are TokenBuckets kept by id for the data plane's life (LocalTokenBuckets); in the
 * workers of `portico run --concurrency N` they are leases on a bucket the primary owns
 * (src/server/shared-buckets.ts), so that N workers admit one bucket's rate.
 */
import type { envoy } from '../../generated/envoy.js';
import { childPath, type ConfigError } from '../../config/errors.js';

export type TokenBucketConfig = envoy.type.v3.TokenBucket;

/** A bucket as a filter uses it. */
export interface RateLimitBucket {
  readonly maxTokens: number;
  /** Takes a token: true, false when there is none, undefined when only the bucket's owner can say (then `consumeLater`). */
  tryConsume(now: number): boolean | undefined;
  /** Asks the owner for a token after `tryConsume` answered undefined; `done` is called once, asynchronously. */
  consumeLater(done: (ok: boolean) => void): void;
  /** Tokens left, as far as this process knows. */
  readonly remaining: number;
  /** Whole seconds (rounded up) until the next fill, for `x-ratelimit-reset`. */
  resetSeconds(now: number): number;
}

export interface TokenBuckets {
  /**
   * The bucket of `id` (what identifies it across configurations: a configuration that keeps a bucket's id and
   * settings keeps its tokens where buckets are shared).
   */
  bucket(id: string, config: TokenBucketConfig): RateLimitBucket;
}

export class TokenBucket implements RateLimitBucket {
  readonly maxTokens: number;
  private readonly tokensPerFill: number;
  private readonly fillIntervalMs: number;
  private tokens: number;
  /** Monotonic ms of the last fill boundary: fills happen at whole intervals after it. */
  private lastFill: number;

  constructor(config: TokenBucketConfig, now: number) {
    this.maxTokens = config.max_tokens ?? 0;
    this.tokensPerFill = config.tokens_per_fill ?? 1;
    this.fillIntervalMs = config.fill_interval ?? 0;
    this.tokens = this.maxTokens;
    this.lastFill = now;
  }

  tryConsume(now: number): boolean {
    return this.take(1, now) === 1;
  }

  consumeLater(): void {
    throw new Error('a local token bucket always answers at once');
  }

  /** Takes up to `wanted` tokens; how many it got. */
  take(wanted: number, now: number): number {
    this.fill(now);
    const taken = Math.min(wanted, Math.floor(this.tokens));
    this.tokens -= taken;
    return taken;
  }

  get remaining(): number {
    return this.tokens;
  }

  /** Milliseconds until the next fill. */
  untilFill(now: number): number {
    this.fill(now);
    return this.lastFill + this.fillIntervalMs - now;
  }

  resetSeconds(now: number): number {
    return Math.ceil(this.untilFill(now) / 1000);
  }

  private fill(now: number): void {
    const intervals = Math.floor((now - this.lastFill) / this.fillIntervalMs);
    if (intervals <= 0) return;
    this.lastFill += intervals * this.fillIntervalMs;
    this.tokens = Math.min(this.maxTokens, this.tokens + intervals * this.tokensPerFill);
  }
}

/** Buckets of this process alone, by id: a data plane keeps one for its life. */
export class LocalTokenBuckets implements TokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  bucket(id: string, config: TokenBucketConfig): TokenBucket {
    let bucket = this.buckets.get(id);
    if (bucket === undefined) this.buckets.set(id, (bucket = new TokenBucket(config, performance.now())));
    return bucket;
  }
}

/** Envoy's checks of a local rate limit bucket: max_tokens > 0, tokens_per_fill > 0 when set, fill_interval of at least 50 ms. */
export function checkTokenBucket(config: TokenBucketConfig, path: string, errors: ConfigError[]): void {
  if (!(config.max_tokens! > 0)) errors.push({ code: 'invalid_value', path: childPath(path, 'max_tokens'), message: 'max_tokens must be greater than 0' });
  if (config.tokens_per_fill !== undefined && !(config.tokens_per_fill > 0)) {
    errors.push({ code: 'invalid_value', path: childPath(path, 'tokens_per_fill'), message: 'tokens_per_fill must be greater than 0' });
  }
  if (config.fill_interval === undefined) errors.push({ code: 'missing_required', path: childPath(path, 'fill_interval'), message: 'fill_interval is required' });
  else if (!(config.fill_interval >= 50)) errors.push({ code: 'invalid_value', path: childPath(path, 'fill_interval'), message: 'fill_interval must be at least 50ms' });
}

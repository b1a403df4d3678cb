/**
 * Envoy's token bucket (`envoy.type.v3.TokenBucket`): it starts full at `max_tokens`, gains `tokens_per_fill`
 * every `fill_interval` up to `max_tokens`, and a request takes one token. Filled lazily from the monotonic clock
 * when a request looks at it, so that idle buckets cost nothing and no bucket owns a timer.
 */
import type { envoy } from '../../../../generated/envoy.js';
import { childPath, type ConfigError } from '../../../../config/errors.js';

export class TokenBucket {
  readonly maxTokens: number;
  private readonly tokensPerFill: number;
  private readonly fillIntervalMs: number;
  private tokens: number;
  /** Monotonic ms of the last fill boundary: fills happen at whole intervals after it. */
  private lastFill: number;

  constructor(config: envoy.type.v3.TokenBucket, now: number) {
    this.maxTokens = config.max_tokens ?? 0;
    this.tokensPerFill = config.tokens_per_fill ?? 1;
    this.fillIntervalMs = config.fill_interval ?? 0;
    this.tokens = this.maxTokens;
    this.lastFill = now;
  }

  /** Takes a token if there is one. */
  consume(now: number): boolean {
    this.fill(now);
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Tokens left, as of the last consume. */
  get remaining(): number {
    return this.tokens;
  }

  /** Whole seconds (rounded up) until the next fill, for `x-ratelimit-reset`. */
  resetSeconds(now: number): number {
    return Math.ceil((this.lastFill + this.fillIntervalMs - now) / 1000);
  }

  private fill(now: number): void {
    const intervals = Math.floor((now - this.lastFill) / this.fillIntervalMs);
    if (intervals <= 0) return;
    this.lastFill += intervals * this.fillIntervalMs;
    this.tokens = Math.min(this.maxTokens, this.tokens + intervals * this.tokensPerFill);
  }
}

/** Envoy's checks of a local rate limit bucket: max_tokens > 0, tokens_per_fill > 0 when set, fill_interval of at least 50 ms. */
export function checkTokenBucket(config: envoy.type.v3.TokenBucket, path: string, errors: ConfigError[]): void {
  if (!(config.max_tokens! > 0)) errors.push({ code: 'invalid_value', path: childPath(path, 'max_tokens'), message: 'max_tokens must be greater than 0' });
  if (config.tokens_per_fill !== undefined && !(config.tokens_per_fill > 0)) {
    errors.push({ code: 'invalid_value', path: childPath(path, 'tokens_per_fill'), message: 'tokens_per_fill must be greater than 0' });
  }
  if (config.fill_interval === undefined) errors.push({ code: 'missing_required', path: childPath(path, 'fill_interval'), message: 'fill_interval is required' });
  else if (!(config.fill_interval >= 50)) errors.push({ code: 'invalid_value', path: childPath(path, 'fill_interval'), message: 'fill_interval must be at least 50ms' });
}

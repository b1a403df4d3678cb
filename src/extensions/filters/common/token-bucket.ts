/**
 * Envoy's token bucket: `max_tokens` to start with and at most, `tokens_per_fill` added every `fill_interval`.
 * Filled lazily from a monotonic clock when consulted, so a bucket costs no timer.
 */
export class TokenBucket {
  private tokens: number;
  /** When the last whole interval was credited. */
  private filledAt: number;

  constructor(
    readonly maxTokens: number,
    private readonly tokensPerFill: number,
    private readonly fillIntervalMs: number,
    now = performance.now(),
  ) {
    this.tokens = maxTokens;
    this.filledAt = now;
  }

  /** Takes a token if there is one. */
  consume(now = performance.now()): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  remaining(now = performance.now()): number {
    this.refill(now);
    return this.tokens;
  }

  /** Time until the next fill, in whole seconds rounded up (for `x-ratelimit-reset`). */
  secondsUntilFill(now = performance.now()): number {
    this.refill(now);
    return Math.ceil((this.fillIntervalMs - (now - this.filledAt)) / 1000);
  }

  private refill(now: number): void {
    const intervals = Math.floor((now - this.filledAt) / this.fillIntervalMs);
    if (intervals <= 0) return;
    this.filledAt += intervals * this.fillIntervalMs;
    this.tokens = Math.min(this.maxTokens, this.tokens + intervals * this.tokensPerFill);
  }
}

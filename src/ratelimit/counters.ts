/**
 * Where `portico ratelimit` counts hits: fixed windows per key, the key naming the window it counts
 * (`<domain>_<key>_<value>..._<window start>`), as envoyproxy/ratelimit keys them, so every service sharing the
 * store counts in the same windows.
 */
import { Redis } from 'ioredis';

export interface WindowCounters {
  /**
   * Adds `hits` to each key and answers each key's count after it; a key new to its window expires after its
   * `ttlSeconds`. All keys in one round trip.
   */
  increment(keys: readonly string[], ttlSeconds: readonly number[], hits: number): Promise<number[]>;
  /** Can count now (the store is reachable). */
  ready(): boolean;
  close(): Promise<void>;
}

/** One node's counters in its own memory. */
export class MemoryCounters implements WindowCounters {
  private readonly counts = new Map<string, { count: number; expiresAt: number }>();
  private readonly sweeper = setInterval(() => this.sweep(), 1000).unref();

  increment(keys: readonly string[], ttlSeconds: readonly number[], hits: number): Promise<number[]> {
    const now = Date.now();
    const out = keys.map((key, i) => {
      let entry = this.counts.get(key);
      if (entry === undefined || entry.expiresAt <= now) {
        entry = { count: 0, expiresAt: now + ttlSeconds[i]! * 1000 };
        this.counts.set(key, entry);
      }
      entry.count += hits;
      return entry.count;
    });
    return Promise.resolve(out);
  }

  ready(): boolean {
    return true;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.counts) if (entry.expiresAt <= now) this.counts.delete(key);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    return Promise.resolve();
  }
}

/**
 * INCRBY then, for a key the increment created, EXPIRE: atomically for every key of a request, in one script
 * call, so services sharing the Redis never over-admit and a crash between the two commands cannot leave a
 * counter without its expiry.
 */
const INCREMENT_SCRIPT = `
local hits = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, hits)
  if count == hits then redis.call('EXPIRE', key, ARGV[i + 1]) end
  counts[i] = count
end
return counts`;

type ScriptedRedis = Redis & { porticoIncrement(numberOfKeys: number, ...args: (string | number)[]): Promise<number[]> };

/** Counters in Redis, shared by every service pointed at it. */
export class RedisCounters implements WindowCounters {
  private readonly redis: ScriptedRedis;

  constructor(url: string, onError: (err: Error) => void) {
    // No offline queue: while Redis is away a check fails at once (the gateway applies failure_mode_deny)
    // instead of piling up; ioredis keeps reconnecting, and checks succeed again once it is back.
    const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: (attempt) => Math.min(attempt * 100, 2000) });
    redis.defineCommand('porticoIncrement', { lua: INCREMENT_SCRIPT });
    redis.on('error', onError);
    this.redis = redis as ScriptedRedis;
  }

  increment(keys: readonly string[], ttlSeconds: readonly number[], hits: number): Promise<number[]> {
    return this.redis.porticoIncrement(keys.length, ...keys, hits, ...ttlSeconds);
  }

  ready(): boolean {
    return this.redis.status === 'ready';
  }

  /** Resolves once connected (or rejects after `timeoutMs`), for a start that reports a bad URL at once. */
  async connected(timeoutMs: number): Promise<void> {
    if (this.ready()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

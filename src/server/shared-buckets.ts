/**
 * Token buckets shared by the worker processes of `portico run --concurrency N`, so that N workers admit one
 * bucket's rate, as Envoy's worker threads share one bucket.
 *
 * Why leases: a round trip to the primary per request would put IPC on every request's path. Instead the primary
 * owns every bucket (`PrimaryBuckets`, one TokenBucket per bucket id) and a worker takes tokens from it in small
 * batches (`WorkerBuckets`): requests spend the worker's leased tokens at once, and only the request that finds
 * none waits for the next lease. The primary never hands out more than the bucket holds, so the workers together
 * never admit more than the bucket allows. A lease is good until the primary's next fill: tokens not spent by
 * then are dropped rather than returned (the bucket has refilled meanwhile; keeping them would admit more than the
 * rate). What that costs is under-admission of at most one batch per worker per fill interval, which a batch of
 * 1/64 of `max_tokens` keeps small. An empty bucket stays empty until the primary's next fill, so a worker told
 * so refuses at once until then, without asking again.
 *
 * A bucket is known by its id, which the filter derives from its configuration: a reload that keeps a bucket's
 * id keeps its tokens in the primary.
 */
import type { Worker } from 'node:cluster';
import { type RateLimitBucket, TokenBucket, type TokenBucketConfig, type TokenBuckets } from '../dataplane/ratelimit/token-bucket.js';

/** A worker's request for tokens, and the primary's answer. */
export interface LeaseRequest {
  type: 'lease';
  id: number;
  bucket: string;
  config: TokenBucketConfig;
  wanted: number;
}

export interface LeaseGrant {
  type: 'lease_granted';
  id: number;
  granted: number;
  /** Tokens the primary's bucket holds after the grant. */
  remaining: number;
  /** Milliseconds until the primary's next fill, when the lease lapses. */
  validMs: number;
}

/** Tokens a worker asks for at a time. */
export function leaseBatch(config: TokenBucketConfig): number {
  return Math.max(1, Math.floor((config.max_tokens ?? 0) / 64));
}

/** The primary's side: the buckets themselves. */
export class PrimaryBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  lease(request: LeaseRequest, worker: Worker): void {
    const now = performance.now();
    let bucket = this.buckets.get(request.bucket);
    if (bucket === undefined) this.buckets.set(request.bucket, (bucket = new TokenBucket(request.config, now)));
    const granted = bucket.take(request.wanted, now);
    const grant: LeaseGrant = { type: 'lease_granted', id: request.id, granted, remaining: bucket.remaining, validMs: bucket.untilFill(now) };
    worker.send(grant);
  }
}

/** A worker's side of one bucket: its leased tokens and the requests waiting for more. */
class LeasedBucket implements RateLimitBucket {
  readonly maxTokens: number;
  private tokens = 0;
  /** Monotonic ms until which the leased tokens (or the primary's "empty") hold. */
  private validUntil = 0;
  private empty = false;
  private primaryRemaining: number;
  /** Tokens asked for in the lease request in flight. */
  private wanted = 0;
  private readonly waiting: ((ok: boolean) => void)[] = [];
  private asking = false;

  constructor(
    private readonly id: string,
    private readonly config: TokenBucketConfig,
    private readonly owner: WorkerBuckets,
  ) {
    this.maxTokens = config.max_tokens ?? 0;
    this.primaryRemaining = this.maxTokens;
  }

  tryConsume(now: number): boolean | undefined {
    if (now >= this.validUntil) {
      this.tokens = 0;
      this.empty = false;
    } else if (this.tokens > 0 && this.waiting.length === 0) {
      this.tokens--;
      return true;
    } else if (this.empty) {
      return false;
    }
    return undefined;
  }

  consumeLater(done: (ok: boolean) => void): void {
    this.waiting.push(done);
    this.ask();
  }

  get remaining(): number {
    return this.tokens + this.primaryRemaining;
  }

  resetSeconds(now: number): number {
    return Math.max(0, Math.ceil((this.validUntil - now) / 1000));
  }

  granted(grant: LeaseGrant): void {
    this.asking = false;
    const now = performance.now();
    this.tokens = grant.granted;
    this.primaryRemaining = grant.remaining;
    this.validUntil = now + grant.validMs;
    // A grant short of what was asked emptied the primary's bucket.
    this.empty = grant.granted < this.wanted;
    const waiting = this.waiting;
    while (waiting.length > 0 && this.tokens > 0) {
      this.tokens--;
      waiting.shift()!(true);
    }
    if (waiting.length === 0) return;
    if (this.empty) for (const done of waiting.splice(0)) done(false);
    else this.ask();
  }

  private ask(): void {
    if (this.asking) return;
    this.asking = true;
    this.wanted = Math.max(leaseBatch(this.config), this.waiting.length);
    this.owner.request(this, this.id, this.config, this.wanted);
  }
}

/** A worker's side: its leased buckets, and the requests to the primary in flight. */
export class WorkerBuckets implements TokenBuckets {
  private readonly buckets = new Map<string, LeasedBucket>();
  private readonly inFlight = new Map<number, LeasedBucket>();
  private nextId = 1;

  constructor(private readonly send: (request: LeaseRequest) => void) {}

  bucket(id: string, config: TokenBucketConfig): RateLimitBucket {
    let bucket = this.buckets.get(id);
    if (bucket === undefined) this.buckets.set(id, (bucket = new LeasedBucket(id, config, this)));
    return bucket;
  }

  request(bucket: LeasedBucket, id: string, config: TokenBucketConfig, wanted: number): void {
    const requestId = this.nextId++;
    this.inFlight.set(requestId, bucket);
    this.send({ type: 'lease', id: requestId, bucket: id, config, wanted });
  }

  granted(grant: LeaseGrant): void {
    const bucket = this.inFlight.get(grant.id);
    if (bucket === undefined) return;
    this.inFlight.delete(grant.id);
    bucket.granted(grant);
  }
}

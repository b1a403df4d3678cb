/**
 * The primary's buckets and the workers' leases on them (src/server/shared-buckets.ts), with the IPC channel
 * replaced by an asynchronous hand-over between the two real sides.
 */
import assert from 'node:assert/strict';
import type { Worker } from 'node:cluster';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { RateLimitBucket } from '../../src/dataplane/ratelimit/token-bucket.js';
import { type LeaseGrant, PrimaryBuckets, WorkerBuckets } from '../../src/server/shared-buckets.js';

function workers(count: number): { workers: WorkerBuckets[]; asked: () => number } {
  const primary = new PrimaryBuckets();
  let asked = 0;
  const out: WorkerBuckets[] = [];
  for (let i = 0; i < count; i++) {
    const worker = { send: (grant: LeaseGrant) => setImmediate(() => out[i]!.granted(grant)) } as unknown as Worker;
    out.push(
      new WorkerBuckets((request) => {
        asked++;
        setImmediate(() => primary.lease(request, worker));
      }),
    );
  }
  return { workers: out, asked: () => asked };
}

/** One token, waiting for the primary when the worker's lease is spent. */
function consume(bucket: RateLimitBucket): Promise<boolean> {
  const now = performance.now();
  const ok = bucket.tryConsume(now);
  return ok !== undefined ? Promise.resolve(ok) : new Promise((resolve) => bucket.consumeLater(resolve));
}

describe('shared token buckets', () => {
  it('never admits more than the bucket holds across workers, and leases in batches', async () => {
    const config = { max_tokens: 640, fill_interval: 60_000 };
    const { workers: [a, b], asked } = workers(2);
    const buckets = [a!.bucket('id', config), b!.bucket('id', config)];
    let admitted = 0;
    // Both workers take tokens concurrently until each is refused.
    await Promise.all(
      buckets.map(async (bucket) => {
        while (await consume(bucket)) admitted++;
      }),
    );
    assert.equal(admitted, 640);
    // Batches of 640 / 64 = 10: about 64 leases, not 640 requests.
    assert.ok(asked() <= 70, `asked ${asked()} times`);
    // Refused at once, without asking, until the primary's next fill.
    const before = asked();
    assert.equal(buckets[0]!.tryConsume(performance.now()), false);
    assert.equal(asked(), before);
  });

  it('lets a lease lapse at the fill: the refilled bucket is leased again', async () => {
    const config = { max_tokens: 2, tokens_per_fill: 2, fill_interval: 300 };
    const { workers: [a] } = workers(1);
    const bucket = a!.bucket('id', config);
    assert.deepEqual([await consume(bucket), await consume(bucket), await consume(bucket)], [true, true, false]);
    await sleep(450);
    assert.deepEqual([await consume(bucket), await consume(bucket), await consume(bucket)], [true, true, false]);
  });

  it('gives one bucket per id: other ids are other buckets', async () => {
    const config = { max_tokens: 1, fill_interval: 60_000 };
    const { workers: [a, b] } = workers(2);
    assert.equal(await consume(a!.bucket('x', config)), true);
    assert.equal(await consume(b!.bucket('x', config)), false);
    assert.equal(await consume(b!.bucket('y', config)), true);
  });
});

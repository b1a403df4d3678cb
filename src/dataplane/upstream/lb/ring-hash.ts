import type { Host } from '../host.js';
import { Hash64, murmurHash2, xxHash64 } from './hash.js';
import { type LevelBalancer, normalizedWeights } from './policy.js';

/**
 * `RING_HASH`: Envoy's ketama ring. Each host gets points in proportion to its normalised weight, scaled so
 * the lightest host has a whole number of points and the ring has at least `minimum_ring_size` of them (at
 * most `maximum_ring_size`). Point i of a host is the hash of `<ip:port>_<i>` (xxHash64, or MurmurHash2);
 * a request goes to the first point at or after its hash, wrapping around. Positions are kept as sorted
 * 32-bit halves so a lookup is a binary search over typed arrays.
 */
export class RingHash implements LevelBalancer {
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private readonly owner: Host[];
  /** The fewest and the most points any host has (Envoy's `ring_hash_lb.{min,max}_hashes_per_host`). */
  readonly minHashesPerHost: number;
  readonly maxHashesPerHost: number;

  constructor(hosts: readonly Host[], minRingSize: number, maxRingSize: number, murmur: boolean) {
    const weights = normalizedWeights(hosts);
    const minWeight = Math.min(...weights);
    const scale = Math.min(Math.ceil(minWeight * minRingSize) / minWeight, maxRingSize);
    // About ceil(scale) points; the running totals below may round to a few more.
    const capacity = Math.ceil(scale) + hosts.length;
    const hi = new Uint32Array(capacity);
    const lo = new Uint32Array(capacity);
    const hostOf = new Int32Array(capacity);
    const hash = new Hash64();
    // Running totals, as Envoy keeps them, so fractional shares still add up to the ring size.
    let current = 0;
    let target = 0;
    hosts.forEach((host, h) => {
      target += scale * weights[h]!;
      for (let i = 0; current < target; i++, current++) {
        const key = `${host.key}_${i}`;
        if (murmur) murmurHash2(key, hash);
        else xxHash64(key, hash);
        hi[current] = hash.hi;
        lo[current] = hash.lo;
        hostOf[current] = h;
      }
    });
    const count = current;
    const perHost = new Int32Array(hosts.length);
    for (let i = 0; i < count; i++) perHost[hostOf[i]!]!++;
    this.minHashesPerHost = Math.min(...perHost);
    this.maxHashesPerHost = Math.max(...perHost);
    const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => hi[a]! - hi[b]! || lo[a]! - lo[b]!);
    this.hi = Uint32Array.from(order, (i) => hi[i]!);
    this.lo = Uint32Array.from(order, (i) => lo[i]!);
    this.owner = order.map((i) => hosts[hostOf[i]!]!);
  }

  /** Number of points on the ring (Envoy's `ring_hash_lb.size`). */
  get size(): number {
    return this.owner.length;
  }

  choose(hash: Hash64): Host {
    const { hi, lo } = this;
    const h = hash.hi;
    const l = hash.lo;
    let low = 0;
    let high = hi.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (hi[mid]! < h || (hi[mid] === h && lo[mid]! < l)) low = mid + 1;
      else high = mid;
    }
    return this.owner[low === hi.length ? 0 : low]!;
  }
}

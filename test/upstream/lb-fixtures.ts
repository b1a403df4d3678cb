/** Hosts, seeded randomness and hash contexts for load-balancer unit tests: no sockets, no real randomness. */
import { clusterSettings } from '../../src/dataplane/upstream/cluster-settings.js';
import { Host } from '../../src/dataplane/upstream/host.js';
import { Hash64, xxHash64 } from '../../src/dataplane/upstream/lb/hash.js';
import type { RandomSource } from '../../src/dataplane/upstream/lb/policy.js';
import type { LoadBalancerContext } from '../../src/dataplane/upstream/load-balancer.js';
import { StatScope } from '../../src/stats/store.js';
import { CLUSTER_STATS, HOST_STATS } from '../../src/dataplane/upstream/stats.js';

const settings = clusterSettings({}, '', []);

export interface HostSpec {
  port: number;
  weight?: number;
  priority?: number;
  healthy?: boolean;
  /** `zone` names the locality (region and sub-zone empty); `localityWeight` is its `load_balancing_weight`. */
  zone?: string;
  localityWeight?: number;
}

/** Sets a host's in-flight request count, which LEAST_REQUEST reads. */
export function setActiveRequests(host: Host, count: number): void {
  host.stats.gauges[HOST_STATS.g.rq_active] = count;
}

/** Hosts on 127.0.0.1; no connection is ever opened. */
export function hosts(...specs: HostSpec[]): Host[] {
  return specs.map(
    (s) =>
      new Host('127.0.0.1', s.port, '', s.weight ?? 1, s.priority ?? 0, s.healthy ?? true, settings, new StatScope(CLUSTER_STATS, 'cluster.test.'), {
        locality: { region: '', zone: s.zone ?? '', subZone: '', weight: s.localityWeight ?? 0 },
      }),
  );
}

/** mulberry32: a small deterministic generator with Math.random's contract. */
export function seeded(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A context whose hash is a fixed 64-bit value (given as a decimal string or bigint). */
export function fixedHash(value: bigint | string): LoadBalancerContext {
  const v = BigInt(value);
  return {
    computeHashKey(out: Hash64) {
      out.set(Number(v >> 32n), Number(v & 0xffffffffn));
      return true;
    },
  };
}

/** A context hashing a string key, as a header hash policy would. */
export function keyHash(key: string): LoadBalancerContext {
  return { computeHashKey: (out: Hash64) => (xxHash64(key, out), true) };
}

export function bigintOf(hash: Hash64): bigint {
  return (BigInt(hash.hi) << 32n) | BigInt(hash.lo);
}

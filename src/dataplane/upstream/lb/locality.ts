import type { Host, HostLocality } from '../host.js';
import { EdfScheduler } from './edf.js';
import type { Hash64 } from './hash.js';
import type { LbPolicy, LevelBalancer } from './policy.js';

/**
 * A locality's effective weight, as Envoy's `HostSetImpl::effectiveLocalityWeight`: its `load_balancing_weight`
 * scaled by its healthy share × the overprovisioning factor, capped at 1.
 */
export function effectiveLocalityWeight(weight: number, healthy: number, total: number, overprovisioningFactor: number): number {
  if (total === 0) return 0;
  return weight * Math.min(1, ((overprovisioningFactor / 100) * healthy) / total);
}

function localityKey(locality: HostLocality): string {
  return `${locality.region}\u0000${locality.zone}\u0000${locality.subZone}`;
}

/**
 * One priority level under `locality_weighted_lb_config`: a locality is picked by effective weight on Envoy's
 * earliest-deadline-first schedule, then a host among that locality's healthy hosts by the cluster's policy.
 */
export class LocalityLevel implements LevelBalancer {
  private readonly scheduler: EdfScheduler;
  /** Bound once, so that a pick allocates nothing. */
  private readonly weightOf: (entry: number) => number;

  private constructor(
    private readonly balancers: readonly LevelBalancer[],
    weights: readonly number[],
  ) {
    this.scheduler = new EdfScheduler(weights);
    this.weightOf = (entry) => weights[entry]!;
  }

  /** Undefined when no locality of the level has any effective weight (then the level balances as usual). */
  static build(hosts: readonly Host[], policy: LbPolicy, overprovisioningFactor: number): LocalityLevel | undefined {
    const groups = new Map<string, Host[]>();
    for (const host of hosts) {
      const key = localityKey(host.locality);
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [host]);
      else group.push(host);
    }
    const balancers: LevelBalancer[] = [];
    const weights: number[] = [];
    for (const group of groups.values()) {
      const healthy = group.filter((host) => host.healthy);
      const weight = effectiveLocalityWeight(group[0]!.locality.weight, healthy.length, group.length, overprovisioningFactor);
      if (weight <= 0) continue;
      balancers.push(policy.create(healthy));
      weights.push(weight);
    }
    return balancers.length === 0 ? undefined : new LocalityLevel(balancers, weights);
  }

  choose(hash: Hash64): Host {
    return this.balancers[this.scheduler.pickAndAdd(this.weightOf)]!.choose(hash);
  }
}

import type { StatScope } from '../../stats/store.js';
import type { Host } from './host.js';
import { Hash64 } from './lb/hash.js';
import { LocalityLevel } from './lb/locality.js';
import type { LbPolicy, LevelBalancer, RandomSource } from './lb/policy.js';
import { CLUSTER_STATS } from './stats.js';

/** What a load balancer may ask of the request it chooses a host for. */
export interface LoadBalancerContext {
  /**
   * Writes the request's hash (from the route's `hash_policy`) into `out`; false when no policy produced one.
   * Only hashing policies ask, so a cookie is generated only when a ring or table needs it, as in Envoy.
   */
  computeHashKey(out: Hash64): boolean;
}

interface PriorityLevel {
  /** Running total of the integer load percentages up to and including this level. */
  cumulativeLoad: number;
  /** Over the level's healthy hosts, or all of them in panic; undefined when that set is empty. */
  balancer: LevelBalancer | undefined;
  /** Balancing over all hosts, healthy or not: each pick counts `lb_healthy_panic`. */
  panic: boolean;
}

export interface PriorityLoadBalancerOptions {
  /**
   * `locality_weighted_lb_config`: within a level, a locality is picked by its effective weight first, then a host
   * within it by the policy. Hashing policies ignore it.
   */
  localityWeighted?: boolean;
  /** The cluster's stats, for `lb_healthy_panic`. */
  stats?: StatScope;
}

/**
 * Priority levels as Envoy spreads load over them (LoadBalancerBase), in Envoy's integer percentages:
 * a level's availability is `overprovisioning_factor` × healthy / total hosts, capped at 100; levels take
 * load in priority order in proportion to their availability over the normalised total, the rounding
 * remainder going to the first available level. Unless the total is 100, a level with fewer than
 * `healthy_panic_threshold` % healthy hosts is in panic and balances over all its hosts; when every level is,
 * load follows host counts instead. With the threshold at 0 and nothing healthy, there is no host.
 *
 * Each level gets its own instance of the cluster's policy, built here: a new PriorityLoadBalancer is the
 * rebuild after any change of membership or health. With locality weighting, a level whose localities have any
 * effective weight picks a locality first (even in panic, as Envoy does) and gets one policy instance per locality.
 */
export class PriorityLoadBalancer {
  private readonly levels: PriorityLevel[];
  /** The first level takes all the load, so non-hashing policies need no draw. */
  private readonly single: boolean;
  /** The request's hash, reused for every pick. */
  private readonly hash = new Hash64();
  private readonly stats: StatScope | undefined;

  constructor(
    hosts: readonly Host[],
    private readonly policy: LbPolicy,
    private readonly random: RandomSource,
    overprovisioningFactor = 140,
    panicThreshold = 50,
    options: PriorityLoadBalancerOptions = {},
  ) {
    this.stats = options.stats;
    const byPriority = new Map<number, Host[]>();
    for (const host of hosts) {
      const list = byPriority.get(host.priority) ?? [];
      list.push(host);
      byPriority.set(host.priority, list);
    }
    const groups = [...byPriority.entries()].sort(([a], [b]) => a - b).map(([, list]) => list);
    const healthy = groups.map((list) => list.filter((h) => h.healthy));
    const availability = groups.map((list, i) => Math.min(100, Math.floor((overprovisioningFactor * healthy[i]!.length) / list.length)));
    const total = Math.min(100, availability.reduce((sum, a) => sum + a, 0));
    const threshold = Math.min(100, Math.round(panicThreshold));
    let loads = total === 0 ? groups.map(() => 0) : distribute(availability.map((a) => Math.floor((a * 100) / total)), availability.findIndex((a) => a > 0));
    const panic = groups.map((list, i) => total < 100 && (100 * healthy[i]!.length) / list.length < threshold);
    if (total === 0 && threshold === 0) {
      // Nothing healthy and panic disabled: Envoy gives P0 all the load, and P0 has no healthy host.
      if (loads.length > 0) loads[0] = 100;
    } else if (panic.every(Boolean) && groups.length > 0) {
      loads = distribute(groups.map((list) => Math.floor((100 * list.length) / hosts.length)), 0);
    }
    let cumulative = 0;
    const localityWeighted = options.localityWeighted === true && !policy.hashing;
    this.levels = groups.map((list, i): PriorityLevel => {
      cumulative += loads[i]!;
      const byLocality = localityWeighted ? LocalityLevel.build(list, policy, overprovisioningFactor) : undefined;
      if (byLocality !== undefined) return { cumulativeLoad: cumulative, balancer: byLocality, panic: false };
      const members = panic[i] ? list : healthy[i]!;
      return { cumulativeLoad: cumulative, balancer: members.length > 0 ? policy.create(members) : undefined, panic: panic[i]! };
    });
    this.single = this.levels.length <= 1 || loads[0] === 100;
  }

  /** The host for a request, or undefined when there is none to choose (503, no healthy upstream). */
  choose(context?: LoadBalancerContext): Host | undefined {
    const levels = this.levels;
    if (levels.length === 0) return undefined;
    const hash = this.hash;
    let draw = 0;
    if (this.policy.hashing) {
      // Without a hash (no policy matched, or none configured) Envoy uses a random one, for the priority too.
      if (context === undefined || !context.computeHashKey(hash)) hash.set(this.random() * 0x1_0000_0000, this.random() * 0x1_0000_0000);
      draw = hash.mod(100);
    } else if (!this.single) {
      draw = Math.floor(this.random() * 100);
    }
    let i = 0;
    while (i < levels.length - 1 && draw >= levels[i]!.cumulativeLoad) i++;
    const level = levels[i]!;
    if (level.panic && this.stats !== undefined) this.stats.counters[CLUSTER_STATS.c.lb_healthy_panic]++;
    return level.balancer?.choose(hash);
  }
}

/**
 * Envoy's distributeLoad: each level's share of 100 in order, capped by what is left; the remainder from
 * rounding goes to `first` (the first available level, or in total panic the first level with hosts).
 */
function distribute(shares: readonly number[], first: number): number[] {
  let remaining = 100;
  const loads = shares.map((share) => {
    const load = Math.min(remaining, share);
    remaining -= load;
    return load;
  });
  loads[first]! += remaining;
  return loads;
}

import type { Host } from './host.js';

/**
 * Weighted round robin across the hosts of one priority level. Hosts of equal weight rotate in order; unequal
 * weights use smooth weighted round robin, which spreads picks evenly and allocates nothing per pick.
 */
class RoundRobinLevel {
  private next = 0;
  private readonly weighted: boolean;
  private readonly current: Float64Array;
  private readonly totalWeight: number;

  constructor(readonly hosts: readonly Host[]) {
    this.weighted = hosts.some((h) => h.weight !== hosts[0]!.weight);
    this.current = new Float64Array(hosts.length);
    this.totalWeight = hosts.reduce((sum, h) => sum + h.weight, 0);
  }

  choose(): Host {
    const hosts = this.hosts;
    if (!this.weighted) {
      const host = hosts[this.next]!;
      this.next = this.next + 1 === hosts.length ? 0 : this.next + 1;
      return host;
    }
    let best = 0;
    for (let i = 0; i < hosts.length; i++) {
      this.current[i]! += hosts[i]!.weight;
      if (this.current[i]! > this.current[best]!) best = i;
    }
    this.current[best]! -= this.totalWeight;
    return hosts[best]!;
  }
}

interface PriorityLevel {
  /** Share of requests, 0-100, this level takes. */
  load: number;
  /** Fewer than `healthy_panic_threshold` % of its hosts are healthy: balance across all of them. */
  panic: boolean;
  all: RoundRobinLevel;
  healthy: RoundRobinLevel | undefined;
}

/**
 * Priority levels as Envoy spreads load over them. A level's availability is `overprovisioning_factor` × its
 * healthy share, capped at 100 %; levels take load in priority order up to their availability, normalised when
 * the total is below 100 %. A level whose healthy share is below `healthy_panic_threshold` balances across all
 * its hosts (panic), and when the total availability is below the threshold, load follows host counts.
 */
export class PriorityLoadBalancer {
  private readonly levels: PriorityLevel[];
  /** True when the first level takes everything, so no random draw is needed. */
  private readonly single: boolean;

  constructor(hosts: readonly Host[], overprovisioningFactor = 140, panicThreshold = 50) {
    const byPriority = new Map<number, Host[]>();
    for (const host of hosts) {
      const list = byPriority.get(host.priority) ?? [];
      list.push(host);
      byPriority.set(host.priority, list);
    }
    const groups = [...byPriority.entries()].sort(([a], [b]) => a - b).map(([, list]) => list);
    const health = groups.map((list) => Math.min(100, (overprovisioningFactor * healthyCount(list)) / list.length));
    const total = Math.min(100, health.reduce((sum, h) => sum + h, 0));
    const threshold = Math.min(100, panicThreshold);
    let loads: number[];
    if (total < threshold || total === 0) {
      // Total panic: load follows the number of hosts in each level.
      loads = groups.map((list) => (100 * list.length) / hosts.length);
    } else {
      let remaining = 100;
      loads = health.map((h) => {
        const load = Math.min(remaining, (h * 100) / total);
        remaining -= load;
        return load;
      });
    }
    const levels = groups.map((list, i): PriorityLevel => {
      const healthy = list.filter((h) => h.healthy);
      const panic = total < 100 && (100 * healthy.length) / list.length < threshold;
      return {
        load: loads[i]!,
        panic,
        all: new RoundRobinLevel(list),
        healthy: healthy.length > 0 ? new RoundRobinLevel(healthy) : undefined,
      };
    });
    // With panic disabled (threshold 0) and nothing healthy, there is no host to choose.
    this.levels = threshold === 0 && total === 0 ? [] : levels;
    this.single = this.levels.length <= 1 || this.levels[0]!.load >= 100;
  }

  choose(): Host | undefined {
    const levels = this.levels;
    let level = levels[0];
    if (!this.single) {
      let draw = Math.random() * 100;
      for (const candidate of levels) {
        level = candidate;
        if (draw < candidate.load) break;
        draw -= candidate.load;
      }
    }
    if (level === undefined) return undefined;
    return level.panic || level.healthy === undefined ? level.all.choose() : level.healthy.choose();
  }
}

function healthyCount(hosts: readonly Host[]): number {
  let count = 0;
  for (const host of hosts) if (host.healthy) count++;
  return count;
}

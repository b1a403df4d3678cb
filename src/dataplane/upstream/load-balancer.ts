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

/**
 * Priority levels. Every host handed in is healthy (endpoints configured unhealthy are left out), and a fully
 * healthy level takes all the load, so traffic goes to the lowest priority that has hosts. Spill-over by
 * `overprovisioning_factor` starts to matter once health checking can make part of a level unhealthy.
 */
export class PriorityLoadBalancer {
  private readonly levels: RoundRobinLevel[];

  constructor(hosts: readonly Host[]) {
    const byPriority = new Map<number, Host[]>();
    for (const host of hosts) {
      const list = byPriority.get(host.priority) ?? [];
      list.push(host);
      byPriority.set(host.priority, list);
    }
    this.levels = [...byPriority.entries()].sort(([a], [b]) => a - b).map(([, list]) => new RoundRobinLevel(list));
  }

  choose(): Host | undefined {
    return this.levels[0]?.choose();
  }
}

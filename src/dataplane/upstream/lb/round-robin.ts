import type { Host } from '../host.js';
import type { LevelBalancer } from './policy.js';

/**
 * Weighted round robin (`ROUND_ROBIN`). Hosts of equal weight rotate in order; unequal weights use smooth
 * weighted round robin, which spreads picks evenly and allocates nothing per pick.
 */
export class RoundRobinLevel implements LevelBalancer {
  private next = 0;
  private readonly weighted: boolean;
  private readonly current: Float64Array;
  private readonly totalWeight: number;

  constructor(private readonly hosts: readonly Host[]) {
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

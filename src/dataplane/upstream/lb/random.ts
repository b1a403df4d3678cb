import type { Host } from '../host.js';
import type { LevelBalancer, RandomSource } from './policy.js';

/** `RANDOM`: a uniformly random host. Like Envoy's, it ignores `load_balancing_weight`. */
export class RandomLevel implements LevelBalancer {
  constructor(
    private readonly hosts: readonly Host[],
    private readonly random: RandomSource,
  ) {}

  choose(): Host {
    return this.hosts[Math.floor(this.random() * this.hosts.length)]!;
  }
}

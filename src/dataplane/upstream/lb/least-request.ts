import type { Host } from '../host.js';
import { HOST_STATS } from '../stats.js';
import { EdfScheduler } from './edf.js';
import type { LevelBalancer, RandomSource } from './policy.js';

/**
 * `LEAST_REQUEST` as Envoy does it. With equal weights: `choice_count` random hosts (with replacement), the
 * one with the fewest active requests wins (power of two choices for the default 2). With unequal weights: an
 * EDF schedule where a host's weight is `load_balancing_weight / (active_requests + 1)^active_request_bias`,
 * computed each time the host is picked and put back.
 */
export class LeastRequestLevel implements LevelBalancer {
  private readonly edf: EdfScheduler | undefined;
  /** Created once per level, so EDF picks pass no new closure. */
  private readonly weightOf: (index: number) => number;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly choiceCount: number,
    bias: number,
    private readonly random: RandomSource,
  ) {
    this.weightOf =
      bias === 0
        ? (i) => hosts[i]!.weight
        : bias === 1
          ? (i) => hosts[i]!.weight / (activeRequests(hosts[i]!) + 1)
          : (i) => hosts[i]!.weight / Math.pow(activeRequests(hosts[i]!) + 1, bias);
    const equalWeights = hosts.every((h) => h.weight === hosts[0]!.weight);
    this.edf = equalWeights ? undefined : new EdfScheduler(hosts.map((_, i) => this.weightOf(i)));
  }

  choose(): Host {
    const hosts = this.hosts;
    if (this.edf !== undefined) return hosts[this.edf.pickAndAdd(this.weightOf)]!;
    let best = hosts[Math.floor(this.random() * hosts.length)]!;
    for (let i = 1; i < this.choiceCount; i++) {
      const candidate = hosts[Math.floor(this.random() * hosts.length)]!;
      if (activeRequests(candidate) < activeRequests(best)) best = candidate;
    }
    return best;
  }
}

const RQ_ACTIVE = HOST_STATS.g.rq_active;

/** Requests dispatched to the host and not yet complete: its `rq_active` gauge. */
function activeRequests(host: Host): number {
  return host.stats.gauges[RQ_ACTIVE]!;
}

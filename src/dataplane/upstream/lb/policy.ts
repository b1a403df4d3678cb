import type { envoy } from '../../../generated/envoy.js';
import type { StatSchema, StatScope } from '../../../stats/store.js';
import type { Runtime } from '../../runtime/runtime.js';
import type { Host } from '../host.js';
import type { Hash64 } from './hash.js';
import { LeastRequestLevel } from './least-request.js';
import { MaglevTable } from './maglev.js';
import { RandomLevel } from './random.js';
import { RingHash } from './ring-hash.js';
import { RoundRobinLevel } from './round-robin.js';
import { MAGLEV_LB_STATS, RING_HASH_LB_STATS } from '../stats.js';

type ClusterConfig = envoy.config.cluster.v3.Cluster;

/** A uniform number in [0, 1), as `Math.random`; unit tests inject a seeded one. */
export type RandomSource = () => number;

/**
 * Chooses among the hosts of one priority level: its healthy hosts, or all of them when the level is in
 * panic. Built whenever those hosts change, so that `choose()` only reads precomputed state and allocates
 * nothing. Never built over an empty host list.
 */
export interface LevelBalancer {
  /** `hash` is the request's hash (or a random one) for hashing policies; the others ignore it. */
  choose(hash: Hash64): Host;
}

/** A cluster's load-balancing policy, compiled once from its configuration. */
export interface LbPolicy {
  /** RING_HASH and MAGLEV: the request's hash picks the priority and the host. */
  readonly hashing: boolean;
  create(hosts: readonly Host[]): LevelBalancer;
}

/** The stats a policy reports its structures to, and their scope under the cluster's: RING_HASH and MAGLEV only. */
export function lbPolicyStats(cluster: ClusterConfig): { schema: StatSchema; scope: string } | undefined {
  const policy = cluster.lb_policy ?? 'ROUND_ROBIN';
  if (policy === 'RING_HASH') return { schema: RING_HASH_LB_STATS, scope: 'ring_hash_lb.' };
  if (policy === 'MAGLEV') return { schema: MAGLEV_LB_STATS, scope: 'maglev_lb.' };
  return undefined;
}

/**
 * The policy of a (validated) cluster; `random` drives every random choice it makes. `stats`, of the schema
 * `lbPolicyStats` gives, receives the size of each ring or table built (the last one built wins, as in Envoy).
 */
export function compileLbPolicy(cluster: ClusterConfig, runtime: Runtime | undefined, random: RandomSource, stats?: StatScope): LbPolicy {
  switch (cluster.lb_policy ?? 'ROUND_ROBIN') {
    case 'LEAST_REQUEST': {
      const config = cluster.least_request_lb_config;
      const choiceCount = config?.choice_count ?? 2;
      const biasConfig = config?.active_request_bias;
      let bias = biasConfig?.default_value ?? 1;
      if (biasConfig?.runtime_key && runtime !== undefined) bias = runtime.getDouble(biasConfig.runtime_key, bias);
      // Envoy falls back to 1.0 (with a warning) for a negative or NaN bias.
      if (!(bias >= 0)) bias = 1;
      return { hashing: false, create: (hosts) => new LeastRequestLevel(hosts, choiceCount, bias, random) };
    }
    case 'RANDOM':
      return { hashing: false, create: (hosts) => new RandomLevel(hosts, random) };
    case 'RING_HASH': {
      const config = cluster.ring_hash_lb_config;
      const min = config?.minimum_ring_size ?? 1024;
      const max = config?.maximum_ring_size ?? 8_388_608;
      const murmur = config?.hash_function === 'MURMUR_HASH_2';
      return {
        hashing: true,
        create: (hosts) => {
          const ring = new RingHash(hosts, min, max, murmur);
          stats?.setGauge(RING_HASH_LB_STATS.g.size, ring.size);
          stats?.setGauge(RING_HASH_LB_STATS.g.min_hashes_per_host, ring.minHashesPerHost);
          stats?.setGauge(RING_HASH_LB_STATS.g.max_hashes_per_host, ring.maxHashesPerHost);
          return ring;
        },
      };
    }
    case 'MAGLEV': {
      const size = cluster.maglev_lb_config?.table_size ?? 65_537;
      return {
        hashing: true,
        create: (hosts) => {
          const table = new MaglevTable(hosts, size);
          stats?.setGauge(MAGLEV_LB_STATS.g.min_entries_per_host, table.minEntriesPerHost);
          stats?.setGauge(MAGLEV_LB_STATS.g.max_entries_per_host, table.maxEntriesPerHost);
          return table;
        },
      };
    }
    default:
      return { hashing: false, create: (hosts) => new RoundRobinLevel(hosts) };
  }
}

/** Each host's weight over the sum of the weights, as Envoy normalises them for hashing policies. */
export function normalizedWeights(hosts: readonly Host[]): Float64Array {
  let sum = 0;
  for (const host of hosts) sum += host.weight;
  const weights = new Float64Array(hosts.length);
  hosts.forEach((host, i) => (weights[i] = host.weight / sum));
  return weights;
}

import type { StatScope, StatsStore } from '../../stats/store.js';
import type { Logger } from '../../util/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import { Cluster, type ClusterConfig } from './cluster.js';
import { CLUSTER_MANAGER_STATS } from './stats.js';

/** The clusters of one configuration, by name. */
export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();
  /** `cluster_manager.` */
  readonly stats: StatScope;

  constructor(configs: readonly ClusterConfig[], log: Logger, stats: StatsStore, runtime?: Runtime) {
    for (const config of configs) this.clusters.set(config.name ?? '', new Cluster(config, log, stats, runtime));
    this.stats = stats.scope(CLUSTER_MANAGER_STATS, 'cluster_manager.');
    this.stats.counters[CLUSTER_MANAGER_STATS.c.cluster_added] += this.clusters.size;
    this.stats.setGauge(CLUSTER_MANAGER_STATS.g.active_clusters, this.clusters.size);
    this.stats.setGauge(CLUSTER_MANAGER_STATS.g.warming_clusters, 0);
  }

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  all(): IterableIterator<Cluster> {
    return this.clusters.values();
  }

  /** Resolves every cluster's hosts; Envoy starts listeners only after this (cluster warming). */
  async initialize(): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.initialize()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.close()));
  }
}

import type { ConfigError } from '../../config/errors.js';
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
  /** Each cluster's configuration as JSON: an unchanged cluster is carried over to the next configuration. */
  private readonly configKeys = new Map<string, string>();
  private readonly carriedOver = new Set<Cluster>();

  /**
   * With `previous`, clusters whose configuration did not change are taken over as they are (hosts, DNS
   * state, connection pools), as Envoy keeps a cluster that a CDS update leaves unchanged.
   */
  constructor(
    configs: readonly ClusterConfig[],
    log: Logger,
    private readonly statsStore: StatsStore,
    runtime?: Runtime,
    previous?: ClusterManager,
    /** Problems found compiling the clusters (`static_resources.clusters[i]...`). */
    errors: ConfigError[] = [],
  ) {
    this.stats = statsStore.scope(CLUSTER_MANAGER_STATS, 'cluster_manager.');
    configs.forEach((config, i) => {
      const name = config.name ?? '';
      const key = JSON.stringify(config);
      const kept = previous?.configKeys.get(name) === key ? previous.clusters.get(name) : undefined;
      if (kept) this.carriedOver.add(kept);
      else this.stats.counters[CLUSTER_MANAGER_STATS.c.cluster_added]++;
      this.clusters.set(name, kept ?? new Cluster(config, log, statsStore, runtime, { errors, path: `static_resources.clusters[${i}]` }));
      this.configKeys.set(name, key);
    });
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
    await Promise.all([...this.clusters.values()].filter((c) => !this.carriedOver.has(c)).map((c) => c.initialize()));
  }

  /** Closes the clusters, except those that `successor` took over. */
  async close(successor?: ClusterManager): Promise<void> {
    await Promise.all([...this.clusters.values()].filter((c) => !successor?.carriedOver.has(c)).map((c) => c.close()));
    this.statsStore.release(this.stats);
  }
}

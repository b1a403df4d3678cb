import type { Logger } from '../../util/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import { Cluster, type ClusterConfig } from './cluster.js';

/** The clusters of one configuration, by name. */
export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();

  constructor(configs: readonly ClusterConfig[], log: Logger, runtime?: Runtime) {
    for (const config of configs) this.clusters.set(config.name ?? '', new Cluster(config, log, runtime));
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

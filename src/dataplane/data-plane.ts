import type { Bootstrap } from '../config/load.js';
import { type ConfigError, ConfigValidationError } from '../config/errors.js';
import { StatsStore } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import { Listener } from './listener/listener.js';
import { LISTENER_MANAGER_STATS } from './listener/stats.js';
import { Runtime } from './runtime/runtime.js';
import { ClusterManager } from './upstream/cluster-manager.js';

/** A bootstrap compiled into runtime objects, not yet bound to any socket. */
export interface CompiledConfig {
  runtime: Runtime;
  clusters: ClusterManager;
  listeners: Listener[];
  stats: StatsStore;
}

/**
 * Builds every runtime object of a bootstrap (route tables, regexes, TLS contexts, clusters) and reports every
 * problem found on the way. Nothing is bound or resolved, so `portico validate` runs exactly this.
 */
export function compileBootstrap(bootstrap: Bootstrap, log: Logger, errors: ConfigError[]): CompiledConfig {
  const stats = new StatsStore();
  const runtime = new Runtime(bootstrap.layered_runtime);
  const clusters = new ClusterManager(bootstrap.static_resources?.clusters ?? [], log, stats);
  const listeners = (bootstrap.static_resources?.listeners ?? []).map(
    (config, i) => new Listener(config, `static_resources.listeners[${i}]`, errors, { clusters, runtime, log, stats }),
  );
  return { runtime, clusters, listeners, stats };
}

/** Envoy's `stats_flush_interval` default: histogram intervals end this often. */
const DEFAULT_STATS_FLUSH_MS = 5000;

/** `server.*` gauges that belong to each process and add up across workers. */
function collectProcessStats(stats: StatsStore, listeners: readonly Listener[]): void {
  stats.addCollector((into) => {
    const memory = process.memoryUsage();
    const connections = listeners.reduce((sum, l) => sum + l.connectionCount, 0);
    into.gauges.push(
      ['server.memory_allocated', memory.heapUsed, true, true],
      ['server.memory_heap_size', memory.heapTotal, true, true],
      ['server.memory_physical_size', memory.rss, true, true],
      ['server.total_connections', connections, true, true],
    );
  });
}

/**
 * The data plane of one process: clusters and listeners from a bootstrap. Cluster hosts are resolved before
 * listeners start accepting (Envoy's cluster warming), so the first request already has somewhere to go.
 */
export class DataPlane {
  private constructor(
    readonly config: CompiledConfig,
    private readonly log: Logger,
  ) {}

  static async start(bootstrap: Bootstrap, log: Logger): Promise<DataPlane> {
    const errors: ConfigError[] = [];
    const config = compileBootstrap(bootstrap, log, errors);
    if (errors.length) throw new ConfigValidationError(errors);
    const plane = new DataPlane(config, log);
    const stats = config.stats;
    const manager = stats.scope(LISTENER_MANAGER_STATS, 'listener_manager.');
    collectProcessStats(stats, config.listeners);
    plane.flushTimer = setInterval(() => stats.flushHistograms(), bootstrap.stats_flush_interval || DEFAULT_STATS_FLUSH_MS);
    plane.flushTimer.unref();
    await config.clusters.initialize();
    try {
      for (const listener of config.listeners) {
        manager.counters[LISTENER_MANAGER_STATS.c.listener_added]++;
        const bound = await listener.start();
        manager.counters[LISTENER_MANAGER_STATS.c.listener_create_success]++;
        log.info(`listener ${listener.name} listening on ${bound.address}:${bound.port}`);
      }
    } catch (err) {
      manager.counters[LISTENER_MANAGER_STATS.c.listener_create_failure]++;
      await plane.close(0);
      throw err;
    }
    manager.setGauge(LISTENER_MANAGER_STATS.g.total_listeners_active, config.listeners.length);
    manager.setGauge(LISTENER_MANAGER_STATS.g.workers_started, 1);
    return plane;
  }

  private flushTimer: NodeJS.Timeout | undefined;

  get stats(): StatsStore {
    return this.config.stats;
  }

  get listeners(): readonly Listener[] {
    return this.config.listeners;
  }


  /**
   * Stops accepting, lets in-flight requests finish for up to `drainTimeoutMs`, then closes what is left and
   * the upstream pools.
   */
  async close(drainTimeoutMs: number): Promise<void> {
    clearInterval(this.flushTimer);
    for (const listener of this.config.listeners) listener.stopAccepting();
    const deadline = Date.now() + drainTimeoutMs;
    while (Date.now() < deadline && this.config.listeners.some((l) => l.connectionCount > 0)) {
      for (const listener of this.config.listeners) listener.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const listener of this.config.listeners) listener.closeConnections();
    await this.config.clusters.close();
    this.log.debug('data plane closed');
  }
}

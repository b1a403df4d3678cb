import type { Bootstrap } from '../config/load.js';
import { type ConfigError, ConfigValidationError } from '../config/errors.js';
import { collectProcessStats } from '../stats/process.js';
import { StatsStore } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import { AccessLogSinks } from './access-log/sinks.js';
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
  /** Access log files and streams, shared by every logger that names the same one. */
  accessLogSinks: AccessLogSinks;
}

/**
 * Builds every runtime object of a bootstrap (route tables, regexes, TLS contexts, clusters) and reports every
 * problem found on the way. Nothing is bound or resolved, so `portico validate` runs exactly this.
 */
export function compileBootstrap(bootstrap: Bootstrap, log: Logger, errors: ConfigError[]): CompiledConfig {
  const stats = new StatsStore();
  const runtime = new Runtime(bootstrap.layered_runtime);
  const clusters = new ClusterManager(bootstrap.static_resources?.clusters ?? [], log, stats, runtime);
  const accessLogSinks = new AccessLogSinks(log);
  const listeners = (bootstrap.static_resources?.listeners ?? []).map(
    (config, i) => new Listener(config, `static_resources.listeners[${i}]`, errors, { clusters, runtime, log, stats, accessLogSinks }),
  );
  return { runtime, clusters, listeners, stats, accessLogSinks };
}

/** Envoy's `stats_flush_interval` default: histogram intervals end this often. */
const DEFAULT_STATS_FLUSH_MS = 5000;

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
    // A log file that cannot be opened for appending is a configuration error, found before serving.
    config.accessLogSinks.open(errors);
    if (errors.length) {
      await config.accessLogSinks.close();
      throw new ConfigValidationError(errors);
    }
    const plane = new DataPlane(config, log);
    const stats = config.stats;
    const manager = stats.scope(LISTENER_MANAGER_STATS, 'listener_manager.');
    collectProcessStats(stats, () => config.listeners.reduce((sum, l) => sum + l.connectionCount, 0));
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
   * Envoy's listener drain: stop accepting, close idle keep-alive connections, and let in-flight requests finish
   * (their responses carry `Connection: close`) for up to `drainTimeoutMs`. Resolves once no connection is left or
   * the time is up; connections still open stay open.
   */
  async drain(drainTimeoutMs: number): Promise<void> {
    for (const listener of this.config.listeners) listener.startDraining();
    const deadline = Date.now() + drainTimeoutMs;
    while (Date.now() < deadline && this.config.listeners.some((l) => l.connectionCount > 0)) {
      for (const listener of this.config.listeners) listener.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `drainTimeoutMs`, then closes what is left and
   * the upstream pools.
   */
  async close(drainTimeoutMs: number): Promise<void> {
    clearInterval(this.flushTimer);
    await this.drain(drainTimeoutMs);
    for (const listener of this.config.listeners) listener.closeConnections();
    // Destroyed sockets report 'close' a turn later; their streams and connections write access logs then.
    for (let i = 0; i < 100 && this.config.listeners.some((l) => l.connectionCount > 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await this.config.clusters.close();
    // Last: every line queued so far is written before close() resolves.
    await this.config.accessLogSinks.close();
    this.log.debug('data plane closed');
  }

  /** Reopens every access log file (`POST /reopen_logs`, after log rotation). */
  reopenAccessLogs(): Promise<void> {
    return this.config.accessLogSinks.reopen();
  }
}

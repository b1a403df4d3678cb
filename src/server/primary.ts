/**
 * The primary process of `portico run`: owns the configuration, the admin endpoint and the `server.*` stats, and
 * runs the data plane in worker processes. It is what the admin endpoint talks to.
 */
import type { AdminTarget, ServerState } from '../admin/admin-server.js';
import type { Bootstrap } from '../config/load.js';
import type { ClusterStatus, ListenerStatus } from '../dataplane/status.js';
import { mergeClusterStatuses } from '../dataplane/status.js';
import { Runtime, type RuntimeDump } from '../dataplane/runtime/runtime.js';
import { collectProcessStats } from '../stats/process.js';
import { mergeSnapshots } from '../stats/render.js';
import { defineStats, StatsStore, type StatScope } from '../stats/store.js';
import type { Logger, LogLevel } from '../util/logger.js';
import { WorkerPool } from './worker-pool.js';

/** `server.*`, kept by the primary. */
export const SERVER_STATS = defineStats({
  counters: ['worker_restarts'],
  gauges: ['live', 'state', 'uptime', 'concurrency', 'hot_restart_epoch'],
  histograms: ['initialization_time_ms'],
});

const STATE_VALUE: Record<ServerState, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };
const DEFAULT_STATS_FLUSH_MS = 5000;

export interface PrimaryOptions {
  bootstrap: Bootstrap;
  /** The bootstrap document as loaded (with `--config-yaml` merged), sent to the workers. */
  document: unknown;
  concurrency: number;
  drainTimeMs: number;
  log: Logger;
  commandLineOptions: Record<string, unknown>;
}

export class Primary implements AdminTarget {
  readonly startTime = Date.now();
  readonly configLoadedAt = new Date(this.startTime).toISOString();
  readonly bootstrap: Bootstrap;
  readonly commandLineOptions: Record<string, unknown>;
  readonly node: Record<string, unknown>;
  private readonly pool: WorkerPool;
  private readonly runtimeView: Runtime;
  private readonly stats_ = new StatsStore();
  private readonly serverStats: StatScope;
  private serverState: ServerState = 'INITIALIZING';
  private healthCheckFailed = false;
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  /** Resolves when the primary has shut down (SIGTERM, `/quitquitquit`, a graceful `/drain_listeners`). */
  readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));

  constructor(private readonly options: PrimaryOptions) {
    this.bootstrap = options.bootstrap;
    this.commandLineOptions = options.commandLineOptions;
    this.node = (options.bootstrap.node ?? {}) as Record<string, unknown>;
    this.runtimeView = new Runtime(options.bootstrap.layered_runtime);
    this.pool = new WorkerPool({
      config: options.document,
      concurrency: options.concurrency,
      statsPushMs: options.bootstrap.stats_flush_interval || DEFAULT_STATS_FLUSH_MS,
      log: options.log,
    });
    this.serverStats = this.stats_.scope(SERVER_STATS, 'server.');
    collectProcessStats(this.stats_, () => 0);
  }

  /** Starts the workers; rejects when they cannot serve the configuration. */
  async start(): Promise<void> {
    const started = performance.now();
    await this.pool.start();
    this.serverStats.histograms[SERVER_STATS.h.initialization_time_ms]!.record(performance.now() - started);
    this.serverState = 'LIVE';
  }

  state(): ServerState {
    return this.serverState === 'LIVE' && this.healthCheckFailed ? 'DRAINING' : this.serverState;
  }

  async stats() {
    const server = this.serverStats;
    const state = this.state();
    server.setGauge(SERVER_STATS.g.live, state === 'LIVE' ? 1 : 0);
    server.setGauge(SERVER_STATS.g.state, STATE_VALUE[state]);
    server.setGauge(SERVER_STATS.g.uptime, Math.floor((Date.now() - this.startTime) / 1000));
    server.setGauge(SERVER_STATS.g.concurrency, this.options.concurrency);
    server.setGauge(SERVER_STATS.g.hot_restart_epoch, 0);
    server.counters[SERVER_STATS.c.worker_restarts] = this.pool.restarts;
    return mergeSnapshots([await this.pool.stats(), this.stats_.snapshot()]);
  }

  async clusters(): Promise<ClusterStatus[]> {
    const answers = await this.pool.ask('clusters', undefined);
    return mergeClusterStatuses(answers.filter((a): a is ClusterStatus[] => a !== undefined));
  }

  listeners(): ListenerStatus[] {
    return this.pool.listeners;
  }

  runtime(): RuntimeDump {
    return this.runtimeView.dump();
  }

  async modifyRuntime(changes: Record<string, string>): Promise<boolean> {
    if (!this.runtimeView.modify(changes)) return false;
    await this.pool.ask('runtime_modify', changes);
    return true;
  }

  logLevel(): LogLevel {
    return this.options.log.level;
  }

  async setLogLevel(level: LogLevel): Promise<void> {
    this.options.log.level = level;
    await this.pool.ask('log_level', level);
  }

  async resetCounters(): Promise<void> {
    this.stats_.resetCounters();
    await this.pool.resetCounters();
  }

  setHealthCheckFailed(failed: boolean): void {
    this.healthCheckFailed = failed;
  }

  async drainListeners(options: { graceful: boolean; skipExit: boolean }): Promise<void> {
    this.serverState = 'DRAINING';
    await this.pool.ask('drain', { drainMs: options.graceful ? this.options.drainTimeMs : 0 });
    if (options.graceful && !options.skipExit) await this.stop();
  }

  async reopenLogs(): Promise<void> {
    await this.pool.ask('reopen_logs', undefined);
  }

  quit(): void {
    void this.stop();
  }

  /** Drains the workers for the drain time and stops them (SIGTERM, SIGINT, `/quitquitquit`). */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.serverState = 'DRAINING';
      this.options.log.info('shutting down');
      await this.pool.shutdown(this.options.drainTimeMs);
      this.resolveStopped();
    })());
  }
}

/**
 * What every server process that runs an admin endpoint shares: its state, the health-check flag, and the
 * `server.*` stats. `Primary` (worker processes) and `InProcessAdmin` (a data plane in the same process, as in
 * `portico start`) add how they reach their data plane.
 */
import type { AdminTarget, ServerState } from '../admin/admin-server.js';
import type { DynamicResource } from '../admin/config-dump.js';
import type { Bootstrap } from '../config/load.js';
import type { ClusterStatus, ListenerStatus } from '../dataplane/status.js';
import type { RuntimeDump } from '../dataplane/runtime/runtime.js';
import { mergeSnapshots } from '../stats/render.js';
import { defineStats, StatsStore, type StatScope, type StatsSnapshot } from '../stats/store.js';
import type { Logger, LogLevel } from '../util/logger.js';

/** `server.*`, kept by the process that runs the admin endpoint. */
export const SERVER_STATS = defineStats({
  counters: ['worker_restarts'],
  gauges: ['live', 'state', 'uptime', 'concurrency', 'hot_restart_epoch'],
  histograms: ['initialization_time_ms'],
});

const STATE_VALUE: Record<ServerState, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

export abstract class ServerAdmin implements AdminTarget {
  readonly startTime = Date.now();
  protected serverState: ServerState = 'INITIALIZING';
  private healthCheckFailed = false;
  /** The admin's own stats: `server.*` (and, in a primary apart from its workers, its memory). */
  protected readonly ownStats = new StatsStore();
  protected readonly serverStats: StatScope;

  constructor(
    protected readonly log: Logger,
    readonly commandLineOptions: Record<string, unknown>,
    /** Worker processes serving traffic; 1 for a data plane in this process. */
    private readonly concurrency: number,
  ) {
    this.serverStats = this.ownStats.scope(SERVER_STATS, 'server.');
  }

  abstract readonly bootstrap: Bootstrap;
  abstract readonly configLoadedAt: string;
  abstract dynamicResources(): DynamicResource[];
  abstract clusters(): Promise<ClusterStatus[]>;
  abstract listeners(): ListenerStatus[];
  abstract runtime(): RuntimeDump;
  abstract modifyRuntime(changes: Record<string, string>): Promise<boolean>;
  abstract resetCounters(): Promise<void>;
  abstract drainListeners(options: { graceful: boolean; skipExit: boolean }): Promise<void>;
  abstract reopenLogs(): Promise<void>;
  abstract quit(): void;
  /** The data plane's stats (every worker's, added up). */
  protected abstract dataPlaneStats(): Promise<StatsSnapshot>;

  get node(): Record<string, unknown> {
    return (this.bootstrap.node ?? {}) as Record<string, unknown>;
  }

  /** Marks the server live, recording how long it took to get there. */
  protected becameLive(): void {
    this.serverStats.histograms[SERVER_STATS.h.initialization_time_ms]!.record(Date.now() - this.startTime);
    this.serverState = 'LIVE';
  }

  state(): ServerState {
    return this.serverState === 'LIVE' && this.healthCheckFailed ? 'DRAINING' : this.serverState;
  }

  setHealthCheckFailed(failed: boolean): void {
    this.healthCheckFailed = failed;
  }

  async stats(): Promise<StatsSnapshot> {
    const server = this.serverStats;
    const state = this.state();
    server.setGauge(SERVER_STATS.g.live, state === 'LIVE' ? 1 : 0);
    server.setGauge(SERVER_STATS.g.state, STATE_VALUE[state]);
    server.setGauge(SERVER_STATS.g.uptime, Math.floor((Date.now() - this.startTime) / 1000));
    server.setGauge(SERVER_STATS.g.concurrency, this.concurrency);
    server.setGauge(SERVER_STATS.g.hot_restart_epoch, 0);
    return mergeSnapshots([await this.dataPlaneStats(), this.ownStats.snapshot()]);
  }

  logLevel(): LogLevel {
    return this.log.level;
  }

  async setLogLevel(level: LogLevel): Promise<void> {
    this.log.level = level;
  }
}

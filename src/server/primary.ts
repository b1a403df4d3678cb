/**
 * The primary process of `portico run`: owns the configuration, the admin endpoint and the `server.*` stats, and
 * runs the data plane in worker processes. It is what the admin endpoint talks to.
 */
import type { Bootstrap } from '../config/load.js';
import type { ClusterStatus, ListenerStatus } from '../dataplane/status.js';
import { mergeClusterStatuses } from '../dataplane/status.js';
import { Runtime, type RuntimeDump } from '../dataplane/runtime/runtime.js';
import { collectProcessStats } from '../stats/process.js';
import { DEFAULT_STATS_FLUSH_MS, type StatsSnapshot } from '../stats/store.js';
import type { Logger, LogLevel } from '../util/logger.js';
import { ConfigValidationError } from '../config/errors.js';
import type { DynamicResource } from '../admin/config-dump.js';
import { XdsClient } from '../xds/client.js';
import { xdsStats } from '../xds/stats.js';
import { SERVER_STATS, ServerAdmin } from './server-admin.js';
import { WorkerPool } from './worker-pool.js';
import { documentErrors, dynamicResourcesOf } from './xds-data-plane.js';

export interface PrimaryOptions {
  bootstrap: Bootstrap;
  /** The bootstrap document as loaded (with `--config-yaml` merged), sent to the workers. */
  document: unknown;
  concurrency: number;
  drainTimeMs: number;
  /** `--file-flush-interval-msec`, passed on to every worker. */
  fileFlushIntervalMs: number;
  log: Logger;
  commandLineOptions: Record<string, unknown>;
}

export class Primary extends ServerAdmin {
  configLoadedAt = new Date(this.startTime).toISOString();
  bootstrap: Bootstrap;
  private readonly pool: WorkerPool;
  private runtimeView: Runtime;
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  /** Resolves when the primary has shut down (SIGTERM, `/quitquitquit`, a graceful `/drain_listeners`). */
  readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));

  constructor(private readonly options: PrimaryOptions) {
    super(options.log, options.commandLineOptions, options.concurrency);
    this.bootstrap = options.bootstrap;
    this.runtimeView = new Runtime(options.bootstrap.layered_runtime);
    this.pool = new WorkerPool({
      config: options.document,
      concurrency: options.concurrency,
      statsPushMs: options.bootstrap.stats_flush_interval || DEFAULT_STATS_FLUSH_MS,
      runtimeOverrides: () => this.runtimeView.adminOverrides(),
      log: options.log,
      fileFlushIntervalMs: options.fileFlushIntervalMs,
      drainTimeMs: options.drainTimeMs,
    });
    // The primary is a process of its own: its memory joins the workers' in `server.memory_*`.
    collectProcessStats(this.ownStats, () => 0);
  }

  private xds: XdsClient | undefined;
  private poolStarted = false;

  /**
   * Starts the workers; rejects when they cannot serve the configuration. With `dynamic_resources`, subscribes
   * and returns: the workers start on the first configuration xDS gives (the admin endpoint answers meanwhile,
   * as Envoy's does while it initializes), and every later one is applied to them.
   */
  async start(): Promise<void> {
    if (this.bootstrap.dynamic_resources === undefined) {
      await this.pool.start();
      if (this.stopping === undefined) this.becameLive();
      return;
    }
    const log = this.options.log;
    const xds = new XdsClient({
      bootstrap: this.bootstrap,
      document: this.options.document as Record<string, unknown>,
      log,
      validate: (document) => documentErrors(document, log),
      apply: (document) => this.serveDocument(document),
      events: xdsStats(this.ownStats),
    });
    this.xds = xds;
    xds.start();
    xds.firstServed.then(
      () => {
        if (this.stopping === undefined) this.becameLive();
      },
      (err: Error) => {
        log.error(`cannot serve the first configuration from xDS: ${err.message}`);
        void this.stop();
      },
    );
  }

  /** A configuration from xDS: checked here, then served by every worker. */
  private async serveDocument(document: Record<string, unknown>): Promise<void> {
    const errors = documentErrors(document, this.options.log);
    if (errors.length > 0) throw new ConfigValidationError(errors);
    if (this.poolStarted) {
      const problems = await this.pool.update(document);
      if (problems.length > 0) throw new Error(problems.join('\n'));
      return;
    }
    this.pool.setConfig(document);
    await this.pool.start();
    this.poolStarted = true;
  }

  dynamicResources(): DynamicResource[] {
    return this.xds === undefined ? [] : dynamicResourcesOf(this.xds);
  }

  protected dataPlaneStats(): Promise<StatsSnapshot> {
    this.serverStats.counters[SERVER_STATS.c.worker_restarts] = this.pool.restarts;
    return this.pool.stats();
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

  override async setLogLevel(level: LogLevel): Promise<void> {
    await super.setLogLevel(level);
    await this.pool.ask('log_level', level);
  }

  async resetCounters(): Promise<void> {
    this.ownStats.resetCounters();
    this.pool.restarts = 0;
    await this.pool.resetCounters();
  }

  async drainListeners(options: { graceful: boolean; skipExit: boolean }): Promise<void> {
    this.serverState = 'DRAINING';
    await this.pool.ask('drain', { drainMs: options.graceful ? this.options.drainTimeMs : 0 });
    if (options.graceful && !options.skipExit) await this.stop();
  }

  async reopenLogs(): Promise<void> {
    await this.pool.ask('reopen_logs', undefined);
  }

  /**
   * Swaps in a new configuration (SIGHUP), already validated, as Envoy swaps in an update: unchanged listeners
   * keep their connections, retired filter chains and listeners drain for the drain time. Resolves with the
   * problems of workers that could not take it; the admin endpoint shows the new configuration either way.
   */
  async update(bootstrap: Bootstrap, document: unknown): Promise<string[]> {
    if (this.stopping !== undefined) throw new Error('shutting down');
    // What xDS gave is not in the file: reloading it would drop every dynamic resource.
    if (this.xds !== undefined) throw new Error('the configuration comes from xDS (dynamic_resources): SIGHUP does not reload it');
    const runtime = new Runtime(bootstrap.layered_runtime);
    runtime.modify(this.runtimeView.adminOverrides());
    this.runtimeView = runtime;
    this.bootstrap = bootstrap;
    this.configLoadedAt = new Date().toISOString();
    return this.pool.update(document);
  }

  quit(): void {
    void this.stop();
  }

  /** Drains the workers for the drain time and stops them (SIGTERM, SIGINT, `/quitquitquit`). */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.serverState = 'DRAINING';
      this.options.log.info('shutting down');
      this.xds?.close();
      await this.pool.shutdown(this.options.drainTimeMs);
      this.resolveStopped();
    })());
  }
}

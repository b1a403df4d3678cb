import type { Bootstrap } from '../config/load.js';
import { type ConfigError, ConfigValidationError } from '../config/errors.js';
import { collectProcessStats } from '../stats/process.js';
import { DEFAULT_STATS_FLUSH_MS, StatsStore } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import { AccessLogSinks } from './access-log/sinks.js';
import { Listener } from './listener/listener.js';
import { LISTENER_MANAGER_STATS } from './listener/stats.js';
import { LocalTokenBuckets, type TokenBuckets } from './ratelimit/token-bucket.js';
import { Runtime } from './runtime/runtime.js';
import { ClusterManager } from './upstream/cluster-manager.js';
import { InitManager } from './init-manager.js';
import type { HttpFilterRegistry } from './http/filter.js';
import type { ListenerFilterRegistry } from './listener/listener-filter.js';
import type { NetworkFilterRegistry } from './listener/network-filter.js';

/** A bootstrap compiled into runtime objects, not yet bound to any socket. */
export interface CompiledConfig {
  runtime: Runtime;
  clusters: ClusterManager;
  listeners: Listener[];
  stats: StatsStore;
  /** Access log files and streams, shared by every logger that names the same one. */
  accessLogSinks: AccessLogSinks;
  /** What must be done, once the clusters have hosts, before the listeners serve. */
  init: InitManager;
}

/** What the command line sets for a data plane, beyond its bootstrap. */
export interface DataPlaneOptions {
  /** The HTTP filter extensions the program is composed with (src/extensions/registry.ts). */
  httpFilters: HttpFilterRegistry;
  /** The listener filter extensions likewise. */
  listenerFilters: ListenerFilterRegistry;
  /** The non-terminal network filter extensions likewise. */
  networkFilters: NetworkFilterRegistry;
  /** `--file-flush-interval-msec`: how long an access log file's queued lines wait at most (default 10 s, as Envoy). */
  fileFlushIntervalMs?: number;
  /** Token buckets shared by the worker processes of `portico run`; this process's own when absent. */
  tokenBuckets?: TokenBuckets;
  /** The store to count in, when the process counts things of its own there too (its xDS client); a new one when absent. */
  stats?: StatsStore;
}

/**
 * Builds every runtime object of a bootstrap (route tables, regexes, TLS contexts, clusters) and reports every
 * problem found on the way. Nothing is bound or resolved, so `portico validate` runs exactly this. A running data
 * plane passes its options, its stats store (so stats carry across configurations) and its cluster manager (whose
 * unchanged clusters are taken over).
 */
export function compileBootstrap(
  bootstrap: Bootstrap,
  log: Logger,
  errors: ConfigError[],
  running: DataPlaneOptions & { clusters?: ClusterManager },
): CompiledConfig {
  const stats = running.stats ?? new StatsStore();
  const runtime = new Runtime(bootstrap.layered_runtime);
  const clusters = new ClusterManager(bootstrap.static_resources?.clusters ?? [], errors, log, stats, runtime, running.clusters);
  const accessLogSinks = new AccessLogSinks(log, running.fileFlushIntervalMs);
  const init = new InitManager();
  const listeners = (bootstrap.static_resources?.listeners ?? []).map(
    (config, i) => new Listener(config, `static_resources.listeners[${i}]`, errors, {
        clusters,
        runtime,
        log,
        stats,
        accessLogSinks,
        init,
        httpFilters: running.httpFilters,
        listenerFilters: running.listenerFilters,
        networkFilters: running.networkFilters,
        localCluster: bootstrap.node?.cluster ?? '',
        tokenBuckets: running.tokenBuckets ?? new LocalTokenBuckets(),
      }),
  );
  return { runtime, clusters, listeners, stats, accessLogSinks, init };
}

/**
 * Compiles a checked bootstrap for the problems only compilation finds (regexes, rewrite rules, header formats),
 * also when checking found some already, so that one pass reports them all. What compiling finds at, inside or
 * around a path that checking reported is that problem again in other words, and is left out. The decoder drops
 * what it cannot decode, so the tree is well-typed; should compiling still stumble over a tree known to be
 * wrong, what it found until then is kept, while on a tree checked clean that is a bug, and thrown.
 */
export function findCompileProblems(
  bootstrap: Bootstrap,
  log: Logger,
  errors: ConfigError[],
  running: Parameters<typeof compileBootstrap>[3],
): void {
  const reported = errors.map((e) => e.path);
  const found: ConfigError[] = [];
  try {
    compileBootstrap(bootstrap, log, found, running);
  } catch (err) {
    if (reported.length === 0) throw err;
  }
  const related = (a: string, b: string) => a === b || isWithin(a, b) || isWithin(b, a);
  errors.push(...found.filter((e) => !reported.some((path) => related(path, e.path))));
}

/** `inner` names a field or element inside `outer`. */
function isWithin(inner: string, outer: string): boolean {
  return inner.startsWith(outer) && (inner[outer.length] === '.' || inner[outer.length] === '[');
}

/**
 * The data plane of one process: clusters and listeners from a bootstrap. Cluster hosts are resolved before
 * listeners start accepting (Envoy's cluster warming), so the first request already has somewhere to go.
 */
export class DataPlane {
  private constructor(
    private current: CompiledConfig,
    private readonly log: Logger,
    private readonly options: DataPlaneOptions,
  ) {}

  get config(): CompiledConfig {
    return this.current;
  }

  static async start(bootstrap: Bootstrap, log: Logger, given: DataPlaneOptions): Promise<DataPlane> {
    // One set of buckets for the data plane's life, so that a new configuration keeps the tokens of the buckets it keeps.
    const options = { ...given, tokenBuckets: given.tokenBuckets ?? new LocalTokenBuckets() };
    const errors: ConfigError[] = [];
    const config = compileBootstrap(bootstrap, log, errors, options);
    if (errors.length) throw new ConfigValidationError(errors);
    // A log file that cannot be opened for appending is a configuration error, found before serving.
    config.accessLogSinks.open(errors);
    if (errors.length) {
      await config.accessLogSinks.close();
      throw new ConfigValidationError(errors);
    }
    const plane = new DataPlane(config, log, options);
    const stats = config.stats;
    const manager = stats.scope(LISTENER_MANAGER_STATS, 'listener_manager.');
    collectProcessStats(stats, () => config.listeners.reduce((sum, l) => sum + l.connectionCount, 0));
    plane.flushTimer = setInterval(() => stats.flushHistograms(), bootstrap.stats_flush_interval || DEFAULT_STATS_FLUSH_MS);
    plane.flushTimer.unref();
    await config.clusters.initialize();
    await config.init.initialize();
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
  /** Access logs of configurations update() replaced, until their connections have drained. */
  private readonly retiringAccessLogs = new Set<AccessLogSinks>();

  get stats(): StatsStore {
    return this.current.stats;
  }

  get listeners(): readonly Listener[] {
    return this.current.listeners;
  }
  /**
   * Serves a new bootstrap without failing a request. The new configuration is compiled in full and its new
   * clusters are resolved first (unchanged clusters are kept as they are); then every listener switches at once
   * (matched by name; new ones start, missing ones stop), and the old runtime drains in the background: requests
   * in flight finish on it, and its clusters close once no connection uses them. Throws, changing nothing, if
   * the bootstrap is invalid. Callers must not run two updates at the same time.
   */
  async update(bootstrap: Bootstrap, drainTimeoutMs: number): Promise<void> {
    const errors: ConfigError[] = [];
    const old = this.current;
    const next = compileBootstrap(bootstrap, this.log, errors, { ...this.options, stats: old.stats, clusters: old.clusters });
    if (errors.length === 0) next.accessLogSinks.open(errors);
    if (errors.length) {
      await next.accessLogSinks.close();
      await next.clusters.close(old.clusters);
      throw new ConfigValidationError(errors);
    }
    await next.clusters.initialize();
    await next.init.initialize();
    const byName = new Map(old.listeners.map((l) => [l.name, l]));
    const listeners: Listener[] = [];
    const drains: Promise<void>[] = [];
    for (const listener of next.listeners) {
      const existing = byName.get(listener.name);
      // A listener keeps its socket while its address stays; one that moved is new, and the old one drains.
      if (existing && existing.host === listener.host && existing.port === listener.port) {
        byName.delete(listener.name);
        drains.push(existing.replaceChains(listener, drainTimeoutMs));
        listeners.push(existing);
      } else {
        await listener.start();
        listeners.push(listener);
      }
    }
    for (const gone of byName.values()) drains.push(gone.drain(drainTimeoutMs));
    this.current = { ...next, listeners };
    this.retiringAccessLogs.add(old.accessLogSinks);
    void Promise.all(drains).then(async () => {
      await Promise.all([old.clusters.close(next.clusters), old.accessLogSinks.close()]);
      this.retiringAccessLogs.delete(old.accessLogSinks);
    });
  }

  /**
   * Envoy's listener drain: stop accepting, close idle keep-alive connections, and let in-flight requests finish
   * (their responses carry `Connection: close`) for up to `drainTimeoutMs`. Resolves once no connection is left or
   * the time is up; connections still open stay open.
   */
  async drain(drainTimeoutMs: number): Promise<void> {
    for (const listener of this.current.listeners) listener.startDraining();
    const deadline = Date.now() + drainTimeoutMs;
    while (Date.now() < deadline && this.current.listeners.some((l) => l.connectionCount > 0)) {
      for (const listener of this.current.listeners) listener.closeIdleConnections();
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
    for (const listener of this.current.listeners) listener.closeConnections();
    // Destroyed sockets report 'close' a turn later; their streams and connections write access logs then.
    for (let i = 0; i < 100 && this.current.listeners.some((l) => l.connectionCount > 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await this.current.clusters.close();
    // Last: every line queued so far is written before close() resolves, also by configurations still draining
    // (their sinks write any later line synchronously once closed).
    await Promise.all([this.current.accessLogSinks, ...this.retiringAccessLogs].map((sinks) => sinks.close()));
    this.log.debug('data plane closed');
  }

  /** Reopens every access log file (`POST /reopen_logs`, after log rotation). */
  reopenAccessLogs(): Promise<void> {
    return this.current.accessLogSinks.reopen();
  }
}

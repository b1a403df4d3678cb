import type { Bootstrap } from '../config/load.js';
import { type ConfigError, ConfigValidationError } from '../config/errors.js';
import type { Logger } from '../util/logger.js';
import { Listener } from './listener/listener.js';
import { Runtime } from './runtime/runtime.js';
import { ClusterManager } from './upstream/cluster-manager.js';

/** A bootstrap compiled into runtime objects, not yet bound to any socket. */
export interface CompiledConfig {
  runtime: Runtime;
  clusters: ClusterManager;
  listeners: Listener[];
}

/**
 * Builds every runtime object of a bootstrap (route tables, regexes, TLS contexts, clusters) and reports every
 * problem found on the way. Nothing is bound or resolved, so `portico validate` runs exactly this.
 */
export function compileBootstrap(bootstrap: Bootstrap, log: Logger, errors: ConfigError[], previous?: ClusterManager): CompiledConfig {
  const runtime = new Runtime(bootstrap.layered_runtime);
  const clusters = new ClusterManager(bootstrap.static_resources?.clusters ?? [], log, previous);
  const listeners = (bootstrap.static_resources?.listeners ?? []).map(
    (config, i) => new Listener(config, `static_resources.listeners[${i}]`, errors, { clusters, runtime, log }),
  );
  return { runtime, clusters, listeners };
}

/**
 * The data plane of one process: clusters and listeners from a bootstrap. Cluster hosts are resolved before
 * listeners start accepting (Envoy's cluster warming), so the first request already has somewhere to go.
 */
export class DataPlane {
  private constructor(
    private current: CompiledConfig,
    private readonly log: Logger,
  ) {}

  get config(): CompiledConfig {
    return this.current;
  }

  static async start(bootstrap: Bootstrap, log: Logger): Promise<DataPlane> {
    const errors: ConfigError[] = [];
    const config = compileBootstrap(bootstrap, log, errors);
    if (errors.length) throw new ConfigValidationError(errors);
    const plane = new DataPlane(config, log);
    await config.clusters.initialize();
    try {
      for (const listener of config.listeners) {
        const bound = await listener.start();
        log.info(`listener ${listener.name} listening on ${bound.address}:${bound.port}`);
      }
    } catch (err) {
      await plane.close(0);
      throw err;
    }
    return plane;
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
    const next = compileBootstrap(bootstrap, this.log, errors, this.current.clusters);
    if (errors.length) throw new ConfigValidationError(errors);
    await next.clusters.initialize();
    const old = this.current;
    const byName = new Map(old.listeners.map((l) => [l.name, l]));
    const listeners: Listener[] = [];
    const drains: Promise<void>[] = [];
    for (const listener of next.listeners) {
      const existing = byName.get(listener.name);
      byName.delete(listener.name);
      if (existing) {
        drains.push(existing.replaceChains(listener, drainTimeoutMs));
        listeners.push(existing);
      } else {
        await listener.start();
        listeners.push(listener);
      }
    }
    for (const gone of byName.values()) drains.push(gone.drain(drainTimeoutMs));
    this.current = { runtime: next.runtime, clusters: next.clusters, listeners };
    void Promise.all(drains).then(() => old.clusters.close(next.clusters));
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `drainTimeoutMs`, then closes what is left and
   * the upstream pools.
   */
  async close(drainTimeoutMs: number): Promise<void> {
    for (const listener of this.current.listeners) listener.stopAccepting();
    const deadline = Date.now() + drainTimeoutMs;
    while (Date.now() < deadline && this.current.listeners.some((l) => l.connectionCount > 0)) {
      for (const listener of this.current.listeners) listener.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const listener of this.current.listeners) listener.closeConnections();
    await this.current.clusters.close();
    this.log.debug('data plane closed');
  }
}

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
export function compileBootstrap(bootstrap: Bootstrap, log: Logger, errors: ConfigError[]): CompiledConfig {
  const runtime = new Runtime(bootstrap.layered_runtime);
  const clusters = new ClusterManager(bootstrap.static_resources?.clusters ?? [], log, runtime);
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
    readonly config: CompiledConfig,
    private readonly log: Logger,
  ) {}

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
    return this.config.listeners;
  }


  /**
   * Stops accepting, lets in-flight requests finish for up to `drainTimeoutMs`, then closes what is left and
   * the upstream pools.
   */
  async close(drainTimeoutMs: number): Promise<void> {
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

/**
 * The control plane of one process: the store, the translator and the xDS server it feeds; data planes reach it
 * only through xDS. A write through this process is validated and translated inside the store's transaction and
 * then published as a new snapshot; writes made by other processes on the same database arrive through NOTIFY
 * (and, as a safety net, a periodic resync), are translated and published the same way. Publishing is serialised
 * and always moves forward in version; with a `localNode` (the data plane of `portico start`), a change is served
 * once that node has acknowledged it. What the RateLimit resources translate to goes to the process's own rate
 * limit service at the same moment.
 */
import type { Bootstrap } from '../config/load.js';
import { formatConfigErrors } from '../config/errors.js';
import type { RateLimitService } from '../ratelimit/service.js';
import type { Logger } from '../util/logger.js';
import type { Resource } from './resources.js';
import { type Change, type ChangeResult, type ConfigStore, NOTIFY_CHANNEL, type Snapshot } from './store/store.js';
import { type BuiltConfig, buildConfig, type ResourceError, type TranslateOptions } from './translate.js';
import type { XdsServer } from './xds/server.js';
import { SnapshotBuilder } from './xds/snapshot.js';

export interface ControlPlaneOptions extends TranslateOptions {
  resyncIntervalMs: number;
  log: Logger;
  /** The rate limit service on `rateLimitPort`, configured by the RateLimit resources. */
  rateLimitService?: RateLimitService;
  /** Where the snapshots are served. */
  xds: XdsServer;
  /** The node whose acknowledgement a change waits for (this process's own data plane). */
  localNode?: string;
}

/** A change the local data plane has not acknowledged by then is logged as not applied. */
const LOCAL_ACK_TIMEOUT_MS = 30_000;

/** The configuration being served. */
export interface Served {
  version: number;
  config: BuiltConfig;
  appliedAt: Date;
}

export class ControlPlane {
  private served: Served;
  private applying: Promise<void> = Promise.resolve();
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private resyncTimer: NodeJS.Timeout | undefined;

  private readonly snapshots = new SnapshotBuilder();

  private constructor(
    readonly store: ConfigStore,
    initial: Served,
    private readonly options: ControlPlaneOptions,
  ) {
    this.served = initial;
    this.publish(initial);
  }

  /** Builds the stored configuration, serves it over xDS, and follows the store from then on. */
  static async start(store: ConfigStore, options: ControlPlaneOptions): Promise<ControlPlane> {
    const snapshot = store.snapshot;
    let built = buildConfig(resourcesOf(snapshot), options, options.log);
    if (built.errors.length) {
      // Only possible when this version translates differently from the one that stored it: serve nothing
      // rather than something half-right, and say why.
      options.log.error(`stored configuration version ${snapshot.version} is invalid, serving no routes:\n${formatResourceErrors(built.errors)}`);
      built = buildConfig([], options, options.log);
    }
    options.rateLimitService?.update(built.value.rateLimits.config);
    const cp = new ControlPlane(store, { version: snapshot.version, config: built.value, appliedAt: new Date() }, options);
    await store.engine.listen(NOTIFY_CHANNEL, () => void cp.sync());
    cp.resyncTimer = setInterval(() => void cp.sync(), options.resyncIntervalMs);
    cp.resyncTimer.unref();
    return cp;
  }

  get current(): Served {
    return this.served;
  }

  /** The bootstrap being served, as the admin endpoint shows it. */
  get bootstrap(): Bootstrap {
    return this.served.config.bootstrap;
  }

  /** Validates, commits and applies changes; the result says what was committed or why nothing was. */
  async change(changes: Change[], source: string): Promise<ChangeResult<BuiltConfig>> {
    const result = await this.store.change(changes, source, (resources) => buildConfig(resources, this.options, this.options.log));
    if (result.ok && result.validated) await this.apply(result.version, result.validated);
    return result;
  }

  /** What `change` would answer, without committing anything (dry runs and `/api/v1/validate`). */
  preview(changes: Change[]): ChangeResult<BuiltConfig> {
    return this.store.preview(changes, (resources) => buildConfig(resources, this.options, this.options.log));
  }

  /** Catches up with the store (changes from other processes) and applies what changed. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        try {
          const snapshot = await this.store.refresh();
          if (snapshot && snapshot.version > this.served.version) {
            const built = buildConfig(resourcesOf(snapshot), this.options, this.options.log);
            if (built.errors.length) {
              this.options.log.error(`configuration version ${snapshot.version} is invalid here, keeping version ${this.served.version}:\n${formatResourceErrors(built.errors)}`);
            } else {
              await this.apply(snapshot.version, built.value);
            }
          }
        } catch (err) {
          this.options.log.error(`configuration sync failed: ${(err as Error).message}`);
        }
      } while (this.syncAgain);
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private apply(version: number, config: BuiltConfig): Promise<void> {
    const run = this.applying.then(async () => {
      if (version <= this.served.version) return;
      const served = { version, config, appliedAt: new Date() };
      this.publish(served);
      this.options.rateLimitService?.update(config.rateLimits.config);
      this.served = served;
      if (this.options.localNode !== undefined) await this.options.xds.waitForNode(this.options.localNode, String(version), LOCAL_ACK_TIMEOUT_MS);
      this.options.log.info(`serving configuration version ${version}`);
    });
    this.applying = run.catch((err: Error) => this.options.log.error(`applying configuration version ${version} failed: ${err.message}`));
    return this.applying;
  }

  private publish(served: Served): void {
    this.options.xds.setSnapshot(this.snapshots.build(String(served.version), served.config.envoy.listeners, served.config.envoy.clusters));
  }

  async close(): Promise<void> {
    clearInterval(this.resyncTimer);
    await this.syncing;
    await this.applying;
  }
}

export function resourcesOf(snapshot: Snapshot): Resource[] {
  return [...snapshot.resources.values()].map((r) => r.resource);
}

export function formatResourceErrors(errors: readonly ResourceError[]): string {
  return formatConfigErrors(errors.map((e) => ({ ...e, path: e.resource ? `${e.resource} ${e.path}` : e.path })));
}

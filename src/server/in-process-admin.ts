/** The admin target of a data plane running in the admin's own process (`portico start`). */
import type { Bootstrap } from '../config/load.js';
import type { DynamicResource } from '../admin/config-dump.js';
import type { DataPlane } from '../dataplane/data-plane.js';
import { type ClusterStatus, clusterStatus, type ListenerStatus, listenerStatus } from '../dataplane/status.js';
import type { RuntimeDump } from '../dataplane/runtime/runtime.js';
import type { StatsSnapshot } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import { ServerAdmin } from './server-admin.js';

export interface InProcessAdminOptions {
  plane: DataPlane;
  log: Logger;
  commandLineOptions: Record<string, unknown>;
  /** The configuration served now (it changes with every update). */
  bootstrap: () => Bootstrap;
  configLoadedAt: () => string;
  /** What the data plane holds from xDS. */
  dynamicResources: () => DynamicResource[];
  drainTimeMs: number;
  quit: () => void;
}

export class InProcessAdmin extends ServerAdmin {
  constructor(private readonly options: InProcessAdminOptions) {
    super(options.log, options.commandLineOptions, 1);
    this.becameLive();
  }

  get bootstrap(): Bootstrap {
    return this.options.bootstrap();
  }

  get configLoadedAt(): string {
    return this.options.configLoadedAt();
  }

  dynamicResources(): DynamicResource[] {
    return this.options.dynamicResources();
  }

  protected async dataPlaneStats(): Promise<StatsSnapshot> {
    return this.options.plane.stats.snapshot();
  }

  async clusters(): Promise<ClusterStatus[]> {
    return [...this.options.plane.config.clusters.all()].map(clusterStatus);
  }

  listeners(): ListenerStatus[] {
    return this.options.plane.listeners.map(listenerStatus);
  }

  runtime(): RuntimeDump {
    return this.options.plane.config.runtime.dump();
  }

  async modifyRuntime(changes: Record<string, string>): Promise<boolean> {
    return this.options.plane.config.runtime.modify(changes);
  }

  async resetCounters(): Promise<void> {
    this.ownStats.resetCounters();
    this.options.plane.stats.resetCounters();
  }

  async drainListeners(options: { graceful: boolean; skipExit: boolean }): Promise<void> {
    this.serverState = 'DRAINING';
    await this.options.plane.drain(options.graceful ? this.options.drainTimeMs : 0);
    if (options.graceful && !options.skipExit) this.quit();
  }

  async reopenLogs(): Promise<void> {
    await this.options.plane.reopenAccessLogs();
  }

  quit(): void {
    this.serverState = 'DRAINING';
    this.options.quit();
  }
}

/**
 * Data planes run from xDS in this process: what `portico start` serves its own traffic with, fed by its control
 * plane over the same gRPC protocol as any other data plane.
 */
import { ConfigValidationError, type ConfigError } from '../config/errors.js';
import { checkBootstrap, type Bootstrap } from '../config/load.js';
import { compileBootstrap, DataPlane } from '../dataplane/data-plane.js';
import { StatsStore } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import { XdsClient } from '../xds/client.js';
import { xdsStats } from '../xds/stats.js';
import { EXTENSIONS } from '../extensions/registry.js';
import type { DynamicResource } from '../admin/config-dump.js';

/** Every problem of a bootstrap document: decoded, checked and compiled, nothing bound. */
export function documentErrors(document: unknown, log: Logger): ConfigError[] {
  const { bootstrap, errors } = checkBootstrap(document);
  if (errors.length === 0) compileBootstrap(bootstrap, log, errors, EXTENSIONS);
  return errors;
}

/** The bootstrap of a data plane that takes everything from the xDS server at `host:port` over ADS. */
export function xdsBootstrap(options: { nodeId: string; nodeCluster: string; server: string; metadata?: Record<string, unknown>; adminPort?: number }): Record<string, unknown> {
  return {
    node: { id: options.nodeId, cluster: options.nodeCluster, ...(options.metadata ? { metadata: options.metadata } : {}) },
    dynamic_resources: {
      ads_config: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ google_grpc: { target_uri: options.server, stat_prefix: 'ads' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    ...(options.adminPort !== undefined ? { admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } } } : {}),
  };
}

export interface XdsDataPlane {
  readonly plane: DataPlane;
  readonly client: XdsClient;
  readonly bootstrap: Bootstrap;
  close(drainTimeoutMs: number): Promise<void>;
}

/** Starts a data plane on `document` (a bootstrap with `dynamic_resources`); resolves once it serves its first configuration. */
export async function startXdsDataPlane(document: Record<string, unknown>, log: Logger, drainTimeoutMs: number): Promise<XdsDataPlane> {
  const { bootstrap, errors } = checkBootstrap(document);
  if (errors.length > 0) throw new ConfigValidationError(errors);
  const stats = new StatsStore();
  let plane: DataPlane | undefined;
  const client = new XdsClient({
    bootstrap,
    document,
    log,
    validate: (next) => documentErrors(next, log),
    apply: async (next) => {
      const checked = checkBootstrap(next);
      if (checked.errors.length > 0) throw new ConfigValidationError(checked.errors);
      if (plane === undefined) plane = await DataPlane.start(checked.bootstrap, log, { ...EXTENSIONS, stats });
      else await plane.update(checked.bootstrap, drainTimeoutMs);
    },
    events: xdsStats(stats),
  });
  client.start();
  await client.firstServed;
  const started = plane!;
  return {
    plane: started,
    client,
    bootstrap,
    async close(drainMs: number) {
      client.close();
      await started.close(drainMs);
    },
  };
}

/** What an xDS client holds, as `/config_dump` lists it. */
export function dynamicResourcesOf(client: XdsClient): DynamicResource[] {
  return client.dump().flatMap(({ typeUrl, resources }) =>
    [...resources].map(([name, held]) => ({ typeUrl, name, version: held.version, lastUpdated: held.lastUpdated, json: held.json })),
  );
}

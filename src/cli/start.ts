import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AdminServer } from '../admin/admin-server.js';
import { ApiServer } from '../controlplane/api-server.js';
import { ControlPlane } from '../controlplane/control-plane.js';
import { openPglite, openPostgres } from '../controlplane/store/engine.js';
import { ConfigStore } from '../controlplane/store/store.js';
import { RateLimitService } from '../ratelimit/service.js';
import { InProcessAdmin } from '../server/in-process-admin.js';
import { dynamicResourcesOf, startXdsDataPlane, xdsBootstrap, type XdsDataPlane } from '../server/xds-data-plane.js';
import { XdsServer } from '../controlplane/xds/server.js';
import { createLogger, isLogLevel, type Logger } from '../util/logger.js';

const OPTIONS = {
  'data-dir': { type: 'string', default: './.portico' },
  'database-url': { type: 'string' },
  'proxy-host': { type: 'string', default: '0.0.0.0' },
  'proxy-port': { type: 'string', default: '8080' },
  'https-port': { type: 'string', default: '8443' },
  'api-host': { type: 'string', default: '127.0.0.1' },
  'api-port': { type: 'string', default: '8888' },
  'admin-host': { type: 'string', default: '127.0.0.1' },
  'admin-port': { type: 'string', default: '9901' },
  'api-token': { type: 'string' },
  'max-body-bytes': { type: 'string', default: String(8 * 1024 * 1024) },
  'resync-interval-s': { type: 'string', default: '5' },
  'drain-time-s': { type: 'string', default: '5' },
  'redis-url': { type: 'string' },
  'ratelimit-port': { type: 'string', default: '0' },
  'xds-host': { type: 'string', default: '127.0.0.1' },
  'xds-port': { type: 'string', default: '18000' },
  'data-plane-only': { type: 'boolean', default: false },
  'xds-server': { type: 'string' },
  node: { type: 'string' },
  'log-level': { type: 'string', short: 'l', default: 'info' },
} as const;

/** A numeric flag of `values`, checked against its range. */
export function number(values: Record<string, string | boolean | undefined>, name: string, min: number, max: number): number {
  const raw = String(values[name]);
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`invalid --${name} "${raw}" (${min} to ${max})`);
  return n;
}

export interface GatewayOptions {
  dataDir: string;
  databaseUrl: string | undefined;
  proxyHost: string;
  proxyPort: number;
  /** The HTTPS listener of Hosts with certificates, when no Listener resource says otherwise; none without. */
  httpsPort?: number;
  apiHost: string;
  apiPort: number;
  adminHost: string;
  adminPort: number;
  token: string | undefined;
  maxBodyBytes: number;
  resyncIntervalMs: number;
  drainTimeoutMs: number;
  /** Where the rate limit service counts; in its memory without. */
  redisUrl?: string | undefined;
  /** Its gRPC port on 127.0.0.1 (0: one the system picks). */
  rateLimitPort?: number;
  /** Where the xDS server listens (default 127.0.0.1, port 0: one the system picks). */
  xdsHost?: string;
  xdsPort?: number;
  log: Logger;
}

/** The node id of `portico start`'s own data plane. */
export const LOCAL_NODE = 'portico';

/** A started gateway: what `portico start` runs, also started in-process by tests and benchmarks. */
export interface Gateway {
  cp: ControlPlane;
  xds: XdsServer;
  /** The data plane of this process, fed by `xds` like any other. */
  local: XdsDataPlane;
  xdsPort: number;
  /** The rate limit service the RateLimit resources configure. */
  rateLimits: RateLimitService;
  apiPort: number;
  adminPort: number;
  proxyPort: number;
  stop(): Promise<void>;
  /** Settles when the gateway has stopped (stop(), or the admin's /quitquitquit). */
  stopped: Promise<void>;
}

export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  // First: the translation points the ratelimit filter at its port.
  const rateLimits = await RateLimitService.start({ redisUrl: o.redisUrl, host: '127.0.0.1', grpcPort: o.rateLimitPort ?? 0, adminPort: null, log: o.log });
  o.log.info(`rate limit service on 127.0.0.1:${rateLimits.grpcPort}, counting ${o.redisUrl === undefined ? 'in memory' : 'in Redis'}`);
  const xds = new XdsServer({ log: o.log });
  let xdsPort: number;
  try {
    xdsPort = await xds.listen(o.xdsHost ?? '127.0.0.1', o.xdsPort ?? 0);
  } catch (err) {
    await rateLimits.close();
    throw new Error(`cannot serve xDS on ${o.xdsHost ?? '127.0.0.1'}:${o.xdsPort ?? 0}: ${(err as Error).message}`);
  }
  o.log.info(`xDS server on ${o.xdsHost ?? '127.0.0.1'}:${xdsPort}`);
  let cp: ControlPlane;
  let local: XdsDataPlane;
  try {
    const engine = o.databaseUrl ? await openPostgres(o.databaseUrl, (message) => o.log.error(message)) : await openPglite(o.dataDir);
    try {
      const store = await ConfigStore.open(engine);
      o.log.info(`store: ${engine.kind === 'postgres' ? 'PostgreSQL' : `PGlite in ${o.dataDir}`}, configuration version ${store.snapshot.version}`);
      cp = await ControlPlane.start(store, {
        listenerAddress: o.proxyHost,
        listenerPort: o.proxyPort,
        httpsPort: o.httpsPort,
        rateLimitPort: rateLimits.grpcPort,
        rateLimitService: rateLimits,
        resyncIntervalMs: o.resyncIntervalMs,
        log: o.log,
        xds,
        localNode: LOCAL_NODE,
      });
    } catch (err) {
      await engine.close();
      throw err;
    }
    try {
      local = await startXdsDataPlane(xdsBootstrap({ nodeId: LOCAL_NODE, nodeCluster: LOCAL_NODE, server: `127.0.0.1:${xdsPort}` }), o.log, o.drainTimeoutMs);
    } catch (err) {
      await cp.close();
      await cp.store.close();
      throw err;
    }
  } catch (err) {
    await Promise.all([rateLimits.close(), xds.close()]);
    throw err;
  }
  const plane = local.plane;
  const api = new ApiServer(cp, { token: o.token, maxBodyBytes: o.maxBodyBytes, log: o.log, rateLimits, xds, dataPlaneStats: () => plane.stats.snapshot() });
  let adminPort = o.adminPort;
  const admin = new AdminServer(
    new InProcessAdmin({
      plane,
      log: o.log,
      commandLineOptions: { data_dir: o.dataDir, drain_time: `${o.drainTimeoutMs / 1000}s` },
      // The data plane's own view, as any data plane run from xDS shows it: its bootstrap and what xDS gave it.
      bootstrap: () => ({ ...local.bootstrap, admin: { address: { socket_address: { address: o.adminHost, port_value: adminPort } } } }),
      configLoadedAt: () => cp.current.appliedAt.toISOString(),
      dynamicResources: () => dynamicResourcesOf(local.client),
      drainTimeMs: o.drainTimeoutMs,
      quit: () => void stop(),
    }),
  );
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all([api.close(), admin.close()]);
      await cp.close();
      await local.close(o.drainTimeoutMs);
      await Promise.all([cp.store.close(), rateLimits.close(), xds.close()]);
      resolveStopped();
    })());
  try {
    const boundApi = await api.listen(o.apiHost, o.apiPort);
    o.log.info(`API listening on ${boundApi.address}:${boundApi.port}${o.token ? ' (mutating calls need the bearer token)' : ''}`);
    const boundAdmin = await admin.listen(o.adminHost, o.adminPort);
    adminPort = boundAdmin.port;
    o.log.info(`admin listening on ${boundAdmin.address}:${boundAdmin.port}`);
    for (const listener of plane.listeners) {
      const bound = listener.boundAddress()!;
      o.log.info(`proxy listener ${listener.name} on ${bound.address}:${bound.port}`);
    }
    // The first listener is the HTTP one of --proxy-port unless Listener resources say otherwise.
    const proxyPort = plane.listeners[0]?.boundAddress()?.port ?? 0;
    return { cp, xds, local, xdsPort, rateLimits, apiPort: boundApi.port, adminPort, proxyPort, stop, stopped };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `portico start`: the gateway until SIGTERM, SIGINT or the admin's /quitquitquit. */
export async function startCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel)) throw new Error(`invalid --log-level "${logLevel}"`);
  const log = createLogger(logLevel);
  if (values['data-plane-only']) {
    const server = values['xds-server'];
    if (server === undefined) throw new Error('--data-plane-only needs --xds-server HOST:PORT');
    const proxyPortGiven = argv.some((a) => a === '--proxy-port' || a.startsWith('--proxy-port='));
    return runDataPlaneOnly({
      server,
      nodeId: values.node ?? hostname(),
      listenerPort: proxyPortGiven ? number(values, 'proxy-port', 1, 65535) : undefined,
      adminHost: values['admin-host'],
      adminPort: number(values, 'admin-port', 0, 65535),
      drainTimeoutMs: number(values, 'drain-time-s', 0, 3600) * 1000,
      log,
    });
  }
  const gateway = await startGateway({
    dataDir: resolve(values['data-dir']),
    databaseUrl: values['database-url'] ?? process.env.PORTICO_DATABASE_URL,
    proxyHost: values['proxy-host'],
    proxyPort: number(values, 'proxy-port', 0, 65535),
    httpsPort: number(values, 'https-port', 1, 65535),
    apiHost: values['api-host'],
    apiPort: number(values, 'api-port', 0, 65535),
    adminHost: values['admin-host'],
    adminPort: number(values, 'admin-port', 0, 65535),
    token: values['api-token'] ?? process.env.PORTICO_API_TOKEN,
    maxBodyBytes: number(values, 'max-body-bytes', 1024, 1024 ** 3),
    resyncIntervalMs: number(values, 'resync-interval-s', 0.1, 3600) * 1000,
    drainTimeoutMs: number(values, 'drain-time-s', 0, 3600) * 1000,
    redisUrl: values['redis-url'] ?? process.env.PORTICO_REDIS_URL,
    rateLimitPort: number(values, 'ratelimit-port', 0, 65535),
    xdsHost: values['xds-host'],
    xdsPort: number(values, 'xds-port', 0, 65535),
    log,
  });
  log.info('portico is live');
  const stop = () => {
    log.info('shutting down');
    void gateway.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await gateway.stopped;
  return 0;
}

/** `portico start --data-plane-only`: a data plane of the control plane at `server`, with its admin. */
async function runDataPlaneOnly(o: {
  server: string;
  nodeId: string;
  listenerPort: number | undefined;
  adminHost: string;
  adminPort: number;
  drainTimeoutMs: number;
  log: Logger;
}): Promise<number> {
  const metadata = o.listenerPort === undefined ? undefined : { listener_port: o.listenerPort };
  o.log.info(`data plane ${o.nodeId}: waiting for its configuration from ${o.server}`);
  const local = await startXdsDataPlane(xdsBootstrap({ nodeId: o.nodeId, nodeCluster: LOCAL_NODE, server: o.server, metadata }), o.log, o.drainTimeoutMs);
  let adminPort = o.adminPort;
  const startedAt = new Date().toISOString();
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const admin = new AdminServer(
    new InProcessAdmin({
      plane: local.plane,
      log: o.log,
      commandLineOptions: { xds_server: o.server, drain_time: `${o.drainTimeoutMs / 1000}s` },
      bootstrap: () => ({ ...local.bootstrap, admin: { address: { socket_address: { address: o.adminHost, port_value: adminPort } } } }),
      configLoadedAt: () => startedAt,
      dynamicResources: () => dynamicResourcesOf(local.client),
      drainTimeMs: o.drainTimeoutMs,
      quit: () => resolveStopped(),
    }),
  );
  adminPort = (await admin.listen(o.adminHost, o.adminPort)).port;
  o.log.info(`admin listening on ${o.adminHost}:${adminPort}`);
  o.log.info('portico is live');
  process.once('SIGTERM', () => resolveStopped());
  process.once('SIGINT', () => resolveStopped());
  await stopped;
  o.log.info('shutting down');
  await admin.close();
  await local.close(o.drainTimeoutMs);
  return 0;
}

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bootstrap } from '../config/load.js';
import type { ConfigError } from '../config/errors.js';
import type { ClusterStatus, ListenerStatus } from '../dataplane/status.js';
import { compileRe2, type Re2 } from '../dataplane/matching/regex.js';
import type { RuntimeDump } from '../dataplane/runtime/runtime.js';
import { type HistogramBuckets, renderJson, renderPrometheus, renderText, type StatsQuery, type StatsType } from '../stats/render.js';
import type { StatsSnapshot } from '../stats/store.js';
import { isLogLevel, type LogLevel } from '../util/logger.js';
import { VERSION } from '../version.js';
import { renderClustersJson, renderClustersText } from './clusters.js';
import { CONFIG_DUMP_RESOURCES, configDump, type DynamicResource } from './config-dump.js';
import { closeServer, listenOn } from '../util/http-server.js';

export type ServerState = 'LIVE' | 'DRAINING' | 'PRE_INITIALIZING' | 'INITIALIZING';

/** What the admin endpoint reports about and asks of the server it runs in (the primary process). */
export interface AdminTarget {
  state(): ServerState;
  startTime: number;
  commandLineOptions: Record<string, unknown>;
  node: Record<string, unknown>;
  /** The configuration being served, and when it was loaded (RFC 3339). */
  bootstrap: Bootstrap;
  configLoadedAt: string;
  /** What the process holds from xDS. */
  dynamicResources(): DynamicResource[];
  /** Every process's stats added up. */
  stats(): Promise<StatsSnapshot>;
  clusters(): Promise<ClusterStatus[]>;
  listeners(): ListenerStatus[];
  runtime(): RuntimeDump;
  /** False when the runtime has no admin layer. */
  modifyRuntime(changes: Record<string, string>): Promise<boolean>;
  logLevel(): LogLevel;
  setLogLevel(level: LogLevel): Promise<void>;
  resetCounters(): Promise<void>;
  /** `/healthcheck/fail` and `/healthcheck/ok`. */
  setHealthCheckFailed(failed: boolean): void;
  /** `/drain_listeners`: stop accepting; with `graceful`, give in-flight requests the drain time, then exit unless `skipExit`. */
  drainListeners(options: { graceful: boolean; skipExit: boolean }): Promise<void>;
  reopenLogs(): Promise<void>;
  /** Shuts the process down (`/quitquitquit`). */
  quit(): void;
}

interface Handler {
  help: string;
  mutates: boolean;
  handle(req: IncomingMessage, res: ServerResponse, target: AdminTarget, params: URLSearchParams): void | Promise<void>;
}

/**
 * Envoy's admin interface. Handlers match the path before `?` exactly; mutating ones answer 405 to anything but
 * POST; unknown paths get 404 with the list of commands.
 */
const HANDLERS: Record<string, Handler> = {
  '/': { help: 'Admin home page', mutates: false, handle: (_req, res) => sendHome(res) },
  '/help': { help: 'print out list of admin commands', mutates: false, handle: (_req, res) => send(res, 200, helpText()) },
  '/ready': {
    help: 'print server state, return 200 if LIVE, otherwise return 503',
    mutates: false,
    handle: (_req, res, target) => {
      const state = target.state();
      send(res, state === 'LIVE' ? 200 : 503, `${state}\n`);
    },
  },
  '/server_info': {
    help: 'print server version/status information',
    mutates: false,
    handle: (_req, res, target) => {
      const uptime = Math.floor((Date.now() - target.startTime) / 1000);
      sendJson(res, {
        version: `portico/${VERSION}`,
        state: target.state(),
        hot_restart_version: 'disabled',
        command_line_options: target.commandLineOptions,
        node: target.node,
        uptime_current_epoch: `${uptime}s`,
        uptime_all_epochs: `${uptime}s`,
      });
    },
  },
  '/config_dump': {
    help: 'dump current Envoy configs; param resource: one of static_clusters, static_listeners, static_route_configs',
    mutates: false,
    handle: (_req, res, target, params) => {
      const resource = params.get('resource') ?? undefined;
      if (resource !== undefined && !CONFIG_DUMP_RESOURCES.includes(resource)) {
        send(res, 404, `resource ${resource} not found in config dump\n`);
        return;
      }
      sendJson(res, configDump(target.bootstrap, target.configLoadedAt, resource, target.dynamicResources(), params.get('include_eds') !== null));
    },
  },
  '/stats': {
    help: 'print server stats; params usedonly, filter (RE2), format (text, json, prometheus), type, histogram_buckets',
    mutates: false,
    handle: async (_req, res, target, params) => {
      const query = statsQuery(params, res);
      if (query === undefined) return;
      const format = params.get('format') ?? 'text';
      const snapshot = await target.stats();
      if (format === 'json') sendJson(res, renderJson(snapshot, query));
      else if (format === 'prometheus') send(res, 200, renderPrometheus(snapshot, query), PROMETHEUS_TYPE);
      else if (format === 'text') send(res, 200, renderText(snapshot, query));
      else send(res, 400, `usage: /stats?format=(text|json|prometheus)\n`);
    },
  },
  '/stats/prometheus': {
    help: 'print server stats in prometheus format; params usedonly, filter (RE2)',
    mutates: false,
    handle: async (_req, res, target, params) => {
      const query = statsQuery(params, res);
      if (query === undefined) return;
      send(res, 200, renderPrometheus(await target.stats(), query), PROMETHEUS_TYPE);
    },
  },
  '/clusters': {
    help: 'upstream cluster status; param format: text (default) or json',
    mutates: false,
    handle: async (_req, res, target, params) => {
      const clusters = await target.clusters();
      if (params.get('format') === 'json') sendJson(res, renderClustersJson(clusters));
      else send(res, 200, renderClustersText(clusters));
    },
  },
  '/listeners': {
    help: 'print listener info; param format: text (default) or json',
    mutates: false,
    handle: (_req, res, target, params) => {
      const listeners = target.listeners();
      if (params.get('format') === 'json') {
        sendJson(res, {
          listener_statuses: listeners.map((l) => ({ name: l.name, local_address: { socket_address: { address: l.address, port_value: l.port } } })),
        });
      } else {
        send(res, 200, listeners.map((l) => `${l.name}::${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}\n`).join(''));
      }
    },
  },
  '/runtime': {
    help: 'print runtime values',
    mutates: false,
    handle: (_req, res, target) => sendJson(res, target.runtime()),
  },
  '/runtime_modify': {
    help: 'Adds or modifies runtime values as passed in query parameters. To delete a previously added key, use an empty string as the value.',
    mutates: true,
    handle: async (req, res, target, params) => {
      // Envoy also takes the parameters as a form-encoded body.
      const body = await readBody(req);
      for (const [key, value] of new URLSearchParams(body)) params.append(key, value);
      const changes = Object.fromEntries(params);
      if (Object.keys(changes).length === 0) {
        send(res, 400, 'usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n');
        return;
      }
      if (!(await target.modifyRuntime(changes))) {
        send(res, 503, 'No admin layer specified\n');
        return;
      }
      send(res, 200, 'OK\n');
    },
  },
  '/logging': {
    help: 'query/change logging levels; param level: trace, debug, info, warning, error, critical, off',
    mutates: true,
    handle: async (_req, res, target, params) => {
      const level = params.get('level');
      const paths = params.get('paths');
      if (level !== null && !isLogLevel(level)) {
        send(res, 400, `error: unknown logger level\n\n${loggersText(target)}`);
        return;
      }
      if (paths !== null) {
        // One logger, `main`, carries every component's messages.
        const [name, pathLevel] = paths.split(':');
        if (name !== 'main' || pathLevel === undefined || !isLogLevel(pathLevel)) {
          send(res, 400, `error: unknown logger name or level in "${paths}"\n\n${loggersText(target)}`);
          return;
        }
        await target.setLogLevel(pathLevel);
      } else if (level !== null) {
        await target.setLogLevel(level);
      }
      send(res, 200, loggersText(target));
    },
  },
  '/reset_counters': {
    help: 'reset all counters to zero',
    mutates: true,
    handle: async (_req, res, target) => {
      await target.resetCounters();
      send(res, 200, 'OK\n');
    },
  },
  '/healthcheck/fail': {
    help: 'cause the server to fail health checks',
    mutates: true,
    handle: (_req, res, target) => {
      target.setHealthCheckFailed(true);
      send(res, 200, 'OK\n');
    },
  },
  '/healthcheck/ok': {
    help: 'cause the server to pass health checks',
    mutates: true,
    handle: (_req, res, target) => {
      target.setHealthCheckFailed(false);
      send(res, 200, 'OK\n');
    },
  },
  '/drain_listeners': {
    help: 'drain listeners; params graceful (drain for the drain time first, then exit unless skip_exit), skip_exit',
    mutates: true,
    handle: async (_req, res, target, params) => {
      const graceful = params.has('graceful');
      const skipExit = params.has('skip_exit');
      if (skipExit && !graceful) {
        send(res, 400, 'skip_exit requires graceful\n');
        return;
      }
      send(res, 200, 'OK\n');
      await target.drainListeners({ graceful, skipExit });
    },
  },
  '/reopen_logs': {
    help: 'reopen access logs',
    mutates: true,
    handle: async (_req, res, target) => {
      await target.reopenLogs();
      send(res, 200, 'OK\n');
    },
  },
  '/quitquitquit': {
    help: 'exit the server',
    mutates: true,
    handle: (_req, res, target) => {
      send(res, 200, 'OK\n');
      res.on('finish', () => target.quit());
    },
  },
};

const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=UTF-8';
const STATS_TYPES: readonly StatsType[] = ['All', 'Counters', 'Gauges', 'Histograms', 'TextReadouts'];
const BUCKET_MODES: readonly HistogramBuckets[] = ['summary', 'cumulative', 'disjoint'];

/** The `/stats` query parameters; answers 400 and returns undefined when one is invalid. */
function statsQuery(params: URLSearchParams, res: ServerResponse): StatsQuery | undefined {
  let filter: Re2 | undefined;
  const pattern = params.get('filter');
  if (pattern !== null && pattern !== '') {
    const errors: ConfigError[] = [];
    filter = compileRe2(pattern, 'filter', errors);
    if (filter === undefined) {
      send(res, 400, `Invalid re2 regex: ${errors.map((e) => e.message).join('; ')}\n`);
      return undefined;
    }
  }
  const type = (params.get('type') ?? 'All') as StatsType;
  if (!STATS_TYPES.includes(type)) {
    send(res, 400, `invalid type=${type}; use one of ${STATS_TYPES.join(', ')}\n`);
    return undefined;
  }
  const histogramBuckets = (params.get('histogram_buckets') ?? 'summary') as HistogramBuckets;
  if (!BUCKET_MODES.includes(histogramBuckets)) {
    send(res, 400, `invalid histogram_buckets=${histogramBuckets}; use one of ${BUCKET_MODES.join(', ')}\n`);
    return undefined;
  }
  return { usedOnly: params.has('usedonly'), filter, type, histogramBuckets };
}

function loggersText(target: AdminTarget): string {
  return `active loggers:\n  main: ${target.logLevel()}\n`;
}

const MAX_ADMIN_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > MAX_ADMIN_BODY) req.destroy(new Error('admin request body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function helpText(): string {
  const lines = Object.entries(HANDLERS)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, h]) => `  ${path}${h.mutates ? ' (POST)' : ''}: ${h.help}`);
  return `admin commands are:\n${lines.join('\n')}\n`;
}

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=UTF-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-cache, max-age=0', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

function sendJson(res: ServerResponse, value: unknown): void {
  send(res, 200, JSON.stringify(value, null, 2) + '\n', 'application/json');
}

function sendHome(res: ServerResponse): void {
  const items = Object.entries(HANDLERS)
    .map(([path, h]) => `<li><a href="${path}">${path}</a>${h.mutates ? ' (POST)' : ''}: ${h.help}</li>`)
    .join('');
  send(res, 200, `<!DOCTYPE html><html><head><title>Portico admin</title></head><body><ul>${items}</ul></body></html>`, 'text/html; charset=UTF-8');
}

export class AdminServer {
  private readonly server: http.Server;

  constructor(private readonly target: AdminTarget) {
    this.server = http.createServer((req, res) => this.dispatch(req, res));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const handler = HANDLERS[path];
    if (handler === undefined) {
      send(res, 404, `invalid path. ${helpText()}`);
      return;
    }
    if (handler.mutates && req.method !== 'POST') {
      send(res, 405, `Method ${req.method} not allowed, POST required.`);
      return;
    }
    const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    Promise.resolve()
      .then(() => handler.handle(req, res, this.target, params))
      .catch((err: Error) => {
        if (!res.headersSent) send(res, 500, `${err.message}\n`);
        else res.destroy();
      });
  }
}

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bootstrap } from '../config/load.js';
import { VERSION } from '../version.js';
import { CONFIG_DUMP_RESOURCES, configDump } from './config-dump.js';

/** What the admin endpoint reports about and asks of the process it runs in. */
export interface AdminTarget {
  state(): 'LIVE' | 'DRAINING' | 'PRE_INITIALIZING' | 'INITIALIZING';
  startTime: number;
  commandLineOptions: Record<string, unknown>;
  node: Record<string, unknown>;
  /** The configuration being served, and when it was loaded (RFC 3339). */
  bootstrap: Bootstrap;
  configLoadedAt: string;
  /** Shuts the process down (`/quitquitquit`). */
  quit(): void;
}

interface Handler {
  help: string;
  mutates: boolean;
  handle(req: IncomingMessage, res: ServerResponse, target: AdminTarget): void;
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
    handle: (req, res, target) => {
      const resource = new URL(req.url ?? '/', 'http://admin').searchParams.get('resource') ?? undefined;
      if (resource !== undefined && !CONFIG_DUMP_RESOURCES.includes(resource)) {
        send(res, 404, `resource ${resource} not found in config dump\n`);
        return;
      }
      sendJson(res, configDump(target.bootstrap, target.configLoadedAt, resource));
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

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
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
    handler.handle(req, res, this.target);
  }
}

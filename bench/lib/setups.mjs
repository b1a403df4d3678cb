// The processes under test and their configurations: the upstreams (nginx returning a small body, `portico
// echo`), Portico, and the peers (nginx and HAProxy as proxies, and three Node proxies from bench/peers/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, start, waitForPort, which } from './processes.mjs';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const PORTICO = join(ROOT, 'bin/portico.js');
const PEERS_DIR = join(ROOT, 'bench/peers');

/** A started server: its process handle, the port it serves and the URL wrk should load. */
export async function serve(name, cpus, cmd, args, port, options) {
  const t0 = performance.now();
  const proc = start(name, cpus, cmd, args, options);
  await waitForPort(port, proc);
  return { name, proc, pid: proc.pid, port, url: `http://127.0.0.1:${port}/`, startupMs: performance.now() - t0 };
}

// ---------------------------------------------------------------------------------------------- upstreams

/**
 * nginx with one worker and keep-alive without a request limit; `server(port)` is the rest of its http block.
 * Each instance gets its own prefix directory (config, pid) named after its label.
 */
export async function startNginx(dir, label, cpus, workerConnections, server) {
  const port = await freePort();
  const prefix = join(dir, `${label.replaceAll(' ', '-')}-${port}`);
  mkdirSync(prefix, { recursive: true });
  writeFileSync(
    join(prefix, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${prefix}/nginx.pid; error_log stderr warn;
events { worker_connections ${workerConnections}; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 3600s;
${server(port)} }
`,
  );
  return serve(label, cpus, 'nginx', ['-p', prefix, '-e', 'stderr', '-c', join(prefix, 'nginx.conf')], port);
}

/** nginx answering `hello\n` to everything. */
export function startNginxUpstream(dir, cpus) {
  return startNginx(dir, 'nginx upstream', cpus, 4096, (port) => `  server { listen 127.0.0.1:${port} backlog=4096; location / { return 200 "hello\\n"; } }`);
}

/** `portico echo`: a Node upstream answering JSON; also the source and sink of the 1 GiB transfers. */
export async function startEcho(cpus) {
  const port = await freePort();
  return serve('portico echo', cpus, process.execPath, [PORTICO, 'echo', '--port', String(port), '--host', '127.0.0.1'], port);
}

// ---------------------------------------------------------------------------------------------- Portico

/** What the Portico under test supports; both features are being added while this harness is written. */
export function porticoFeatures(dir) {
  const help = spawnSync(process.execPath, [PORTICO, 'help'], { encoding: 'utf8' });
  const file = join(dir, 'access-log-probe.json');
  writeFileSync(file, JSON.stringify(porticoBootstrap({ port: 1, adminPort: 2, upstreamPort: 3, accessLog: join(dir, 'probe.log') })));
  const validate = spawnSync(process.execPath, [PORTICO, 'validate', '-c', file], { encoding: 'utf8' });
  return {
    concurrency: /--concurrency/.test(help.stdout + help.stderr),
    accessLog: validate.status === 0,
    accessLogError: validate.stderr.trim().split('\n').pop(),
  };
}

/** The prefix of route i in the route-table scenarios: a shared head, so a naive matcher compares more bytes. */
export const routePrefix = (i) => `/api/service-${i}/`;

/**
 * A bootstrap with one listener, the router, an admin listener (stats are served there) and optionally a file
 * access log in Envoy's default format. `routes: 0` is a single catch-all `/` route; `routes: N` is N prefix
 * routes routePrefix(0..N-1), all to the same cluster; with `regex`, each is the safe_regex `PREFIX.*` instead.
 */
export function porticoBootstrap({ port, adminPort, upstreamPort, routes = 0, regex = false, accessLog }) {
  const prefixes = routes ? Array.from({ length: routes }, (_, i) => routePrefix(i)) : ['/'];
  const hcm = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'bench',
    route_config: {
      name: 'bench',
      virtual_hosts: [
        {
          name: 'all',
          domains: ['*'],
          routes: prefixes.map((prefix) => ({
            match: regex ? { safe_regex: { regex: `${prefix}.*` } } : { prefix },
            route: { cluster: 'upstream', timeout: '0s' },
          })),
        },
      ],
    },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
  };
  if (accessLog) {
    hcm.access_log = [
      {
        name: 'envoy.access_loggers.file',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: accessLog },
      },
    ];
  }
  const address = (p) => ({ socket_address: { address: '127.0.0.1', port_value: p } });
  return {
    admin: { address: address(adminPort) },
    static_resources: {
      listeners: [
        { name: 'bench', address: address(port), filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }] },
      ],
      clusters: [
        {
          name: 'upstream',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'upstream', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(upstreamPort) } }] }] },
        },
      ],
    },
  };
}

/** Writes a bootstrap as JSON (Portico reads JSON as YAML 1.2) and returns its path. */
export function writeBootstrap(dir, name, options) {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(porticoBootstrap(options)));
  return file;
}

/**
 * Portico with `concurrency` workers when `--concurrency` exists (otherwise the single process it has today),
 * with the access log when supported. Log level warning: startup chatter is not what is measured.
 */
export async function startPortico(dir, name, { cpus, features, upstreamPort, routes = 0, regex = false, accessLog = true, concurrency = 1 }) {
  const port = await freePort();
  const adminPort = await freePort();
  const logFile = accessLog && features.accessLog ? join(dir, `${name}.access.log`) : undefined;
  const file = writeBootstrap(dir, name, { port, adminPort, upstreamPort, routes, regex, accessLog: logFile });
  const args = [PORTICO, 'run', '-c', file, '-l', 'warning', '--drain-time-s', '1'];
  if (features.concurrency) args.push('--concurrency', String(concurrency));
  const server = await serve(name, cpus, process.execPath, args, port);
  // Workers may start listening one after the other; give the last one a moment.
  if (concurrency > 1) await new Promise((r) => setTimeout(r, 1000));
  return { ...server, adminPort, config: file };
}

// ---------------------------------------------------------------------------------------------- peers

export function startNginxProxy(dir, cpus, upstreamPort) {
  // keepalive 128 + HTTP/1.1 + empty Connection: upstream connections are reused, as every other peer does.
  return startNginx(
    dir,
    'nginx proxy',
    cpus,
    20000,
    (port) => `  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server { listen 127.0.0.1:${port} backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
}

export async function startHaproxy(dir, cpus, upstreamPort) {
  const port = await freePort();
  const file = join(dir, `haproxy-${port}.cfg`);
  // One thread, connection reuse towards the upstream (http-reuse always), no logging.
  writeFileSync(
    file,
    `global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 3600s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server s1 127.0.0.1:${upstreamPort}
`,
  );
  return serve('haproxy', cpus, 'haproxy', ['-db', '-f', file], port);
}

/** The Node peers; each script in bench/peers/ reads UP (upstream URL) and PORT. */
export const NODE_PEERS = {
  'reply-from': { script: 'reply-from.mjs', packages: ['fastify', '@fastify/reply-from'] },
  'http-proxy': { script: 'http-proxy.mjs', packages: ['http-proxy'] },
  undici: { script: 'undici.mjs', packages: ['undici'] },
};

export async function startNodePeer(key, cpus, upstreamPort) {
  const port = await freePort();
  const env = { UP: `http://127.0.0.1:${upstreamPort}`, PORT: String(port) };
  return serve(key, cpus, process.execPath, [join(PEERS_DIR, NODE_PEERS[key].script)], port, { env });
}

const installedVersion = (name) => {
  const file = join(PEERS_DIR, 'node_modules', name, 'package.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).version : undefined;
};

/**
 * Makes sure bench/peers/node_modules holds exactly the pinned versions (`npm install --prefix bench/peers`
 * when not), and returns the installed version of each package, or the reason they are unavailable.
 */
export function ensurePeers(log) {
  const pins = JSON.parse(readFileSync(join(PEERS_DIR, 'package.json'), 'utf8')).dependencies;
  const stale = () => Object.entries(pins).filter(([name, version]) => installedVersion(name) !== version);
  if (stale().length) {
    log(`installing the Node peers into bench/peers (${stale().map(([n, v]) => `${n}@${v}`).join(', ')})`);
    const r = spawnSync('npm', ['install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund', '--loglevel=error'], { stdio: ['ignore', 2, 2] });
    if (r.status !== 0 || stale().length) return { error: `npm install --prefix bench/peers failed (${r.error?.message ?? `exit ${r.status}`})` };
  }
  return { versions: Object.fromEntries(Object.keys(pins).map((name) => [name, installedVersion(name)])) };
}

/** One-line versions of the native peers and tools, for the report header. */
export function toolVersion(cmd) {
  if (!which(cmd)) return undefined;
  const r = spawnSync(cmd, ['-v'], { encoding: 'utf8' });
  const text = `${r.stdout}${r.stderr}`;
  const m = { nginx: /nginx\/(\S+)/, haproxy: /HAProxy version (\S+)/, wrk: /wrk (\S+)/ }[cmd]?.exec(text);
  return m?.[1] ?? text.split('\n')[0];
}

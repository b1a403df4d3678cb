// Configuration churn under load (docs/benchmarks.md): `portico run --concurrency 2` reloads its file on SIGHUP
// --reloads times (each reload adds a route: a change of routes only) while wrk keeps --connections connections
// busy and --tunnels upgraded connections (WebSocket-style tunnels to an echoing upstream) send a message every
// 200 ms and check its echo. Prints the requests and failures, the tunnels dropped, and the reloads applied.
//
//   npm run build && node bench/churn.mjs [--reloads 100] [--connections 200] [--tunnels 20]
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, installCleanup, start, stop, waitForPort } from './lib/processes.mjs';
import { parseWrk } from './lib/load.mjs';
import { PORTICO } from './lib/setups.mjs';

const { values } = parseArgs({ options: { reloads: { type: 'string', default: '100' }, connections: { type: 'string', default: '200' }, tunnels: { type: 'string', default: '20' } } });
const RELOADS = Number(values.reloads);
const CONNECTIONS = Number(values.connections);
const TUNNELS = Number(values.tunnels);

const dir = mkdtempSync(join(tmpdir(), 'portico-bench-churn-'));
installCleanup(() => rmSync(dir, { recursive: true, force: true }));

// The upstream: 200 to requests; an upgrade is answered 101 and its bytes echoed back.
const upstream = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});
upstream.on('upgrade', (_req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
  socket.pipe(socket);
  socket.on('error', () => socket.destroy());
});
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamPort = upstream.address().port;

const [port, adminPort] = [await freePort(), await freePort()];
const file = join(dir, 'bootstrap.json');
const bootstrap = (routes) => ({
  admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
  static_resources: {
    listeners: [{
      name: 'main',
      address: { socket_address: { address: '127.0.0.1', port_value: port } },
      filter_chains: [{ filters: [{
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          stat_prefix: 'churn',
          upgrade_configs: [{ upgrade_type: 'websocket' }],
          route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [...routes, { match: { prefix: '/' }, route: { cluster: 'up' } }] }] },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
        },
      }] }],
    }],
    clusters: [{ name: 'up', type: 'STATIC', load_assignment: { cluster_name: 'up', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }] } }],
  },
});
const routesUpTo = (n) => Array.from({ length: n }, (_, i) => ({ match: { prefix: `/r${i}/` }, direct_response: { status: 200, body: { inline_string: `r${i}` } } }));
writeFileSync(file, JSON.stringify(bootstrap([])));
const portico = start('portico run', undefined, process.execPath, [PORTICO, 'run', '-c', file, '--concurrency', '2', '--drain-time-s', '2', '--log-level', 'info']);
await waitForPort(port, portico, 60_000);

/** A tunnel through the proxy that sends a message every 200 ms and checks each echo. */
function tunnel(i) {
  const state = { i, dropped: false, echoes: 0, socket: undefined };
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    state.socket = socket;
    let buffered = '';
    let upgraded = false;
    let sent = 0;
    let timer;
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      if (!upgraded) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buffered.startsWith('HTTP/1.1 101')) return reject(new Error(`tunnel ${i}: ${buffered.slice(0, 80)}`));
        upgraded = true;
        buffered = buffered.slice(end + 4);
        timer = setInterval(() => socket.write(`ping-${i}-${sent++};`), 200);
        resolve(state);
      }
      const parts = buffered.split(';');
      buffered = parts.pop();
      state.echoes += parts.length;
    });
    socket.on('close', () => {
      clearInterval(timer);
      if (!state.closing) state.dropped = true;
    });
    socket.on('error', () => {});
    socket.write(`GET /ws/${i} HTTP/1.1\r\nhost: churn\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n`);
  });
}

const tunnels = await Promise.all(Array.from({ length: TUNNELS }, (_, i) => tunnel(i)));
const seconds = Math.max(10, Math.ceil(RELOADS * 0.25) + 4);
const wrk = start('wrk', undefined, 'wrk', ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/steady/x`], { captureStdout: true });
await new Promise((r) => setTimeout(r, 1000));
for (let n = 1; n <= RELOADS; n++) {
  writeFileSync(`${file}.new`, JSON.stringify(bootstrap(routesUpTo(n))));
  // As an editor or a config manager writes it: a new file moved over the old one.
  renameSync(`${file}.new`, file);
  process.kill(portico.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 200));
}
const results = parseWrk(await wrk.exit.then(() => wrk.stdout));
// The last route added serves: every reload was taken.
const last = await fetch(`http://127.0.0.1:${port}/r${RELOADS - 1}/`).then((r) => r.text());
for (const t of tunnels) t.closing = true;
const dropped = tunnels.filter((t) => t.dropped).length;
const echoes = tunnels.reduce((sum, t) => sum + t.echoes, 0);
for (const t of tunnels) t.socket.destroy();

console.log(`node ${process.version}; portico run --concurrency 2, ${RELOADS} SIGHUP reloads (a route added each time) in ${seconds} s of load`);
console.log(`wrk: ${results.requests} requests over ${CONNECTIONS} connections, ${results.errors} failed (non-2xx or socket errors), p99 ${results.p99.toFixed(1)} ms`);
console.log(`tunnels: ${TUNNELS} open throughout, ${dropped} dropped, ${echoes} echoes received`);
console.log(`after the last reload, /r${RELOADS - 1}/ answers "${last}"`);

await stop(portico);
upstream.close();
rmSync(dir, { recursive: true, force: true });

// Benchmark: HTTP/1.1 keep-alive throughput and latency of one Portico process in front of nginx (small body),
// against nginx direct, plus 1 GiB streamed through Portico in each direction with its peak RSS.
// Run: npm run build && node bench/proxy.mjs   (needs wrk and nginx; pins processes with taskset when present)
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';

const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-'));
const duration = process.env.BENCH_SECONDS ?? '6';
const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
const pinned = (cpu, cmd, args) => (hasTaskset ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);
const children = [];

async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

function start(cpu, cmd, args) {
  const [c, a] = pinned(cpu, cmd, args);
  const child = spawn(c, a, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function waitForPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const socket = createServer().listen(port, '127.0.0.1');
      socket.on('listening', () => socket.close(() => resolve(false)));
      socket.on('error', () => resolve(true));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} never opened`);
}

/** utime + stime of a process in clock ticks, and its RSS in bytes. */
function procStats(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  return { ticks, rss };
}

/** The process that does the work: taskset execs its command, so the child's pid is the target's. */
function wrk(url, cpu) {
  const [c, a] = pinned(cpu, 'wrk', ['-t1', '-c32', `-d${duration}s`, '--latency', url]);
  const out = execFileSync(c, a, { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const requests = Number(/(\d+) requests in/.exec(out)[1]);
  const toMs = (s) => (s.endsWith('us') ? parseFloat(s) / 1000 : s.endsWith('ms') ? parseFloat(s) : parseFloat(s) * 1000);
  const p50 = toMs(/50%\s+(\S+)/.exec(out)[1]);
  const p99 = toMs(/99%\s+(\S+)/.exec(out)[1]);
  return { rps, requests, p50, p99 };
}

function measure(url, pid) {
  const [c, a] = pinned(1, 'wrk', ['-t1', '-c32', '-d2s', url]);
  execFileSync(c, a); // warm-up
  const before = pid ? procStats(pid) : undefined;
  const result = wrk(url, 1);
  const after = pid ? procStats(pid) : undefined;
  const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const cpuUs = before ? (((after.ticks - before.ticks) / ticksPerSecond) * 1e6) / result.requests : undefined;
  return { ...result, cpuUs, rss: after?.rss };
}

function portico(listenPort, upstreamPort) {
  const config = join(dir, `portico-${listenPort}.yaml`);
  writeFileSync(
    config,
    `static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: ${listenPort} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: upstream
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } }
`,
  );
  return start(0, process.execPath, [join(root, 'bin/portico.js'), 'run', '-c', config, '-l', 'error']);
}

async function largeTransfers(proxyPort, pid) {
  const size = 1024 ** 3;
  const results = {};
  for (const direction of ['upload', 'download']) {
    let peak = procStats(pid).rss;
    const baseline = peak;
    const sampler = setInterval(() => (peak = Math.max(peak, procStats(pid).rss)), 50);
    const started = performance.now();
    if (direction === 'upload') {
      const chunk = Buffer.alloc(1 << 20, 7);
      async function* body() {
        for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
      }
      const res = await request(`http://127.0.0.1:${proxyPort}/upload`, { method: 'POST', body: body(), headers: { 'content-length': String(size) } });
      const echoed = await res.body.json();
      if (echoed.body.size !== size) throw new Error(`upload: echo saw ${echoed.body.size} bytes`);
    } else {
      const res = await request(`http://127.0.0.1:${proxyPort}/bytes/${size}`);
      const hash = createHash('sha256');
      let received = 0;
      for await (const chunk of res.body) {
        received += chunk.length;
        hash.update(chunk);
      }
      if (received !== size) throw new Error(`download: got ${received} bytes`);
    }
    clearInterval(sampler);
    const seconds = (performance.now() - started) / 1000;
    results[direction] = { seconds, mibPerSecond: size / 2 ** 20 / seconds, baselineMiB: baseline / 2 ** 20, peakMiB: peak / 2 ** 20 };
  }
  return results;
}

async function main() {
  const nginxPort = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${nginxPort}; location / { return 200 "hello\\n"; } } }
`,
  );
  start(1, 'nginx', ['-p', dir, '-e', 'stderr', '-c', join(dir, 'nginx.conf')]);
  await waitForPort(nginxPort);

  const proxyPort = await freePort();
  const proxy = portico(proxyPort, nginxPort);
  await waitForPort(proxyPort);
  const idleRss = procStats(proxy.pid).rss;

  const direct = measure(`http://127.0.0.1:${nginxPort}/`);
  const viaPortico = measure(`http://127.0.0.1:${proxyPort}/`, proxy.pid);

  const echoPort = await freePort();
  start(1, process.execPath, [join(root, 'bin/portico.js'), 'echo', '--port', String(echoPort)]);
  await waitForPort(echoPort);
  const bodyProxyPort = await freePort();
  const bodyProxy = portico(bodyProxyPort, echoPort);
  await waitForPort(bodyProxyPort);
  const transfers = await largeTransfers(bodyProxyPort, bodyProxy.pid);

  const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  console.log(`node ${process.version}, ${hasTaskset ? 'proxy on CPU 0, wrk and upstreams on CPU 1' : 'unpinned'}, wrk -t1 -c32 -d${duration}s\n`);
  console.log('| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | proxy RSS MiB |');
  console.log('|---|---|---|---|---|---|');
  console.log(`| nginx direct | ${fmt(direct.rps)} | ${fmt(direct.p50, 2)} | ${fmt(direct.p99, 2)} | | |`);
  console.log(
    `| Portico → nginx | ${fmt(viaPortico.rps)} | ${fmt(viaPortico.p50, 2)} | ${fmt(viaPortico.p99, 2)} | ${fmt(viaPortico.cpuUs, 1)} | ${fmt(viaPortico.rss / 2 ** 20)} (idle ${fmt(idleRss / 2 ** 20)}) |`,
  );
  console.log('\n| 1 GiB through Portico | seconds | MiB/s | RSS before MiB | peak RSS MiB |');
  console.log('|---|---|---|---|---|');
  for (const [direction, r] of Object.entries(transfers)) {
    console.log(`| ${direction} | ${fmt(r.seconds, 1)} | ${fmt(r.mibPerSecond)} | ${fmt(r.baselineMiB)} | ${fmt(r.peakMiB)} |`);
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const child of children) child.kill('SIGTERM');
  });

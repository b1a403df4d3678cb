// Control-plane figures (docs/benchmarks.md): time from a POST's response to the route serving, a batch apply of
// 5,000 Mappings, one change with 5,000 present, and the RSS of the process. Runs `portico start` (embedded
// store in a temporary directory) and `portico echo` as child processes.
//
//   npm run build && node bench/control-plane.mjs [--mappings 5000] [--samples 100]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({ options: { mappings: { type: 'string', default: '5000' }, samples: { type: 'string', default: '100' } } });
const MAPPINGS = Number(values.mappings);
const SAMPLES = Number(values.samples);
const bin = new URL('../bin/portico.js', import.meta.url).pathname;

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function run(args, ready) {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (d) => {
      output += d;
      if (output.includes(ready)) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}:\n${output}`)));
  });
}

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const ms = (n) => n.toFixed(1);

const dir = mkdtempSync(join(tmpdir(), 'portico-bench-cp-'));
const [proxyPort, apiPort, adminPort, echoPort, xdsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
const echo = await run(['echo', '--port', String(echoPort), '--name', 'bench'], 'listening');
const portico = await run(
  ['start', '--data-dir', dir, '--proxy-host', '127.0.0.1', '--proxy-port', String(proxyPort), '--api-port', String(apiPort), '--admin-port', String(adminPort), '--xds-port', String(xdsPort), '--max-body-bytes', String(64 * 1024 * 1024)],
  'portico is live',
);

const api = new Pool(`http://127.0.0.1:${apiPort}`, { connections: 1 });
const proxy = new Pool(`http://127.0.0.1:${proxyPort}`, { connections: 4 });
const service = `127.0.0.1:${echoPort}`;

async function call(pool, method, path, body, contentType = 'application/json') {
  const res = await pool.request({ method, path, body, headers: body ? { 'content-type': contentType } : {} });
  const text = await res.body.text();
  return { status: res.statusCode, text };
}

/** POST a mapping through the seed API, then poll its prefix until it serves; returns [post ms, serve ms]. */
async function postAndServe(name) {
  const t0 = performance.now();
  const post = await call(api, 'POST', `/ambassador/mapping/${name}`, JSON.stringify({ prefix: `/${name}/`, service }));
  const t1 = performance.now();
  if (!JSON.parse(post.text).ok) throw new Error(post.text);
  for (;;) {
    const res = await call(proxy, 'GET', `/${name}/x`);
    if (res.status === 200) return [t1 - t0, performance.now() - t1];
    if (performance.now() - t1 > 10_000) throw new Error(`${name} not served after 10 s`);
  }
}

async function latencies(label, prefix, n) {
  const posts = [];
  const serves = [];
  for (let i = 0; i < n; i++) {
    const [post, serve] = await postAndServe(`${prefix}${i}`);
    posts.push(post);
    serves.push(serve);
  }
  posts.sort((a, b) => a - b);
  serves.sort((a, b) => a - b);
  const row = `| ${label} | ${n} | ${ms(percentile(posts, 50))} | ${ms(percentile(posts, 99))} | ${ms(percentile(serves, 50))} | ${ms(percentile(serves, 99))} |`;
  console.log(row);
  return row;
}

const rows = [];
console.log(`node ${process.version}; ${MAPPINGS} mappings; ${SAMPLES} samples`);
console.log('| situation | changes | POST p50 ms | POST p99 ms | POST answered → served p50 ms | p99 ms |');
console.log('|---|---|---|---|---|---|');
const idleRss = rssMiB(portico.pid);
rows.push(await latencies('empty configuration', 'warm', SAMPLES));

const docs = Array.from({ length: MAPPINGS }, (_, i) => ({ apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name: `bulk${i}` }, spec: { prefix: `/bulk${i}/`, service } }));
const t0 = performance.now();
const applied = await call(api, 'POST', '/api/v1/apply', JSON.stringify(docs));
const batchMs = performance.now() - t0;
if (applied.status !== 200) throw new Error(applied.text);
const served = (await call(proxy, 'GET', `/bulk${MAPPINGS - 1}/x`)).status;
rows.push(await latencies(`${MAPPINGS} mappings present`, 'more', Math.min(SAMPLES, 50)));
const rss = rssMiB(portico.pid);

console.log(`\nbatch apply of ${MAPPINGS} mappings (one POST /api/v1/apply, until it answered and serves): ${ms(batchMs)} ms; last one then answers ${served}`);
console.log(`RSS of portico start: ${ms(idleRss)} MiB with no mapping, ${ms(rss)} MiB with ${MAPPINGS + SAMPLES + Math.min(SAMPLES, 50)} mappings`);

await api.close();
await proxy.close();
portico.kill('SIGTERM');
echo.kill('SIGTERM');
await new Promise((resolve) => portico.once('exit', resolve));
rmSync(dir, { recursive: true, force: true });

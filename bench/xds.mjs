// xDS figures (docs/benchmarks.md): one `portico start` control plane and 3 data planes (`portico run` from
// `portico bootstrap`, each on its own listener port), all child processes on this machine.
//   1. change → all 3 data planes serving it: p50/p99 over --samples Mapping creations;
//   2. --changes changes (add, modify, delete Mappings) while wrk keeps --connections connections busy across the
//      3 data planes: failed requests (non-2xx or socket errors) counted;
//   3. the control plane killed (SIGKILL) and restarted under the same load: failed requests, and whether a change
//      made after the restart reaches every data plane;
//   4. --mappings Mappings applied in one batch: time until every data plane serves the last one, and the RSS
//      of the control plane and of each data plane;
//   5. --subscribers light xDS clients (ADS streams in this process that acknowledge every response): a change
//      → every one of them holding it, and the control plane's CPU time per change, for how many data planes
//      one control plane can serve.
//
//   npm run build && node bench/xds.mjs [--samples 100] [--changes 1000] [--mappings 10000] [--connections 200] [--subscribers 500]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import * as grpc from '@grpc/grpc-js';
import { cpuSeconds, freePort, installCleanup, processTree, rss, start, stop, waitForPort } from './lib/processes.mjs';
import { grpcDefinition } from '../dist/src/grpc/envoy-protos.js';
import { CLUSTER_TYPE, discoveryMethod, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../dist/src/xds/protocol.js';
import { parseWrk } from './lib/load.mjs';
import { PORTICO } from './lib/setups.mjs';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '100' },
    changes: { type: 'string', default: '1000' },
    mappings: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '200' },
    subscribers: { type: 'string', default: '500' },
  },
});
const SUBSCRIBERS = Number(values.subscribers);
const SAMPLES = Number(values.samples);
const CHANGES = Number(values.changes);
const MAPPINGS = Number(values.mappings);
const CONNECTIONS = Number(values.connections);
const PLANES = 3;

const dir = mkdtempSync(join(tmpdir(), 'portico-bench-xds-'));
installCleanup(() => rmSync(dir, { recursive: true, force: true }));
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const fmt = (n) => n.toFixed(1);
const mib = (bytes) => (bytes / 2 ** 20).toFixed(0);

const [apiPort, adminPort, xdsPort, echoPort, proxyPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
const echo = start('echo', undefined, process.execPath, [PORTICO, 'echo', '--port', String(echoPort), '--name', 'bench']);
await waitForPort(echoPort, echo);

const controlPlaneArgs = ['start', '--data-dir', join(dir, 'store'), '--proxy-host', '127.0.0.1', '--proxy-port', String(proxyPort), '--api-port', String(apiPort),
  '--admin-port', String(adminPort), '--xds-port', String(xdsPort), '--max-body-bytes', String(64 * 1024 * 1024), '--log-level', 'warning'];
let controlPlane = start('portico start', undefined, process.execPath, [PORTICO, ...controlPlaneArgs]);
await waitForPort(apiPort, controlPlane, 60_000);

const planes = [];
for (let i = 0; i < PLANES; i++) {
  const [port, admin] = [await freePort(), await freePort()];
  const bootstrap = await new Promise((resolve, reject) => {
    const p = start('bootstrap', undefined, process.execPath, [PORTICO, 'bootstrap', '--node', `edge-${i}`, '--xds-server', `127.0.0.1:${xdsPort}`,
      '--admin-port', String(admin), '--listener-port', String(port), '--format', 'json'], { captureStdout: true });
    p.exit.then(({ code }) => (code === 0 ? resolve(p.stdout) : reject(new Error(p.stderr))));
  });
  const file = join(dir, `edge-${i}.json`);
  writeFileSync(file, bootstrap);
  const proc = start(`data plane ${i}`, undefined, process.execPath, [PORTICO, 'run', '-c', file, '--concurrency', '1', '--log-level', 'warning', '--drain-time-s', '2']);
  planes.push({ proc, port, pool: new Pool(`http://127.0.0.1:${port}`, { connections: 2 }) });
}
for (const plane of planes) await waitForPort(plane.port, plane.proc, 60_000);

const api = new Pool(`http://127.0.0.1:${apiPort}`, { connections: 1 });
const service = `127.0.0.1:${echoPort}`;
const mapping = (name, prefix = `/${name}/`) => ({ apiVersion: 'getambassador.io/v3alpha1', kind: 'Mapping', metadata: { name }, spec: { prefix, service } });

async function request(pool, method, path, body) {
  const res = await pool.request({ method, path, body, headers: body ? { 'content-type': 'application/json' } : {} });
  return { status: res.statusCode, text: await res.body.text() };
}

async function put(name, prefix) {
  const res = await request(api, 'PUT', `/api/v1/mappings/${name}`, JSON.stringify(mapping(name, prefix)));
  if (res.status >= 300) throw new Error(`PUT ${name}: ${res.status} ${res.text}`);
}

/** Polls `path` on every data plane until each answers `status`; resolves with the time it took from `t0`. */
async function servedEverywhere(path, status, t0, timeoutMs = 30_000) {
  await Promise.all(
    planes.map(async (plane) => {
      for (;;) {
        if ((await request(plane.pool, 'GET', path)).status === status) return;
        if (performance.now() - t0 > timeoutMs) throw new Error(`${path} not ${status} on :${plane.port} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 1));
      }
    }),
  );
  return performance.now() - t0;
}

console.log(`node ${process.version}; ${PLANES} data planes; control plane and data planes as child processes on one machine`);

// 1. Propagation.
const propagation = [];
for (let i = 0; i < SAMPLES; i++) {
  const t0 = performance.now();
  await put(`p${i}`);
  propagation.push(await servedEverywhere(`/p${i}/x`, 200, t0));
}
propagation.sort((a, b) => a - b);
console.log(`\nchange → all ${PLANES} data planes serving it (PUT sent → 200 on each), ${SAMPLES} changes: p50 ${fmt(percentile(propagation, 50))} ms, p99 ${fmt(percentile(propagation, 99))} ms, max ${fmt(propagation.at(-1))} ms`);

// A Lua script for wrk that spreads requests over the data planes' paths that always exist.
await put('steady', '/steady/');
await servedEverywhere('/steady/x', 200, performance.now());

function load(seconds) {
  const perPlane = Math.ceil(CONNECTIONS / PLANES);
  return planes.map((plane) =>
    new Promise((resolve, reject) => {
      const p = start('wrk', undefined, 'wrk', ['-t1', `-c${perPlane}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${plane.port}/steady/x`], { captureStdout: true });
      p.exit.then(({ code }) => (code === 0 ? resolve(parseWrk(p.stdout)) : reject(new Error(p.stderr))));
    }),
  );
}

const failures = (results) => results.reduce((sum, r) => sum + r.errors, 0);
const total = (results) => results.reduce((sum, r) => sum + r.requests, 0);

// 2. Changes under load.
{
  const running = load(Math.max(10, Math.ceil(CHANGES / 40)));
  const t0 = performance.now();
  for (let i = 0; i < CHANGES; i++) {
    const name = `churn${i % 50}`;
    if (i % 3 === 2) await request(api, 'DELETE', `/api/v1/mappings/${name}`);
    else await put(name, `/churn/${i}/`);
  }
  const changeSeconds = (performance.now() - t0) / 1000;
  const results = await Promise.all(running);
  console.log(`\n${CHANGES} changes (add, modify, delete) in ${fmt(changeSeconds)} s under ${CONNECTIONS} connections over ${PLANES} data planes: ${total(results)} requests, ${failures(results)} failed`);
}

// 3. The control plane killed and restarted under load.
{
  const running = load(12);
  await new Promise((r) => setTimeout(r, 2000));
  process.kill(controlPlane.pid, 'SIGKILL');
  await controlPlane.exit;
  await new Promise((r) => setTimeout(r, 2000));
  controlPlane = start('portico start', undefined, process.execPath, [PORTICO, ...controlPlaneArgs]);
  await waitForPort(apiPort, controlPlane, 60_000);
  const t0 = performance.now();
  await put('after-restart');
  const resync = await servedEverywhere('/after-restart/x', 200, t0, 60_000);
  const results = await Promise.all(running);
  console.log(`\ncontrol plane SIGKILLed and restarted under load: ${total(results)} requests, ${failures(results)} failed; a change after the restart served on all ${PLANES} data planes ${fmt(resync)} ms after its PUT`);
}

// 4. A snapshot of many Mappings.
{
  const docs = Array.from({ length: MAPPINGS }, (_, i) => mapping(`bulk${i}`));
  const t0 = performance.now();
  const applied = await request(api, 'POST', '/api/v1/apply', JSON.stringify(docs));
  if (applied.status !== 200) throw new Error(applied.text);
  const answered = performance.now() - t0;
  const all = await servedEverywhere(`/bulk${MAPPINGS - 1}/x`, 200, t0, 300_000);
  const controlRss = rss(processTree(controlPlane.pid));
  const planeRss = planes.map((p) => mib(rss(processTree(p.proc.pid))));
  console.log(`\n${MAPPINGS} Mappings in one apply: answered after ${fmt(answered)} ms, served by all ${PLANES} data planes after ${fmt(all)} ms`);
  console.log(`RSS: control plane (with its own data plane) ${mib(controlRss)} MiB; data planes ${planeRss.join(', ')} MiB`);
  const t1 = performance.now();
  await put('one-more');
  console.log(`one change with ${MAPPINGS} Mappings present: served by all ${PLANES} data planes ${fmt(await servedEverywhere('/one-more/x', 200, t1, 60_000))} ms after its PUT`);
}

// 5. Many subscribers.
{
  const definition = grpcDefinition(discoveryMethod('sotw', undefined).method);
  const channels = Array.from({ length: Math.ceil(SUBSCRIBERS / 100) }, () => new grpc.Client(`127.0.0.1:${xdsPort}`, grpc.credentials.createInsecure()));
  const latest = new Array(SUBSCRIBERS).fill('');
  const streams = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const call = channels[i % channels.length].makeBidiStreamRequest(definition.path, definition.requestSerialize, definition.responseDeserialize);
    const node = { id: `subscriber-${i}`, cluster: 'bench' };
    call.on('data', (r) => {
      // Acknowledge, and follow the route table and endpoints as a data plane would (here: by their known names).
      call.write({ node, type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce, resource_names: r.type_url === ROUTE_TYPE ? ['ambassador-routes-' + proxyPort] : [] });
      if (r.type_url === ROUTE_TYPE) latest[i] = r.version_info;
    });
    call.on('error', () => {});
    for (const type_url of [CLUSTER_TYPE, LISTENER_TYPE]) call.write({ node, type_url });
    call.write({ node, type_url: ROUTE_TYPE, resource_names: ['ambassador-routes-' + proxyPort] });
    streams.push(call);
  }
  const holding = (version) => latest.filter((v) => v === version).length;
  const waitAll = async (version, t0) => {
    while (holding(version) < SUBSCRIBERS) {
      if (performance.now() - t0 > 120_000) throw new Error(`${holding(version)} of ${SUBSCRIBERS} subscribers hold version ${version}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    return performance.now() - t0;
  };
  const versionNow = async () => String(JSON.parse((await request(api, 'GET', '/api/v1/nodes')).text).version);
  await waitAll(await versionNow(), performance.now());
  const pushes = [];
  const cpuBefore = [...cpuSeconds([controlPlane.pid]).values()][0];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    await put(`fanout${i}`);
    pushes.push(await waitAll(await versionNow(), t0));
  }
  const cpuPerChange = ([...cpuSeconds([controlPlane.pid]).values()][0] - cpuBefore) / 20;
  pushes.sort((a, b) => a - b);
  console.log(`\n${SUBSCRIBERS} xDS subscribers with ${MAPPINGS} Mappings present: a change held by all of them p50 ${fmt(percentile(pushes, 50))} ms, max ${fmt(pushes.at(-1))} ms; control plane CPU ${fmt(cpuPerChange * 1000)} ms per change (translation, encoding, pushes and its own data plane)`);
  for (const call of streams) call.cancel();
  for (const channel of channels) channel.close();
}

await api.close();
for (const plane of planes) await plane.pool.close();
await Promise.all([...planes.map((p) => stop(p.proc)), stop(controlPlane), stop(echo)]);
rmSync(dir, { recursive: true, force: true });

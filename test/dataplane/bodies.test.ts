/**
 * Bodies through a gateway running as its own process (`portico run`), in front of the echo server: 1 GiB in
 * each direction with the gateway's RSS sampled throughout (streaming with backpressure, no buffering), a slow
 * reader, chunked bodies, `Expect: 100-continue`, HEAD and trailers.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { echoBytesPattern, startEchoServer, type EchoResponseBody, type EchoServer } from '../../src/echo/echo-server.js';
import { PACKAGE_ROOT } from '../../src/util/package-root.js';
import { freePort } from '../support/ports.js';
import { rawRequest } from '../support/upstreams.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** How far the gateway's RSS may rise above its warmed-up baseline while a body streams through. */
const RSS_HEADROOM_KIB = 150 * 1024;

const BIN = join(PACKAGE_ROOT, 'bin', 'portico.js');

/** Ports of the gateway's listeners: default options; enable_trailers on HCM and cluster; on the HCM only. */
interface Ports {
  plain: number;
  trailers: number;
  hcmTrailersOnly: number;
}

function listenerYaml(port: number, cluster: string, hcmExtra: string): string {
  return `
  - address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_${port}
          ${hcmExtra}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: ${cluster}, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`;
}

function clusterYaml(name: string, upstreamPort: number, extra: string): string {
  return `
  - name: ${name}
    connect_timeout: 1s
    ${extra}
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } }`;
}

function bootstrapYaml(ports: Ports, upstreamPort: number): string {
  const upstreamTrailers = `typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http_protocol_options: { enable_trailers: true } }`;
  return `static_resources:
  listeners:${listenerYaml(ports.plain, 'echo', '')}${listenerYaml(ports.trailers, 'echo_trailers', 'http_protocol_options: { enable_trailers: true }')}${listenerYaml(ports.hcmTrailersOnly, 'echo', 'http_protocol_options: { enable_trailers: true }')}
  clusters:${clusterYaml('echo', upstreamPort, '')}${clusterYaml('echo_trailers', upstreamPort, upstreamTrailers)}
`;
}

/** VmRSS of a process in KiB. */
function rssKib(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}

/** Samples a process's RSS every 50 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssKib(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssKib(pid));
    } catch {
      // The process exited; the test fails elsewhere.
    }
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      try {
        peak = Math.max(peak, rssKib(pid));
      } catch {
        // As above.
      }
      return peak;
    },
  };
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`portico exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`portico did not listen on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A deterministic body of `size` bytes in 256 KiB chunks, each stamped with its index; hashes what it yields. */
function generatedBody(size: number): { stream: Readable; digest(): string } {
  const chunkSize = 256 * 1024;
  const base = Buffer.alloc(chunkSize);
  for (let i = 0; i < chunkSize; i++) base[i] = (i * 31 + (i >> 9)) & 0xff;
  const hash = createHash('sha256');
  let sent = 0;
  let index = 0;
  const stream = Readable.from(
    (function* generate() {
      while (sent < size) {
        const n = Math.min(chunkSize, size - sent);
        const chunk = Buffer.from(base.subarray(0, n));
        chunk.writeUInt32BE(index++ >>> 0, 0);
        hash.update(chunk);
        sent += n;
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
  return { stream, digest: () => hash.digest('hex') };
}

/** sha256 of the first `size` bytes of the echo `/bytes/N` pattern (size a multiple of 64 KiB). */
function patternDigest(size: number): string {
  const chunk = echoBytesPattern(64 * 1024);
  assert.equal(size % chunk.length, 0);
  const hash = createHash('sha256');
  for (let done = 0; done < size; done += chunk.length) hash.update(chunk);
  return hash.digest('hex');
}

async function upload(port: number, body: Readable, headers: Record<string, string>): Promise<EchoResponseBody> {
  const dispatcher = new Agent({ connections: 1 });
  try {
    const res = await request(`http://127.0.0.1:${port}/upload`, { dispatcher, method: 'POST', body, headers });
    const text = await res.body.text();
    assert.equal(res.statusCode, 200, text);
    return JSON.parse(text) as EchoResponseBody;
  } finally {
    await dispatcher.destroy();
  }
}

async function download(port: number, path: string): Promise<{ size: number; sha256: string; headers: Record<string, unknown> }> {
  const dispatcher = new Agent({ connections: 1 });
  try {
    const res = await request(`http://127.0.0.1:${port}${path}`, { dispatcher });
    assert.equal(res.statusCode, 200);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      hash.update(chunk as Buffer);
    }
    return { size, sha256: hash.digest('hex'), headers: res.headers };
  } finally {
    await dispatcher.destroy();
  }
}

/** Reads one response head from a socket; resolves with the head and any bytes after it. */
function readHead(socket: Socket, buffered: Buffer = Buffer.alloc(0)): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let data = buffered;
    const check = (): boolean => {
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return false;
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ head: data.subarray(0, end).toString('latin1'), rest: data.subarray(end + 4) });
      return true;
    };
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      check();
    };
    const onClose = (): void => reject(new Error(`connection closed before a response head: ${data.toString('latin1')}`));
    if (check()) return;
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}

describe('bodies through a portico process', () => {
  let echo: EchoServer;
  let child: ChildProcess;
  let ports: Ports;
  let dir: string;
  let baselineKib = 0;
  let stderr = '';

  before(async () => {
    echo = await startEchoServer({ name: 'bodies-echo' });
    ports = { plain: await freePort(), trailers: await freePort(), hcmTrailersOnly: await freePort() };
    dir = mkdtempSync(join(tmpdir(), 'portico-bodies-'));
    const config = join(dir, 'portico.yaml');
    writeFileSync(config, bootstrapYaml(ports, echo.port));
    child = spawn(process.execPath, [BIN, 'run', '-c', config, '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitForPort(ports.plain, child, 15_000);
    // Warm up both directions so the baseline includes JIT-compiled code and the pools' buffers.
    const warm = generatedBody(64 * MiB);
    assert.equal((await upload(ports.plain, warm.stream, { 'content-length': String(64 * MiB) })).body.size, 64 * MiB);
    assert.equal((await download(ports.plain, `/bytes/${64 * MiB}`)).size, 64 * MiB);
    await new Promise((resolve) => setTimeout(resolve, 200));
    baselineKib = rssKib(child.pid!);
  });

  after(async () => {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await echo?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (stderr.trim() !== '') process.stderr.write(`portico stderr:\n${stderr}\n`);
  });

  it('uploads 1 GiB with a flat RSS', async () => {
    const body = generatedBody(GiB);
    const sampler = sampleRss(child.pid!);
    let peak: number;
    let echoed: EchoResponseBody;
    try {
      echoed = await upload(ports.plain, body.stream, { 'content-length': String(GiB) });
    } finally {
      peak = sampler.stop();
    }
    assert.equal(echoed.body.size, GiB);
    assert.equal(echoed.body.sha256, body.digest());
    process.stderr.write(`# upload 1 GiB: baseline RSS ${(baselineKib / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB\n`);
    assert.ok(peak < baselineKib + RSS_HEADROOM_KIB, `peak RSS ${peak} KiB vs baseline ${baselineKib} KiB`);
  });

  it('downloads 1 GiB with a flat RSS', async () => {
    const expected = patternDigest(GiB);
    const sampler = sampleRss(child.pid!);
    let peak: number;
    let result: Awaited<ReturnType<typeof download>>;
    try {
      result = await download(ports.plain, `/bytes/${GiB}`);
    } finally {
      peak = sampler.stop();
    }
    assert.equal(result.size, GiB);
    assert.equal(result.headers['content-length'], String(GiB));
    assert.equal(result.sha256, expected);
    process.stderr.write(`# download 1 GiB: baseline RSS ${(baselineKib / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB\n`);
    assert.ok(peak < baselineKib + RSS_HEADROOM_KIB, `peak RSS ${peak} KiB vs baseline ${baselineKib} KiB`);
  });

  it('does not buffer for a slow reader', async () => {
    const size = 512 * MiB;
    const expected = patternDigest(size);
    const sampler = sampleRss(child.pid!);
    const socket = connect({ port: ports.plain, host: '127.0.0.1' });
    let peak: number;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.write(`GET /bytes/${size} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const { head, rest } = await readHead(socket);
      assert.match(head, /^HTTP\/1\.1 200 /);
      assert.match(head, new RegExp(`\\r\\ncontent-length: ${size}\\r?`, 'i'));
      const hash = createHash('sha256');
      hash.update(rest);
      let received = rest.length;
      let paused = false;
      await new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer): void => {
          hash.update(chunk);
          received += chunk.length;
          if (!paused && received >= 8 * MiB) {
            // Stop reading for a while: a gateway without backpressure would pull the rest into memory.
            paused = true;
            socket.pause();
            setTimeout(() => socket.resume(), 2_500);
          }
          if (received >= size) {
            socket.off('data', onData);
            resolve();
          }
        };
        socket.on('data', onData);
        socket.once('error', reject);
        socket.once('close', () => (received >= size ? resolve() : reject(new Error(`closed after ${received} bytes`))));
      });
      assert.equal(received, size);
      assert.equal(hash.digest('hex'), expected);
    } finally {
      peak = sampler.stop();
      socket.destroy();
    }
    process.stderr.write(`# slow reader 512 MiB: baseline RSS ${(baselineKib / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB\n`);
    assert.ok(peak < baselineKib + RSS_HEADROOM_KIB, `peak RSS ${peak} KiB vs baseline ${baselineKib} KiB`);
  });

  it('passes a chunked request body through', async () => {
    const body = generatedBody(5 * MiB + 123);
    const echoed = await upload(ports.plain, body.stream, {});
    assert.equal(echoed.body.size, 5 * MiB + 123);
    assert.equal(echoed.body.sha256, body.digest());
    assert.equal(echoed.headers['transfer-encoding'], 'chunked');

    const raw = await rawRequest(ports.plain, 'POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    assert.equal(raw.status, 200);
    const rawEcho = JSON.parse(raw.body) as EchoResponseBody;
    assert.equal(rawEcho.body.size, 11);
    assert.equal(rawEcho.body.sha256, createHash('sha256').update('hello world').digest('hex'));
  });

  it('passes a chunked response body through', async () => {
    const size = 3 * 64 * 1024;
    const result = await download(ports.plain, `/bytes/${size}?chunked=1`);
    assert.equal(result.size, size);
    assert.equal(result.sha256, patternDigest(size));
    assert.equal(result.headers['content-length'], undefined);
    assert.equal(result.headers['transfer-encoding'], 'chunked');
  });

  it('answers Expect: 100-continue before the body is sent, then the response', async () => {
    const socket = connect({ port: ports.plain, host: '127.0.0.1' });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.write('POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
      const interim = await readHead(socket);
      assert.match(interim.head, /^HTTP\/1\.1 100 Continue/);
      socket.write('hello');
      const final = await readHead(socket, interim.rest);
      assert.match(final.head, /^HTTP\/1\.1 200 /);
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(final.head)?.[1]);
      let body = final.rest;
      while (body.length < length) {
        body = Buffer.concat([body, await new Promise<Buffer>((resolve) => socket.once('data', resolve))]);
      }
      const echoed = JSON.parse(body.toString('utf8')) as EchoResponseBody;
      assert.equal(echoed.body.size, 5);
      assert.equal(echoed.body.sha256, createHash('sha256').update('hello').digest('hex'));
      assert.equal(echoed.headers['expect'], undefined, 'the proxy answers the expectation itself');
    } finally {
      socket.destroy();
    }
  });

  it('answers HEAD with the headers, content-length included, and no body', async () => {
    const res = await rawRequest(ports.plain, 'HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n', { closeGraceMs: 300 });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '1000');
    const headEnd = res.rawBuffer.indexOf('\r\n\r\n');
    assert.equal(res.rawBuffer.length, headEnd + 4, 'nothing after the head');
    // The connection is still usable: a HEAD and a GET pipelined.
    const both = await rawRequest(ports.plain, 'HEAD /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n', { responses: 2 });
    const finals = both.responses.filter((r) => r.status === 200);
    assert.equal(finals.length, 2);
    assert.equal(finals[1]!.body.length, 10);
  });

  it('drops response trailers by default', async () => {
    const res = await rawRequest(ports.plain, 'GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.responses[0]!.complete, true);
    assert.deepEqual(res.responses[0]!.trailers, {});
    assert.equal(res.headers['trailer'], undefined);
    assert.equal((JSON.parse(res.body) as EchoResponseBody).path, '/trailers');
  });

  it('forwards response trailers with enable_trailers (downstream and upstream)', async () => {
    const res = await rawRequest(ports.trailers, 'GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.responses[0]!.trailers['x-echo-trailer'], 'yes');
    assert.equal((JSON.parse(res.body) as EchoResponseBody).path, '/trailers');
  });

  it('drops response trailers when only the connection manager enables them (Envoy needs both codecs)', async () => {
    const res = await rawRequest(ports.hcmTrailersOnly, 'GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.responses[0]!.complete, true);
    assert.deepEqual(res.responses[0]!.trailers, {});
  });

  it('is still alive', () => {
    assert.equal(child.exitCode, null, stderr);
  });
});

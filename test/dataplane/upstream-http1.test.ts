/**
 * The upstream HTTP/1.1 codec and connection pool, end to end against scripted raw upstreams: response framing
 * (content-length, chunked with trailers, read until close, HEAD, 1xx before the final response, bytes split
 * anywhere), keep-alive reuse and when a connection may not be reused, request body framing, protocol errors,
 * `max_requests_per_connection`, and the cluster's `max_connections` across several hosts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { type RunningPortico, simpleBootstrap, startPortico, stat, staticCluster } from '../support/portico.js';
import { httpRequest } from '../support/upstreams.js';
import { eventually } from '../support/wait.js';

/** One request as the upstream read it, and the connection it came on. */
interface ScriptedRequest {
  head: string;
  body: Buffer;
  connection: number;
}

/** What the upstream does with a request: writes these pieces (one write each), then maybe closes. */
interface ScriptedAnswer {
  pieces: Array<string | Buffer>;
  close?: boolean;
  /** Holds the answer back until this resolves. */
  after?: Promise<void>;
}

interface ScriptedUpstream {
  port: number;
  requests: ScriptedRequest[];
  connections: number;
  close(): Promise<void>;
}

/** Reads requests framed by content-length or chunked encoding and answers each as `answer` says. */
async function scriptedUpstream(answer: (request: ScriptedRequest, index: number) => ScriptedAnswer): Promise<ScriptedUpstream> {
  const sockets = new Set<Socket>();
  const upstream: ScriptedUpstream = { port: 0, requests: [], connections: 0, close: async () => {} };
  const server: Server = createServer((socket) => {
    const connection = ++upstream.connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered: Buffer = Buffer.alloc(0);
    let queue = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const parsed = takeRequest(buffered);
        if (parsed === undefined) return;
        buffered = parsed.rest;
        const request = { head: parsed.head, body: parsed.body, connection };
        const index = upstream.requests.push(request) - 1;
        const reply = answer(request, index);
        queue = queue.then(async () => {
          await reply.after;
          for (const piece of reply.pieces) {
            socket.write(piece);
            await new Promise((resolve) => setImmediate(resolve));
          }
          if (reply.close) socket.end();
        });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.port = (server.address() as { port: number }).port;
  upstream.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  started.push(upstream);
  return upstream;
}

function takeRequest(data: Buffer): { head: string; body: Buffer; rest: Buffer } | undefined {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = data.subarray(0, end + 4).toString('latin1');
  let offset = end + 4;
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (length) {
    const size = Number(length[1]);
    if (data.length < offset + size) return undefined;
    return { head, body: data.subarray(offset, offset + size), rest: data.subarray(offset + size) };
  }
  if (!/\r\ntransfer-encoding: *chunked/i.test(head)) return { head, body: Buffer.alloc(0), rest: data.subarray(offset) };
  const parts: Buffer[] = [];
  for (;;) {
    const lineEnd = data.indexOf('\r\n', offset);
    if (lineEnd < 0) return undefined;
    const size = parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16);
    if (size === 0) {
      if (data.length < lineEnd + 4) return undefined;
      return { head, body: Buffer.concat(parts), rest: data.subarray(lineEnd + 4) };
    }
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}

const started: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.close()));
});

async function gateway(clusters: string, clusterName = 'c'): Promise<RunningPortico> {
  const gw = await startPortico(
    simpleBootstrap({ routes: `- match: { prefix: "/" }\n  route: { cluster: ${clusterName}, timeout: 5s }`, clusters }),
  );
  started.push(gw);
  return gw;
}

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

describe('upstream HTTP/1.1 connections', () => {
  it('reads every response framing, reusing one connection throughout', async () => {
    const upstream = await scriptedUpstream((request) => {
      const path = request.head.split(' ')[1];
      switch (path) {
        case '/chunked':
          return { pieces: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\n\r\n5\r\nhello\r\n', '6\r\n world\r\n0\r\n\r\n'] };
        case '/split': {
          // Every byte its own write: the parser must carry state across reads.
          const whole = 'HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-split: yes\r\n\r\nsplit';
          return { pieces: [...whole].map((c) => c) };
        }
        case '/early-hints':
          return { pieces: ['HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal'] };
        case '/head':
          return { pieces: ['HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n'] };
        default:
          return { pieces: [OK] };
      }
    });
    const gw = await gateway(staticCluster('c', upstream.port));
    const chunked = await httpRequest(`${gw.url()}/chunked`);
    assert.equal(chunked.status, 200);
    assert.equal(chunked.body, 'hello world');
    assert.deepEqual(chunked.headers['x-a'], ['1', '2']);
    const split = await httpRequest(`${gw.url()}/split`);
    assert.equal(split.status, 201);
    assert.equal(split.body, 'split');
    assert.equal(split.headers['x-split'], 'yes');
    const hints = await httpRequest(`${gw.url()}/early-hints`);
    assert.equal(hints.status, 200);
    assert.equal(hints.body, 'final');
    const head = await httpRequest(`${gw.url()}/head`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1234');
    // The HEAD response had no body, whatever its content-length said: the connection is still in step.
    const plain = await httpRequest(`${gw.url()}/plain`);
    assert.equal(plain.body, 'ok');
    assert.equal(upstream.connections, 1);
    assert.equal(stat(gw, 'cluster.c.upstream_cx_total'), 1);
    // What went upstream: no hop-by-hop headers of the codec's own beyond HTTP/1.1's defaults.
    assert.match(upstream.requests[0]!.head, /^GET \/chunked HTTP\/1\.1\r\n/);
    assert.doesNotMatch(upstream.requests[0]!.head, /\r\nconnection:/i);
  });

  it('forwards trailers when the listener and cluster enable them', async () => {
    const upstream = await scriptedUpstream(() => ({
      pieces: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n2\r\nhi\r\n0\r\nx-checksum: abc\r\n\r\n'],
    }));
    const cluster = `${staticCluster('c', upstream.port)}  http_protocol_options: { enable_trailers: true }\n`;
    const gw = await startPortico(
      simpleBootstrap({
        routes: '- match: { prefix: "/" }\n  route: { cluster: c }',
        clusters: cluster,
        hcmExtra: 'http_protocol_options: { enable_trailers: true }',
      }),
    );
    started.push(gw);
    const res = await httpRequest(`${gw.url()}/`);
    assert.equal(res.body, 'hi');
    assert.equal(res.trailers['x-checksum'], 'abc');
  });

  it('completes a response delimited by the connection closing, then opens a new connection', async () => {
    const upstream = await scriptedUpstream((request) =>
      request.head.startsWith('GET /until-close') ? { pieces: ['HTTP/1.1 200 OK\r\n\r\nall of ', 'it'], close: true } : { pieces: [OK] },
    );
    const gw = await gateway(staticCluster('c', upstream.port));
    const res = await httpRequest(`${gw.url()}/until-close`);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'all of it');
    assert.equal((await httpRequest(`${gw.url()}/next`)).body, 'ok');
    assert.equal(upstream.connections, 2);
    assert.equal(stat(gw, 'cluster.c.upstream_rq_200'), 2);
  });

  it('does not reuse a connection the upstream asked to close, nor one after an HTTP/1.0 response', async () => {
    const upstream = await scriptedUpstream((request) => {
      if (request.head.startsWith('GET /close')) return { pieces: ['HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'] };
      if (request.head.startsWith('GET /old')) return { pieces: ['HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok'] };
      return { pieces: [OK] };
    });
    const gw = await gateway(staticCluster('c', upstream.port));
    const closing = await httpRequest(`${gw.url()}/close`);
    assert.equal(closing.body, 'ok');
    assert.equal(closing.headers.connection, undefined, "the upstream's connection header is not forwarded");
    await httpRequest(`${gw.url()}/old`);
    await httpRequest(`${gw.url()}/after`);
    assert.deepEqual(
      upstream.requests.map((r) => r.connection),
      [1, 2, 3],
    );
    await eventually(() => assert.equal(stat(gw, 'cluster.c.upstream_cx_destroy'), 2));
  });

  it('frames request bodies: content-length as given, chunked without one', async () => {
    const upstream = await scriptedUpstream(() => ({ pieces: [OK] }));
    const gw = await gateway(staticCluster('c', upstream.port));
    await httpRequest(`${gw.url()}/sized`, { method: 'POST', body: 'twelve bytes' });
    await httpRequest(`${gw.url()}/streamed`, { method: 'POST', body: Readable.from([Buffer.from('a streamed '), Buffer.from('body')]) });
    await httpRequest(`${gw.url()}/empty`, { method: 'POST' });
    const [sized, streamed, empty] = upstream.requests;
    assert.match(sized!.head, /\r\ncontent-length: 12\r\n/);
    assert.equal(sized!.body.toString(), 'twelve bytes');
    assert.match(streamed!.head, /\r\ntransfer-encoding: chunked\r\n/);
    assert.equal(streamed!.body.toString(), 'a streamed body');
    assert.match(empty!.head, /\r\ncontent-length: 0\r\n/);
    assert.equal(new Set(upstream.requests.map((r) => r.connection)).size, 1);
  });

  it('answers 503 UPE to a malformed response or one with an oversized head, and closes that connection', async () => {
    const upstream = await scriptedUpstream((request) => {
      if (request.head.startsWith('GET /garbage')) return { pieces: ['HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n'] };
      if (request.head.startsWith('GET /huge')) return { pieces: [`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}\r\ncontent-length: 2\r\n\r\nok`] };
      if (request.head.startsWith('GET /extra')) return { pieces: [OK + 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno'] };
      return { pieces: [OK] };
    });
    const gw = await gateway(staticCluster('c', upstream.port));
    for (const path of ['/garbage', '/huge']) {
      const res = await httpRequest(`${gw.url()}${path}`);
      assert.equal(res.status, 503, path);
      assert.match(res.body, /reset reason: protocol error/);
    }
    assert.equal(stat(gw, 'cluster.c.upstream_cx_protocol_error'), 2);
    // A response followed by one nobody asked for: the first is served, the connection is not kept.
    assert.equal((await httpRequest(`${gw.url()}/extra`)).body, 'ok');
    assert.equal((await httpRequest(`${gw.url()}/fine`)).body, 'ok');
    assert.deepEqual(
      upstream.requests.map((r) => r.connection),
      [1, 2, 3, 4],
    );
  });

  it('closes a connection after max_requests_per_connection requests', async () => {
    const upstream = await scriptedUpstream(() => ({ pieces: [OK] }));
    const gw = await gateway(`${staticCluster('c', upstream.port)}  max_requests_per_connection: 2\n`);
    for (let i = 0; i < 5; i++) assert.equal((await httpRequest(`${gw.url()}/${i}`)).body, 'ok');
    assert.deepEqual(
      upstream.requests.map((r) => r.connection),
      [1, 1, 2, 2, 3],
    );
    await eventually(() => assert.equal(stat(gw, 'cluster.c.upstream_cx_destroy_local'), 2));
  });

  it('keeps to the cluster max_connections across hosts: a host with a connection queues instead of opening more', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const a = await scriptedUpstream(() => ({ pieces: [OK], after: held }));
    const b = await scriptedUpstream(() => ({ pieces: [OK], after: held }));
    const cluster = `${staticCluster('c', a.port, b.port)}  circuit_breakers: { thresholds: [{ max_connections: 1, max_pending_requests: 10 }] }\n`;
    const gw = await gateway(cluster);
    const responses = Array.from({ length: 4 }, (_, i) => httpRequest(`${gw.url()}/${i}`));
    // Round robin sends two requests to each host. Each host opens its first connection even though the
    // cluster is at its limit (Envoy's rule, so no host starves); its second request waits for that connection.
    await eventually(() => assert.equal(a.requests.length + b.requests.length, 2));
    await eventually(() => assert.equal(stat(gw, 'cluster.c.upstream_rq_pending_active'), 2));
    assert.equal(stat(gw, 'cluster.c.upstream_cx_total'), 2);
    assert.ok(stat(gw, 'cluster.c.upstream_cx_overflow')! >= 2);
    release();
    for (const res of await Promise.all(responses)) assert.equal(res.body, 'ok');
    assert.equal(a.connections + b.connections, 2);
    assert.equal(stat(gw, 'cluster.c.upstream_cx_total'), 2);
  });
});

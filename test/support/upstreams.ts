/**
 * Fake upstreams and low-level clients for integration tests. Every server binds 127.0.0.1 on an ephemeral
 * port and its close() destroys all of its sockets, so tests never wait on keep-alive timeouts.
 */
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import {
  connect as netConnect,
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { Readable } from 'node:stream';
import { Agent, request as undiciRequest } from 'undici';
import { connectError } from './ports.js';

export interface StartedUpstream {
  port: number;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:0, tracks sockets, and builds the shared port/close() pair. */
async function listenTracked(server: HttpServer | NetServer): Promise<StartedUpstream> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        sockets.clear();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Hello service (the Envoy front-proxy conformance upstream)

export interface HelloRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface HelloService extends StartedUpstream {
  /** The service number n. */
  n: number;
  /** Every request received, in order (including the 404s). */
  requests: HelloRequest[];
}

/** The exact body answered by `startHelloService(n, { name })`. */
export function helloBody(n: number, name?: string): string {
  return `Hello from behind Envoy (service ${n})!${name === undefined ? '' : ` hostname ${name} resolved 127.0.0.1`}\n`;
}

/**
 * `GET /<anything>/<n>` (last path segment equal to n, query ignored) → 200 text/plain hello line; anything
 * else → 404.
 */
export async function startHelloService(n: number, opts: { name?: string } = {}): Promise<HelloService> {
  const requests: HelloRequest[] = [];
  const body = helloBody(n, opts.name);
  const server = createHttpServer((req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    requests.push({ method, url, headers: req.headers });
    req.resume();
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const last = path.slice(path.lastIndexOf('/') + 1);
    if ((method === 'GET' || method === 'HEAD') && last === String(n)) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(method === 'HEAD' ? undefined : body);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 });
      res.end(method === 'HEAD' ? undefined : 'not found\n');
    }
  });
  const started = await listenTracked(server);
  return { ...started, n, requests };
}

// ---------------------------------------------------------------------------------------------------------------
// Recording upstream

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  /** Total request body bytes received. */
  bodySize: number;
  /** The first MiB of the body. */
  body: Buffer;
  trailers: Record<string, string | undefined>;
}

export type RecordingHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  record: RecordedRequest,
) => void | Promise<void>;

export interface RecordingUpstream extends StartedUpstream {
  requests: RecordedRequest[];
  server: HttpServer;
}

const RECORDED_BODY_LIMIT = 1024 * 1024;

/**
 * Records every request once its body has been consumed, then answers with `handler` (default: 200 `ok`).
 * A handler that throws gets a 500 (or a destroyed socket when the headers are already out).
 */
export async function startRecordingUpstream(handler?: RecordingHandler): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    let bodySize = 0;
    req.on('data', (chunk: Buffer) => {
      bodySize += chunk.length;
      if (kept < RECORDED_BODY_LIMIT) {
        const part = chunk.subarray(0, RECORDED_BODY_LIMIT - kept);
        chunks.push(part);
        kept += part.length;
      }
    });
    req.on('error', () => {});
    req.on('end', () => {
      const record: RecordedRequest = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodySize,
        body: Buffer.concat(chunks),
        trailers: req.trailers,
      };
      requests.push(record);
      const fail = (err: unknown): void => {
        if (res.headersSent) {
          res.destroy(err instanceof Error ? err : new Error(String(err)));
        } else {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`handler failed: ${String(err)}\n`);
        }
      };
      if (handler === undefined) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
        res.end('ok');
        return;
      }
      try {
        const result = handler(req, res, record);
        if (result instanceof Promise) result.catch(fail);
      } catch (err) {
        fail(err);
      }
    });
  });
  const started = await listenTracked(server);
  return { ...started, requests, server };
}

// ---------------------------------------------------------------------------------------------------------------
// Health-toggling backend (the locality-load-balancing conformance upstream)

export interface ToggleBackend extends StartedUpstream {
  name: string;
  healthy: boolean;
  /** `GET /` requests answered so far, health checks included. */
  rootRequests: number;
  /** Their `user-agent` and `host` headers, in order. */
  rootRequestHeaders: IncomingHttpHeaders[];
}

/**
 * `GET /` answers 200 `Hello from <name>!` while healthy and 503 while not; `GET /healthy` and `GET /unhealthy`
 * switch the state (201). Tests may also flip `healthy` directly.
 */
export async function startToggleBackend(name: string): Promise<ToggleBackend> {
  const server = createHttpServer((req, res) => {
    req.resume();
    if (req.url === '/healthy' || req.url === '/unhealthy') {
      backend.healthy = req.url === '/healthy';
      res.writeHead(201, { 'content-length': 0 });
      res.end();
      return;
    }
    backend.rootRequests++;
    backend.rootRequestHeaders.push(req.headers);
    const body = backend.healthy ? `Hello from ${name}!\n` : 'Unhealthy\n';
    res.writeHead(backend.healthy ? 200 : 503, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const started = await listenTracked(server);
  const backend: ToggleBackend = { ...started, name, healthy: true, rootRequests: 0, rootRequestHeaders: [] };
  return backend;
}

// ---------------------------------------------------------------------------------------------------------------
// Misbehaving upstreams (raw TCP)

export type MisbehaviorMode = 'reset' | 'close' | 'hang' | 'garbage' | 'headers-then-reset' | 'slow-headers';

export interface MisbehavingUpstream extends StartedUpstream {
  mode: MisbehaviorMode;
  /** Connections accepted so far. */
  readonly connections: number;
  /** The request heads received (up to and including the blank line), one per connection that sent one. */
  requests: string[];
}

/** Resets the connection (RST) when the platform allows it, else destroys it. */
function resetSocket(socket: Socket): void {
  const s = socket as Socket & { resetAndDestroy?: () => Socket };
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
  else socket.destroy();
}

/**
 * A raw TCP upstream that misbehaves in one specific way once it has read a request head:
 * - `reset`: RSTs the connection;
 * - `close`: ends the connection cleanly (FIN) without answering;
 * - `hang`: never answers;
 * - `garbage`: answers `this is not http\r\n\r\n`, then closes;
 * - `headers-then-reset`: sends 200 headers with content-length 1000 and 10 body bytes, then destroys;
 * - `slow-headers`: sends the status line only, then stalls.
 */
export async function startMisbehavingUpstream(mode: MisbehaviorMode): Promise<MisbehavingUpstream> {
  let connections = 0;
  const requests: string[] = [];
  const server = createNetServer((socket) => {
    connections++;
    socket.on('error', () => {});
    let head = '';
    let acted = false;
    socket.on('data', (chunk: Buffer) => {
      if (acted) return;
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      acted = true;
      requests.push(head.slice(0, end + 4));
      switch (mode) {
        case 'reset':
          resetSocket(socket);
          break;
        case 'close':
          socket.end();
          break;
        case 'hang':
          break;
        case 'garbage':
          socket.end('this is not http\r\n\r\n');
          break;
        case 'headers-then-reset':
          socket.write(
            'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n0123456789',
            () => socket.destroy(),
          );
          break;
        case 'slow-headers':
          socket.write('HTTP/1.1 200 OK\r\n');
          break;
      }
    });
  });
  const started = await listenTracked(server);
  return {
    ...started,
    mode,
    requests,
    get connections() {
      return connections;
    },
  };
}

/**
 * A port on 127.0.0.1 that refuses connections, distinct on each call within a process. Taken from the privileged
 * range: a port from the ephemeral range (bound, then released) can be bound again by a test running beside this
 * one, which then answers where a refusal was expected. Nothing in the suite listens below 1024, and each candidate
 * is probed so that a system service there is skipped.
 */
export async function refusedPort(): Promise<number> {
  while (nextRefusedCandidate < 1024) {
    const port = nextRefusedCandidate++;
    if ((await connectError(port))?.code === 'ECONNREFUSED') return port;
  }
  throw new Error('no privileged port on 127.0.0.1 refuses connections');
}

let nextRefusedCandidate = 1;

// ---------------------------------------------------------------------------------------------------------------
// Raw client

export interface RawResponse {
  status: number | undefined;
  statusText: string;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body as received, de-chunked (utf-8). */
  body: string;
  /** Whether the whole response (per its framing) arrived. */
  complete: boolean;
  /** Trailers of a chunked body. */
  trailers: Record<string, string>;
}

export interface RawRequestOptions {
  /** Overall limit; whatever arrived by then is returned. Default 5000. */
  timeoutMs?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Finish after this much silence once something was received (default: no idle limit). */
  idleMs?: number;
  /**
   * Finish once this many final (non-1xx) responses are complete (default 1); 0 waits for the server to close
   * or the timeout.
   */
  responses?: number;
  /**
   * After the expected responses are complete, how long to keep listening for the server to close the
   * connection (so `closed` is meaningful). Default 50; a response carrying `connection: close` waits until
   * the server closes or the timeout.
   */
  closeGraceMs?: number;
  /** Half-close our side after writing. Default false. */
  endAfterWrite?: boolean;
}

export interface RawRequestResult {
  /** Everything received, decoded as utf-8. */
  raw: string;
  rawBuffer: Buffer;
  /** Status, headers and body of the first final response (the first 1xx-skipping one, 101 included). */
  status: number | undefined;
  headers: Record<string, string>;
  body: string;
  /** Every response parsed, interim (1xx) ones included. */
  responses: RawResponse[];
  /** Whether the server closed (or reset) the connection. */
  closed: boolean;
  /** The socket error code after connecting (e.g. ECONNRESET), if any. */
  error?: string;
}

interface ParseOutcome {
  responses: RawResponse[];
  /** Total input length needed before parsing again can make progress (content-length bodies). */
  needLength: number;
}

function parseHead(head: string): { status: number | undefined; statusText: string; headers: Record<string, string> } {
  const lines = head.split('\r\n');
  const statusLine = lines[0] ?? '';
  let status: number | undefined;
  let statusText = '';
  if (statusLine.startsWith('HTTP/')) {
    const sp1 = statusLine.indexOf(' ');
    const rest = sp1 === -1 ? '' : statusLine.slice(sp1 + 1);
    const sp2 = rest.indexOf(' ');
    const code = Number.parseInt(sp2 === -1 ? rest : rest.slice(0, sp2), 10);
    if (Number.isInteger(code)) status = code;
    statusText = sp2 === -1 ? '' : rest.slice(sp2 + 1);
  }
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status, statusText, headers };
}

const latin1ToUtf8 = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');

/** Parses as many HTTP/1.x responses as `raw` (latin1) holds. */
function parseResponses(raw: string, headRequest: boolean, closed: boolean): ParseOutcome {
  const responses: RawResponse[] = [];
  let pos = 0;
  let finals = 0;
  while (pos < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) {
      // Partial head: report the status line if it is complete.
      const partial = raw.slice(pos);
      const lineEnd = partial.indexOf('\r\n');
      const { status, statusText, headers } = parseHead(lineEnd === -1 ? '' : partial.slice(0, partial.lastIndexOf('\r\n')));
      responses.push({ status, statusText, headers, body: '', complete: false, trailers: {} });
      return { responses, needLength: 0 };
    }
    const { status, statusText, headers } = parseHead(raw.slice(pos, headEnd));
    const bodyStart = headEnd + 4;
    const response: RawResponse = { status, statusText, headers, body: '', complete: false, trailers: {} };
    responses.push(response);
    if (status === undefined) return { responses, needLength: 0 };
    if (status >= 100 && status < 200 && status !== 101) {
      response.complete = true;
      pos = bodyStart;
      continue;
    }
    const isFirstFinal = finals === 0;
    finals++;
    if (status === 101) {
      response.body = latin1ToUtf8(raw.slice(bodyStart));
      response.complete = true;
      return { responses, needLength: 0 };
    }
    if ((headRequest && isFirstFinal) || status === 204 || status === 304) {
      response.complete = true;
      pos = bodyStart;
      continue;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined && te.toLowerCase().includes('chunked')) {
      let p = bodyStart;
      let body = '';
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', p);
        if (lineEnd === -1) break;
        const size = Number.parseInt(raw.slice(p, lineEnd).split(';')[0]!.trim(), 16);
        if (!Number.isFinite(size)) break;
        if (size === 0) {
          const trailerEnd = raw.indexOf('\r\n\r\n', lineEnd);
          if (raw.startsWith('\r\n', lineEnd + 2)) {
            response.complete = true;
            p = lineEnd + 4;
          } else if (trailerEnd !== -1) {
            response.trailers = parseHead(`\r\n${raw.slice(lineEnd + 2, trailerEnd)}`).headers;
            response.complete = true;
            p = trailerEnd + 4;
          }
          break;
        }
        const dataStart = lineEnd + 2;
        body += raw.slice(dataStart, Math.min(dataStart + size, raw.length));
        if (dataStart + size + 2 > raw.length) break;
        p = dataStart + size + 2;
      }
      response.body = latin1ToUtf8(body);
      if (!response.complete) return { responses, needLength: 0 };
      pos = p;
      continue;
    }
    const cl = headers['content-length'];
    if (cl !== undefined) {
      const length = Number.parseInt(cl, 10);
      const end = bodyStart + length;
      response.body = latin1ToUtf8(raw.slice(bodyStart, Math.min(end, raw.length)));
      if (end > raw.length) return { responses, needLength: end };
      response.complete = true;
      pos = end;
      continue;
    }
    // Delimited by the connection closing.
    response.body = latin1ToUtf8(raw.slice(bodyStart));
    response.complete = closed;
    return { responses, needLength: 0 };
  }
  return { responses, needLength: 0 };
}

/**
 * Writes `data` verbatim to a TCP connection and collects what comes back until the expected responses are
 * complete, the server closes, or the idle/overall timeout passes. Rejects only when the connection cannot be
 * established.
 */
export function rawRequest(port: number, data: string | Buffer, opts: RawRequestOptions = {}): Promise<RawRequestResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const wanted = opts.responses ?? 1;
  const closeGraceMs = opts.closeGraceMs ?? 50;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const headRequest = bytes.subarray(0, 5).toString('latin1') === 'HEAD ';

  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: opts.host ?? '127.0.0.1' });
    const chunks: Buffer[] = [];
    let received = 0;
    let connected = false;
    let closed = false;
    let error: string | undefined;
    let done = false;
    let needLength = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    let graceTimer: NodeJS.Timeout | undefined;

    const parse = (): ParseOutcome => parseResponses(Buffer.concat(chunks).toString('latin1'), headRequest, closed);

    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(overall);
      clearTimeout(idleTimer);
      clearTimeout(graceTimer);
      socket.destroy();
      const rawBuffer = Buffer.concat(chunks);
      const { responses } = parse();
      const first = responses.find((r) => r.status === undefined || r.status < 100 || r.status >= 200 || r.status === 101);
      const result: RawRequestResult = {
        raw: rawBuffer.toString('utf8'),
        rawBuffer,
        status: first?.status ?? responses[0]?.status,
        headers: first?.headers ?? responses[0]?.headers ?? {},
        body: first?.body ?? '',
        responses,
        closed,
      };
      if (error !== undefined) result.error = error;
      resolve(result);
    };

    const overall = setTimeout(finish, timeoutMs);

    socket.on('connect', () => {
      connected = true;
      if (opts.endAfterWrite) socket.end(bytes);
      else socket.write(bytes);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (opts.idleMs !== undefined) {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(finish, opts.idleMs);
      }
      if (wanted <= 0 || graceTimer !== undefined || received < needLength) return;
      const outcome = parse();
      needLength = outcome.needLength;
      const finals = outcome.responses.filter((r) => r.complete && r.status !== undefined && (r.status >= 200 || r.status === 101));
      if (finals.length >= wanted) {
        const last = finals[wanted - 1]!;
        const willClose = (last.headers['connection'] ?? '').toLowerCase().includes('close');
        if (!willClose) graceTimer = setTimeout(finish, closeGraceMs);
      }
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('close', () => {
      if (connected) closed = true;
      finish();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        done = true;
        clearTimeout(overall);
        reject(err);
        return;
      }
      error = err.code ?? err.message;
      closed = true;
      finish();
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP client

export interface HttpRequestInit {
  method?: string;
  headers?: Record<string, string | string[]> | string[];
  body?: string | Buffer | Uint8Array | Readable | null;
  /** Headers and body timeouts, default 10000. */
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: Record<string, string>;
}

/**
 * One request on a fresh connection (its own undici Agent, closed afterwards) so tests are independent of each
 * other's keep-alive state. The body is read fully as utf-8.
 */
export async function httpRequest(url: string | URL, init: HttpRequestInit = {}): Promise<HttpResponse> {
  const timeout = init.timeoutMs ?? 10_000;
  const dispatcher = new Agent({ connections: 1, pipelining: 1, headersTimeout: timeout, bodyTimeout: timeout });
  try {
    const res = await undiciRequest(url, {
      dispatcher,
      method: init.method ?? 'GET',
      headers: init.headers ?? {},
      body: init.body ?? null,
    });
    const body = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body, trailers: res.trailers };
  } finally {
    await dispatcher.destroy().catch(() => {});
  }
}

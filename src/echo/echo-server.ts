/**
 * The built-in httpbin-style upstream behind `portico echo`: used by the quick start, integration tests and
 * benchmarks. Plain node:http, keep-alive on, no buffering of request or response bodies.
 *
 * Endpoints (every one also honours `?response_header=name:value`, repeatable):
 *   any other path   echo of the request as JSON (body streamed through sha256, never buffered)
 *   /status/CODE     that status, text body `status CODE`
 *   /delay/MS        the echo after MS milliseconds (capped at 60000)
 *   /bytes/N         N deterministic bytes (byte i is `i & 0xff`, capped at 10 GiB); `?chunked=1` for chunked
 *   /stream/N        N newline-delimited JSON objects (capped at 100000), chunked
 *   /headers         `{ "headers": {...} }`
 *   /trailers        the echo, chunked, followed by the trailer `x-echo-trailer: yes`
 */
import { createHash } from 'node:crypto';
import {
  createServer,
  validateHeaderName,
  validateHeaderValue,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

export interface EchoServerOptions {
  /** TCP port; 0 (the default) picks an ephemeral one. */
  port?: number;
  /** Bind address, 127.0.0.1 by default. */
  host?: string;
  /** Reported in every echo and in the `x-echo-name` response header; os.hostname() by default. */
  name?: string;
}

export interface EchoServer {
  port: number;
  host: string;
  name: string;
  server: Server;
  /** Stops listening and destroys every open (including keep-alive) connection. */
  close(): Promise<void>;
}

/** The JSON document answered by the default echo endpoint. */
export interface EchoResponseBody {
  name: string;
  method: string;
  path: string;
  url: string;
  query: Record<string, string | string[]>;
  headers: IncomingHttpHeaders;
  rawHeaders: [string, string][];
  body: { size: number; sha256: string };
  protocol: string;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  trailers?: Record<string, string | undefined>;
}

export const ECHO_MAX_DELAY_MS = 60_000;
export const ECHO_MAX_BYTES = 10 * 1024 * 1024 * 1024;
export const ECHO_MAX_STREAM = 100_000;
export const ECHO_CHUNK_SIZE = 64 * 1024;

/** One full chunk of the `/bytes/N` pattern: byte i of the response is `i & 0xff`. */
const PATTERN_CHUNK: Buffer = (() => {
  const buf = Buffer.allocUnsafe(ECHO_CHUNK_SIZE);
  for (let i = 0; i < buf.length; i++) buf[i] = i & 0xff;
  return buf;
})();

/** The first `n` bytes `/bytes/N` produces (for clients that want to compare or checksum them). */
export function echoBytesPattern(n: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) buf[i] = i & 0xff;
  return buf;
}

const noop = (): void => {};

/** Parses a non-negative decimal integer without a regex; undefined when malformed. */
function parseUint(text: string): number | undefined {
  if (text.length === 0 || text.length > 15) return undefined;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    value = value * 10 + c;
  }
  return value;
}

function parseQuery(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [key, value] of new URLSearchParams(search)) {
    const existing = query[key];
    if (existing === undefined) query[key] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else query[key] = [existing, value];
  }
  return query;
}

function asList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** Per-request context shared by the handlers. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  name: string;
  method: string;
  url: string;
  path: string;
  query: Record<string, string | string[]>;
  /** Headers requested with `?response_header=`, lower-case names. */
  extraHeaders: OutgoingHttpHeaders | undefined;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Whether the response must carry no body (HEAD). */
  head: boolean;
}

function buildExtraHeaders(query: Record<string, string | string[]>): OutgoingHttpHeaders | undefined | Error {
  const specs = asList(query['response_header']);
  if (specs.length === 0) return undefined;
  const headers: OutgoingHttpHeaders = {};
  for (const spec of specs) {
    const colon = spec.indexOf(':');
    if (colon <= 0) return new Error(`invalid response_header ${JSON.stringify(spec)}: expected name:value`);
    const name = spec.slice(0, colon).trim().toLowerCase();
    const value = spec.slice(colon + 1).trim();
    if (name === 'content-length' || name === 'transfer-encoding') {
      return new Error(`invalid response_header ${JSON.stringify(spec)}: the echo server owns message framing`);
    }
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      return new Error(`invalid response_header ${JSON.stringify(spec)}`);
    }
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else headers[name] = [String(existing), value];
  }
  return headers;
}

/** Writes the status and headers; `?response_header=` values override the defaults. */
function writeHead(ex: Exchange, status: number, headers: OutgoingHttpHeaders): void {
  headers['x-echo-name'] = ex.name;
  if (ex.extraHeaders !== undefined) Object.assign(headers, ex.extraHeaders);
  ex.res.writeHead(status, headers);
}

function sendText(ex: Exchange, status: number, text: string): void {
  // Drain whatever the client sends so the connection stays usable.
  ex.req.resume();
  const bodyAllowed = status !== 204 && status !== 304 && status >= 200;
  const headers: OutgoingHttpHeaders = {};
  if (status === 101) headers['connection'] = 'close';
  if (bodyAllowed) {
    headers['content-type'] = 'text/plain; charset=utf-8';
    headers['content-length'] = Buffer.byteLength(text);
  }
  writeHead(ex, status, headers);
  if (bodyAllowed && !ex.head) ex.res.end(text);
  else ex.res.end();
}

function badRequest(ex: Exchange, message: string): void {
  ex.extraHeaders = undefined;
  sendText(ex, 400, `${message}\n`);
}

function sendJson(ex: Exchange, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  writeHead(ex, status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  if (ex.head) ex.res.end();
  else ex.res.end(body);
}

/** True once the client went away before the response finished. */
function gone(res: ServerResponse): boolean {
  return res.destroyed || res.writableEnded;
}

/** Consumes the request body through sha256 and calls back with the echo document. */
function collectEcho(ex: Exchange, done: (echo: EchoResponseBody) => void): void {
  const { req } = ex;
  const hash = createHash('sha256');
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => {
    const raw = req.rawHeaders;
    const rawHeaders: [string, string][] = new Array(raw.length >> 1);
    for (let i = 0; i < raw.length; i += 2) rawHeaders[i >> 1] = [raw[i]!, raw[i + 1]!];
    const echo: EchoResponseBody = {
      name: ex.name,
      method: ex.method,
      path: ex.path,
      url: ex.url,
      query: ex.query,
      headers: req.headers,
      rawHeaders,
      body: { size, sha256: hash.digest('hex') },
      protocol: `HTTP/${req.httpVersion}`,
      remoteAddress: ex.remoteAddress,
      remotePort: ex.remotePort,
    };
    if (req.rawTrailers.length > 0) echo.trailers = req.trailers;
    done(echo);
  });
}

function handleEcho(ex: Exchange): void {
  collectEcho(ex, (echo) => {
    if (!gone(ex.res)) sendJson(ex, 200, echo);
  });
}

function handleStatus(ex: Exchange, arg: string): void {
  const code = parseUint(arg);
  if (code === undefined || code < 100 || code > 599 || (code < 200 && code !== 101)) {
    badRequest(ex, `invalid status code ${JSON.stringify(arg)}: expected 101 or 200-599`);
    return;
  }
  sendText(ex, code, `status ${code}`);
}

function handleDelay(ex: Exchange, arg: string): void {
  const ms = parseUint(arg);
  if (ms === undefined) {
    badRequest(ex, `invalid delay ${JSON.stringify(arg)}: expected milliseconds`);
    return;
  }
  let echo: EchoResponseBody | undefined;
  let elapsed = false;
  const respond = (): void => {
    if (echo !== undefined && elapsed && !gone(ex.res)) sendJson(ex, 200, echo);
  };
  const timer = setTimeout(() => {
    elapsed = true;
    respond();
  }, Math.min(ms, ECHO_MAX_DELAY_MS));
  ex.res.once('close', () => clearTimeout(timer));
  collectEcho(ex, (result) => {
    echo = result;
    respond();
  });
}

/** True once the response's connection closed (client gone, or response finished). */
function trackClosed(res: ServerResponse): () => boolean {
  let closed = false;
  res.once('close', () => {
    closed = true;
  });
  return () => closed || res.destroyed;
}

/** Resolves when `res` can take more data; false when the client went away instead. */
function waitDrain(res: ServerResponse, isClosed: () => boolean): Promise<boolean> {
  return new Promise((resolve) => {
    if (isClosed()) {
      resolve(false);
      return;
    }
    const onDrain = (): void => {
      res.off('close', onClose);
      resolve(true);
    };
    const onClose = (): void => {
      res.off('drain', onDrain);
      resolve(false);
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

function handleBytes(ex: Exchange, arg: string): void {
  const requested = parseUint(arg);
  if (requested === undefined) {
    badRequest(ex, `invalid byte count ${JSON.stringify(arg)}`);
    return;
  }
  const total = Math.min(requested, ECHO_MAX_BYTES);
  const chunked = asList(ex.query['chunked']).some((v) => v === '1' || v === 'true');
  ex.req.resume();
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
  if (!chunked) headers['content-length'] = total;
  writeHead(ex, 200, headers);
  const { res } = ex;
  if (ex.head || total === 0) {
    res.end();
    return;
  }
  const isClosed = trackClosed(res);
  void (async () => {
    let remaining = total;
    while (remaining > 0) {
      if (isClosed()) return;
      const n = remaining < ECHO_CHUNK_SIZE ? remaining : ECHO_CHUNK_SIZE;
      remaining -= n;
      const ok = res.write(n === ECHO_CHUNK_SIZE ? PATTERN_CHUNK : PATTERN_CHUNK.subarray(0, n));
      if (!ok && remaining > 0 && !(await waitDrain(res, isClosed))) return;
    }
    res.end();
  })().catch(() => res.destroy());
}

function handleStream(ex: Exchange, arg: string): void {
  const requested = parseUint(arg);
  if (requested === undefined) {
    badRequest(ex, `invalid stream count ${JSON.stringify(arg)}`);
    return;
  }
  const count = Math.min(requested, ECHO_MAX_STREAM);
  ex.req.resume();
  writeHead(ex, 200, { 'content-type': 'application/x-ndjson' });
  const { res } = ex;
  if (ex.head) {
    res.end();
    return;
  }
  const tail = `,"name":${JSON.stringify(ex.name)},"path":${JSON.stringify(ex.path)}}\n`;
  const isClosed = trackClosed(res);
  void (async () => {
    for (let id = 0; id < count; id++) {
      if (isClosed()) return;
      if (!res.write(`{"id":${id}${tail}`) && !(await waitDrain(res, isClosed))) return;
    }
    res.end();
  })().catch(() => res.destroy());
}

function handleHeaders(ex: Exchange): void {
  ex.req.resume();
  sendJson(ex, 200, { headers: ex.req.headers });
}

function handleTrailers(ex: Exchange): void {
  collectEcho(ex, (echo) => {
    const { res } = ex;
    if (gone(res)) return;
    writeHead(ex, 200, { 'content-type': 'application/json', trailer: 'x-echo-trailer' });
    if (ex.head) {
      res.end();
      return;
    }
    res.write(JSON.stringify(echo));
    res.addTrailers({ 'x-echo-trailer': 'yes' });
    res.end();
  });
}

function handle(name: string, req: IncomingMessage, res: ServerResponse): void {
  req.on('error', noop);
  res.on('error', noop);
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? (Object.create(null) as Record<string, string>) : parseQuery(url.slice(q + 1));
  const method = req.method ?? 'GET';
  const socket = req.socket;
  const ex: Exchange = {
    req,
    res,
    name,
    method,
    url,
    path,
    query,
    extraHeaders: undefined,
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    head: method === 'HEAD',
  };
  if (q !== -1) {
    const extra = buildExtraHeaders(query);
    if (extra instanceof Error) {
      badRequest(ex, extra.message);
      return;
    }
    ex.extraHeaders = extra;
  }

  if (path.charCodeAt(1) !== 0x73 && path.charCodeAt(1) !== 0x64 && path.charCodeAt(1) !== 0x62) {
    // Fast path: the numeric endpoints all start with /s, /d or /b.
    if (path === '/headers') handleHeaders(ex);
    else if (path === '/trailers') handleTrailers(ex);
    else handleEcho(ex);
    return;
  }
  if (path.startsWith('/status/')) handleStatus(ex, path.slice(8));
  else if (path.startsWith('/delay/')) handleDelay(ex, path.slice(7));
  else if (path.startsWith('/bytes/')) handleBytes(ex, path.slice(7));
  else if (path.startsWith('/stream/')) handleStream(ex, path.slice(8));
  else handleEcho(ex);
}

export async function startEchoServer(options: EchoServerOptions = {}): Promise<EchoServer> {
  const host = options.host ?? '127.0.0.1';
  const name = options.name ?? hostname();
  validateHeaderValue('x-echo-name', name);
  const server = createServer(
    {
      keepAlive: true,
      noDelay: true,
      keepAliveTimeout: 65_000,
      headersTimeout: 66_000,
      // Large uploads may legitimately take long; this is a test upstream, not an edge server.
      requestTimeout: 0,
    },
    (req, res) => handle(name, req, res),
  );
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  return { port, host, name, server, close };
}

/** What `portico echo --help` prints below its usage line. */
export const ECHO_OPTIONS = `Options:
  -p, --port N      the port (default 8081; 0 picks a free one)
      --host H      the address to listen on (default 127.0.0.1)
      --name NAME   the name every answer carries (default: the host name)
`;

/** `portico echo [--port N] [--host H] [--name NAME]`: runs until SIGINT/SIGTERM, then resolves. */
export async function runEchoCommand(argv: string[]): Promise<void> {
  let values: { port?: string; host?: string; name?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        name: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new Error(`portico echo: ${(err as Error).message}`);
  }
  let port = 8081;
  if (values.port !== undefined) {
    const parsed = parseUint(values.port);
    if (parsed === undefined || parsed > 65535) {
      throw new Error(`portico echo: invalid --port ${JSON.stringify(values.port)}: expected 0-65535`);
    }
    port = parsed;
  }
  const options: EchoServerOptions = { port, host: values.host ?? '127.0.0.1' };
  if (values.name !== undefined) options.name = values.name;
  const echo = await startEchoServer(options);
  const shownHost = echo.host.includes(':') ? `[${echo.host}]` : echo.host;
  process.stdout.write(`portico echo ${JSON.stringify(echo.name)} listening on http://${shownHost}:${echo.port}\n`);

  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      void echo.close().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

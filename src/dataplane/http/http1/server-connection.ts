/**
 * The downstream HTTP/1.1 codec: one Http1ServerConnection per accepted connection reads requests with Node's
 * llhttp parser and writes responses straight to the socket, a whole small response in one write. Requests on a
 * connection are served one at a time, as Envoy's codec does: a pipelined request waits, with reading paused,
 * until the response before it is complete.
 *
 * Request heads become a header object with Node's rules for repeated headers (`cookie` joined with `; `,
 * `set-cookie` a list, single-valued headers such as `host` keep their first value, the rest joined with `, `).
 * A request body is a Readable with back-pressure on the socket; a request without one gets none.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { httpDate } from '../../../util/http-date.js';
import { listen, type Listeners, unlisten } from '../../../util/listeners.js';
import { chunkHeader, UNSAFE_FIELD, writeFramed } from '../../http1-wire.js';
import { HTTPParser, type HttpParser, METHODS } from '../../llhttp.js';
import type { HeaderMap } from '../../router/header-mutation.js';
import type { CodecRequest, CodecResponse, CodecStreamHandler, RequestHeaders } from '../codec.js';

/** The code `onProtocolError` reports when a request head did not arrive within `headersTimeoutMs`. */
export const HEADERS_TIMEOUT = 'REQUEST_HEADERS_TIMEOUT';

export interface ServerConnectionOptions {
  maxHeaderSize: number;
  /** Time from a request's first byte to the end of its head; 0 disables. */
  headersTimeoutMs: number;
  /** Requests a connection carries before it closes; 0 is unlimited. */
  maxRequestsPerConnection: number;
  /** `http_protocol_options.enable_trailers`: chunked trailers are read and written; otherwise dropped. */
  enableTrailers: boolean;
}

/** What a connection asks of its connection manager. */
export interface ServerConnectionOwner {
  /** A request head arrived (for an upgrade request, with the bytes that followed it). */
  onRequest(connection: Http1ServerConnection, request: DownstreamRequest, response: DownstreamResponse): void;
  /**
   * A request the parser refused (llhttp's HPE_* code) or whose head took too long (HEADERS_TIMEOUT), while no
   * response is under way. The owner answers; the connection closes after the answer.
   */
  onProtocolError(connection: Http1ServerConnection, code: string): void;
  /** The socket timed out with no request in flight. */
  onIdleTimeout(connection: Http1ServerConnection): void;
  /** The socket closed; `activeRequest` when a request was still in flight. */
  onClose(connection: Http1ServerConnection, activeRequest: boolean): void;
}

/** A request as parsed; its body, if it announced one, streams in on `body`. */
export class DownstreamRequest implements CodecRequest {
  /** The whole request, body included, has arrived. */
  complete = false;
  /** For an upgrade request: the bytes that followed its head, which belong to the upgraded protocol. */
  upgradeHead: Buffer | undefined;
  /** The trailers of a chunked body, set before the body ends. */
  trailers: RequestHeaders | undefined;

  constructor(
    readonly socket: Socket,
    readonly method: string,
    readonly url: string,
    readonly versionMinor: number,
    readonly headers: RequestHeaders,
    /** Header lines in the head, before repeated ones were joined. */
    readonly headerCount: number,
    readonly body: DownstreamBody | undefined,
    readonly upgrade: boolean,
    /** The parser's verdict from the version and `connection`. */
    readonly keepAlive: boolean,
  ) {}
}

/** A request body: pushed by the parser, and resuming the socket when its reader wants more. */
export class DownstreamBody extends Readable {
  constructor(private readonly connection: Http1ServerConnection) {
    super();
  }

  override _read(): void {
    this.connection.onBodyRead();
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;
const CONTINUE = /^100-continue$/i;
const CONTINUE_RESPONSE = 'HTTP/1.1 100 Continue\r\n\r\n';
const STATUS_LINES: string[] = [];

function statusLine(status: number): string {
  return (STATUS_LINES[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`);
}

function headerLines(name: string, value: string | string[] | number): string {
  if (!TOKEN.test(name)) return '';
  if (typeof value === 'object') {
    let lines = '';
    for (const v of value) if (!UNSAFE_FIELD.test(v)) lines += `${name}: ${v}\r\n`;
    return lines;
  }
  const text = typeof value === 'number' ? String(value) : value;
  return UNSAFE_FIELD.test(text) ? '' : `${name}: ${text}\r\n`;
}

/**
 * A response to one request. The head is kept from `writeHead` until the first body bytes or `end`, and goes
 * out with them. Framing follows the head: its `content-length`, else chunked (HTTP/1.1) or until close
 * (HTTP/1.0); no body after HEAD, 1xx, 204 and 304.
 */
export class DownstreamResponse implements CodecResponse {
  handler: CodecStreamHandler | undefined;
  headersSent = false;
  /** The whole response was handed to the socket. */
  finished = false;
  statusCode = 0;
  /** Whether the connection carries another request after this response. */
  keepAlive: boolean;
  private pendingHead = '';
  private chunked = false;
  private noBody = false;
  /** A write returned false: the handler hears of the next drain. */
  waitingDrain = false;
  private trailers: HeaderMap | undefined;

  constructor(
    readonly connection: Http1ServerConnection,
    readonly request: DownstreamRequest,
  ) {
    this.keepAlive = request.keepAlive && !request.upgrade;
  }

  /** Names are lower-case; values with CR, LF or NUL are left out. */
  writeHead(status: number, headers: HeaderMap): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.statusCode = status;
    const request = this.request;
    let keepAlive = this.keepAlive;
    let hasLength = false;
    let hasDate = false;
    let hasConnection = false;
    let head = statusLine(status);
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (name === 'content-length') hasLength = true;
      else if (name === 'date') hasDate = true;
      else if (name === 'transfer-encoding' || (name === 'trailer' && !this.connection.enableTrailers)) continue;
      else if (name === 'connection') {
        hasConnection = true;
        if (typeof value === 'string' && CLOSE.test(value)) keepAlive = false;
      }
      head += headerLines(name, value);
    }
    this.noBody = request.method === 'HEAD' || status < 200 || status === 204 || status === 304;
    if (!this.noBody && !hasLength) {
      if (request.versionMinor === 1) {
        this.chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      } else {
        keepAlive = false;
      }
    }
    if (!hasConnection) {
      if (!keepAlive) head += 'connection: close\r\n';
      else if (request.versionMinor === 0) head += 'connection: keep-alive\r\n';
    }
    if (!hasDate) head += `date: ${httpDate()}\r\n`;
    this.keepAlive = keepAlive;
    this.pendingHead = head + '\r\n';
  }

  /** False when the socket's buffer is full: the handler's onDownstreamDrain says when to write again. */
  write(chunk: Buffer): boolean {
    if (this.finished || this.noBody || chunk.length === 0) return true;
    const ok = this.writeBody(chunk);
    if (!ok) this.waitingDrain = true;
    return ok;
  }

  /** Body bytes in their framing, preceded by the head if it is still waiting. */
  private writeBody(chunk: Buffer): boolean {
    const head = this.pendingHead;
    this.pendingHead = '';
    if (!this.chunked) return writeFramed(this.connection.socket, head, chunk, '');
    return writeFramed(this.connection.socket, head + chunkHeader(chunk.length), chunk, '\r\n');
  }

  /** Trailers go out with the end of a chunked body; a response with a length has nowhere to put them. */
  addTrailers(trailers: HeaderMap): void {
    if (this.connection.enableTrailers) this.trailers = trailers;
  }

  /** Ends the response, with `body` (a local reply's) as its whole body. */
  end(body?: string): void {
    if (this.finished) return;
    if (body !== undefined && body !== '' && !this.noBody) this.writeBody(Buffer.from(body));
    let tail = this.pendingHead;
    this.pendingHead = '';
    if (this.chunked) {
      tail += '0\r\n';
      if (this.trailers !== undefined) for (const name in this.trailers) tail += headerLines(name, this.trailers[name] ?? []);
      tail += '\r\n';
    }
    if (tail !== '') this.connection.socket.write(tail, 'latin1');
    this.finished = true;
    this.connection.onResponseEnd(this);
  }

  /** Resets the stream: on HTTP/1.1 that closes the connection. */
  destroy(): void {
    this.connection.socket.destroy();
  }

  /** The socket's timeout while this stream is in flight (0 disables). */
  setTimeout(ms: number): void {
    this.connection.socket.setTimeout(ms);
  }
}

const kConnection = Symbol('portico.http1ServerConnection');
type ConnectionSocket = Socket & { [kConnection]?: Http1ServerConnection };
type ConnectionParser = HttpParser & { [kConnection]?: Http1ServerConnection };

export class Http1ServerConnection {
  /** Requests started on this connection. */
  private requests = 0;
  readonly openedAt = performance.now();
  private readonly parser: ConnectionParser;
  /** The response in flight; it stays set after a 101, for the life of the tunnel. */
  private active: DownstreamResponse | undefined;
  /** Pipelined requests that arrived while one was in flight. */
  private readonly waiting: DownstreamRequest[] = [];
  /** The request whose head or body is being parsed. */
  private parsing: DownstreamRequest | undefined;
  private headerLines: string[] | undefined;
  private url = '';
  private headersTimer: NodeJS.Timeout | undefined;
  /** The response ended before its request's body: the rest of the body is read and dropped. */
  private dumping = false;
  /** A 101 was written: the socket belongs to the tunnel. */
  private upgraded = false;
  private closed = false;
  /** A pipelined request after the ones in flight or waiting is malformed: refused once they are answered. */
  private deferredError: string | undefined;

  constructor(
    private readonly owner: ServerConnectionOwner,
    readonly socket: Socket,
    private readonly options: ServerConnectionOptions,
  ) {
    const parser = new HTTPParser() as ConnectionParser;
    parser.initialize(HTTPParser.REQUEST, {}, options.maxHeaderSize, 0);
    parser[HTTPParser.kOnHeaders] = onParserHeaders;
    parser[HTTPParser.kOnHeadersComplete] = onParserHeadersComplete;
    parser[HTTPParser.kOnBody] = onParserBody;
    parser[HTTPParser.kOnMessageComplete] = onParserMessageComplete;
    if (options.headersTimeoutMs > 0) parser[HTTPParser.kOnMessageBegin] = onParserMessageBegin;
    parser[kConnection] = this;
    this.parser = parser;
    (socket as ConnectionSocket)[kConnection] = this;
    listen(socket, SOCKET_LISTENERS);
  }

  get enableTrailers(): boolean {
    return this.options.enableTrailers;
  }

  /** No request in flight or waiting. */
  get idle(): boolean {
    return this.active === undefined && this.parsing === undefined;
  }

  // ---- reading ---------------------------------------------------------------------------------------------

  onData(data: Buffer): void {
    const result = this.parser.execute(data);
    if (typeof result !== 'number') {
      // Bytes after a `connection: close` request are ignored, not an error for the response under way.
      if (result.code === 'HPE_CLOSED_CONNECTION') this.socket.pause();
      else this.protocolError(result.code ?? 'HPE_INTERNAL');
      return;
    }
    const request = this.parsing;
    if (request?.upgrade) {
      // llhttp stops after an upgrade request's head: what follows is the upgraded protocol's.
      this.parsing = undefined;
      this.socket.pause();
      this.socket.removeListener('data', onSocketData);
      request.upgradeHead = data.subarray(result);
      request.complete = true;
      this.startOrQueue(request);
    }
  }

  onMessageBegin(): void {
    this.headersTimer ??= setTimeout(onHeadersTimeout, this.options.headersTimeoutMs, this);
  }

  onHeadersTimeout(): void {
    this.headersTimer = undefined;
    if (!this.closed) this.protocolError(HEADERS_TIMEOUT);
  }

  onHeaderLines(lines: string[], url: string): void {
    if (this.headerLines === undefined) this.headerLines = lines;
    else for (const line of lines) this.headerLines.push(line);
    this.url += url;
  }

  onHeadersComplete(versionMinor: number, lines: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): void {
    if (this.headersTimer !== undefined) {
      clearTimeout(this.headersTimer);
      this.headersTimer = undefined;
    }
    if (lines === undefined) {
      lines = this.headerLines ?? [];
      this.headerLines = undefined;
    }
    if (url === undefined || url === '') {
      url = this.url;
      this.url = '';
    }
    const headers = requestHeaders(lines);
    const body = !upgrade && announcesBody(headers) ? new DownstreamBody(this) : undefined;
    const request = new DownstreamRequest(this.socket, METHODS[method] ?? 'GET', url, versionMinor, headers, lines.length >> 1, body, upgrade, keepAlive);
    this.parsing = request;
    // An upgrade request starts once `execute` returns, with the bytes that followed its head.
    if (!upgrade) this.startOrQueue(request);
  }

  onBody(chunk: Buffer): void {
    const request = this.parsing;
    if (request === undefined || this.dumping) return;
    const body = request.body;
    if (body !== undefined && !body.destroyed && !body.push(chunk)) this.socket.pause();
  }

  onMessageComplete(): void {
    const request = this.parsing;
    if (request === undefined || request.upgrade) return;
    this.parsing = undefined;
    // Trailers of a chunked request body arrive as header lines (with the url again).
    const trailers = this.headerLines;
    this.headerLines = undefined;
    this.url = '';
    if (trailers !== undefined && trailers.length > 0 && this.options.enableTrailers) request.trailers = requestHeaders(trailers);
    request.complete = true;
    request.body?.push(null);
    if (this.dumping) {
      this.dumping = false;
      this.startNext();
    }
  }

  /** A body reader wants more: read again, unless a pipelined request waits (reading resumes when it starts). */
  onBodyRead(): void {
    if (this.waiting.length === 0 && !this.upgraded && this.socket.isPaused()) this.socket.resume();
  }

  // ---- requests and responses ------------------------------------------------------------------------------

  private startOrQueue(request: DownstreamRequest): void {
    if (this.active !== undefined) {
      this.waiting.push(request);
      this.socket.pause();
      return;
    }
    this.start(request);
  }

  private start(request: DownstreamRequest): void {
    const response = new DownstreamResponse(this, request);
    this.active = response;
    this.requests++;
    const limit = this.options.maxRequestsPerConnection;
    if (limit > 0 && this.requests >= limit) response.keepAlive = false;
    // Envoy answers `Expect: 100-continue` itself and does not forward it.
    const expect = request.headers.expect;
    if (request.versionMinor === 1 && typeof expect === 'string' && CONTINUE.test(expect)) this.socket.write(CONTINUE_RESPONSE, 'latin1');
    this.owner.onRequest(this, request, response);
  }

  /** The next pipelined request, if one waits; reading resumes once none does. */
  private startNext(): void {
    const next = this.waiting.shift();
    if (next === undefined && this.deferredError !== undefined) {
      this.protocolError(this.deferredError);
      return;
    }
    if (this.waiting.length === 0 && this.socket.isPaused() && this.deferredError === undefined) this.socket.resume();
    if (next !== undefined) this.start(next);
  }

  onResponseEnd(response: DownstreamResponse): void {
    if (response.statusCode === 101) {
      // The socket now belongs to the tunnel; the stream lasts until it closes.
      this.upgraded = true;
      return;
    }
    this.active = undefined;
    response.handler?.onDownstreamClose();
    const request = response.request;
    if (!response.keepAlive) {
      this.socket.destroySoon();
      return;
    }
    if (!request.complete) {
      // The rest of the body is read and dropped before the next request, as node:http does.
      this.dumping = true;
      request.body?.destroy();
      if (this.socket.isPaused()) this.socket.resume();
      return;
    }
    this.startNext();
  }

  // ---- connection ------------------------------------------------------------------------------------------

  private protocolError(code: string): void {
    const response = this.active;
    if (response !== undefined && !response.finished) {
      if (!response.request.complete) {
        // The request being answered is itself broken (its body): the stream is reset, as Envoy's.
        this.socket.destroy();
        return;
      }
      // A later pipelined request is malformed: the ones before it are answered first, as Envoy's codec (which
      // parses a request only once the one before it is answered) would, then this one is refused.
      this.deferredError = code;
      this.parsing = undefined;
      this.socket.removeListener('data', onSocketData);
      this.socket.pause();
      return;
    }
    this.deferredError = undefined;
    this.parsing = undefined;
    this.waiting.length = 0;
    this.socket.removeListener('data', onSocketData);
    this.socket.pause();
    this.owner.onProtocolError(this, code);
  }

  onDrain(): void {
    const response = this.active;
    if (response !== undefined && response.waitingDrain) {
      response.waitingDrain = false;
      response.handler?.onDownstreamDrain();
    }
  }

  onTimeout(): void {
    const response = this.active;
    if (response !== undefined && (!response.finished || this.upgraded)) response.handler?.onIdleTimeout();
    else this.owner.onIdleTimeout(this);
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.headersTimer !== undefined) clearTimeout(this.headersTimer);
    const response = this.active;
    const inFlight = response !== undefined && (!response.finished || this.upgraded);
    this.owner.onClose(this, inFlight);
    const request = this.parsing ?? response?.request;
    if (request !== undefined && !request.complete) request.body?.destroy();
    this.active = undefined;
    this.parsing = undefined;
    this.waiting.length = 0;
    if (inFlight) response.handler?.onDownstreamClose();
    unlisten(this.socket, SOCKET_LISTENERS);
    this.parser[kConnection] = undefined;
    this.parser.close();
  }
}

/** Node's rules for repeated request headers (IncomingMessage's). */
const SINGLE_VALUED = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

function requestHeaders(lines: string[]): RequestHeaders {
  const headers: RequestHeaders = {};
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!.toLowerCase();
    const value = lines[i + 1]!;
    const previous = Object.hasOwn(headers, name) ? headers[name] : undefined;
    if (previous === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (typeof previous !== 'string') previous.push(value);
    else if (name === 'cookie') headers[name] = `${previous}; ${value}`;
    else if (!SINGLE_VALUED.has(name)) headers[name] = `${previous}, ${value}`;
  }
  return headers;
}

/** Whether a request head announces a body. */
function announcesBody(headers: RequestHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

// Listeners shared by every connection, finding theirs through the emitter: no closures per connection or request.

function onSocketData(this: ConnectionSocket, data: Buffer): void {
  this[kConnection]?.onData(data);
}

function onSocketDrain(this: ConnectionSocket): void {
  this[kConnection]?.onDrain();
}

function onSocketTimeout(this: ConnectionSocket): void {
  this[kConnection]?.onTimeout();
}

function onSocketError(): void {
  // 'close' follows, and reports the stream in flight as reset.
}

function onSocketClose(this: ConnectionSocket): void {
  this[kConnection]?.onClose();
}

function onHeadersTimeout(connection: Http1ServerConnection): void {
  connection.onHeadersTimeout();
}

function onParserMessageBegin(this: ConnectionParser): void {
  this[kConnection]?.onMessageBegin();
}

function onParserHeaders(this: ConnectionParser, lines: string[], url: string): void {
  this[kConnection]?.onHeaderLines(lines, url);
}

function onParserHeadersComplete(
  this: ConnectionParser,
  _versionMajor: number,
  versionMinor: number,
  lines: string[] | undefined,
  method: number,
  url: string | undefined,
  _statusCode: unknown,
  _statusMessage: unknown,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  this[kConnection]?.onHeadersComplete(versionMinor, lines, method, url, upgrade, keepAlive);
  return 0;
}

function onParserBody(this: ConnectionParser, chunk: Buffer): void {
  this[kConnection]?.onBody(chunk);
}

function onParserMessageComplete(this: ConnectionParser): void {
  this[kConnection]?.onMessageComplete();
}

/** 'data' alone is detached early, once the socket stops carrying HTTP requests (an upgrade, a refused request). */
const SOCKET_LISTENERS: Listeners = [
  ['data', onSocketData],
  ['drain', onSocketDrain],
  ['timeout', onSocketTimeout],
  ['error', onSocketError],
  ['close', onSocketClose],
];

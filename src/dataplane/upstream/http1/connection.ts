/**
 * One upstream HTTP/1.1 connection: writes a request at a time and parses its response with Node's llhttp
 * parser. Request heads are written as one latin1 string; bodies stream with back-pressure, framed by their
 * `content-length` or chunked. Response heads become a header object without the connection-level headers the
 * codec consumed (`connection`, `keep-alive`, `transfer-encoding`).
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { CHUNKED_END, chunkHeader, UNSAFE_FIELD, writeFramed } from '../../http1-wire.js';
import { HTTPParser, type HttpParser } from '../../llhttp.js';
import { listen, type Listeners, unlisten } from '../../../util/listeners.js';
import { readRequestBody, type RequestBodyWriter, stopReadingRequestBody } from '../request-body-reader.js';
import {
  CONNECTION_CLOSED,
  PROTOCOL_ERROR,
  upstreamError,
  type UpstreamHeaders,
  type UpstreamRequestHead,
  type UpstreamStreamController,
  type UpstreamStreamHandler,
} from '../pool-types.js';

/** Envoy's default `max_response_headers_kb` is 60. */
const MAX_HEADER_SIZE = 60 * 1024;
const METHODS_WITH_PAYLOAD = new Set(['POST', 'PUT', 'PATCH']);
const NO_TRAILERS: UpstreamHeaders = Object.freeze({}) as UpstreamHeaders;

/** What the connection asks of the pool that owns it. */
export interface ConnectionOwner {
  /** The response is over and the connection can carry another request. */
  release(connection: Http1Connection): void;
  /** Whether a connection that has carried `requests` requests may carry another. */
  mayReuse(requests: number): boolean;
  /** The connection closed, or left the pool with an upgraded request. */
  remove(connection: Http1Connection): void;
}

/** One request on a connection; also its controller. */
class UpstreamStream implements UpstreamStreamController {
  aborted = false;
  /** No more callbacks: the response ended, failed or was aborted. */
  done = false;
  /** Any byte of the request was written: aborting now spoils the connection. */
  written = false;
  /** The whole request was written: the connection may carry the next one once the response is complete. */
  requestComplete = false;
  /** The final status, once the final head arrived (1xx are skipped). */
  status = 0;
  upgradeHeaders: UpstreamHeaders | undefined;
  body: Readable | undefined;
  /** Body bytes the `content-length` still allows; -1 when chunked. */
  bodyRemaining = -1;

  constructor(
    readonly connection: Http1Connection,
    readonly handler: UpstreamStreamHandler,
    readonly head: UpstreamRequestHead,
  ) {}

  pause(): void {
    if (!this.done) this.connection.socket.pause();
  }

  resume(): void {
    if (!this.done) this.connection.socket.resume();
  }

  abort(reason: Error): void {
    if (this.done) return;
    this.aborted = true;
    this.connection.fail(this, reason);
  }
}

const kConnection = Symbol('portico.http1Connection');
type ConnectionSocket = Socket & { [kConnection]?: Http1Connection };
type ConnectionParser = HttpParser & { [kConnection]?: Http1Connection };

export class Http1Connection implements RequestBodyWriter<UpstreamStream> {
  /** Requests written on this connection. */
  requests = 0;
  /** `performance.now()` when the connection last became idle (the pool's idle timeout). */
  idleSince = 0;
  private readonly parser: ConnectionParser;
  private stream: UpstreamStream | undefined;
  /** Header lines llhttp delivered apart from headers-complete: a long head's first lines, or trailers. */
  private headerLines: string[] | undefined;
  /** The current response's keep-alive verdict (HTTP version and `Connection`). */
  private keepAlive = false;
  /** Set by the parser callbacks, acted on once `execute` returns. */
  private responseComplete = false;
  private unexpected: string | undefined;
  private error: Error | undefined;
  private closed = false;

  constructor(
    private readonly owner: ConnectionOwner,
    readonly socket: Socket,
  ) {
    const parser = new HTTPParser() as ConnectionParser;
    parser.initialize(HTTPParser.RESPONSE, {}, MAX_HEADER_SIZE, 0);
    parser[HTTPParser.kOnHeaders] = onParserHeaders;
    parser[HTTPParser.kOnHeadersComplete] = onParserHeadersComplete;
    parser[HTTPParser.kOnBody] = onParserBody;
    parser[HTTPParser.kOnMessageComplete] = onParserMessageComplete;
    parser[kConnection] = this;
    this.parser = parser;
    (socket as ConnectionSocket)[kConnection] = this;
    listen(socket, SOCKET_LISTENERS);
  }

  /**
   * Sends a request. False when it ended before a byte was written (its handler gave it up in `onRequestStart`,
   * or its head could not be written): the connection is still clean and idle.
   */
  start(head: UpstreamRequestHead, handler: UpstreamStreamHandler): boolean {
    const stream = new UpstreamStream(this, handler, head);
    this.stream = stream;
    handler.onRequestStart(stream);
    if (!stream.done) this.writeRequest(stream);
    if (!stream.written) return false;
    this.requests++;
    return true;
  }

  /** Closes an idle connection (idle timeout, pool closed). */
  close(): void {
    this.socket.destroy();
  }

  /** Ends the stream with an error, once, closing the connection if the request had started on it. */
  fail(stream: UpstreamStream, error: Error): void {
    if (stream.done) return;
    stream.done = true;
    if (this.stream === stream) this.stream = undefined;
    this.detachBody(stream);
    if (stream.written) this.socket.destroy();
    stream.handler.onResponseError(stream, error);
  }

  // ---- request ---------------------------------------------------------------------------------------------

  private writeRequest(stream: UpstreamStream): void {
    const head = stream.head;
    const headers = head.headers;
    if (UNSAFE_FIELD.test(head.path)) return this.fail(stream, upstreamError(PROTOCOL_ERROR, 'invalid character in the request path'));
    let text = head.method + ' ' + head.path + ' HTTP/1.1\r\n';
    let contentLength = -1;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (UNSAFE_FIELD.test(value)) return this.fail(stream, upstreamError(PROTOCOL_ERROR, `invalid character in request header ${name}`));
      if (name === 'content-length') contentLength = Number(value);
      text += name + ': ' + value + '\r\n';
    }
    if (head.upgrade !== undefined) text += 'connection: upgrade\r\nupgrade: ' + head.upgrade + '\r\n';
    const socket = this.socket;
    const body = head.body;
    stream.written = true;
    if (body === null) {
      if (contentLength < 0 && METHODS_WITH_PAYLOAD.has(head.method)) text += 'content-length: 0\r\n';
      socket.write(text + '\r\n', 'latin1');
      stream.requestComplete = true;
    } else if (Buffer.isBuffer(body)) {
      if (contentLength < 0) text += 'content-length: ' + body.length + '\r\n';
      writeFramed(socket, text + '\r\n', body, '');
      stream.requestComplete = true;
    } else {
      if (contentLength < 0) text += 'transfer-encoding: chunked\r\n';
      socket.write(text + '\r\n', 'latin1');
      stream.bodyRemaining = contentLength;
      stream.body = body;
      readRequestBody(body, stream);
    }
  }

  onBodyData(stream: UpstreamStream, chunk: Buffer): void {
    if (stream.done || chunk.length === 0) return;
    const socket = this.socket;
    let flowing: boolean;
    if (stream.bodyRemaining < 0) {
      flowing = writeFramed(socket, chunkHeader(chunk.length), chunk, '\r\n');
    } else {
      stream.bodyRemaining -= chunk.length;
      if (stream.bodyRemaining < 0) return this.fail(stream, upstreamError(PROTOCOL_ERROR, 'request body longer than its content-length'));
      flowing = socket.write(chunk);
    }
    if (!flowing) stream.body!.pause();
  }

  onBodyEnd(stream: UpstreamStream): void {
    if (stream.done) return;
    if (stream.bodyRemaining > 0) return this.fail(stream, upstreamError(PROTOCOL_ERROR, 'request body shorter than its content-length'));
    if (stream.bodyRemaining < 0) {
      const trailers = (stream.body as Readable & { trailers?: Record<string, string | string[] | number | undefined> }).trailers;
      this.socket.write(trailers === undefined ? CHUNKED_END : chunkedEndWithTrailers(trailers), 'latin1');
    }
    stream.requestComplete = true;
    this.detachBody(stream);
  }

  onBodyAborted(stream: UpstreamStream, error: Error | undefined): void {
    if (!stream.done && !stream.requestComplete) this.fail(stream, error ?? upstreamError(CONNECTION_CLOSED, 'request body aborted'));
  }

  onDrain(): void {
    const body = this.stream?.body;
    if (body !== undefined && body.isPaused()) body.resume();
  }

  private detachBody(stream: UpstreamStream): void {
    const body = stream.body;
    if (body === undefined) return;
    stream.body = undefined;
    stopReadingRequestBody(body);
  }

  // ---- response --------------------------------------------------------------------------------------------

  onData(data: Buffer): void {
    const result = this.parser.execute(data);
    if (typeof result !== 'number') {
      this.failConnection(result);
      return;
    }
    const stream = this.stream;
    if (stream?.upgradeHeaders !== undefined) {
      this.handOver(stream, data.subarray(result));
    } else if (this.unexpected !== undefined) {
      this.failConnection(upstreamError(PROTOCOL_ERROR, this.unexpected));
    } else if (this.responseComplete) {
      this.responseComplete = false;
      if (this.keepAlive && this.owner.mayReuse(this.requests)) this.owner.release(this);
      else this.socket.destroy();
    }
  }

  onHeaderLines(lines: string[]): void {
    if (this.headerLines === undefined) this.headerLines = lines;
    else for (const line of lines) this.headerLines.push(line);
  }

  onHeadersComplete(lines: string[] | undefined, statusCode: number, upgrade: boolean, keepAlive: boolean): number {
    if (lines === undefined) {
      lines = this.headerLines ?? [];
      this.headerLines = undefined;
    }
    const stream = this.stream;
    if (stream === undefined) {
      this.unexpected ??= 'response without a request';
      return 1;
    }
    // Informational responses (100 Continue, 103 Early Hints) precede the final one.
    if (statusCode < 200 && statusCode !== 101) return 0;
    if (statusCode === 101 || upgrade) {
      if (statusCode !== 101 || stream.head.upgrade === undefined || stream.handler.onRequestUpgrade === undefined) {
        this.unexpected ??= 'unexpected protocol switch';
        return 1;
      }
      stream.status = 101;
      stream.upgradeHeaders = responseHeaders(lines);
      return 0;
    }
    stream.status = statusCode;
    this.keepAlive = keepAlive;
    stream.handler.onResponseStart(stream, statusCode, responseHeaders(lines));
    return stream.head.method === 'HEAD' ? 1 : 0;
  }

  onBody(chunk: Buffer): void {
    const stream = this.stream;
    if (stream !== undefined && stream.status !== 0) stream.handler.onResponseData(stream, chunk);
  }

  onMessageComplete(): void {
    const stream = this.stream;
    // A 1xx ended (the final response follows), or a 101's head (handed over once execute returns).
    if (stream === undefined || stream.status === 0 || stream.status === 101) return;
    const lines = this.headerLines;
    this.headerLines = undefined;
    this.stream = undefined;
    stream.done = true;
    this.detachBody(stream);
    // A response that came before the whole request was sent leaves the connection unusable.
    if (!stream.requestComplete) this.keepAlive = false;
    this.responseComplete = true;
    // The handler may have paused reading; the next response on this connection must be read.
    if (this.socket.isPaused()) this.socket.resume();
    stream.handler.onResponseEnd(stream, lines === undefined ? NO_TRAILERS : responseHeaders(lines));
  }

  /** The 101 head is parsed: the socket, with any bytes read past the head, now belongs to the handler. */
  private handOver(stream: UpstreamStream, rest: Buffer): void {
    this.stream = undefined;
    stream.done = true;
    this.detachBody(stream);
    const socket = this.socket;
    socket.pause();
    this.detach();
    if (rest.length > 0) socket.unshift(rest);
    stream.handler.onRequestUpgrade!(stream, 101, stream.upgradeHeaders!, socket);
  }

  // ---- connection ------------------------------------------------------------------------------------------

  private failConnection(error: Error & { code?: string }): void {
    const stream = this.stream;
    this.socket.destroy();
    if (stream !== undefined) this.fail(stream, error);
  }

  onEnd(): void {
    // A response delimited by the connection's end completes here; any other is cut short.
    if (this.stream !== undefined) this.parser.finish();
    this.responseComplete = false;
    const stream = this.stream;
    if (stream !== undefined) this.fail(stream, upstreamError(CONNECTION_CLOSED, 'upstream closed the connection'));
    this.socket.destroy();
  }

  onError(error: Error): void {
    this.error = error;
  }

  onClose(): void {
    const stream = this.stream;
    if (stream !== undefined) this.fail(stream, this.error ?? upstreamError(CONNECTION_CLOSED, 'upstream connection closed'));
    this.detach();
  }

  /** Stops listening to the socket and leaves the pool (closed, or handed over with an upgrade). */
  private detach(): void {
    if (this.closed) return;
    this.closed = true;
    const socket = this.socket;
    unlisten(socket, SOCKET_LISTENERS);
    (socket as ConnectionSocket)[kConnection] = undefined;
    this.parser[kConnection] = undefined;
    // Not from inside the parser's own callbacks: close and upgrade hand-over both run after execute returned.
    this.parser.close();
    this.owner.remove(this);
  }
}

/** The last chunk of a chunked body with its trailers; fields with unsafe characters are left out. */
function chunkedEndWithTrailers(trailers: Record<string, string | string[] | number | undefined>): string {
  let text = '0\r\n';
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [String(value)]) if (!UNSAFE_FIELD.test(v)) text += name + ': ' + v + '\r\n';
  }
  return text + '\r\n';
}

/** Lower-case names; repeated headers become arrays; the headers the codec itself consumed are left out. */
function responseHeaders(lines: string[]): UpstreamHeaders {
  const headers: UpstreamHeaders = {};
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!.toLowerCase();
    if (name === 'connection' || name === 'keep-alive' || name === 'transfer-encoding') continue;
    const value = lines[i + 1]!;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (typeof previous === 'string') headers[name] = [previous, value];
    else previous.push(value);
  }
  return headers;
}

// Listeners shared by every connection, finding theirs through the emitter: no closures per connection or request.

function onSocketData(this: ConnectionSocket, data: Buffer): void {
  this[kConnection]?.onData(data);
}

function onSocketEnd(this: ConnectionSocket): void {
  this[kConnection]?.onEnd();
}

function onSocketError(this: ConnectionSocket, error: Error): void {
  this[kConnection]?.onError(error);
}

function onSocketClose(this: ConnectionSocket): void {
  this[kConnection]?.onClose();
}

function onSocketDrain(this: ConnectionSocket): void {
  this[kConnection]?.onDrain();
}

function onParserHeaders(this: ConnectionParser, lines: string[]): void {
  this[kConnection]?.onHeaderLines(lines);
}

function onParserHeadersComplete(
  this: ConnectionParser,
  _versionMajor: number,
  _versionMinor: number,
  lines: string[] | undefined,
  _method: unknown,
  _url: unknown,
  statusCode: number,
  _statusMessage: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  return this[kConnection]?.onHeadersComplete(lines, statusCode, upgrade, keepAlive) ?? 1;
}

function onParserBody(this: ConnectionParser, chunk: Buffer): void {
  this[kConnection]?.onBody(chunk);
}

function onParserMessageComplete(this: ConnectionParser): void {
  this[kConnection]?.onMessageComplete();
}

const SOCKET_LISTENERS: Listeners = [
  ['data', onSocketData],
  ['end', onSocketEnd],
  ['error', onSocketError],
  ['close', onSocketClose],
  ['drain', onSocketDrain],
];

/**
 * The downstream HTTP/2 codec: one Http2ServerConnection per accepted connection runs a node:http2 server
 * session on the socket (h2c with prior knowledge, or h2 negotiated by ALPN on an already terminated TLS socket).
 * Each stream becomes a CodecRequest whose body is the stream itself, and a CodecResponse written through the
 * stream: nghttp2 does the framing, flow control and HPACK.
 */
import http2, { constants, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Duplex } from 'node:stream';
import { listen, type Listeners } from '../../../util/listeners.js';
import type { HeaderMap } from '../../router/header-mutation.js';
import type { CodecRequest, CodecResponse, CodecStreamHandler, RequestHeaders } from '../codec.js';

export interface Http2ConnectionOptions {
  /** The SETTINGS this side announces (max_concurrent_streams, windows, header list size). */
  settings: http2.Settings;
  /** The connection's receive window (SETTINGS only carry the streams'). */
  initialConnectionWindowSize: number;
  /** Connection idle timeout: no stream open for this long closes the connection; 0 disables. */
  idleTimeoutMs: number;
}

/** What a connection asks of its connection manager. */
export interface Http2ConnectionOwner {
  onRequest(connection: Http2ServerConnection, request: Http2Request, response: Http2Response): void;
  /**
   * The session failed on the peer's bytes (a bad preface, a frame nghttp2 refused); `flood` when the peer made
   * it queue more control frames than it may (PING or SETTINGS acknowledgements it does not read).
   */
  onHttp2ProtocolError(connection: Http2ServerConnection, flood: boolean): void;
  onIdleTimeout(connection: Http2ServerConnection): void;
  /** A stream the client reset before its response was complete (`http2.rx_reset`). */
  onHttp2StreamReset(connection: Http2ServerConnection): void;
  /** The session closed; `activeRequest` when a stream was still in flight. */
  onClose(connection: Http2ServerConnection, activeRequest: boolean): void;
}

/**
 * Rapid reset (CVE-2023-44487): a client opening and resetting streams makes the proxy start upstream requests
 * it never finishes. More resets than this within the window closes the connection.
 */
const MAX_RESETS = 100;
const RESET_WINDOW_MS = 10_000;

/** nghttp2's NGHTTP2_ERR_FLOODED, as node reports it: its outbound queue of control frames passed its limit. */
const FLOODED = /^Flooding was detected/;

/** Hop-by-hop headers HTTP/2 forbids (node refuses to send them). */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);
const CONTINUE = /^100-continue$/i;

export class Http2Request implements CodecRequest {
  readonly versionMinor = 1;
  readonly protocol = 'HTTP/2';
  readonly upgrade = false;
  readonly upgradeHead = undefined;
  trailers: RequestHeaders | undefined;
  complete: boolean;

  constructor(
    readonly socket: Socket,
    readonly method: string,
    readonly url: string,
    readonly headers: RequestHeaders,
    readonly headerCount: number,
    readonly body: ServerHttp2Stream | undefined,
  ) {
    this.complete = body === undefined;
  }
}

export class Http2Response implements CodecResponse {
  handler: CodecStreamHandler | undefined;
  headersSent = false;
  finished = false;
  /** A write returned false: the handler hears of the next drain. */
  waitingDrain = false;
  /** The head, kept from `writeHead` until the first body bytes or `end`. */
  private head: http2.OutgoingHttpHeaders | undefined;
  private trailers: HeaderMap | undefined;
  private noBody = false;
  /** The proxy reset the stream: its close is not the client's reset. */
  resetLocally = false;

  constructor(
    readonly connection: Http2ServerConnection,
    readonly stream: ServerHttp2Stream,
    readonly request: Http2Request,
  ) {}

  writeHead(status: number, headers: HeaderMap): void {
    if (this.headersSent) return;
    this.headersSent = true;
    const head: http2.OutgoingHttpHeaders = { ':status': status };
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined && !CONNECTION_HEADERS.has(name)) head[name] = value;
    }
    this.noBody = this.request.method === 'HEAD' || status === 204 || status === 304;
    this.head = head;
  }

  /** Sends the head; unless the response ends with it, trailers (maybe none) end it once the body has gone. */
  private respond(endStream: boolean): void {
    const head = this.head;
    if (head === undefined) return;
    this.head = undefined;
    if (this.stream.destroyed) return;
    if (endStream) this.stream.respond(head, { endStream: true });
    else this.stream.respond(head, { waitForTrailers: true });
  }

  write(chunk: Buffer): boolean {
    if (this.finished || this.noBody || chunk.length === 0 || this.stream.destroyed) return true;
    this.respond(false);
    const ok = this.stream.write(chunk);
    if (!ok) this.waitingDrain = true;
    return ok;
  }

  addTrailers(trailers: HeaderMap): void {
    this.trailers = trailers;
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.respond(this.noBody || this.trailers === undefined);
    if (!this.stream.destroyed) this.stream.end();
    this.connection.onResponseEnd(this);
  }

  /** 'wantTrailers': the body is out; an empty set ends the stream with an empty DATA frame. */
  sendTrailers(): void {
    const trailers: http2.OutgoingHttpHeaders = {};
    const source = this.trailers;
    if (source !== undefined) for (const name in source) if (source[name] !== undefined) trailers[name] = source[name];
    this.stream.sendTrailers(trailers);
  }

  /** RST_STREAM: the connection and its other streams carry on. */
  destroy(): void {
    this.resetLocally = true;
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  setTimeout(ms: number): void {
    this.stream.setTimeout(ms);
  }
}

const kConnection = Symbol('portico.http2ServerConnection');
const kResponse = Symbol('portico.http2Response');
type ConnectionSession = ServerHttp2Session & { [kConnection]?: Http2ServerConnection };
type ResponseStream = ServerHttp2Stream & { [kResponse]?: Http2Response };

export class Http2ServerConnection {
  readonly openedAt = performance.now();
  private readonly session: ConnectionSession;
  /** Streams whose response has not finished. */
  private active = 0;
  private resets = 0;
  private resetWindowStart = 0;
  /** The peer ended the connection (GOAWAY, or the socket closed under the session) rather than the proxy. */
  closedByPeer = true;
  private closed = false;

  constructor(
    private readonly owner: Http2ConnectionOwner,
    readonly socket: Socket,
    options: Http2ConnectionOptions,
  ) {
    // A session reads the socket's handle itself, first taking the bytes already read and put back (the preface a
    // codec_type AUTO connection was recognised by) from the socket's buffer. It never reads a TLSSocket the
    // listener layered on an accepted socket: that one is read as a stream (a JS stream socket, far slower).
    const streamed = (socket as TLSSocket).encrypted === true;
    const transport = streamed ? Duplex.from({ readable: socket, writable: socket }) : socket;
    const session = http2.performServerHandshake(transport, { settings: options.settings }) as ConnectionSession;
    session[kConnection] = this;
    listen(session, SESSION_LISTENERS);
    if (options.idleTimeoutMs > 0) session.setTimeout(options.idleTimeoutMs);
    session.setLocalWindowSize(options.initialConnectionWindowSize);
    this.session = session;
  }

  /** No stream in flight. */
  get idle(): boolean {
    return this.active === 0;
  }

  onStream(stream: ServerHttp2Stream, raw: IncomingHttpHeaders, flags: number): void {
    const headers: RequestHeaders = {};
    let count = 0;
    for (const name in raw) {
      if (name.charCodeAt(0) === 58 /* : */) continue;
      headers[name] = raw[name];
      count++;
    }
    const authority = raw[':authority'];
    if (authority !== undefined) headers.host = authority;
    const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const request = new Http2Request(this.socket, raw[':method'] ?? 'GET', raw[':path'] ?? '', headers, count, endStream ? undefined : stream);
    const response = new Http2Response(this, stream, request);
    (stream as ResponseStream)[kResponse] = response;
    listen(stream, STREAM_LISTENERS);
    this.active++;
    // As the HTTP/1.1 codec, the proxy answers `Expect: 100-continue` itself.
    const expect = headers.expect;
    if (typeof expect === 'string' && CONTINUE.test(expect)) stream.additionalHeaders({ ':status': 100 });
    this.owner.onRequest(this, request, response);
  }

  onResponseEnd(response: Http2Response): void {
    this.streamDone(response);
    // A request body nobody reads any more is read and dropped, so that the client's stream can end.
    if (!response.request.complete) response.stream.resume();
  }

  /** The stream closed: before its response finished, it was reset (by the client, unless the proxy did). */
  onStreamClose(response: Http2Response): void {
    if (response.finished) return;
    if (!response.resetLocally) {
      this.owner.onHttp2StreamReset(this);
      this.countReset();
    }
    this.streamDone(response);
  }

  private streamDone(response: Http2Response): void {
    const handler = response.handler;
    if (handler === undefined) return;
    response.handler = undefined;
    this.active--;
    handler.onDownstreamClose();
  }

  private countReset(): void {
    const now = performance.now();
    if (now - this.resetWindowStart > RESET_WINDOW_MS) {
      this.resetWindowStart = now;
      this.resets = 0;
    }
    if (++this.resets > MAX_RESETS && !this.session.destroyed) {
      this.closedByPeer = false;
      this.session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
      // Not from inside the stream's close: nghttp2 is still in its callback for it.
      setImmediate(destroySession, this.session);
    }
  }

  onStreamEnd(response: Http2Response): void {
    response.request.complete = true;
  }

  onSessionTimeout(): void {
    if (this.active === 0) this.owner.onIdleTimeout(this);
  }

  onSessionError(err: Error): void {
    this.owner.onHttp2ProtocolError(this, FLOODED.test(err.message));
  }

  /** GOAWAY: streams in flight finish, no new ones start; the session closes once they are done. */
  drain(): void {
    this.closedByPeer = false;
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }

  destroy(): void {
    this.closedByPeer = false;
    this.session.destroy();
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.onClose(this, this.active > 0);
  }
}

function destroySession(session: ConnectionSession): void {
  session.destroy();
}

// Listeners shared by every session and stream, finding theirs through the emitter: no closures per request.

function onSessionStream(this: ConnectionSession, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  this[kConnection]?.onStream(stream, headers, flags);
}

function onSessionTimeout(this: ConnectionSession): void {
  this[kConnection]?.onSessionTimeout();
}

function onSessionError(this: ConnectionSession, err: Error): void {
  // 'close' follows.
  this[kConnection]?.onSessionError(err);
}

function onSessionClose(this: ConnectionSession): void {
  this[kConnection]?.onClose();
}

function onStreamTrailers(this: ResponseStream, trailers: IncomingHttpHeaders): void {
  const response = this[kResponse];
  if (response !== undefined) response.request.trailers = trailers;
}

function onStreamEnd(this: ResponseStream): void {
  const response = this[kResponse];
  if (response !== undefined) response.connection.onStreamEnd(response);
}

function onStreamDrain(this: ResponseStream): void {
  const response = this[kResponse];
  if (response !== undefined && response.waitingDrain) {
    response.waitingDrain = false;
    response.handler?.onDownstreamDrain();
  }
}

function onStreamWantTrailers(this: ResponseStream): void {
  this[kResponse]?.sendTrailers();
}

function onStreamTimeout(this: ResponseStream): void {
  this[kResponse]?.handler?.onIdleTimeout();
}

function onStreamError(): void {
  // A reset stream errors, then closes: 'close' reports it.
}

function onStreamClose(this: ResponseStream): void {
  const response = this[kResponse];
  if (response !== undefined) response.connection.onStreamClose(response);
}

const SESSION_LISTENERS: Listeners = [
  ['stream', onSessionStream],
  ['timeout', onSessionTimeout],
  ['error', onSessionError],
  ['close', onSessionClose],
];

const STREAM_LISTENERS: Listeners = [
  ['trailers', onStreamTrailers],
  ['end', onStreamEnd],
  ['drain', onStreamDrain],
  ['wantTrailers', onStreamWantTrailers],
  ['timeout', onStreamTimeout],
  ['error', onStreamError],
  ['close', onStreamClose],
];

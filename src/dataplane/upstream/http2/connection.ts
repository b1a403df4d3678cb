/**
 * One upstream HTTP/2 connection: a `node:http2` client session on a socket the host opened (plain for h2c, TLS
 * with ALPN h2), carrying many requests at once as streams. HTTP/1-only connection headers are left out of request
 * heads, `host` becomes `:authority`; response heads lose their pseudo-headers. Failures carry codes that
 * `classifyUpstreamFailure` reads: PROTOCOL_ERROR for what the codec refused, anything else a reset.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { listen, type Listeners, unlisten } from '../../../util/listeners.js';
import { readRequestBody, type RequestBodyWriter, stopReadingRequestBody } from '../request-body-reader.js';
import type { Http2Settings } from '../cluster-settings.js';
import { markClosedLocally } from '../host.js';
import {
  CONNECTION_CLOSED,
  PROTOCOL_ERROR,
  STREAM_RESET,
  type RequestBodyWithTrailers,
  upstreamError,
  type UpstreamHeaders,
  type UpstreamRequestHead,
  type UpstreamStreamController,
  type UpstreamStreamHandler,
} from '../pool-types.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;


/** What `session.request` throws for a session that can no longer open streams. */
const SESSION_STATE_ERRORS = new Set(['ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_OUT_OF_STREAMS']);

/** RFC 9113 §8.2.2: HTTP/1 connection-specific headers, which HTTP/2 forbids (`te` is allowed as `trailers`). */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const NO_TRAILERS: UpstreamHeaders = Object.freeze({}) as UpstreamHeaders;
const NO_REQUEST_TRAILERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** What the connection tells the pool that owns it. */
export interface Http2ConnectionOwner {
  /** The peer's SETTINGS arrived (`first`, or changed): the connection's stream limit may have moved. */
  onSettings(connection: Http2Connection, first: boolean): void;
  /** A stream ended: the connection has room for another, or is done if it drains. */
  onStreamClosed(connection: Http2Connection): void;
  /**
   * The connection takes no new streams: GOAWAY from the upstream (`goaway`; the streams below its last stream id
   * finish), or the session failed and is closing.
   */
  onDraining(connection: Http2Connection, goaway: boolean): void;
  /** The session closed; `error` is why, when it failed. */
  remove(connection: Http2Connection, error: Error & { code?: string }): void;
  /** Counts for the cluster's `http2.*` stats. */
  countReset(received: boolean): void;
  countKeepaliveTimeout(): void;
  countStreams(delta: number): void;
}

/** One request on the connection; also its controller. */
class Http2UpstreamStream implements UpstreamStreamController {
  aborted = false;
  /** No more callbacks: the response ended, failed or was aborted. */
  done = false;
  /** The final status, once the final head arrived. */
  status = 0;
  trailers: UpstreamHeaders = NO_TRAILERS;
  body: RequestBodyWithTrailers | undefined;
  /** Set for a stream Portico reset itself, so that its close is not counted as the peer's reset. */
  resetLocally = false;
  error: (Error & { code?: string }) | undefined;

  /** Opened once the handler has taken the stream (`onRequestStart`). */
  request: ClientHttp2Stream | undefined;

  constructor(
    readonly connection: Http2Connection,
    readonly handler: UpstreamStreamHandler,
  ) {}

  pause(): void {
    if (!this.done) this.request?.pause();
  }

  resume(): void {
    if (!this.done) this.request?.resume();
  }

  abort(reason: Error): void {
    if (this.done) return;
    this.aborted = true;
    this.connection.fail(this, reason);
  }
}

const kConnection = Symbol('portico.http2Connection');
const kStream = Symbol('portico.http2Stream');
type ConnectionSession = ClientHttp2Session & { [kConnection]?: Http2Connection };
type StreamSource = ClientHttp2Stream & { [kStream]?: Http2UpstreamStream };

export class Http2Connection implements RequestBodyWriter<Http2UpstreamStream> {
  /** Streams open on the connection. */
  active = 0;
  /** Streams ever started (`max_requests_per_connection`). */
  started = 0;
  /** Streams the connection may carry at once: the cluster's limit and the peer's. */
  limit = 0;
  /** The peer's SETTINGS arrived: until then it is not known to speak HTTP/2. */
  ready = false;
  /** No new streams: GOAWAY came, or the connection carried its `max_requests_per_connection`. */
  draining = false;
  /** A GOAWAY came (peers may send several: only the first counts). */
  goaway = false;
  /** In the pool's list of connections that can take a stream. */
  listed = false;
  /** `performance.now()` when the last stream closed (the pool's idle timeout). */
  idleSince = 0;
  private readonly session: ConnectionSession;
  private error: (Error & { code?: string }) | undefined;
  /** `connection_keepalive`: the PING interval, and the wait for the ACK of the PING in flight. */
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly onPingAck = (): void => this.pingAcked();

  constructor(
    private readonly owner: Http2ConnectionOwner,
    private readonly socket: Socket,
    authority: string,
    private readonly scheme: string,
    private readonly settings: Http2Settings,
  ) {
    this.limit = settings.maxConcurrentStreams;
    const session: ConnectionSession = http2.connect(authority, {
      createConnection: () => socket,
      settings: { enablePush: false, initialWindowSize: settings.initialStreamWindowSize },
    });
    session[kConnection] = this;
    listen(session, SESSION_LISTENERS);
    this.session = session;
  }

  hasCapacity(): boolean {
    return this.ready && !this.draining && this.active < this.limit;
  }

  /**
   * Starts a stream. False when it ended before anything was sent (its handler gave it up in `onRequestStart`, or
   * the codec refused its head): the connection's capacity is untouched.
   */
  start(head: UpstreamRequestHead, handler: UpstreamStreamHandler, maxStreams: number): boolean {
    const stream = new Http2UpstreamStream(this, handler);
    handler.onRequestStart(stream);
    if (stream.done) return false;
    const body = head.body;
    const streamed = body !== null && !Buffer.isBuffer(body);
    let request: ClientHttp2Stream;
    try {
      request = this.session.request(requestHeaders(head, this.scheme), { endStream: body === null, waitForTrailers: streamed });
    } catch (err) {
      // The session may be closing (its GOAWAY or error has not reached the pool yet); else the head is invalid.
      const { code, message } = err as Error & { code?: string };
      this.fail(stream, upstreamError(SESSION_STATE_ERRORS.has(code ?? '') ? CONNECTION_CLOSED : PROTOCOL_ERROR, message));
      return false;
    }
    stream.request = request;
    (request as StreamSource)[kStream] = stream;
    listen(request, STREAM_LISTENERS);
    this.active++;
    this.started++;
    if (maxStreams > 0 && this.started >= maxStreams) this.draining = true;
    this.owner.countStreams(1);
    if (Buffer.isBuffer(body)) request.end(body);
    else if (streamed) {
      stream.body = body;
      readRequestBody(body, stream);
    }
    return true;
  }

  /** Ends the stream with an error, once, resetting it (CANCEL) if it is still open. */
  fail(stream: Http2UpstreamStream, error: Error): void {
    if (stream.done) return;
    stream.done = true;
    this.detachBody(stream);
    const request = stream.request;
    if (request !== undefined && !request.closed) {
      stream.resetLocally = true;
      this.owner.countReset(false);
      request.close(NGHTTP2_CANCEL);
    }
    stream.handler.onResponseError(stream, error);
  }

  /** Closes the connection once its streams are done (drain, idle timeout, pool closed). */
  close(): void {
    this.draining = true;
    markClosedLocally(this.socket);
    this.session.close();
  }

  // ---- request body ----------------------------------------------------------------------------------------

  onBodyData(stream: Http2UpstreamStream, chunk: Buffer): void {
    if (!stream.done && !stream.request!.write(chunk)) stream.body!.pause();
  }

  onBodyEnd(stream: Http2UpstreamStream): void {
    // The trailers are read when the stream asks for them (`wantTrailers`), after the last DATA frame.
    if (!stream.done) stream.request!.end();
  }

  onBodyAborted(stream: Http2UpstreamStream, error: Error | undefined): void {
    if (stream.body !== undefined && !stream.body.readableEnded) this.fail(stream, error ?? upstreamError(CONNECTION_CLOSED, 'request body aborted'));
  }

  onWantTrailers(stream: Http2UpstreamStream): void {
    // Without trailers this is an empty trailing HEADERS frame, as node:http2 sends when nobody listens.
    stream.request!.sendTrailers(stream.body?.trailers ?? NO_REQUEST_TRAILERS);
    this.detachBody(stream);
  }

  onRequestDrain(stream: Http2UpstreamStream): void {
    const body = stream.body;
    if (body !== undefined && body.isPaused()) body.resume();
  }

  private detachBody(stream: Http2UpstreamStream): void {
    const body = stream.body;
    if (body === undefined) return;
    stream.body = undefined;
    stopReadingRequestBody(body);
  }

  // ---- response --------------------------------------------------------------------------------------------

  onResponse(stream: Http2UpstreamStream, rawHeaders: string[]): void {
    if (stream.done) return;
    const status = Number(rawHeaders[1]);
    stream.status = status;
    stream.handler.onResponseStart(stream, status, responseHeaders(rawHeaders));
  }

  onTrailers(stream: Http2UpstreamStream, rawHeaders: string[]): void {
    stream.trailers = responseHeaders(rawHeaders);
  }

  onEnd(stream: Http2UpstreamStream): void {
    if (stream.done || stream.status === 0) return;
    stream.done = true;
    // The response is complete before the request: the upstream wants no more of it.
    if (stream.body !== undefined) {
      this.detachBody(stream);
      stream.resetLocally = true;
      stream.request!.close(NGHTTP2_NO_ERROR);
    }
    stream.handler.onResponseEnd(stream, stream.trailers);
  }

  onStreamError(stream: Http2UpstreamStream, error: Error & { code?: string }): void {
    stream.error ??= error;
  }

  /** The stream is gone: a response that did not end failed, with the peer's reset or the connection's error. */
  onStreamClose(stream: Http2UpstreamStream): void {
    const request = stream.request!;
    unlisten(request, STREAM_LISTENERS);
    (request as StreamSource)[kStream] = undefined;
    this.active--;
    this.owner.countStreams(-1);
    if (!stream.done) {
      // node:http2 reports the peer's RST_STREAM (and streams a GOAWAY refused) as ERR_HTTP2_STREAM_ERROR.
      if (!stream.resetLocally && stream.error?.code === 'ERR_HTTP2_STREAM_ERROR') this.owner.countReset(true);
      this.fail(stream, streamFailure(stream.error ?? this.error, request.rstCode ?? NGHTTP2_NO_ERROR));
    }
    if (this.active === 0) this.idleSince = performance.now();
    this.owner.onStreamClosed(this);
  }

  // ---- session ---------------------------------------------------------------------------------------------

  onConnect(): void {
    this.session.setLocalWindowSize(this.settings.initialConnectionWindowSize);
  }

  onRemoteSettings(): void {
    const first = !this.ready;
    this.ready = true;
    const interval = this.settings.keepaliveIntervalMs;
    if (first && interval > 0) {
      this.keepaliveTimer = setInterval(onKeepaliveInterval, interval, this);
      this.keepaliveTimer.unref();
    }
    this.limit = Math.min(this.settings.maxConcurrentStreams, this.session.remoteSettings.maxConcurrentStreams ?? Infinity);
    this.owner.onSettings(this, first);
  }

  sendKeepalive(): void {
    const session = this.session;
    // A closing session (its close event still to come) takes no PING.
    if (this.pingTimer !== undefined || session.closed || session.destroyed) return;
    // The ACK callback reports a failed or cancelled PING too; the session's own close handles those.
    if (!session.ping(this.onPingAck)) return;
    this.pingTimer = setTimeout(onPingTimeout, this.settings.keepaliveTimeoutMs, this);
    this.pingTimer.unref();
  }

  private pingAcked(): void {
    clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
  }

  onPingTimeout(): void {
    this.pingTimer = undefined;
    this.owner.countKeepaliveTimeout();
    this.session.destroy(upstreamError(CONNECTION_CLOSED, 'upstream did not answer a keepalive PING in time'));
  }

  onGoaway(): void {
    if (this.goaway) return;
    // node:http2 closes the session itself: streams above the last stream id close as REFUSED_STREAM.
    this.goaway = true;
    this.draining = true;
    this.owner.onDraining(this, true);
  }

  onSessionError(error: Error & { code?: string }): void {
    this.error ??= codecFailure(error);
    if (this.draining) return;
    this.draining = true;
    this.owner.onDraining(this, false);
  }

  onSessionClose(): void {
    const session = this.session;
    unlisten(session, SESSION_LISTENERS);
    session[kConnection] = undefined;
    clearInterval(this.keepaliveTimer);
    clearTimeout(this.pingTimer);
    this.draining = true;
    this.owner.remove(this, this.error ?? upstreamError(CONNECTION_CLOSED, 'upstream connection closed'));
  }
}

function requestHeaders(head: UpstreamRequestHead, scheme: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ':method': head.method, ':path': head.path, ':scheme': scheme };
  const fields = head.headers;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name === 'host') headers[':authority'] = value;
    else if (CONNECTION_HEADERS.has(name) || (name === 'te' && value !== 'trailers')) continue;
    else {
      const previous = headers[name];
      if (previous === undefined) headers[name] = value;
      else if (Array.isArray(previous)) previous.push(value);
      else headers[name] = [String(previous), value];
    }
  }
  return headers;
}

/** Lower-case names (HTTP/2 sends no others), repeated headers as arrays, pseudo-headers left out. */
function responseHeaders(raw: string[]): UpstreamHeaders {
  const headers: UpstreamHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 0x3a) continue;
    const value = raw[i + 1]!;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (typeof previous === 'string') headers[name] = [previous, value];
    else previous.push(value);
  }
  return headers;
}

/** node:http2's own errors for what the peer sent wrongly (nghttp2's protocol errors, invalid headers). */
function codecFailure(error: Error & { code?: string }): Error & { code?: string } {
  const code = error.code ?? '';
  if (code === 'ERR_HTTP2_ERROR' || (code.startsWith('ERR_HTTP2_INVALID') && !SESSION_STATE_ERRORS.has(code))) return upstreamError(PROTOCOL_ERROR, error.message);
  return error;
}

function streamFailure(error: (Error & { code?: string }) | undefined, rstCode: number): Error & { code?: string } {
  if (error !== undefined) {
    const failure = codecFailure(error);
    if (failure !== error || error.code !== 'ERR_HTTP2_STREAM_ERROR') return failure;
  }
  const reason = rstCode === NGHTTP2_REFUSED_STREAM ? 'refused the stream' : `reset the stream (code ${rstCode})`;
  return upstreamError(STREAM_RESET, `upstream ${reason}`);
}

function onKeepaliveInterval(connection: Http2Connection): void {
  connection.sendKeepalive();
}

function onPingTimeout(connection: Http2Connection): void {
  connection.onPingTimeout();
}

// Listeners shared by every connection and stream, finding theirs through the emitter: no closures per request.

function onSessionConnect(this: ConnectionSession): void {
  this[kConnection]?.onConnect();
}

function onSessionRemoteSettings(this: ConnectionSession): void {
  this[kConnection]?.onRemoteSettings();
}

function onSessionGoaway(this: ConnectionSession): void {
  this[kConnection]?.onGoaway();
}

function onSessionError(this: ConnectionSession, error: Error): void {
  this[kConnection]?.onSessionError(error);
}

function onSessionClose(this: ConnectionSession): void {
  this[kConnection]?.onSessionClose();
}

function onStreamResponse(this: StreamSource, _headers: unknown, _flags: number, rawHeaders: string[]): void {
  const stream = this[kStream];
  stream?.connection.onResponse(stream, rawHeaders);
}

function onStreamData(this: StreamSource, chunk: Buffer): void {
  const stream = this[kStream];
  if (stream !== undefined && !stream.done && stream.status !== 0) stream.handler.onResponseData(stream, chunk);
}

function onStreamTrailers(this: StreamSource, _headers: unknown, _flags: number, rawHeaders: string[]): void {
  const stream = this[kStream];
  stream?.connection.onTrailers(stream, rawHeaders);
}

function onStreamEnd(this: StreamSource): void {
  const stream = this[kStream];
  stream?.connection.onEnd(stream);
}

function onStreamError(this: StreamSource, error: Error): void {
  const stream = this[kStream];
  stream?.connection.onStreamError(stream, error);
}

function onStreamClose(this: StreamSource): void {
  const stream = this[kStream];
  stream?.connection.onStreamClose(stream);
}

function onStreamWantTrailers(this: StreamSource): void {
  const stream = this[kStream];
  stream?.connection.onWantTrailers(stream);
}

function onStreamDrain(this: StreamSource): void {
  const stream = this[kStream];
  stream?.connection.onRequestDrain(stream);
}

const SESSION_LISTENERS: Listeners = [
  ['connect', onSessionConnect],
  ['remoteSettings', onSessionRemoteSettings],
  ['goaway', onSessionGoaway],
  ['error', onSessionError],
  ['close', onSessionClose],
];

const STREAM_LISTENERS: Listeners = [
  ['response', onStreamResponse],
  ['data', onStreamData],
  ['trailers', onStreamTrailers],
  ['end', onStreamEnd],
  ['error', onStreamError],
  ['close', onStreamClose],
  ['wantTrailers', onStreamWantTrailers],
  ['drain', onStreamDrain],
];

/**
 * The contract between an upstream connection pool (HTTP/1.1 or HTTP/2) and the requests it carries: the router
 * dispatches on it without knowing which protocol the host speaks.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** A request as it goes upstream. */
export interface UpstreamRequestHead {
  method: string;
  path: string;
  /** `[name, value, ...]` with lower-case names, hop-by-hop headers already removed. */
  headers: readonly string[];
  /**
   * A Buffer is sent with its length; a stream with its `content-length` header, else chunked (HTTP/1.1). A stream
   * may carry request trailers (`RequestBodyWithTrailers`) once it has ended; HTTP/2 sends them.
   */
  body: Buffer | Readable | null;
  /** An upgrade token (`websocket`): the request asks to switch protocols. */
  upgrade: string | undefined;
}

/** A request body stream that has ended with trailers sets them here before its `end` event. */
export type RequestBodyWithTrailers = Readable & { trailers?: Record<string, string> };

/** Handed to a request's handler to steer it once it has a connection. */
export interface UpstreamStreamController {
  /** The request was aborted: no further callbacks come. */
  readonly aborted: boolean;
  /** Stops reading the response (back-pressure from the client). */
  pause(): void;
  resume(): void;
  /** Gives the request up: its connection is closed and `onResponseError` reports `reason` at once. */
  abort(reason: Error): void;
}

/**
 * What a request tells its owner. After `onResponseEnd`, `onRequestUpgrade` or `onResponseError` nothing more
 * comes; one of them always comes, also for a request aborted while it waited for a connection.
 */
export interface UpstreamStreamHandler {
  /** The request has a connection and is about to be written; aborting here leaves the connection unused. */
  onRequestStart(controller: UpstreamStreamController): void;
  /** The final response head (informational 1xx responses are skipped). */
  onResponseStart(controller: UpstreamStreamController, statusCode: number, headers: UpstreamHeaders): void;
  onResponseData(controller: UpstreamStreamController, chunk: Buffer): void;
  /** `trailers` is empty (and shared) when the response had none. */
  onResponseEnd(controller: UpstreamStreamController, trailers: UpstreamHeaders): void;
  /** A 101 to an upgrade request: the connection leaves the pool and belongs to the handler. */
  onRequestUpgrade?(controller: UpstreamStreamController, statusCode: number, headers: UpstreamHeaders, socket: Socket): void;
  onResponseError(controller: UpstreamStreamController, error: Error & { code?: string }): void;
}

/** The code of an error for a response a codec could not accept (beyond llhttp's own HPE_*), or an HTTP/2 protocol error. */
export const PROTOCOL_ERROR = 'UPSTREAM_PROTOCOL_ERROR';
/** The code of a stream the upstream reset (HTTP/2 RST_STREAM, or refused when it went away): a remote reset. */
export const STREAM_RESET = 'UPSTREAM_STREAM_RESET';
/** The code of an error for a connection that closed before the response was complete. */
export const CONNECTION_CLOSED = 'UPSTREAM_CONNECTION_CLOSED';

export function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** What a host's connection pool offers, whichever protocol it speaks. */
export interface UpstreamConnectionPool {
  dispatch(head: UpstreamRequestHead, handler: UpstreamStreamHandler): void;
  /** A request dispatched now would start on an open connection at once, without waiting for one. */
  hasFreeStream(): boolean;
  /** Closes idle connections now and the others once their requests are over; resolves when all are closed. */
  close(): Promise<void>;
}

export type ConnectError = Error & { code?: string };

/** Opens connections for a pool, and says whether the cluster's circuit breaker allows another. */
export interface ConnectionSource {
  openConnection(callback: (...result: [null, Socket] | [ConnectError, null]) => void): void;
  mayOpenConnection(): boolean;
}

/** The controller handed with a failure to a request that never had a connection. */
export const UNCONNECTED: UpstreamStreamController = { aborted: true, pause() {}, resume() {}, abort() {} };

/** The contract between the upstream HTTP/1.1 connection pool and the requests it carries. */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** A request as it goes upstream. */
export interface UpstreamRequestHead {
  method: string;
  path: string;
  /** `[name, value, ...]` with lower-case names, hop-by-hop headers already removed. */
  headers: readonly string[];
  /** A Buffer is sent with its length; a stream with its `content-length` header, else chunked. */
  body: Buffer | Readable | null;
  /** An upgrade token (`websocket`): the request asks to switch protocols. */
  upgrade: string | undefined;
}

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

/** The code of an error for a response the HTTP/1.1 codec could not accept beyond llhttp's own (HPE_*). */
export const PROTOCOL_ERROR = 'UPSTREAM_PROTOCOL_ERROR';
/** The code of an error for a connection that closed before the response was complete. */
export const CONNECTION_CLOSED = 'UPSTREAM_CONNECTION_CLOSED';

export function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/**
 * The downstream codec interface: what a codec (HTTP/1.1 in src/dataplane/http/http1/, HTTP/2 in http2/) hands the connection
 * manager for each request, and what the connection manager calls to answer it. Nothing above a codec knows which
 * protocol carried a stream: the request head is a header object with `:authority` as `host`, the body a
 * Readable with back-pressure (pausing it stops reading the connection), trailers a header object set before the
 * body ends; the response is written as a head, body chunks and trailers.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { HeaderMap } from '../router/header-mutation.js';

export type RequestHeaders = Record<string, string | string[] | undefined>;

/** One request as its codec decoded it. */
export interface CodecRequest {
  /** The connection it arrived on (addresses, TLS state). */
  readonly socket: Socket;
  readonly method: string;
  /** The request target as sent: a path, or an absolute URL. */
  readonly url: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and HTTP/2, whose semantics are HTTP/1.1's). */
  readonly versionMinor: number;
  /** The protocol access logs name, when not the HTTP/1.x that `versionMinor` says. */
  readonly protocol?: string;
  readonly headers: RequestHeaders;
  /** Header fields in the head, before repeated ones were joined. */
  readonly headerCount: number;
  /** The body, when the request announced one. */
  readonly body: Readable | undefined;
  /** The body's trailers, once it has ended with some. */
  readonly trailers: RequestHeaders | undefined;
  /** The whole request, body included, has arrived. */
  readonly complete: boolean;
  /** An upgrade request (`Upgrade:`), and the bytes that followed its head, which belong to the new protocol. */
  readonly upgrade: boolean;
  readonly upgradeHead: Buffer | undefined;
}

/** The response to one request. */
export interface CodecResponse {
  /** Told of the stream's events by the codec. */
  handler: CodecStreamHandler | undefined;
  readonly headersSent: boolean;
  /** The whole response was handed to the connection. */
  readonly finished: boolean;
  writeHead(status: number, headers: HeaderMap): void;
  /** False when the connection's buffer is full: the handler's onDownstreamDrain says when to write again. */
  write(chunk: Buffer): boolean;
  addTrailers(trailers: HeaderMap): void;
  end(): void;
  /** Resets the stream (on HTTP/1.1 that closes the connection; on HTTP/2 it is a RST_STREAM). */
  destroy(): void;
  /** The stream idle timeout while this stream is in flight (0 disables). */
  setTimeout(ms: number): void;
}

/** What a codec tells the stream a response belongs to. */
export interface CodecStreamHandler {
  /** The connection took the data a `write` returned false for. */
  onDownstreamDrain(): void;
  /** The stream idle timeout expired. */
  onIdleTimeout(): void;
  /** The response is complete (`finished`), or the stream was reset; once, and last. */
  onDownstreamClose(): void;
}

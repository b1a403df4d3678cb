/**
 * How an upstream connection (HTTP/1.1 or HTTP/2) reads the request body it sends: shared listener functions on
 * the body stream that find the request they belong to through a symbol, so that sending a body allocates no
 * closures.
 */
import type { Readable } from 'node:stream';
import { listen, type Listeners, unlisten } from '../../util/listeners.js';

/** The connection that writes a request's body. */
export interface RequestBodyWriter<Stream> {
  onBodyData(stream: Stream, chunk: Buffer): void;
  onBodyEnd(stream: Stream): void;
  /** The body stream closed or failed before its end. */
  onBodyAborted(stream: Stream, error: Error | undefined): void;
}

/** A request whose body its connection writes. */
interface BodySendingStream {
  readonly connection: RequestBodyWriter<unknown>;
}

const kRequest = Symbol('portico.bodyRequest');
type BodySource = Readable & { [kRequest]?: BodySendingStream };

/** Hands `body`'s chunks, end and failure to `stream.connection` until stopReadingRequestBody. */
export function readRequestBody<Stream extends { readonly connection: RequestBodyWriter<Stream> }>(body: Readable, stream: Stream): void {
  (body as BodySource)[kRequest] = stream as unknown as BodySendingStream;
  listen(body, BODY_LISTENERS);
}

export function stopReadingRequestBody(body: Readable): void {
  (body as BodySource)[kRequest] = undefined;
  unlisten(body, BODY_LISTENERS);
}

function onBodyData(this: BodySource, chunk: Buffer): void {
  const stream = this[kRequest];
  stream?.connection.onBodyData(stream, chunk);
}

function onBodyEnd(this: BodySource): void {
  const stream = this[kRequest];
  stream?.connection.onBodyEnd(stream);
}

function onBodyClose(this: BodySource): void {
  const stream = this[kRequest];
  stream?.connection.onBodyAborted(stream, undefined);
}

function onBodyError(this: BodySource, error: Error): void {
  const stream = this[kRequest];
  stream?.connection.onBodyAborted(stream, error);
}

const BODY_LISTENERS: Listeners = [
  ['data', onBodyData],
  ['end', onBodyEnd],
  ['close', onBodyClose],
  ['error', onBodyError],
];

/**
 * A request body on its way through the router: handed to each attempt as a stream with back-pressure, and,
 * for a request that may be retried, kept (up to the buffer limit) so that a retry can send it again.
 */
import { Readable } from 'node:stream';
import type { HeaderMap } from './header-mutation.js';

/** What the body tells the router it belongs to. */
export interface RequestBodyOwner {
  /** The body outgrew the retry buffer limit: it can no longer be replayed. */
  onRequestBodyOverflow(): void;
  /** The attempt in flight does not take the body as fast as it comes: the downstream should pause ... */
  onRequestBodyFull(): void;
  /** ... and it may go on. */
  onRequestBodyDrained(): void;
}

/** Envoy's default connection buffer limit (`per_connection_buffer_limit_bytes`), which bounds retry buffering. */
export const DEFAULT_RETRY_BUFFER_LIMIT = 1024 * 1024;

/** The body an attempt reads; `trailers` are set before its end when the request had any. */
export type AttemptBodyStream = Readable & { trailers?: HeaderMap };

export class RequestBody {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The whole body has arrived. */
  complete = false;
  private trailers: HeaderMap | undefined;
  /** Nothing is kept: no retry (limit 0), or over the limit. */
  private overflowed: boolean;
  /** The body stream of the attempt in flight, if it is still reading. */
  private sink: AttemptBody | undefined;
  /** The downstream was asked to pause for the sink. */
  private full = false;
  private joined: Buffer | undefined;

  constructor(
    /** Bytes kept for retries; 0 when the request is not retried. */
    private readonly limit: number,
    private readonly owner: RequestBodyOwner,
  ) {
    this.overflowed = limit === 0;
  }

  /**
   * The body for a new attempt: the kept bytes (a Buffer once complete), followed by whatever is still to come.
   * The previous attempt's stream, if any, gets nothing more.
   */
  forAttempt(): Buffer | Readable {
    if (this.complete && !this.overflowed && this.trailers === undefined) return (this.joined ??= Buffer.concat(this.chunks, this.size));
    const sink = new AttemptBody(this);
    for (const chunk of this.chunks) sink.push(chunk);
    if (this.complete) this.endSink(sink);
    this.sink = sink;
    return sink;
  }

  /** The attempt in flight ended: stop feeding it, and let the downstream flow again. */
  detach(): void {
    if (this.sink === undefined) return;
    this.sink = undefined;
    this.onSinkRead();
  }

  onData(chunk: Buffer): void {
    if (!this.overflowed) {
      if (this.size + chunk.length > this.limit) {
        this.overflowed = true;
        this.chunks = [];
        this.owner.onRequestBodyOverflow();
      } else {
        this.chunks.push(chunk);
        this.size += chunk.length;
      }
    }
    // While the body is kept anyway, reading it all lets a retry send it whole; past the limit, the attempt's
    // pace sets the downstream's.
    const sink = this.sink;
    if (sink !== undefined && !sink.destroyed && !sink.push(chunk) && this.overflowed && !this.full) {
      this.full = true;
      this.owner.onRequestBodyFull();
    }
  }

  onEnd(trailers: HeaderMap | undefined): void {
    this.complete = true;
    this.trailers = trailers;
    const sink = this.sink;
    if (sink !== undefined && !sink.destroyed) this.endSink(sink);
  }

  private endSink(sink: AttemptBody): void {
    if (this.trailers !== undefined) sink.trailers = this.trailers;
    sink.push(null);
  }

  onSinkRead(): void {
    if (!this.full) return;
    this.full = false;
    this.owner.onRequestBodyDrained();
  }
}

/** One attempt's view of the body: pushed by RequestBody, and asking for more when read. */
class AttemptBody extends Readable {
  trailers: HeaderMap | undefined;

  constructor(private readonly source: RequestBody) {
    super();
  }

  override _read(): void {
    this.source.onSinkRead();
  }
}

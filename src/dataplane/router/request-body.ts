/**
 * The request body of a request that may be retried: read from the downstream request once, kept (up to the
 * buffer limit) so that a retry can send it again, and streamed to the attempt in flight with back-pressure.
 * Requests that cannot be retried never get one: the upstream connection reads the downstream request directly.
 */
import { Readable } from 'node:stream';

/** What the body tells the request it belongs to. */
export interface RequestBodyOwner {
  onRequestBodyData(chunk: Buffer): void;
  /** The body outgrew the buffer limit: it can no longer be replayed. */
  onRequestBodyOverflow(): void;
}

const kBody = Symbol('portico.requestBody');
type BufferedRequest = Readable & { [kBody]?: RequestBody };

/** Envoy's default connection buffer limit (`per_connection_buffer_limit_bytes`), which bounds retry buffering. */
export const DEFAULT_RETRY_BUFFER_LIMIT = 1024 * 1024;

export class RequestBody {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The whole body has been read. */
  complete = false;
  /** Over the limit: kept chunks were dropped and the body can no longer be replayed. */
  overflowed = false;
  /** The body stream of the attempt in flight, if it is still reading. */
  private sink: AttemptBody | undefined;
  private joined: Buffer | undefined;

  constructor(
    private readonly req: Readable,
    private readonly limit: number,
    private readonly owner: RequestBodyOwner,
  ) {
    (req as BufferedRequest)[kBody] = this;
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
  }

  /**
   * The body for a new attempt: the buffered bytes (a Buffer once complete), followed by whatever is still to
   * come. The previous attempt's stream, if any, gets nothing more.
   */
  forAttempt(): Buffer | Readable {
    if (this.complete && !this.overflowed) return (this.joined ??= Buffer.concat(this.chunks, this.size));
    const sink = new AttemptBody(this.req);
    for (const chunk of this.chunks) sink.push(chunk);
    if (this.complete) sink.push(null);
    this.sink = sink;
    return sink;
  }

  /** The attempt in flight ended: stop feeding it, and let the downstream request flow into the buffer again. */
  detach(): void {
    if (this.sink === undefined) return;
    this.sink = undefined;
    this.req.resume();
  }

  onData(chunk: Buffer): void {
    this.owner.onRequestBodyData(chunk);
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
    if (sink !== undefined && !sink.destroyed && !sink.push(chunk) && this.overflowed) this.req.pause();
  }

  onEnd(): void {
    this.complete = true;
    const sink = this.sink;
    if (sink !== undefined && !sink.destroyed) sink.push(null);
  }
}

/** One attempt's view of the body: pushed by RequestBody, and asking for more (resuming the request) when read. */
class AttemptBody extends Readable {
  constructor(private readonly source: Readable) {
    super();
  }

  override _read(): void {
    this.source.resume();
  }
}

function onBodyData(this: BufferedRequest, chunk: Buffer): void {
  this[kBody]?.onData(chunk);
}

function onBodyEnd(this: BufferedRequest): void {
  this[kBody]?.onEnd();
}

/**
 * The iteration of one stream's HTTP filters, in one direction (Envoy's FilterManager): headers, body chunks and
 * trailers walk the filters in order, and stop at a filter that says so. Per filter it keeps why iteration
 * stopped there and what was buffered meanwhile; `resume` (the filter's continueDecoding/continueEncoding)
 * passes on, in order, the headers that waited, the buffered body and the trailers.
 *
 * Rules, as Envoy's:
 * - a filter stopped with StopIteration (headers) or a data stop still sees the body chunks and trailers that
 *   arrive; answering Continue to one of them resumes iteration;
 * - a filter stopped with StopAll* sees nothing more until it resumes: what arrives is buffered for it;
 * - buffered bytes count against the connection's buffer limit: over it, a buffering stop fails the stream
 *   (the owner answers 413 or 500) and a watermark stop pauses the sender until the buffer is passed on.
 */
import type { HeaderMap } from '../router/header-mutation.js';
import { FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, type StreamFilter } from './filter.js';

const enum Stop {
  None,
  /** StopIteration on headers, or a data/trailers stop: the filter still sees what arrives. */
  Single,
  /** StopAllIteration*: what arrives is buffered without calling the filter. */
  All,
}

const EMPTY = Buffer.alloc(0);

/** Where a direction's iteration ends, and what it tells its stream. */
export interface FilterIterationOwner<Head> {
  /** The headers passed the last filter. */
  onHeadersPassed(head: Head, endStream: boolean): void;
  onDataPassed(chunk: Buffer, endStream: boolean): void;
  onTrailersPassed(trailers: HeaderMap): void;
  /** The buffered bytes outgrew the limit under a buffering stop. */
  onBufferOverflow(): void;
  /** Under a watermark stop: stop, then resume, sending. */
  onBufferAboveLimit(): void;
  onBufferBelowLimit(): void;
  /** No callback may run any more: the stream was answered or reset. */
  readonly stopped: boolean;
}

/** Calls one direction's callbacks of a filter. */
export interface FilterCalls<Head> {
  headers(filter: StreamFilter, head: Head, endStream: boolean): FilterHeadersStatus | undefined;
  data(filter: StreamFilter, chunk: Buffer, endStream: boolean): FilterDataStatus | undefined;
  trailers(filter: StreamFilter, trailers: HeaderMap): FilterTrailersStatus | undefined;
}

export const DECODE_CALLS: FilterCalls<never> = {
  headers: (f, head, end) => f.decodeHeaders?.(head, end),
  data: (f, chunk, end) => f.decodeData?.(chunk, end),
  trailers: (f, trailers) => f.decodeTrailers?.(trailers),
};

export const ENCODE_CALLS: FilterCalls<never> = {
  headers: (f, head, end) => f.encodeHeaders?.(head, end),
  data: (f, chunk, end) => f.encodeData?.(chunk, end),
  trailers: (f, trailers) => f.encodeTrailers?.(trailers),
};

/** What waits at a filter that stopped iteration. */
interface StopState {
  stop: Stop;
  watermark: boolean;
  headersWaiting: boolean;
  chunks: Buffer[] | undefined;
  endWaiting: boolean;
  trailers: HeaderMap | undefined;
}

export class FilterIteration<Head> {
  private head: Head | undefined;
  private headersEndStream = false;
  /** Per position, once a filter stopped there; allocated with the first stop. */
  private states: (StopState | undefined)[] | undefined;
  private bufferedBytes = 0;
  private aboveLimit = false;
  /** The position whose callback is running, and whether it asked to resume from inside it. */
  private current = -1;
  private resumeRequested = false;
  /** With a terminal filter last (the decoder chain's router), the iteration ends there: it never stops. */
  private readonly open: number;

  constructor(
    private readonly filters: readonly StreamFilter[],
    private readonly calls: FilterCalls<Head>,
    private readonly owner: FilterIterationOwner<Head>,
    private readonly bufferLimit: number,
    terminalLast: boolean,
  ) {
    this.open = terminalLast ? filters.length - 1 : filters.length;
  }

  private state(p: number): StopState {
    const states = (this.states ??= new Array<StopState | undefined>(this.filters.length));
    return (states[p] ??= { stop: Stop.None, watermark: false, headersWaiting: false, chunks: undefined, endWaiting: false, trailers: undefined });
  }

  private stopAt(p: number): Stop {
    return this.states?.[p]?.stop ?? Stop.None;
  }

  /** The body buffered at `position`, joined; undefined when none. */
  buffered(position: number): Buffer | undefined {
    const chunks = this.states?.[position]?.chunks;
    if (chunks === undefined || chunks.length === 0) return undefined;
    if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks));
    return chunks[0];
  }

  setBuffered(position: number, body: Buffer): void {
    const before = this.buffered(position)?.length ?? 0;
    this.state(position).chunks = [body];
    this.bufferedBytes += body.length - before;
  }

  headers(from: number, head: Head, endStream: boolean): void {
    this.head = head;
    this.headersEndStream = endStream;
    this.walkHeaders(from);
  }

  private walkHeaders(from: number): boolean {
    const filters = this.filters;
    const head = this.head!;
    for (let p = from; p < filters.length; p++) {
      const status = this.call(p, 0, head, undefined, this.headersEndStream);
      if (this.owner.stopped || p >= this.open) return false;
      if (status !== undefined && status !== FilterHeadersStatus.Continue && !this.takeResume()) {
        const state = this.state(p);
        state.stop = status === FilterHeadersStatus.StopIteration ? Stop.Single : Stop.All;
        state.watermark = status === FilterHeadersStatus.StopAllIterationAndWatermark;
        state.headersWaiting = true;
        return false;
      }
    }
    this.owner.onHeadersPassed(head, this.headersEndStream);
    return true;
  }

  data(from: number, chunk: Buffer, endStream: boolean): void {
    const filters = this.filters;
    for (let p = from; p < filters.length; p++) {
      const stop = this.stopAt(p);
      if (stop === Stop.All) {
        this.buffer(p, chunk, endStream);
        return;
      }
      const status = this.call(p, 1, undefined, chunk, endStream) as FilterDataStatus | undefined;
      if (this.owner.stopped || p >= this.open) return;
      if (status === undefined || status === FilterDataStatus.Continue || this.takeResume()) {
        if (stop === Stop.None) continue;
        // A stopped filter that continues on this chunk passes it on after what it held.
        this.buffer(p, chunk, endStream);
        this.resume(p);
        return;
      }
      const state = this.state(p);
      state.stop = Stop.Single;
      if (status === FilterDataStatus.StopIterationNoBuffer) {
        if (endStream) state.endWaiting = true;
        return;
      }
      state.watermark = status === FilterDataStatus.StopIterationAndWatermark;
      this.buffer(p, chunk, endStream);
      return;
    }
    this.owner.onDataPassed(chunk, endStream);
  }

  trailers(from: number, trailers: HeaderMap): void {
    const filters = this.filters;
    for (let p = from; p < filters.length; p++) {
      const stop = this.stopAt(p);
      if (stop === Stop.All) {
        this.state(p).trailers = trailers;
        return;
      }
      const status = this.call(p, 2, undefined, undefined, false, trailers) as FilterTrailersStatus | undefined;
      if (this.owner.stopped || p >= this.open) return;
      if (status === undefined || status === FilterTrailersStatus.Continue || this.takeResume()) {
        if (stop === Stop.None) continue;
        this.state(p).trailers = trailers;
        this.resume(p);
        return;
      }
      const state = this.state(p);
      state.stop = Stop.Single;
      state.trailers = trailers;
      return;
    }
    this.owner.onTrailersPassed(trailers);
  }

  /** The filter at `position` continues: what waited at it goes on, in order. */
  resume(position: number): void {
    if (position === this.current) {
      // From inside its own callback: acted on once the callback returns.
      this.resumeRequested = true;
      return;
    }
    const state = this.states?.[position];
    if (state === undefined || state.stop === Stop.None || this.owner.stopped) return;
    state.stop = Stop.None;
    state.watermark = false;
    const next = position + 1;
    if (state.headersWaiting) {
      state.headersWaiting = false;
      if (!this.walkHeaders(next) && this.owner.stopped) return;
    }
    const { chunks, trailers, endWaiting } = state;
    state.chunks = state.trailers = undefined;
    state.endWaiting = false;
    if (chunks !== undefined || (endWaiting && trailers === undefined)) {
      const body = chunks === undefined || chunks.length === 0 ? EMPTY : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      this.bufferedBytes -= body.length;
      this.checkBelowLimit();
      this.data(next, body, endWaiting && trailers === undefined);
      if (this.owner.stopped) return;
    }
    if (trailers !== undefined) this.trailers(next, trailers);
  }

  private call(p: number, kind: 0 | 1 | 2, head: Head | undefined, chunk: Buffer | undefined, endStream: boolean, trailers?: HeaderMap): number | undefined {
    const previous = this.current;
    this.current = p;
    this.resumeRequested = false;
    try {
      const filter = this.filters[p]!;
      if (kind === 0) return this.calls.headers(filter, head!, endStream);
      if (kind === 1) return this.calls.data(filter, chunk!, endStream);
      return this.calls.trailers(filter, trailers!);
    } finally {
      this.current = previous;
    }
  }

  /** Whether the filter that just answered "stop" asked to resume from inside its callback. */
  private takeResume(): boolean {
    const requested = this.resumeRequested;
    this.resumeRequested = false;
    return requested;
  }

  private buffer(p: number, chunk: Buffer, endStream: boolean): void {
    const state = this.state(p);
    if (endStream) state.endWaiting = true;
    const chunks = (state.chunks ??= []);
    if (chunk.length === 0) return;
    chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    if (this.bufferedBytes <= this.bufferLimit) return;
    if (state.watermark) {
      if (!this.aboveLimit) {
        this.aboveLimit = true;
        this.owner.onBufferAboveLimit();
      }
    } else {
      this.owner.onBufferOverflow();
    }
  }

  private checkBelowLimit(): void {
    if (this.aboveLimit && this.bufferedBytes <= this.bufferLimit) {
      this.aboveLimit = false;
      this.owner.onBufferBelowLimit();
    }
  }
}

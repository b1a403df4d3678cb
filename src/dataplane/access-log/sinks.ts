/**
 * Where access log lines go. Lines are queued in memory and written asynchronously in batches, one write in flight
 * per destination, so logging never blocks a request. Files are written as Envoy writes them: when 64 KiB are
 * queued, or when the flush interval (`--file-flush-interval-msec`, 10 s by default) has passed since the first
 * line waiting; so a busy proxy makes one write per 64 KiB, not one per event-loop turn. stdout and stderr are
 * written every event-loop turn instead, as people watch consoles. Every logger writing to the same file shares
 * one sink; files are opened with O_APPEND, so several worker processes can append to the same file without
 * tearing each other's batches.
 */
import { appendFileSync, closeSync, openSync, write as fsWrite } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Writable } from 'node:stream';
import type { ConfigError } from '../../config/errors.js';
import type { Logger } from '../../util/logger.js';

/** Queued text at which a batch is written at once rather than when its flush is due. */
const BATCH_BYTES = 64 * 1024;
/** Envoy's default `--file-flush-interval-msec`. */
export const DEFAULT_FILE_FLUSH_INTERVAL_MS = 10_000;
const NO_BYTES = Buffer.alloc(0);

export interface AccessLogSink {
  write(line: string): void;
}

function flushScheduled(sink: BatchingSink): void {
  sink.scheduled = false;
  sink.flush();
}

/** The batching shared by files and standard streams; subclasses say when a flush is due and write one batch at a time. */
abstract class BatchingSink implements AccessLogSink {
  private pending = '';
  protected writing = false;
  /** A flush is due later (see schedule()) for the lines queued. */
  scheduled = false;
  /** A flush came while a write was in flight: the write's completion writes everything queued. */
  private flushRequested = false;
  /** Set by close(): later lines (from connections torn down at shutdown) are written synchronously. */
  protected closed = false;
  private idleWaiters: Array<() => void> = [];
  private failing = false;

  constructor(
    readonly name: string,
    protected readonly log: Logger,
  ) {}

  /** The hot path: append, and at most start a write or arm the flush when none is armed. */
  write(line: string): void {
    if (this.closed) {
      this.writeNow(line);
      return;
    }
    this.pending += line;
    if (this.pending.length >= BATCH_BYTES) {
      // While a write is in flight, its completion writes the full batch.
      if (!this.writing) this.writeQueued();
    } else if (!this.scheduled) {
      this.scheduled = true;
      this.schedule();
    }
  }

  /** Writes everything queued now, or as soon as the write in flight completes. */
  flush(): void {
    if (this.writing) {
      this.flushRequested = true;
    } else if (this.pending === '') {
      this.settle();
    } else {
      this.writeQueued();
    }
  }

  /** Resolves once everything queued so far has been handed to the operating system. */
  idle(): Promise<void> {
    if (!this.writing && this.pending === '') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.flush();
    return done;
  }

  async close(): Promise<void> {
    // Lines can come while waiting: stop only when nothing is queued or being written at this very moment.
    while (this.writing || this.pending !== '') await this.idle();
    this.closed = true;
    this.release();
  }

  private writeQueued(): void {
    const batch = this.pending;
    this.pending = '';
    this.writing = true;
    this.writeBatch(batch);
  }

  /** Called by subclasses when a batch has been written (or has failed, with the error). */
  protected written(err: Error | null | undefined): void {
    this.writing = false;
    if (err) {
      // One message per run of failures, not one per batch.
      if (!this.failing) this.log.error(`access log ${this.name}: write failed, lines dropped: ${err.message}`);
      this.failing = true;
    } else {
      this.failing = false;
    }
    this.beforeNextBatch();
    if (this.pending === '') {
      this.flushRequested = false;
      this.settle();
    } else if (this.flushRequested || this.idleWaiters.length > 0 || this.pending.length >= BATCH_BYTES) {
      this.flushRequested = false;
      this.writeQueued();
    }
    // Otherwise the lines queued during the write wait for the flush write() armed for them.
  }

  private settle(): void {
    const waiters = this.idleWaiters;
    if (waiters.length === 0) return;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Arms the flush (a call to flushScheduled) of the lines just queued; called only when none is armed. */
  protected abstract schedule(): void;
  protected abstract writeBatch(batch: string): void;
  /** Synchronous write, used once the sink is closed. */
  protected abstract writeNow(line: string): void;
  /** Runs between batches, when no write is in flight. */
  protected beforeNextBatch(): void {}
  /** Releases the destination once everything is written. */
  protected release(): void {}
}

class FileSink extends BatchingSink {
  private fd = -1;
  private buffer = NO_BYTES;
  private offset = 0;
  private reopenWaiters: Array<() => void> | undefined;
  /** The flush timer, created once and re-armed (refresh()) for each batch; unref'd, as the data plane's close() flushes. */
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly onWrite = (err: NodeJS.ErrnoException | null, bytes: number): void => this.onWritten(err, bytes);

  constructor(
    readonly path: string,
    /** The config field that first named this file, for errors. */
    readonly configPath: string,
    log: Logger,
    private readonly flushIntervalMs: number,
  ) {
    super(path, log);
  }

  protected schedule(): void {
    if (this.flushTimer === undefined) {
      this.flushTimer = setTimeout(flushScheduled, this.flushIntervalMs, this);
      this.flushTimer.unref();
    } else {
      this.flushTimer.refresh();
    }
  }

  open(errors: ConfigError[]): void {
    try {
      this.fd = openSync(this.path, 'a');
    } catch (err) {
      errors.push({ code: 'io_error', path: this.configPath, message: `cannot open access log file ${this.path}: ${(err as Error).message}` });
    }
  }

  /** Reopens the file between batches (after log rotation moved it away); resolves once done. */
  reopen(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const done = new Promise<void>((resolve) => (this.reopenWaiters ??= []).push(resolve));
    // Between batches: at once when no write is in flight, else when it completes (written()).
    if (!this.writing) this.beforeNextBatch();
    return done;
  }

  protected override beforeNextBatch(): void {
    const waiters = this.reopenWaiters;
    if (waiters === undefined) return;
    this.reopenWaiters = undefined;
    try {
      const fd = openSync(this.path, 'a');
      if (this.fd >= 0) closeSync(this.fd);
      this.fd = fd;
    } catch (err) {
      this.log.error(`access log ${this.path}: reopening failed, still writing to the old file: ${(err as Error).message}`);
    }
    for (const resolve of waiters) resolve();
  }

  protected writeBatch(batch: string): void {
    this.buffer = Buffer.from(batch);
    this.offset = 0;
    fsWrite(this.fd, this.buffer, 0, this.buffer.length, null, this.onWrite);
  }

  private onWritten(err: NodeJS.ErrnoException | null, bytes: number): void {
    if (!err && this.offset + bytes < this.buffer.length) {
      // A short write: the rest goes next, before any newer batch.
      this.offset += bytes;
      fsWrite(this.fd, this.buffer, this.offset, this.buffer.length - this.offset, null, this.onWrite);
      return;
    }
    this.buffer = NO_BYTES;
    this.written(err);
  }

  protected writeNow(line: string): void {
    try {
      appendFileSync(this.path, line);
    } catch (err) {
      this.log.error(`access log ${this.path}: write failed, line dropped: ${(err as Error).message}`);
    }
  }

  protected override release(): void {
    clearTimeout(this.flushTimer);
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * stdout or stderr: Node's stream does the writing (pipes, files and terminals alike), batched here once per
 * event-loop turn rather than buffered for seconds like files, as people watch consoles.
 */
class StreamSink extends BatchingSink {
  private readonly onWrite = (err: Error | null | undefined): void => this.written(err);

  constructor(
    name: string,
    private readonly stream: Writable,
    log: Logger,
  ) {
    super(name, log);
  }

  protected schedule(): void {
    setImmediate(flushScheduled, this);
  }

  protected writeBatch(batch: string): void {
    this.stream.write(batch, this.onWrite);
  }

  protected writeNow(line: string): void {
    this.stream.write(line);
  }
}

/**
 * The access log destinations of one data plane. Compiling a configuration only registers them; `open()` opens
 * the files (so `portico validate` touches nothing), `close()` writes out everything queued.
 */
export class AccessLogSinks {
  private readonly files = new Map<string, FileSink>();
  private stdoutSink: StreamSink | undefined;
  private stderrSink: StreamSink | undefined;

  constructor(
    private readonly log: Logger,
    /** How long a file's first queued line waits at most before its batch is written (`--file-flush-interval-msec`). */
    private readonly fileFlushIntervalMs = DEFAULT_FILE_FLUSH_INTERVAL_MS,
  ) {}

  stdout(): AccessLogSink {
    return (this.stdoutSink ??= new StreamSink('stdout', process.stdout, this.log));
  }

  stderr(): AccessLogSink {
    return (this.stderrSink ??= new StreamSink('stderr', process.stderr, this.log));
  }

  /** The sink of a file (shared by every logger naming the same file); `/dev/stdout` and `/dev/stderr` are the streams. */
  file(path: string, configPath: string): AccessLogSink {
    if (path === '/dev/stdout') return this.stdout();
    if (path === '/dev/stderr') return this.stderr();
    const absolute = resolvePath(path);
    let sink = this.files.get(absolute);
    if (sink === undefined) {
      sink = new FileSink(absolute, configPath, this.log, this.fileFlushIntervalMs);
      this.files.set(absolute, sink);
    }
    return sink;
  }

  /** Opens every file; a file that cannot be opened for appending is a configuration error at its path. */
  open(errors: ConfigError[]): void {
    for (const sink of this.files.values()) sink.open(errors);
  }

  /** Reopens every file (`POST /reopen_logs`, after log rotation); lines queued meanwhile go to the new files. */
  async reopen(): Promise<void> {
    await Promise.all([...this.files.values()].map((sink) => sink.reopen()));
  }

  /** Writes out everything queued and closes the files. */
  async close(): Promise<void> {
    await Promise.all([...this.sinks()].map((sink) => sink.close()));
  }

  private *sinks(): Iterable<BatchingSink> {
    yield* this.files.values();
    if (this.stdoutSink) yield this.stdoutSink;
    if (this.stderrSink) yield this.stderrSink;
  }
}

/**
 * The primary's side of the process model: N worker processes (node:cluster, so they share the listening sockets,
 * handed out round robin) serve the same configuration. The pool restarts a worker that dies, counts it, and keeps
 * the counters the dead worker had pushed so that summed counters never go backwards.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { ListenerStatus } from '../dataplane/status.js';
import { mergeSnapshots } from '../stats/render.js';
import { emptySnapshot, type StatsSnapshot } from '../stats/store.js';
import type { Logger } from '../util/logger.js';
import type { FromWorker, ToWorker, WorkerOperation, WorkerOperations } from './messages.js';
import { PrimaryBuckets } from './shared-buckets.js';

const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));
/** A worker busy serving answers the admin later than this: its last pushed stats are used instead. */
const REQUEST_TIMEOUT_MS = 2000;
/** A configuration update waits for its clusters to warm (DNS, JWKS fetches) before it answers. */
const UPDATE_TIMEOUT_MS = 60_000;
const RESTART_BACKOFF_MAX_MS = 5000;

interface Slot {
  index: number;
  worker: Worker | undefined;
  /** It serves (it said ready): a configuration update goes to it, not to a worker still starting. */
  ready: boolean;
  /** The stats it pushed last (every stats flush). */
  lastSnapshot: StatsSnapshot | undefined;
  restartDelayMs: number;
}

interface PendingRequest {
  resolve(result: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface WorkerPoolOptions {
  /** The bootstrap document, already validated: what workers start with until update() replaces it. */
  config: unknown;
  concurrency: number;
  statsPushMs: number;
  /** The runtime's admin-layer overrides of the moment, given to each worker as it starts. */
  runtimeOverrides: () => Record<string, string>;
  /** The primary's logger; workers start at its level of the moment. */
  log: Logger;
  /** `--file-flush-interval-msec`, for the workers' access log files. */
  fileFlushIntervalMs: number;
  /** `--drain-time-s`: how long the connections of listeners and filter chains that an update retires get. */
  drainTimeMs: number;
}

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, PendingRequest>();
  private nextRequestId = 1;
  private stopping = false;
  /** Counters and histograms of workers that died. */
  private retired: StatsSnapshot = emptySnapshot();
  /** The rate limit buckets the workers lease tokens from; they outlive any one worker. */
  private readonly buckets = new PrimaryBuckets();
  /** Workers that died and were replaced (`server.worker_restarts`). */
  restarts = 0;
  /** The listeners as the first worker bound them. */
  listeners: ListenerStatus[] = [];
  /** The bootstrap document in force, which a worker started or restarted now is given. */
  private config: unknown;

  constructor(private readonly options: WorkerPoolOptions) {
    this.config = options.config;
    this.slots = Array.from({ length: options.concurrency }, (_, index) => ({
      index,
      worker: undefined,
      ready: false,
      lastSnapshot: undefined,
      restartDelayMs: 100,
    }));
    cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.setupPrimary({ exec: WORKER_ENTRY, args: [] });
  }

  /** Starts every worker; rejects (after stopping the others) when one cannot serve the configuration. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.slots.map((slot) => this.fork(slot)));
    } catch (err) {
      await this.shutdown(0);
      throw err;
    }
  }

  get liveWorkers(): number {
    return this.slots.filter((s) => s.worker !== undefined).length;
  }

  private fork(slot: Slot): Promise<void> {
    const worker = cluster.fork({ PORTICO_WORKER_INDEX: String(slot.index) });
    slot.worker = worker;
    slot.ready = false;
    let startedWith = this.config;
    // A message sent to a worker that just died fails (EPIPE, channel closed) as an 'error' event: 'exit' handles the death.
    worker.on('error', (err) => this.options.log.debug(`worker ${slot.index}: ${err.message}`));
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'hello': {
            startedWith = this.config;
            const start: ToWorker = {
              type: 'start',
              config: startedWith,
              logLevel: this.options.log.level,
              statsPushMs: this.options.statsPushMs,
              runtimeOverrides: this.options.runtimeOverrides(),
              fileFlushIntervalMs: this.options.fileFlushIntervalMs,
              sharedBuckets: this.options.concurrency > 1,
            };
            worker.send(start);
            return;
          }
          case 'ready':
            ready = true;
            slot.ready = true;
            slot.restartDelayMs = 100;
            if (slot.index === 0 || this.listeners.length === 0) this.listeners = message.listeners;
            // An update that came while it was starting went to the others only: it catches up.
            if (startedWith !== this.config) void this.updateSlots([slot]);
            resolve();
            return;
          case 'failed':
            reject(new Error(message.message));
            return;
          case 'stats':
            slot.lastSnapshot = message.snapshot;
            return;
          case 'lease':
            this.buckets.lease(message, worker);
            return;
          case 'reply':
            this.settle(message);
        }
      });
      worker.on('exit', (code, signal) => {
        // A shutdown (SIGTERM) can come while workers are still starting: then exiting first is what was asked.
        if (!ready) {
          if (this.stopping) resolve();
          else reject(new Error(`worker ${slot.index} exited before serving (code ${code ?? signal})`));
        }
        this.onExit(slot, worker, code, signal);
      });
    });
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    if (slot.lastSnapshot) {
      // Gauges die with the process; what it counted stays counted.
      this.retired = mergeSnapshots([this.retired, { ...slot.lastSnapshot, gauges: [], histograms: slot.lastSnapshot.histograms.map((h) => [h[0], { ...h[1], interval: [] }, h[2]] as typeof h) }]);
      slot.lastSnapshot = undefined;
    }
    if (this.stopping) return;
    this.restarts++;
    this.options.log.error(`worker ${slot.index} died (${signal ?? `exit code ${code}`}); restarting it in ${slot.restartDelayMs} ms`);
    const delay = slot.restartDelayMs;
    slot.restartDelayMs = Math.min(delay * 2, RESTART_BACKOFF_MAX_MS);
    setTimeout(() => {
      if (this.stopping) return;
      this.fork(slot).catch((err: Error) => this.options.log.error(`worker ${slot.index} failed to restart: ${err.message}`));
    }, delay).unref();
  }

  private settle(message: Extract<FromWorker, { type: 'reply' }>): void {
    const request = this.pending.get(message.id);
    if (request === undefined) return;
    this.pending.delete(message.id);
    clearTimeout(request.timer);
    if (message.error !== undefined) request.reject(new Error(message.error));
    else request.resolve(message.result);
  }

  private request<K extends WorkerOperation>(
    worker: Worker,
    op: K,
    args: WorkerOperations[K]['args'],
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<WorkerOperations[K]['result']> {
    const id = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, timer });
      const message: ToWorker = { type: 'request', id, op, args };
      worker.send(message);
    });
  }

  /** Asks every live worker; settles with the answers (undefined for a worker that failed to answer). */
  async ask<K extends WorkerOperation>(op: K, args: WorkerOperations[K]['args']): Promise<Array<WorkerOperations[K]['result'] | undefined>> {
    const live = this.slots.filter((s) => s.worker !== undefined);
    return Promise.all(live.map((slot) => this.request(slot.worker!, op, args).catch(() => undefined)));
  }

  /** The document workers start with, before start(). */
  setConfig(config: unknown): void {
    this.config = config;
  }

  /**
   * Swaps a new bootstrap document (already validated) into every worker that serves, and into those that start
   * later; resolves with the problems of the workers that could not take it (they keep the configuration they had).
   */
  update(config: unknown): Promise<string[]> {
    this.config = config;
    return this.updateSlots(this.slots.filter((s) => s.worker !== undefined && s.ready));
  }

  private async updateSlots(slots: Slot[]): Promise<string[]> {
    const config = this.config;
    const args = { config, drainMs: this.options.drainTimeMs, runtimeOverrides: this.options.runtimeOverrides() };
    const results = await Promise.allSettled(slots.map((slot) => this.request(slot.worker!, 'update', args, UPDATE_TIMEOUT_MS)));
    const problems: string[] = [];
    results.forEach((result, i) => {
      const slot = slots[i]!;
      if (result.status === 'rejected') {
        problems.push(`worker ${slot.index}: ${(result.reason as Error).message}`);
        this.options.log.error(`worker ${slot.index} kept its configuration: ${(result.reason as Error).message}`);
      } else if (config === this.config && (slot.index === 0 || this.listeners.length === 0)) {
        this.listeners = result.value;
      }
    });
    return problems;
  }

  /** Every worker's stats added up, with those of workers that died. */
  async stats(): Promise<StatsSnapshot> {
    const live = this.slots.filter((s) => s.worker !== undefined);
    const snapshots = await Promise.all(
      live.map((slot) =>
        this.request(slot.worker!, 'stats', undefined).then(
          (snapshot) => (slot.lastSnapshot = snapshot),
          () => slot.lastSnapshot ?? emptySnapshot(),
        ),
      ),
    );
    return mergeSnapshots([...snapshots, this.retired]);
  }

  /** `/reset_counters` also forgets the counts of dead workers. */
  async resetCounters(): Promise<void> {
    this.retired = emptySnapshot();
    await this.ask('reset_counters', undefined);
  }

  /** Drains every worker (SIGTERM, `/quitquitquit`) and waits for them to exit. */
  async shutdown(drainMs: number): Promise<void> {
    this.stopping = true;
    const exits = this.slots.flatMap((slot) => {
      const worker = slot.worker;
      if (worker === undefined || worker.isDead()) return [];
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      const message: ToWorker = { type: 'shutdown', drainMs };
      try {
        worker.send(message);
      } catch {
        worker.kill();
      }
      // A worker that does not finish its drain in time (plus a margin to flush its logs) is killed.
      const timer = setTimeout(() => worker.kill('SIGKILL'), drainMs + 5000);
      return [exited.finally(() => clearTimeout(timer))];
    });
    await Promise.all(exits);
    for (const request of this.pending.values()) clearTimeout(request.timer);
  }
}

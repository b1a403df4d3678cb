/** The messages between the primary process and its workers (over the cluster IPC channel, as JSON). */
import type { ClusterStatus, ListenerStatus } from '../dataplane/status.js';
import type { StatsSnapshot } from '../stats/store.js';
import type { LogLevel } from '../util/logger.js';
import type { LeaseGrant, LeaseRequest } from './shared-buckets.js';

/** Operations the primary asks of every worker, with their argument and result types. */
export interface WorkerOperations {
  stats: { args: undefined; result: StatsSnapshot };
  clusters: { args: undefined; result: ClusterStatus[] };
  reset_counters: { args: undefined; result: void };
  runtime_modify: { args: Record<string, string>; result: boolean };
  log_level: { args: LogLevel; result: void };
  drain: { args: { drainMs: number }; result: void };
  reopen_logs: { args: undefined; result: void };
  /** A new bootstrap document (validated by the primary) swapped in as a configuration update; the listeners after it. */
  update: { args: { config: unknown; drainMs: number; runtimeOverrides: Record<string, string> }; result: ListenerStatus[] };
}
export type WorkerOperation = keyof WorkerOperations;

export type ToWorker =
  /** The bootstrap document (already validated by the primary), decoded again by the worker. */
  /** `sharedBuckets`: rate limit buckets are leased from the primary (there is more than one worker). */
  | {
      type: 'start';
      config: unknown;
      logLevel: LogLevel;
      statsPushMs: number;
      runtimeOverrides: Record<string, string>;
      fileFlushIntervalMs: number;
      sharedBuckets: boolean;
    }
  | LeaseGrant
  | { type: 'request'; id: number; op: WorkerOperation; args: unknown }
  | { type: 'shutdown'; drainMs: number };

export type FromWorker =
  /** The worker listens for messages: messages sent earlier can be lost (ES module workers load asynchronously). */
  | { type: 'hello' }
  | { type: 'ready'; listeners: ListenerStatus[] }
  | { type: 'failed'; message: string }
  | { type: 'reply'; id: number; result?: unknown; error?: string }
  /** Sent every stats flush, so that a worker's counts survive it dying. */
  | { type: 'stats'; snapshot: StatsSnapshot }
  | LeaseRequest;

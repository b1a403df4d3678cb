/**
 * A worker process: serves the listeners of the configuration the primary sends it, and answers the primary's
 * requests for stats and status. Started by `WorkerPool` through node:cluster, so all workers share the listening
 * sockets.
 */
import { checkBootstrap } from '../config/load.js';
import { formatConfigErrors } from '../config/errors.js';
import { DataPlane } from '../dataplane/data-plane.js';
import { clusterStatus, listenerStatus } from '../dataplane/status.js';
import { createLogger, type Logger } from '../util/logger.js';
import type { FromWorker, ToWorker, WorkerOperations } from './messages.js';
import { EXTENSIONS } from '../extensions/registry.js';
import { WorkerBuckets } from './shared-buckets.js';

let plane: DataPlane | undefined;
let log: Logger = createLogger('info');
let pushTimer: NodeJS.Timeout | undefined;
let buckets: WorkerBuckets | undefined;

function send(message: FromWorker): void {
  if (process.connected) process.send!(message);
}

async function start(message: Extract<ToWorker, { type: 'start' }>): Promise<void> {
  log = createLogger(message.logLevel);
  const { bootstrap, errors } = checkBootstrap(message.config);
  if (errors.length > 0) throw new Error(formatConfigErrors(errors));
  if (message.sharedBuckets) buckets = new WorkerBuckets(send);
  plane = await DataPlane.start(bootstrap, log, { fileFlushIntervalMs: message.fileFlushIntervalMs, tokenBuckets: buckets, ...EXTENSIONS });
  const running = plane;
  // A worker started again after a death takes the overrides `/runtime_modify` made before.
  running.config.runtime.modify(message.runtimeOverrides);
  pushTimer = setInterval(() => send({ type: 'stats', snapshot: running.stats.snapshot() }), message.statsPushMs);
  pushTimer.unref();
  send({ type: 'ready', listeners: running.listeners.map(listenerStatus) });
}

type Handlers = { [K in keyof WorkerOperations]: (args: WorkerOperations[K]['args']) => WorkerOperations[K]['result'] | Promise<WorkerOperations[K]['result']> };

function handlers(running: DataPlane): Handlers {
  return {
    stats: () => running.stats.snapshot(),
    clusters: () => [...running.config.clusters.all()].map(clusterStatus),
    reset_counters: () => running.stats.resetCounters(),
    runtime_modify: (changes) => running.config.runtime.modify(changes),
    log_level: (level) => {
      log.level = level;
    },
    drain: ({ drainMs }) => running.drain(drainMs),
    reopen_logs: () => running.reopenAccessLogs(),
    update: async ({ config, drainMs, runtimeOverrides }) => {
      const { bootstrap, errors } = checkBootstrap(config);
      if (errors.length > 0) throw new Error(formatConfigErrors(errors));
      await running.update(bootstrap, drainMs);
      // The new configuration's runtime starts from its own layers: the admin's overrides carry over.
      running.config.runtime.modify(runtimeOverrides);
      return running.listeners.map(listenerStatus);
    },
  };
}

async function shutdown(drainMs: number): Promise<void> {
  clearInterval(pushTimer);
  await plane?.close(drainMs);
  process.exit(0);
}

process.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'start':
      start(message).catch((err: Error) => {
        send({ type: 'failed', message: err.message });
        process.exit(1);
      });
      return;
    case 'request': {
      if (plane === undefined) {
        send({ type: 'reply', id: message.id, error: 'worker not started' });
        return;
      }
      const handler = handlers(plane)[message.op] as (args: unknown) => unknown;
      Promise.resolve()
        .then(() => handler(message.args))
        .then(
          (result) => send({ type: 'reply', id: message.id, result }),
          (err: Error) => send({ type: 'reply', id: message.id, error: err.message }),
        );
      return;
    }
    case 'lease_granted':
      buckets?.granted(message);
      return;
    case 'shutdown':
      void shutdown(message.drainMs);
  }
});

send({ type: 'hello' });

// The primary going away (killed, crashed) takes its workers with it.
process.on('disconnect', () => void shutdown(0));
// SIGTERM and SIGINT reach the whole process group; the primary decides how workers drain.
process.on('SIGTERM', () => undefined);
process.on('SIGINT', () => undefined);

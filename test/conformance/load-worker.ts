/**
 * Loads corpus files off the test's main thread, so that a loader that hangs can be detected (and the worker
 * terminated) instead of freezing the whole run. Protocol: `{ id, file }` in, `{ id, outcome }` out.
 */
import { parentPort } from 'node:worker_threads';
import { loadCorpusFile } from './harness.js';

parentPort?.on('message', (message: { id: number; file: string }) => {
  parentPort?.postMessage({ id: message.id, outcome: loadCorpusFile(message.file) });
});

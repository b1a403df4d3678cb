/**
 * The fuzz targets (targets.ts), briefly: about 10^4 cases each for the cheap targets and 2,000 requests through
 * the proxy. `npm run fuzz -- --target NAME --runs N` runs them at length; docs/reliability.md has the figures.
 */
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TARGETS } from './targets.js';

const RUNS: Record<string, number> = { http1: 2000, config: 10_000, regex: 10_000 };

describe('fuzzing', () => {
  for (const [name, target] of Object.entries(TARGETS)) {
    it(`${name}: ${RUNS[name]} cases`, { timeout: 300_000 }, async () => {
      const { property, stop } = await target.start();
      try {
        await fc.assert(property as fc.IAsyncProperty<unknown>, { numRuns: RUNS[name], endOnFailure: true });
      } finally {
        await stop();
      }
    });
  }
});

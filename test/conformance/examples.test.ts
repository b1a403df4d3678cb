/** Runs every example of the conformance table (examples.ts) end to end. */
import { describeExample } from './harness.js';
import { EXAMPLES } from './examples.js';

for (const spec of EXAMPLES) describeExample(spec);

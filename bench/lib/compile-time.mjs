// Times how long Portico takes to turn a bootstrap file into runtime objects, phase by phase, in a fresh
// process (cold JIT, as at startup): parse (YAML/JSON), check (decode and validate), compile (compileBootstrap:
// route tables, clusters, listeners). Prints one JSON line. Usage: node bench/lib/compile-time.mjs FILE
import { readFileSync } from 'node:fs';

const root = new URL('../../dist/src/', import.meta.url);
const { parseDocument, checkBootstrap } = await import(new URL('config/load.js', root));
const { compileBootstrap } = await import(new URL('dataplane/data-plane.js', root));
const { createLogger } = await import(new URL('util/logger.js', root));

const file = process.argv[2];
const errors = [];
const t0 = performance.now();
const json = parseDocument(readFileSync(file, 'utf8'), file, errors);
const t1 = performance.now();
const { bootstrap, errors: checkErrors } = checkBootstrap(json);
const t2 = performance.now();
compileBootstrap(bootstrap, createLogger('off'), errors);
const t3 = performance.now();
errors.push(...checkErrors);
if (errors.length) {
  process.stderr.write(`${file}: ${errors.length} configuration problem(s), first: ${JSON.stringify(errors[0])}\n`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ parseMs: t1 - t0, checkMs: t2 - t1, compileMs: t3 - t2 })}\n`);
// Compiled clusters may hold timers or pools; nothing else is needed from this process.
process.exit(0);

/** The pool contract moved to `../pool-types.ts` when HTTP/2 joined; this path still serves existing importers. */
export * from '../pool-types.js';

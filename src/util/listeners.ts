import type { EventEmitter } from 'node:events';

/**
 * A fixed set of event listeners, attached and detached from the same list so the two can never disagree. The
 * listeners are shared module functions that find their object through the emitter: no closures per object.
 */
export type Listeners = ReadonlyArray<readonly [string, (...args: never[]) => void]>;

export function listen(emitter: EventEmitter, listeners: Listeners): void {
  for (const [event, listener] of listeners) emitter.on(event, listener as (...args: unknown[]) => void);
}

export function unlisten(emitter: EventEmitter, listeners: Listeners): void {
  for (const [event, listener] of listeners) emitter.removeListener(event, listener as (...args: unknown[]) => void);
}

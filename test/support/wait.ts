/**
 * Polling until a condition holds, for expectations that depend on timers (health checks, ejections): a
 * generous deadline rather than a fixed sleep, so a slow machine only makes the test slower.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  description: string | (() => string),
  { timeoutMs = 15_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof description === 'string' ? description : description()}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Retries an assertion (synchronous or not) until it passes, or rethrows its last failure after `timeoutMs`. */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

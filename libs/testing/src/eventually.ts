/** What `check` returns: a value to stop with, or undefined/false to poll again. */
export type Probe<T> = () => Promise<T | undefined | false> | T | undefined | false;

/**
 * Polls `check` every `intervalMs` until it returns something other than undefined or false, and
 * resolves with that; rejects after `timeoutMs`, naming `what`. An error `check` throws ends the
 * wait at once: use waitFor to poll through errors. Polling with a deadline, never a fixed sleep.
 */
export async function eventually<T>(check: Probe<T>, timeoutMs = 10_000, what = 'the condition', intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Like eventually, but an error `probe` throws counts as "not yet" (for a server that is starting,
 * or Redis coming back); the last one is named if the wait times out.
 */
export async function waitFor<T>(what: string, probe: Probe<T>, timeoutMs = 10_000, intervalMs = 25): Promise<T> {
  let last: unknown;
  return eventually(
    async () => {
      try {
        return await probe();
      } catch (err) {
        last = err;
        return undefined;
      }
    },
    timeoutMs,
    what,
    intervalMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}${last ? ` (last error: ${String(last)})` : ''}`);
  });
}

/**
 * Polling helpers for tests: wait until something holds, failing with what was awaited.
 */

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Polls `cond` every `everyMs` until it holds; throws naming `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5_000, everyMs = 10): Promise<void> {
  await waitFor(what, cond, ms, everyMs);
}

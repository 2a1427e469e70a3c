// Waiting for what happens elsewhere (a socket, a device, the emulator): vi.waitFor with a plain
// condition, and a timeout that suits a few network round trips.
import { vi } from 'vitest';

/** Resolves once `condition()` holds, checked every 10 ms; fails the test after `timeoutMs`. */
export function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  return vi.waitFor(
    () => {
      if (!condition()) throw new Error(`the condition did not hold within ${timeoutMs} ms`);
    },
    { timeout: timeoutMs, interval: 10 },
  );
}

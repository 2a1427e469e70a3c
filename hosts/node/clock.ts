// The Node host's Clock and Random ports.
//
// Timers are ref'd on purpose. While the core waits out a backoff between connection attempts
// no socket is open, so the timer is the only thing keeping the event loop alive; an unref'd
// timer would let Node exit in the middle of `await provisionDevice(...)` (exit code 13, no
// result). A finished CLI is not held open because the core cancels every timer it no longer
// needs (the returned cancel function is clearTimeout), which its tests check.

import type { Clock, Random } from '../../src/ports.js';

/** setTimeout's limit: longer delays would fire at once (TimeoutOverflowWarning). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(callback, ms) {
    let remaining = Number.isFinite(ms) && ms > 0 ? ms : ms === Infinity ? Infinity : 0;
    let handle: ReturnType<typeof setTimeout> | undefined;
    const schedule = (): void => {
      const step = Math.min(remaining, MAX_TIMEOUT_MS);
      remaining -= step;
      handle = setTimeout(() => {
        handle = undefined;
        if (remaining > 0) schedule();
        else callback();
      }, step);
    };
    schedule();
    return () => {
      if (handle !== undefined) clearTimeout(handle);
      handle = undefined;
      remaining = 0;
    };
  },
};

/** Math.random: used for backoff jitter and correlation ids only, never for secrets. */
export const nodeRandom: Random = () => Math.random();

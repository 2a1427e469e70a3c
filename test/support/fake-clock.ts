// A Clock (src/ports.ts) whose time moves only when a test says so. No real sleeping.
// ECMAScript only, so the XS engine tests (test/xs/scenarios) run it too: there, fireNext() and a
// host's idle() drive it; tick() as well. advance() and runNext() let promise callbacks run with
// settle(), which needs Node's setImmediate.
import type { Clock } from '../../src/ports.js';

interface Timer {
  due: number;
  seq: number;
  callback: () => void;
}

/** Lets every pending promise callback run (microtasks drain before a macrotask). Node only: on XS use the harness's idle(). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Timer[] = [];

  /** `start`: wall-clock ms since the epoch (default 2025-01-01T00:00:00Z). */
  constructor(readonly start = Date.UTC(2025, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** Milliseconds since `start`. */
  get elapsed(): number {
    return this.#now - this.start;
  }

  setTimer(callback: () => void, ms: number): () => void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new Error(`FakeClock.setTimer: invalid delay ${ms}`);
    const timer: Timer = { due: this.#now + ms, seq: this.#seq++, callback };
    this.#timers.push(timer);
    return () => {
      const i = this.#timers.indexOf(timer);
      if (i >= 0) this.#timers.splice(i, 1);
    };
  }

  /** How many timers are set and neither fired nor cancelled. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Milliseconds from now until each pending timer is due, soonest first. */
  pendingDelays(): number[] {
    return this.#sorted().map((t) => t.due - this.#now);
  }

  /** Moves the wall clock without firing anything (e.g. an SNTP correction). */
  jump(ms: number): void {
    this.#now += ms;
  }

  /**
   * Moves time forward by `ms`, firing each timer that falls due at its due time, soonest first
   * (ties in the order they were set), including timers set by those callbacks. Synchronous:
   * promise callbacks run only after it returns; use `advance` for async code.
   */
  tick(ms: number): void {
    const end = this.#now + ms;
    for (let timer = this.#due(end); timer; timer = this.#due(end)) this.#fire(timer);
    this.#now = end;
  }

  /** Like `tick`, but lets promise callbacks run before the first timer, after each one and at the end. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (let timer = this.#due(end); timer; timer = this.#due(end)) {
      this.#fire(timer);
      await settle();
    }
    this.#now = end;
    await settle();
  }

  /** Fires the soonest timer (moving time to it), synchronously. False when none is pending. */
  fireNext(): boolean {
    const [timer] = this.#sorted();
    if (!timer) return false;
    this.#fire(timer);
    return true;
  }

  /** Like `fireNext`, then lets promise callbacks run. */
  async runNext(): Promise<boolean> {
    if (!this.fireNext()) return false;
    await settle();
    return true;
  }

  #sorted(): Timer[] {
    return [...this.#timers].sort((a, b) => a.due - b.due || a.seq - b.seq);
  }

  #due(end: number): Timer | undefined {
    const [timer] = this.#sorted();
    return timer && timer.due <= end ? timer : undefined;
  }

  #fire(timer: Timer): void {
    this.#timers.splice(this.#timers.indexOf(timer), 1);
    this.#now = Math.max(this.#now, timer.due);
    timer.callback();
  }
}

/**
 * Lets `promise` run to the end: whenever the job queue is empty (`idle`, a host macrotask) and it
 * has not settled, fires the next timer. Fails if it is stuck (nothing pending) or runs away. For
 * engines without setImmediate (XS) as well as Node.
 */
export async function runToEnd<T>(promise: Promise<T>, clock: FakeClock, idle: () => Promise<void>): Promise<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let steps = 0; ; steps++) {
    await idle();
    if (settled) return promise;
    if (steps > 10_000) throw new Error('runToEnd: still running after 10000 timers');
    if (!clock.fireNext()) throw new Error('runToEnd: the flow is stuck (no timer pending, nothing settled)');
  }
}

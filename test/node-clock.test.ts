import { afterEach, describe, expect, it, vi } from 'vitest';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('systemClock', () => {
  it('now() is wall-clock epoch milliseconds', () => {
    const before = Date.now();
    const now = systemClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });

  it('fires a timer once after its delay, and a cancelled timer never', () => {
    vi.useFakeTimers();
    const fired: string[] = [];
    systemClock.setTimer(() => fired.push('a'), 100);
    const cancel = systemClock.setTimer(() => fired.push('b'), 100);
    cancel();
    cancel(); // idempotent
    vi.advanceTimersByTime(99);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual(['a']);
  });

  it('waits delays beyond setTimeout’s 2^31-1 ms limit instead of firing at once', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const thirtyDays = 30 * 24 * 60 * 60 * 1000;
    systemClock.setTimer(() => fired.push(Date.now()), thirtyDays);
    const start = Date.now();
    vi.advanceTimersByTime(2 ** 31);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(thirtyDays - 2 ** 31);
    expect(fired).toEqual([start + thirtyDays]);
  });

  it('cancels a long timer in its second leg', () => {
    vi.useFakeTimers();
    let fired = false;
    const cancel = systemClock.setTimer(() => (fired = true), 2 ** 32);
    vi.advanceTimersByTime(2 ** 31);
    cancel();
    vi.advanceTimersByTime(2 ** 33);
    expect(fired).toBe(false);
  });

  it('treats a negative or NaN delay as 0', () => {
    vi.useFakeTimers();
    const fired: string[] = [];
    systemClock.setTimer(() => fired.push('neg'), -5);
    systemClock.setTimer(() => fired.push('nan'), Number.NaN);
    vi.advanceTimersByTime(0);
    expect(fired).toEqual(['neg', 'nan']);
  });

  it('a pending timer is ref’d (keeps the CLI alive during a backoff) until cancelled', () => {
    const set = vi.spyOn(globalThis, 'setTimeout');
    const clear = vi.spyOn(globalThis, 'clearTimeout');
    try {
      const cancel = systemClock.setTimer(() => {}, 60_000);
      const handle = set.mock.results[0]?.value as NodeJS.Timeout;
      expect(handle.hasRef()).toBe(true);
      cancel();
      // Cleared: nothing is left to hold the event loop.
      expect(clear).toHaveBeenCalledWith(handle);
    } finally {
      set.mockRestore();
      clear.mockRestore();
    }
  });
});

describe('nodeRandom', () => {
  it('returns numbers in [0, 1) that vary', () => {
    const values = Array.from({ length: 100 }, () => nodeRandom());
    for (const v of values) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
    expect(new Set(values).size).toBeGreaterThan(90);
  });
});

// Live progress of a fleet run on stderr: a bar redrawn in place (at most 10 times a second) on
// a terminal, plain lines (each 10 % and every 5 s) otherwise.
import type { FleetProgress } from './run.js';

export interface ProgressOutput {
  write(text: string): void;
  isTTY: boolean;
  /** Terminal width for the bar; default 80. */
  columns?: number;
}

export interface ProgressView {
  update(progress: FleetProgress): void;
  /** Draw the final state and stop the timer. */
  finish(): void;
}

const REDRAW_MS = 100;
const HEARTBEAT_MS = 5000;

export function createProgressView(out: ProgressOutput): ProgressView {
  return out.isTTY ? new Bar(out) : new Lines(out);
}

/** '25/50 done (24 assigned, 1 failed), 10 in flight, 1.2 s, 20.0 assigned/s' */
export function describeProgress(p: FleetProgress): string {
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.succeeded / seconds : 0;
  return `${p.done}/${p.count} done (${p.succeeded} assigned, ${p.failed} failed), ${p.inFlight} in flight, ${seconds.toFixed(1)} s, ${rate.toFixed(1)} assigned/s`;
}

/** The latest progress, its clock running on between updates. */
class Latest {
  #progress: FleetProgress | undefined;
  #at = 0;

  set(progress: FleetProgress): void {
    this.#progress = progress;
    this.#at = performance.now();
  }

  get(): FleetProgress | undefined {
    const p = this.#progress;
    return p && { ...p, elapsedMs: p.elapsedMs + (performance.now() - this.#at) };
  }
}

class Bar implements ProgressView {
  readonly #latest = new Latest();
  #drawn = false;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(private readonly out: ProgressOutput) {
    this.#timer = setInterval(() => this.#draw(), REDRAW_MS);
    this.#timer.unref();
  }

  update(progress: FleetProgress): void {
    this.#latest.set(progress);
    if (!this.#drawn) this.#draw();
  }

  finish(): void {
    clearInterval(this.#timer);
    this.#draw();
    if (this.#drawn) this.out.write('\n');
  }

  #draw(): void {
    const p = this.#latest.get();
    if (!p) return;
    this.#drawn = true;
    const text = ` ${describeProgress(p)}`;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - text.length - 3));
    const filled = Math.round((p.done / p.count) * width);
    this.out.write(`\r[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]${text}\x1b[K`);
  }
}

class Lines implements ProgressView {
  readonly #latest = new Latest();
  #tenths = 0;
  #lastLine = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(private readonly out: ProgressOutput) {
    this.#timer = setInterval(() => {
      const p = this.#latest.get();
      if (p && p.elapsedMs - this.#lastLine >= HEARTBEAT_MS - REDRAW_MS) this.#line(p);
    }, HEARTBEAT_MS);
    this.#timer.unref();
  }

  update(progress: FleetProgress): void {
    this.#latest.set(progress);
    const tenths = Math.floor((progress.done * 10) / progress.count);
    if (tenths > this.#tenths) {
      this.#tenths = tenths;
      this.#line(progress);
    }
  }

  finish(): void {
    clearInterval(this.#timer);
  }

  #line(p: FleetProgress): void {
    this.#lastLine = p.elapsedMs;
    this.out.write(`fleet: ${describeProgress(p)}\n`);
  }
}

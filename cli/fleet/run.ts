// The fleet engine: run `count` provisionings with at most `concurrency` in flight, time each,
// and sum up: successes, failures by error kind, wall time, throughput, latency percentiles and
// the client's CPU time. It knows nothing about DPS: `provision(index)` does one device, so the
// benchmarks drive Microsoft's client through the very same limiter. With `connect`, each
// provisioned device then goes online in the same slot, and that phase is summed up apart.
import { isProvisioningError } from '../../src/errors.js';

export interface FleetProgress {
  count: number;
  done: number;
  succeeded: number;
  failed: number;
  inFlight: number;
  elapsedMs: number;
}

export interface FleetOptions {
  count: number;
  concurrency: number;
  /** Provision device `index` (0-based); reject to count it as failed. */
  provision(index: number): Promise<unknown>;
  /** After device `index` was provisioned (`provisioned`: what provision resolved with): take it online. Reject to count a connect failure. */
  connect?(index: number, provisioned: unknown): Promise<unknown>;
  /** Called after each device starts or finishes. Keep it cheap: the caller throttles output. */
  onProgress?(progress: FleetProgress): void;
  /** The failure's kind for the summary; default: a ProvisioningError's kind, else 'unexpected'. */
  kindOf?(error: unknown): string;
}

export interface LatencySummary {
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export interface FleetSummary {
  count: number;
  concurrency: number;
  succeeded: number;
  failed: number;
  /** Failed devices per error kind, e.g. { unauthorized: 25 }. */
  failedByKind: Record<string, number>;
  /** The first failure's message of each kind (never a key or token: ProvisioningErrors carry none). */
  firstError: Record<string, string>;
  wallTimeMs: number;
  /** Assigned devices per second of wall time. */
  throughputPerSecond: number;
  /** Per-device time from start to assignment, in ms, over the assigned devices; null when none was. */
  latencyMs: LatencySummary | null;
  /** This process's CPU time during the run (user + system), in ms. */
  cpuMs: { user: number; system: number; perDevice: number };
  /** With `connect`: the provisioned devices taken online. */
  connect?: ConnectSummary;
}

export interface ConnectSummary {
  /** Provisioned devices that went online. */
  connected: number;
  /** Provisioned devices that did not, per error kind. */
  failed: number;
  failedByKind: Record<string, number>;
  firstError: Record<string, string>;
  /** Per-device time from the start of the connect to its end (online, twin received, messages sent), in ms; null when none connected. */
  latencyMs: LatencySummary | null;
}

/** A phase's failures: how many, per error kind, and the first message of each kind. */
type Failures = Pick<ConnectSummary, 'failed' | 'failedByKind' | 'firstError'>;

export async function runFleet(options: FleetOptions): Promise<FleetSummary> {
  const { count, provision } = options;
  if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError('concurrency must be a positive integer');
  const concurrency = Math.min(options.concurrency, count);
  const kindOf = options.kindOf ?? defaultKind;
  const latencies: number[] = [];
  const failures: Failures = { failed: 0, failedByKind: {}, firstError: {} };
  const connectLatencies: number[] = [];
  const connectFailures: Failures = { failed: 0, failedByKind: {}, firstError: {} };
  const recordFailure = (into: Failures, error: unknown): void => {
    into.failed++;
    const kind = kindOf(error);
    into.failedByKind[kind] = (into.failedByKind[kind] ?? 0) + 1;
    into.firstError[kind] ??= error instanceof Error ? error.message : String(error);
  };
  let next = 0;
  let inFlight = 0;

  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const report = (): void =>
    options.onProgress?.({
      count,
      done: latencies.length + failures.failed,
      succeeded: latencies.length,
      failed: failures.failed,
      inFlight,
      elapsedMs: performance.now() - started,
    });

  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      inFlight++;
      report();
      const begun = performance.now();
      let provisioned: { result: unknown } | undefined;
      try {
        provisioned = { result: await provision(index) };
        latencies.push(performance.now() - begun);
      } catch (error) {
        recordFailure(failures, error);
      }
      if (provisioned && options.connect) {
        const connecting = performance.now();
        try {
          await options.connect(index, provisioned.result);
          connectLatencies.push(performance.now() - connecting);
        } catch (error) {
          recordFailure(connectFailures, error);
        }
      }
      inFlight--;
      report();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  const wallTimeMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuStart);
  return {
    count,
    concurrency,
    succeeded: latencies.length,
    ...failures,
    wallTimeMs: round(wallTimeMs),
    throughputPerSecond: round((latencies.length * 1000) / wallTimeMs),
    latencyMs: summarizeLatencies(latencies),
    cpuMs: { user: round(cpu.user / 1000), system: round(cpu.system / 1000), perDevice: round((cpu.user + cpu.system) / 1000 / count) },
    ...(options.connect && {
      connect: { connected: connectLatencies.length, ...connectFailures, latencyMs: summarizeLatencies(connectLatencies) },
    }),
  };
}

/** min, nearest-rank p50/p95/p99, max and mean, rounded to µs; null for no samples. */
export function summarizeLatencies(samples: readonly number[]): LatencySummary | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, x) => sum + x, 0) / sorted.length;
  return {
    min: round(sorted[0]!),
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]!),
    mean: round(mean),
  };
}

/** Nearest-rank percentile of ascending `sorted` (non-empty): the smallest sample with at least p % at or below it. */
export function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The registration IDs of a fleet: prefix + index, zero-padded to the width of the largest index. */
export function fleetRegistrationId(prefix: string, index: number, lastIndex: number): string {
  return `${prefix}${String(index).padStart(String(lastIndex).length, '0')}`;
}

function defaultKind(error: unknown): string {
  return isProvisioningError(error) ? error.kind : 'unexpected';
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

// The emulator at scale (issue "a leaner emulator"): N devices provisioned through one emulator
// (in a process of its own, state kept as `moddable-dps emulator` keeps it, retry-after 0) by
// our client, 16 at a time, TLS sessions resumed, measured in batches of 1000:
//   - the emulator's CPU per device, per batch and overall (target: at most 0.9 ms);
//   - a batch's throughput and latency, first against last: the last batches must be no slower
//     (the 1,000th-from-last device against the 1,000th);
//   - the emulator's heap per registration after full collections (target: at most 5 KB), and
//     the state file's bytes per registration on disk (target: at most 5 KB).
// `node bench/emulator-scale.js [--devices=100000]`: figures only, no pass/fail exit.
// EMULATOR_CPU_PROF=<dir> writes the emulator process's CPU profile there (node --cpu-prof).
import { fork } from 'node:child_process';
import { runFleet } from '../cli/fleet/run.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { registerDevice } from '../src/dps/flow.js';
import { deriveDeviceKey } from '../src/identity.js';
import { BENCH_GROUP_KEY, BENCH_ID_SCOPE } from './common.js';

const BATCH = 1000;

export async function run(options: { emulatorFile: string; stateDir: string; devices: number }) {
  const proc = fork(options.emulatorFile, [JSON.stringify({ stateDir: options.stateDir, retryAfterSeconds: 0 })], {
    execArgv: ['--expose-gc', ...(process.env.EMULATOR_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.EMULATOR_CPU_PROF}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = <T>(message: string, type: string) =>
    new Promise<T>((resolve) => {
      const listener = (reply: { type: string }) => {
        if (reply.type !== type) return;
        proc.off('message', listener);
        resolve(reply as T);
      };
      proc.on('message', listener);
      proc.send(message);
    });
  const ready = await new Promise<{ port: number; caPem: string }>((resolve, reject) => {
    proc.once('message', (message) => resolve(message as never));
    proc.once('exit', (code) => reject(new Error(`the emulator exited with ${code}`)));
  });
  const cpuMs = async () => {
    const { user, system } = await ask<{ user: number; system: number }>('cpu', 'cpu');
    return (user + system) / 1000;
  };
  const heap = () => ask<{ heapUsed: number; rss: number; collected: boolean }>('heap', 'heap');
  const connect = createTlsConnect({ ca: ready.caPem, resumeSessions: true });
  const endpoint = { host: '127.0.0.1', port: ready.port };
  const batches: {
    index: number;
    devices: number;
    wallMs: number;
    perSecond: number;
    emulatorMsPerDevice: number;
    p50: number;
    p99: number;
  }[] = [];
  let baseline: { heapUsed: number; rss: number } | undefined;
  try {
    const total = Math.ceil(options.devices / BATCH);
    for (let b = 0; b < total; b++) {
      const count = Math.min(BATCH, options.devices - b * BATCH);
      const before = await cpuMs();
      const summary = await runFleet({
        count,
        concurrency: 16,
        provision: (i) => {
          const registrationId = `scale-${b * BATCH + i}`;
          return registerDevice(
            {
              idScope: BENCH_ID_SCOPE,
              registrationId,
              deviceKey: deriveDeviceKey(BENCH_GROUP_KEY, registrationId),
              endpoint,
              timeoutMs: 60_000,
            },
            { connect, clock: systemClock, random: nodeRandom },
          );
        },
      });
      if (summary.failed) throw new Error(`batch ${b}: ${summary.failed} failed: ${JSON.stringify(summary.firstError)}`);
      const emulatorMs = (await cpuMs()) - before;
      const row = {
        index: b,
        devices: count,
        wallMs: summary.wallTimeMs,
        perSecond: (count / summary.wallTimeMs) * 1000,
        emulatorMsPerDevice: emulatorMs / count,
        p50: summary.latencyMs?.p50 ?? 0,
        p99: summary.latencyMs?.p99 ?? 0,
      };
      batches.push(row);
      if (b === 0) baseline = await heap();
      if (total <= 20 || b === 0 || b === total - 1 || (b + 1) % 10 === 0)
        console.log(
          `  devices ${String((b + 1) * BATCH).padStart(7)}: ${row.perSecond.toFixed(0).padStart(5)} devices/s, emulator ${row.emulatorMsPerDevice.toFixed(2)} ms CPU/device, latency p50 ${row.p50.toFixed(1)} ms p99 ${row.p99.toFixed(1)} ms`,
        );
    }
    const end = await heap();
    const state = await ask<{ bytes: number; registrations: number; serializeMs: number }>('state', 'state');
    const first = batches[0]!;
    const last = batches.at(-1)!;
    const registrations = options.devices - BATCH;
    const result = {
      devices: options.devices,
      emulatorMsPerDevice: batches.reduce((sum, r) => sum + r.emulatorMsPerDevice * r.devices, 0) / options.devices,
      firstBatch: first,
      lastBatch: last,
      heapBytesPerRegistration: baseline ? (end.heapUsed - baseline.heapUsed) / registrations : undefined,
      rssBytesPerRegistration: baseline ? (end.rss - baseline.rss) / registrations : undefined,
      heapCollected: end.collected,
      stateBytesPerRegistration: state.bytes / state.registrations,
      serializeMs: state.serializeMs,
    };
    const slow = batches.filter((r) => r.p99 > 100);
    console.log(
      `  batches whose p99 passed 100 ms: ${slow.length} of ${batches.length}${slow.length ? ` (worst ${Math.max(...slow.map((r) => r.p99)).toFixed(0)} ms, at devices ${slow.map((r) => (r.index + 1) * BATCH).join(', ')})` : ''}`,
    );
    console.log(
      `  emulator CPU per device ${result.emulatorMsPerDevice.toFixed(2)} ms (target 0.9); last batch ${last.perSecond.toFixed(0)}/s and p99 ${last.p99.toFixed(1)} ms vs first ${first.perSecond.toFixed(0)}/s and p99 ${first.p99.toFixed(1)} ms`,
    );
    console.log(
      `  memory per registration: heap ${((result.heapBytesPerRegistration ?? 0) / 1024).toFixed(2)} KB (after GC), RSS ${((result.rssBytesPerRegistration ?? 0) / 1024).toFixed(2)} KB; on disk ${(result.stateBytesPerRegistration / 1024).toFixed(2)} KB (state.json written whole; that serialises in ${state.serializeMs.toFixed(0)} ms) (targets 5 KB)`,
    );
    return result;
  } finally {
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.send('close');
    });
  }
}

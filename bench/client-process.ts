// A measuring client in a process of its own, forked by bench/run.js with one argument, JSON:
//   {task: 'floor', target}
//       → {handshakeColdMs, handshakeMs[], rttMs[], ideal: IdealTimes[]}
//   {task: 'one', target, client: 'ours' | 'microsoft', prefix}
//       → {coldMs, warmMs, contextMs?}: the first provisioning in this process (client set-up
//         included; contextMs: ours' createTlsConnect), then a second one
//   {task: 'fleet', target, client: 'microsoft' | 'ideal' | 'ideal-resume' | 'ideal-resume-tls12', count, concurrency, prefix}
//       → the FleetSummary of cli/fleet/run.ts (the limiter `moddable-dps fleet` uses)
//   {task: 'core', devices} → bench/core.ts's figures (no network at all)
// The result goes back over IPC (or to stdout when run by hand). Ours in fleet mode is the real CLI, run by bench/run.js.
import type { SecureContext } from 'node:tls';
import { fleetRegistrationId, runFleet } from '../cli/fleet/run.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { provisionDevice } from '../src/provisioner.js';
import { BENCH_GROUP_KEY, BENCH_ID_SCOPE, type Target } from './common.js';
import { coreCpu } from './core.js';
import { handshake, type IdealTimes, idealProvision, minimalContext, mqttRoundTrips } from './floor.js';
import { loadMicrosoftClient, provisionWithMicrosoft } from './microsoft.js';

type Task =
  | { task: 'floor'; target: Target; handshakes: number; roundTrips: number; idealRuns: number; prefix: string }
  | { task: 'one'; target: Target; client: 'ours' | 'microsoft'; prefix: string }
  | {
      task: 'fleet';
      target: Target;
      client: 'microsoft' | 'ideal' | 'ideal-resume' | 'ideal-resume-tls12';
      count: number;
      concurrency: number;
      prefix: string;
    }
  | { task: 'core'; devices: number };

const task = JSON.parse(process.argv[2] ?? '{}') as Task;
const result = await run(task);
if (process.send) process.send(result, () => process.exit(0));
else console.log(JSON.stringify(result)); // run by hand

async function run(t: Task): Promise<object> {
  switch (t.task) {
    case 'floor':
      return floor(t);
    case 'one':
      return one(t);
    case 'fleet':
      return fleet(t);
    case 'core':
      return coreCpu(t.devices);
  }
}

async function floor(t: Extract<Task, { task: 'floor' }>) {
  const context = minimalContext(t.target);
  const handshakeColdMs = await handshake(t.target, context); // the first in this process
  const handshakeMs: number[] = [];
  for (let i = 0; i < t.handshakes; i++) handshakeMs.push(await handshake(t.target, context));
  const rttMs = await mqttRoundTrips(t.target, context, `${t.prefix}rtt`, t.roundTrips);
  const ideal: IdealTimes[] = [];
  for (let i = 0; i < t.idealRuns; i++) ideal.push(await idealProvision(t.target, context, `${t.prefix}${i}`));
  return { handshakeColdMs, handshakeMs, rttMs, ideal };
}

async function one(t: Extract<Task, { task: 'one' }>) {
  const times: number[] = [];
  let contextMs: number | undefined;
  if (t.client === 'ours') {
    // As `moddable-dps register --group-key ... --ca ...` does it.
    let started = performance.now();
    const connect = createTlsConnect({ ca: t.target.caPem });
    contextMs = performance.now() - started;
    for (const id of [`${t.prefix}0`, `${t.prefix}1`]) {
      await provisionDevice(
        { idScope: BENCH_ID_SCOPE, registrationId: id, groupKey: BENCH_GROUP_KEY, endpoint: { host: t.target.host, port: t.target.port } },
        { connect, clock: systemClock, random: nodeRandom },
      );
      times.push(performance.now() - started);
      started = performance.now();
    }
  } else {
    loadMicrosoftClient(); // module loading is not part of the latency (nor is ours)
    for (const id of [`${t.prefix}0`, `${t.prefix}1`]) {
      const started = performance.now();
      await provisionWithMicrosoft(t.target, id, BENCH_GROUP_KEY);
      times.push(performance.now() - started);
    }
  }
  return { coldMs: times[0], warmMs: times[1], ...(contextMs !== undefined && { contextMs }) };
}

async function fleet(t: Extract<Task, { task: 'fleet' }>) {
  const id = (i: number): string => fleetRegistrationId(t.prefix, i, t.count - 1);
  let provision: (i: number) => Promise<unknown>;
  if (t.client === 'microsoft') {
    loadMicrosoftClient();
    provision = (i) => provisionWithMicrosoft(t.target, id(i), BENCH_GROUP_KEY);
  } else {
    const context: SecureContext = minimalContext(t.target, t.client === 'ideal-resume-tls12' ? 'TLSv1.2' : undefined);
    let session: Buffer | undefined;
    const resume = t.client !== 'ideal';
    provision = (i) =>
      idealProvision(t.target, context, id(i), resume ? { ...(session && { session }), onSession: (s) => (session = s) } : {});
  }
  return runFleet({ count: t.count, concurrency: t.concurrency, provision });
}

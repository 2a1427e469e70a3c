// The DPS emulator in a process of its own, so that the clients measured in other processes
// share nothing with it but the loopback interface (and the machine's cores).
// Forked by bench/run.js with one argument, JSON {stateDir, retryAfterSeconds, inMemory?}; talks over IPC:
//   → {type: 'ready', port, hubPort, httpsPort, caPem, caPath}   once listening (DPS; the emulated IoT hub; HTTPS and MQTT over WebSockets)
//   ← 'cpu'    → {type: 'cpu', user, system}     this process's CPU time so far, µs
//   ← 'state'  → {type: 'state', bytes, registrations, serializeMs}   the state file's size once written whole (0 in memory), one whole serialisation's time
//   ← 'heap'   → {type: 'heap', heapUsed, rss}   after a full collection when run with --expose-gc (bench/emulator-scale.ts)
//   ← 'close'  closes the emulator and exits
import { stat } from 'node:fs/promises';
import { startEmulator } from '../emulator/index.js';
import { BENCH_GROUP_KEY, BENCH_HUB, BENCH_ID_SCOPE } from './common.js';

const { stateDir, retryAfterSeconds, inMemory } = JSON.parse(process.argv[2] ?? '{}') as {
  stateDir: string;
  retryAfterSeconds: number;
  inMemory?: boolean;
};
const dps = await startEmulator({
  idScope: BENCH_ID_SCOPE,
  stateDir,
  retryAfterSeconds,
  inMemory: inMemory === true,
  config: {
    iotHubs: [{ connectionString: `HostName=${BENCH_HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${BENCH_GROUP_KEY}` }],
    enrollmentGroups: [
      {
        enrollmentGroupId: 'bench',
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: BENCH_GROUP_KEY, secondaryKey: BENCH_GROUP_KEY } },
        initialTwin: { tags: {}, properties: { desired: { telemetryInterval: 60 } } },
      },
    ],
  },
});
const send = (message: object): void => void process.send!(message);
send({
  type: 'ready',
  port: dps.endpoint.port,
  hubPort: dps.hubEndpoint.port,
  httpsPort: dps.httpsEndpoint.port,
  caPem: dps.caPem,
  caPath: dps.caPath,
});
process.on('message', (message) => {
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    send({ type: 'cpu', user, system });
  } else if (message === 'state') {
    const registrations = dps.model.registrations().length;
    // What writing the whole state costs the emulator's thread: serialising it (the write is in the
    // thread pool). Saves between are journal lines of what changed; the state is written whole
    // here, the journal folded in, so that state.json's size is the state's.
    const started = performance.now();
    JSON.stringify(dps.model.snapshot());
    const serializeMs = performance.now() - started;
    void (dps.state ? dps.state.save().then(() => stat(dps.state!.path)) : Promise.resolve({ size: 0 })).then(({ size }) =>
      send({ type: 'state', bytes: size, registrations, serializeMs }),
    );
  } else if (message === 'heap') {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    const { heapUsed, rss } = process.memoryUsage();
    send({ type: 'heap', heapUsed, rss, collected: gc !== undefined });
  } else if (message === 'close') {
    void dps.close().then(() => process.exit(0));
  }
});
process.on('disconnect', () => void dps.close().then(() => process.exit(0)));

// The DPS emulator in a process of its own, so that the clients measured in other processes
// share nothing with it but the loopback interface (and the machine's cores).
// Forked by bench/run.js with one argument, JSON {stateDir, retryAfterSeconds}; talks over IPC:
//   → {type: 'ready', port, hubPort, httpsPort, caPem, caPath}   once listening (DPS; the emulated IoT hub; HTTPS and MQTT over WebSockets)
//   ← 'cpu'    → {type: 'cpu', user, system}     this process's CPU time so far, µs
//   ← 'close'  closes the emulator and exits
import { startEmulator } from '../emulator/index.js';
import { BENCH_GROUP_KEY, BENCH_HUB, BENCH_ID_SCOPE } from './common.js';

const { stateDir, retryAfterSeconds } = JSON.parse(process.argv[2] ?? '{}') as { stateDir: string; retryAfterSeconds: number };
const dps = await startEmulator({
  idScope: BENCH_ID_SCOPE,
  stateDir,
  retryAfterSeconds,
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
  } else if (message === 'close') {
    void dps.close().then(() => process.exit(0));
  }
});
process.on('disconnect', () => void dps.close().then(() => process.exit(0)));

// One provisioning with Microsoft's client in a process of its own: the counterpart of
// `moddable-dps register` for the whole-process time. Arguments: host:port, CA file,
// registration ID; the group key comes from the environment (BENCH_GROUP_KEY).
import { readFileSync } from 'node:fs';
import { provisionWithMicrosoft } from './microsoft.js';

const [hostPort = '', caPath = '', registrationId = ''] = process.argv.slice(2);
const colon = hostPort.lastIndexOf(':');
const target = { host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)), caPem: readFileSync(caPath, 'utf8'), caPath };
const result = await provisionWithMicrosoft(target, registrationId, process.env.BENCH_GROUP_KEY ?? '');
process.stdout.write(`assignedHub: ${result.assignedHub}\ndeviceId: ${result.deviceId}\n`);

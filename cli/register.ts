// `moddable-dps register`: provision one device with DPS (or the local emulator) through the Node
// host, as the firmware does, and keep the assignment in a file store.
import { provisionDevice } from '../src/provisioner.js';
import { parse } from './shared/args.js';
import type { CliIo } from './shared/io.js';
import { describeAssignment } from './shared/output.js';
import { PROVISIONING_FLAGS, PROVISIONING_HELP, provisioningFromFlags } from './shared/provisioning.js';

const REGISTER_HELP = `Usage: moddable-dps register --id-scope <s> (--registration-id <r> | --registration-id-template <t> [--serial <n>] [--mac <m>])
                             (--key <deviceKey> | --group-key <groupKey> | --cert <pem> --cert-key <pem>) [options]

Provisions the device with DPS: registers, waits while DPS is assigning, and prints the
assigned hub. With --store, a matching stored assignment is reused and DPS is not contacted.

${PROVISIONING_HELP}

Exit status: 0 assigned; 2 bad input; 3 unauthorized; 4 disabled; 5 failed; 6 throttled;
7 server errors; 8 network; 9 untrusted certificate; 10 protocol; 11 timeout; 12 storage.
`;

export async function register(argv: string[], io: CliIo): Promise<number> {
  const v = parse(argv, PROVISIONING_FLAGS, REGISTER_HELP, io);
  if (!v) return 0;
  const { config, ports } = provisioningFromFlags(v, io);
  const { assignment, fromCache } = await provisionDevice(config, ports);
  io.stdout(describeAssignment(assignment, fromCache, v.json === true));
  return 0;
}

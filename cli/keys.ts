// `moddable-dps compute-device-key` and `moddable-dps sas-token`: the two commands whose output
// is a secret (as az's), printed alone on stdout so that scripts can capture it.

import { systemClock } from '../hosts/node/clock.js';
import { DEFAULT_SAS_TTL_SECONDS, MAX_SAS_TTL_SECONDS } from '../src/dps/flow.js';
import { ProvisioningError } from '../src/errors.js';
import { deriveDeviceKey, validateIdScope, validateRegistrationId } from '../src/identity.js';
import { dpsRegistrationSasToken } from '../src/sas.js';
import { integer, parse, readSecret, required } from './shared/args.js';
import type { CliIo } from './shared/io.js';

const COMPUTE_HELP = `Usage: moddable-dps compute-device-key --key <groupKey> --registration-id <id>

Derives the device key of an enrollment group member (as 'az iot dps enrollment-group
compute-device-key' does) and prints only the key.

  --key <groupKey>         the enrollment group's primary or secondary key (base64)
  --key-file <path>        read the group key from a file instead
  --registration-id <id>   the device's registration ID
`;

export async function computeDeviceKey(argv: string[], io: CliIo): Promise<number> {
  const v = parse(
    argv,
    { key: { type: 'string' }, 'key-file': { type: 'string' }, 'registration-id': { type: 'string' } },
    COMPUTE_HELP,
    io,
  );
  if (!v) return 0;
  const groupKey = required(readSecret(v.key, v['key-file'], '--key'), '--key');
  io.stdout(`${deriveDeviceKey(groupKey, required(v['registration-id'], '--registration-id'))}\n`);
  return 0;
}

const SAS_HELP = `Usage: moddable-dps sas-token --id-scope <s> --registration-id <r> --key <deviceKey> [--expiry <unix seconds> | --ttl <seconds>]

Prints only the SAS token a device presents to DPS as its MQTT password.

  --id-scope <s>           the DPS instance's ID scope
  --registration-id <r>    the device's registration ID
  --key <deviceKey>        the device's symmetric key (base64); --key-file <path> to read it
  --expiry <seconds>       absolute expiry, Unix seconds
  --ttl <seconds>          lifetime from now, 60 to ${MAX_SAS_TTL_SECONDS} (default ${DEFAULT_SAS_TTL_SECONDS})
`;

export async function sasToken(argv: string[], io: CliIo): Promise<number> {
  const v = parse(
    argv,
    {
      'id-scope': { type: 'string' },
      'registration-id': { type: 'string' },
      key: { type: 'string' },
      'key-file': { type: 'string' },
      expiry: { type: 'string' },
      ttl: { type: 'string' },
    },
    SAS_HELP,
    io,
  );
  if (!v) return 0;
  if (v.expiry !== undefined && v.ttl !== undefined) throw new ProvisioningError('invalid-input', 'Give --expiry or --ttl, not both');
  const idScope = validateIdScope(required(v['id-scope'], '--id-scope'));
  const registrationId = validateRegistrationId(required(v['registration-id'], '--registration-id'));
  const key = required(readSecret(v.key, v['key-file'], '--key'), '--key');
  const expiry =
    v.expiry !== undefined
      ? integer(v.expiry, '--expiry', 1, 2 ** 53)
      : Math.floor(systemClock.now() / 1000) +
        (v.ttl !== undefined ? integer(v.ttl, '--ttl', 60, MAX_SAS_TTL_SECONDS) : DEFAULT_SAS_TTL_SECONDS);
  io.stdout(`${dpsRegistrationSasToken(idScope, registrationId, key, expiry)}\n`);
  return 0;
}

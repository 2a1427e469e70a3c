// `moddable-dps dps enrollment create|update|show|delete|list|registration`: individual
// enrollments with the flags of `az iot dps enrollment` (symmetric key attestation), over the DPS
// service API. As for groups: create prints the enrollment with its keys (DPS generates those not
// given), show only with --show-keys, list and update never. Each command takes only its own flags.
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, type Flags, type Io, parseFlags, safe, serviceClient, type Values } from '../service/flags.js';
import {
  type Enrollment,
  enrollmentFromFlags,
  etagHeader,
  FIELD_FLAGS,
  idFlag,
  printEnrollment,
  printList,
  queryAll,
  requireChange,
  top,
  updatedEnrollment,
  withoutKeys,
  X509_FLAGS,
  x509FromFlags,
} from './enrollment-fields.js';
import { registrationCommand } from './registration.js';

const HELP = `Usage: moddable-dps dps enrollment <command> [options]

  create --enrollment-id <registrationId> [--attestation-type symmetricKey|x509] [--device-id <id>]
         [--primary-key <k>] [--secondary-key <k>] (or --primary-key-file / --secondary-key-file)
         x509: --certificate-path <pem> [--secondary-certificate-path <pem>], the device's certificate
         (its CN the registration ID; the device authenticates by its thumbprint)
         [--allocation-policy hashed|geoLatency|static|custom] [--iot-hubs <h1,h2>]
         [--provisioning-status enabled|disabled] [--initial-twin-tags <json>] [--initial-twin-properties <json>]
         [--reprovision-policy reprovisionandmigratedata|reprovisionandresetdata|never]
         [--webhook-url <url> [--api-version <v>]]
         Creates or replaces the enrollment and prints it with its keys (DPS generates keys not given).
         The device registers with the enrollment ID as its registration ID and one of these keys;
         its device ID in the hub is --device-id (default: the registration ID).
  update --enrollment-id <registrationId> [the flags of create but --attestation-type] [--etag <etag>]
         Changes what is given and keeps the rest (a key given replaces that key; --initial-twin-tags
         or --initial-twin-properties replace that part of the initial twin; --iot-hubs '' means every
         linked hub). Prints the enrollment without its keys.
  show   --enrollment-id <registrationId> [--show-keys]
  delete --enrollment-id <registrationId> [--etag <etag>]
  list   [--top <n>]
  registration show|delete --registration-id <id> [--etag <etag>]
         The enrollment's registration record; deleting it makes the device's next registration a first one.

${COMMON_HELP}`;

const ID: Flags = { 'enrollment-id': { type: 'string' } };
const ETAG: Flags = { etag: { type: 'string' } };
const DEVICE_ID: Flags = { 'device-id': { type: 'string' } };

const SUBCOMMANDS: Record<string, Flags> = {
  create: { ...ID, ...FIELD_FLAGS, ...X509_FLAGS, ...DEVICE_ID, 'attestation-type': { type: 'string' } },
  update: { ...ID, ...FIELD_FLAGS, ...DEVICE_ID, ...ETAG },
  show: { ...ID, 'show-keys': { type: 'boolean' } },
  delete: { ...ID, ...ETAG },
  list: { top: { type: 'string' } },
};

export async function enrollmentCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'registration') return registrationCommand(rest, io, 'individual', HELP);
  const flags = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!flags) throw new ProvisioningError('invalid-input', `unknown command 'dps enrollment ${safe(sub)}'. See --help`);
  const values = parseFlags(rest, flags, HELP, io);
  if (!values) return 0;
  const asJson = values.json === true;
  if (sub === 'list') {
    const client = serviceClient(values, io);
    printList(io, asJson, await queryAll<Enrollment>(client, '/enrollments/query', top(values)), 'no individual enrollments');
    return 0;
  }
  const id = idFlag(values, ['enrollment-id']);
  const path = `/enrollments/${encodeURIComponent(id)}`;
  if (sub === 'create') {
    const attestation = typeof values['attestation-type'] === 'string' ? values['attestation-type'].toLowerCase() : 'symmetrickey';
    if (attestation !== 'symmetrickey' && attestation !== 'x509')
      throw new ProvisioningError('invalid-input', '--attestation-type must be symmetricKey or x509 (tpm is not supported)');
    const x509 = x509FromFlags(values, 'individual');
    if (attestation === 'x509' && !x509) throw new ProvisioningError('invalid-input', '--attestation-type x509 needs --certificate-path');
    if (attestation !== 'x509' && x509) throw new ProvisioningError('invalid-input', '--certificate-path needs --attestation-type x509');
    const fields = enrollmentFromFlags({ registrationId: id }, values);
    const body = withDeviceId(x509 ? { ...fields, attestation: x509 } : fields, values);
    const created = (await serviceClient(values, io).call('PUT', path, { body })).body as Enrollment;
    printEnrollment(io, asJson, created);
    return 0;
  }
  if (sub === 'update') requireChange(values, ['device-id']);
  const client = serviceClient(values, io);
  if (sub === 'delete') {
    await client.call('DELETE', path, etagHeader(values));
    if (!asJson) io.stdout(`deleted enrollment ${id}\n`);
    return 0;
  }
  const current = (await client.call('GET', path)).body as Enrollment;
  if (sub === 'show') {
    printEnrollment(io, asJson, values['show-keys'] === true ? current : withoutKeys(current));
    return 0;
  }
  const etag = typeof values.etag === 'string' && values.etag !== '' ? values.etag : `"${current.etag}"`;
  const body = withDeviceId(updatedEnrollment(current, values, ['device-id']), values);
  const updated = (await client.call('PUT', path, { body, headers: { 'if-match': etag } })).body as Enrollment;
  printEnrollment(io, asJson, withoutKeys(updated));
  return 0;
}

function withDeviceId(enrollment: Enrollment, values: Values): Enrollment {
  const deviceId = values['device-id'];
  if (deviceId === undefined) return enrollment;
  if (typeof deviceId !== 'string' || deviceId === '') throw new ProvisioningError('invalid-input', '--device-id needs a device ID');
  return { ...enrollment, deviceId };
}

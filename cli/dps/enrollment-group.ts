// `moddable-dps dps enrollment-group create|update|show|delete|list|compute-device-key|registration`:
// the flags of `az iot dps enrollment-group`, over the DPS service API (so they work against real
// DPS as well). create prints the group with its keys (as az does: that is how you learn generated
// keys); show prints them only with --show-keys (as az); list and update never do;
// compute-device-key prints only the derived key. Each command takes only its own flags.
import { ProvisioningError } from '../../src/errors.js';
import { deriveDeviceKey } from '../../src/identity.js';
import { COMMON_HELP, type Flags, type Io, optionalSecretFlag, parseFlags, printJson, safe, serviceClient } from '../service/flags.js';
import {
  CA_NAME_FLAGS,
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

const HELP = `Usage: moddable-dps dps enrollment-group <command> [options]

  create --enrollment-id <id> [--primary-key <k>] [--secondary-key <k>] (or --primary-key-file / --secondary-key-file)
         [--allocation-policy hashed|geoLatency|static|custom] [--iot-hubs <h1,h2>]
         [--provisioning-status enabled|disabled] [--initial-twin-tags <json>] [--initial-twin-properties <json>]
         [--reprovision-policy reprovisionandmigratedata|reprovisionandresetdata|never]
         [--webhook-url <url> [--api-version <v>]]
         Creates or replaces the group and prints it with its keys (DPS generates keys not given).
         X.509 instead of keys: --certificate-path <pem> [--secondary-certificate-path <pem>], the
         signing CA (root or intermediate) that issues the devices' certificates, trusted as given;
         or --ca-name <name> [--secondary-ca-name <name>], CA certificates uploaded with
         'dps certificate create' and verified (proof of possession) before devices are accepted
  update --enrollment-id <id> [the flags of create] [--etag <etag>]
         Changes what is given and keeps the rest (a key given replaces that key; --initial-twin-tags
         or --initial-twin-properties replace that part of the initial twin; --iot-hubs '' means every
         linked hub). Prints the group without its keys.
  show   --enrollment-id <id> [--show-keys]
  delete --enrollment-id <id> [--etag <etag>]
  list   [--top <n>]
  compute-device-key --registration-id <id> (--enrollment-id <id> | --key <groupKey> | --key-file <path>)
         Prints only the device key derived from the group's primary key (or from --key, offline).
  registration list --enrollment-id <id>     the group's registration records
  registration show|delete --registration-id <id> [--etag <etag>]
         Deleting a record makes the device's next registration a first one.

--group-id is another name for --enrollment-id.

${COMMON_HELP}`;

const ID: Flags = { 'enrollment-id': { type: 'string' }, 'group-id': { type: 'string' } };
const ID_NAMES = ['enrollment-id', 'group-id'];
const ETAG: Flags = { etag: { type: 'string' } };

const SUBCOMMANDS: Record<string, Flags> = {
  create: { ...ID, ...FIELD_FLAGS, ...X509_FLAGS, ...CA_NAME_FLAGS },
  update: { ...ID, ...FIELD_FLAGS, ...ETAG },
  show: { ...ID, 'show-keys': { type: 'boolean' } },
  delete: { ...ID, ...ETAG },
  list: { top: { type: 'string' } },
  'compute-device-key': { ...ID, 'registration-id': { type: 'string' }, key: { type: 'string' }, 'key-file': { type: 'string' } },
};

export async function enrollmentGroupCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'registration') return registrationCommand(rest, io, 'group', HELP);
  const flags = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!flags) throw new ProvisioningError('invalid-input', `unknown command 'dps enrollment-group ${safe(sub)}'. See --help`);
  const values = parseFlags(rest, flags, HELP, io);
  if (!values) return 0;
  const asJson = values.json === true;
  if (sub === 'compute-device-key') {
    const registrationId = values['registration-id'];
    if (typeof registrationId !== 'string' || registrationId === '')
      throw new ProvisioningError('invalid-input', 'Missing --registration-id');
    let groupKey = optionalSecretFlag(values, 'key');
    if (groupKey !== undefined && ID_NAMES.some((name) => values[name] !== undefined))
      throw new ProvisioningError('invalid-input', 'Give --enrollment-id (the key is read from DPS) or --key, not both');
    if (groupKey === undefined) {
      const id = idFlag(values, ID_NAMES);
      const group = (await serviceClient(values, io).call('GET', groupPath(id))).body as Enrollment;
      groupKey = group.attestation?.symmetricKey?.primaryKey;
      if (!groupKey) throw new ProvisioningError('failed', `The enrollment group ${safe(id)} has no symmetric key`);
    }
    const deviceKey = deriveDeviceKey(groupKey, registrationId);
    if (asJson) printJson(io, deviceKey);
    else io.stdout(`${deviceKey}\n`);
    return 0;
  }
  const client = serviceClient(values, io);
  if (sub === 'list') {
    const groups = await queryAll<Enrollment>(client, '/enrollmentGroups/query', top(values));
    printList(io, asJson, groups, 'no enrollment groups');
    return 0;
  }
  const id = idFlag(values, ID_NAMES);
  const path = groupPath(id);
  if (sub === 'delete') {
    await client.call('DELETE', path, etagHeader(values));
    if (!asJson) io.stdout(`deleted enrollment group ${id}\n`);
    return 0;
  }
  if (sub === 'show') {
    const group = (await client.call('GET', path)).body as Enrollment;
    printEnrollment(io, asJson, values['show-keys'] === true ? group : withoutKeys(group));
    return 0;
  }
  if (sub === 'update') {
    requireChange(values);
    const current = (await client.call('GET', path)).body as Enrollment;
    const etag = typeof values.etag === 'string' && values.etag !== '' ? values.etag : `"${current.etag}"`;
    const body = updatedEnrollment(current, values);
    const updated = (await client.call('PUT', path, { body, headers: { 'if-match': etag } })).body as Enrollment;
    printEnrollment(io, asJson, withoutKeys(updated));
    return 0;
  }
  const x509 = x509FromFlags(values, 'group');
  const fields = enrollmentFromFlags({ enrollmentGroupId: id }, values);
  const body = x509 ? { ...fields, attestation: x509 } : fields;
  const created = (await client.call('PUT', path, { body })).body as Enrollment;
  printEnrollment(io, asJson, created);
  return 0;
}

function groupPath(id: string): string {
  return `/enrollmentGroups/${encodeURIComponent(id)}`;
}

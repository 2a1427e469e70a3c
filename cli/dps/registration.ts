// `dps enrollment-group registration list|show|delete` and `dps enrollment registration
// show|delete`: DPS's registration records (DeviceRegistrationState: status, assigned hub, device
// ID; never a key), as `az iot dps ... registration` shows and deletes them. Deleting a record
// makes the device's next registration a first one: allocated afresh, whatever the reprovision
// policy says (the device identity in the hub stays, as DPS leaves it).
import { ProvisioningError } from '../../src/errors.js';
import { type Flags, type Io, parseFlags, printJson, safe, serviceClient } from '../service/flags.js';
import { etagHeader, idFlag, queryAll } from './enrollment-fields.js';

interface RegistrationState {
  registrationId: string;
  status?: string;
  substatus?: string;
  assignedHub?: string;
  deviceId?: string;
  errorCode?: number;
  errorMessage?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
}

const REGISTRATION_ID: Flags = { 'registration-id': { type: 'string' } };

const SUBCOMMANDS: Record<'group' | 'individual', Record<string, Flags>> = {
  group: {
    list: { 'enrollment-id': { type: 'string' }, 'group-id': { type: 'string' } },
    show: REGISTRATION_ID,
    delete: { ...REGISTRATION_ID, etag: { type: 'string' } },
  },
  individual: {
    show: REGISTRATION_ID,
    delete: { ...REGISTRATION_ID, etag: { type: 'string' } },
  },
};

/** `help`: the parent command's, which lists these. */
export async function registrationCommand(argv: string[], io: Io, kind: 'group' | 'individual', help: string): Promise<number> {
  const [sub, ...rest] = argv;
  const parent = kind === 'group' ? 'dps enrollment-group registration' : 'dps enrollment registration';
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(help);
    return sub === undefined ? 2 : 0;
  }
  const flags = Object.hasOwn(SUBCOMMANDS[kind], sub) ? SUBCOMMANDS[kind][sub] : undefined;
  if (!flags) throw new ProvisioningError('invalid-input', `unknown command '${parent} ${safe(sub)}'. See --help`);
  const values = parseFlags(rest, flags, help, io);
  if (!values) return 0;
  const asJson = values.json === true;
  if (sub === 'list') {
    const groupId = idFlag(values, ['enrollment-id', 'group-id']);
    const client = serviceClient(values, io);
    const records = await queryAll<RegistrationState>(client, `/registrations/${encodeURIComponent(groupId)}/query`);
    if (asJson) printJson(io, records);
    else io.stdout(records.length === 0 ? 'no registrations\n' : records.map(line).join(''));
    return 0;
  }
  const registrationId = idFlag(values, ['registration-id']);
  const client = serviceClient(values, io);
  const path = `/registrations/${encodeURIComponent(registrationId)}`;
  if (sub === 'delete') {
    await client.call('DELETE', path, etagHeader(values));
    if (!asJson) io.stdout(`deleted registration ${registrationId}\n`);
    return 0;
  }
  const state = (await client.call('GET', path)).body as RegistrationState;
  if (asJson) printJson(io, state);
  else io.stdout(details(state));
  return 0;
}

function line(state: RegistrationState): string {
  return `${state.registrationId}  ${state.status ?? '-'}  assignedHub ${state.assignedHub ?? '-'}  deviceId ${state.deviceId ?? '-'}\n`;
}

const FIELDS = [
  'registrationId',
  'status',
  'substatus',
  'assignedHub',
  'deviceId',
  'errorCode',
  'errorMessage',
  'createdDateTimeUtc',
  'lastUpdatedDateTimeUtc',
  'etag',
] as const;

function details(state: RegistrationState): string {
  return FIELDS.filter((field) => state[field] !== undefined && state[field] !== null)
    .map((field) => `${field}: ${state[field]}\n`)
    .join('');
}

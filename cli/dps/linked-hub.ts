// `moddable-dps dps linked-hub create|update|delete|list|show`: each change is a get-modify-put
// of the DPS resource guarded by its etag, as az does it. Each command takes only its own flags;
// update --connection-string re-links a hub with a new key (key rotation).
import { ProvisioningError } from '../../src/errors.js';
import type { DpsServiceClient } from '../service/client.js';
import {
  COMMON_HELP,
  type Flags,
  type Io,
  optionalSecretFlag,
  parseFlags,
  printJson,
  readSecretFlag,
  required,
  safe,
  serviceClient,
  type Values,
} from '../service/flags.js';
import { hubLines, type LinkedHubEntry, type Resource } from './resource.js';

const LINKED_HUB_HELP = `Usage: moddable-dps dps linked-hub <create|update|delete|list|show> [options]

  create --connection-string <cs> [--location <region>] [--allocation-weight <1..1000>]
         [--apply-allocation-policy true|false]      link an IoT hub (--connection-string-file <path> to read it)
  update --linked-hub <hostName> [--connection-string <cs>] [--allocation-weight <n>]
         [--apply-allocation-policy true|false] [--location <region>]
         --connection-string re-links the hub with another key of its (e.g. after 'hub policy
         renew-key'); it must name the same hub, which then need not be given as --linked-hub
  delete --linked-hub <hostName>
  list
  show   --linked-hub <hostName>

A connection string must name a policy with RegistryWrite and ServiceConnect (e.g. iothubowner).

${COMMON_HELP}`;

const CONNECTION_STRING: Flags = { 'connection-string': { type: 'string' }, 'connection-string-file': { type: 'string' } };
const CHANGES: Flags = {
  location: { type: 'string' },
  'allocation-weight': { type: 'string' },
  'apply-allocation-policy': { type: 'string' },
};
const LINKED_HUB: Flags = { 'linked-hub': { type: 'string' } };

const SUBCOMMANDS: Record<string, Flags> = {
  create: { ...CONNECTION_STRING, ...CHANGES },
  update: { ...LINKED_HUB, ...CONNECTION_STRING, ...CHANGES },
  delete: LINKED_HUB,
  list: {},
  show: LINKED_HUB,
};

export async function linkedHubCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(LINKED_HUB_HELP);
    return sub === undefined ? 2 : 0;
  }
  const flags = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!flags) throw new ProvisioningError('invalid-input', `unknown command 'dps linked-hub ${safe(sub)}'. See --help`);
  const values = parseFlags(rest, flags, LINKED_HUB_HELP, io);
  if (!values) return 0;
  // Checked before anything is read: an update that changes nothing is refused, not done.
  const update = sub === 'update' ? changes(values) : {};
  const connectionString = sub === 'update' ? optionalSecretFlag(values, 'connection-string') : undefined;
  if (sub === 'update' && connectionString === undefined && Object.keys(update).length === 0) {
    throw new ProvisioningError(
      'invalid-input',
      'Nothing to update: give --connection-string, --allocation-weight, --apply-allocation-policy or --location',
    );
  }
  const client = serviceClient(values, io);
  const resource = (await client.call('GET', '/resource')).body as Resource;
  const hubs = resource.properties.iotHubs;
  if (sub === 'list') return listHubs(io, hubs, values);
  if (sub === 'create') {
    hubs.push({ connectionString: readSecretFlag(values, 'connection-string'), ...changes(values) });
    return putAndList(client, resource, io, values);
  }
  const named = connectionString === undefined ? undefined : hostNameOf(connectionString);
  const wanted = (
    typeof values['linked-hub'] === 'string' && values['linked-hub'] !== ''
      ? values['linked-hub']
      : (named ?? required(values, 'linked-hub'))
  ).toLowerCase();
  if (named !== undefined && named.toLowerCase() !== wanted) {
    throw new ProvisioningError(
      'invalid-input',
      `--connection-string names the hub ${safe(named)}, not ${safe(wanted)}: it re-links a hub with another key; to link another hub, use 'linked-hub create'`,
    );
  }
  const index = hubs.findIndex((h) => (h.name ?? '').toLowerCase() === wanted);
  if (index < 0) throw new ProvisioningError('failed', `The IoT hub ${safe(wanted)} is not linked to this DPS instance`);
  if (sub === 'show') {
    printJson(io, hubs[index]);
    return 0;
  }
  if (sub === 'delete') hubs.splice(index, 1);
  else Object.assign(hubs[index]!, update, connectionString !== undefined && { connectionString });
  return putAndList(client, resource, io, values);
}

/** The HostName of a connection string, if it has one (the service checks the rest). */
function hostNameOf(connectionString: string): string | undefined {
  return /(?:^|;)\s*HostName=([^;]+)/i.exec(connectionString)?.[1]?.trim();
}

function changes(values: Values): Partial<LinkedHubEntry> {
  const out: Partial<LinkedHubEntry> = {};
  if (typeof values.location === 'string') out.location = values.location;
  const weight = values['allocation-weight'];
  if (typeof weight === 'string') {
    if (!/^-?\d{1,9}$/.test(weight))
      throw new ProvisioningError('invalid-input', '--allocation-weight must be a whole number from 1 to 1000');
    out.allocationWeight = Number(weight);
  }
  const apply = values['apply-allocation-policy'];
  if (typeof apply === 'string') {
    if (apply !== 'true' && apply !== 'false')
      throw new ProvisioningError('invalid-input', '--apply-allocation-policy must be true or false');
    out.applyAllocationPolicy = apply === 'true';
  }
  return out;
}

async function putAndList(client: DpsServiceClient, resource: Resource, io: Io, values: Values): Promise<number> {
  const reply = await client.call('PUT', '/resource', { body: resource, headers: { 'if-match': `"${resource.etag}"` } });
  return listHubs(io, (reply.body as Resource).properties.iotHubs, values);
}

function listHubs(io: Io, hubs: LinkedHubEntry[], values: Values): number {
  if (values.json) printJson(io, hubs);
  else io.stdout(hubs.length === 0 ? 'no linked hubs\n' : hubLines(hubs));
  return 0;
}

// The DPS resource (the emulator's GET/PUT /resource, shaped like ARM's provisioningServices):
// printing it, `dps update --set`, and `dps linked-hub create|update|delete|list|show`. Each
// change is a get-modify-put guarded by the resource's etag, as az does it.
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, parseFlags, printJson, readSecretFlag, required, safe, serviceClient, type Io, type Values } from './dps-cli-shared.js';
import type { DpsServiceClient } from './dps-service-client.js';

export interface LinkedHubEntry {
  connectionString: string;
  name?: string;
  location?: string;
  allocationWeight?: number | null;
  applyAllocationPolicy?: boolean | null;
}

export interface Resource {
  name: string;
  etag: string;
  properties: {
    idScope: string;
    allocationPolicy: string;
    iotHubs: LinkedHubEntry[];
    serviceOperationsHostName: string;
    deviceProvisioningHostName: string;
  };
}

export function printResource(io: Io, resource: Resource, json: boolean): void {
  if (json) return printJson(io, resource);
  const p = resource.properties;
  io.stdout(
    `name: ${resource.name}\nidScope: ${p.idScope}\nallocationPolicy: ${p.allocationPolicy}\n` +
      `serviceOperationsHostName: ${p.serviceOperationsHostName}\ndeviceProvisioningHostName: ${p.deviceProvisioningHostName}\n` +
      `linked hubs:${p.iotHubs.length === 0 ? ' none' : ''}\n${hubLines(p.iotHubs)}`,
  );
}

function hubLines(hubs: LinkedHubEntry[]): string {
  return hubs
    .map((h, i) => `  [${i}] ${h.name}  location ${h.location || '-'}  weight ${h.allocationWeight ?? 1}  applyAllocationPolicy ${h.applyAllocationPolicy ?? true}\n`)
    .join('');
}

const SETTABLE = new Set(['connectionString', 'location', 'allocationWeight', 'applyAllocationPolicy']);

/** Apply one `--set <path>=<value>` (az's syntax); values true/false/null/numbers are typed, the rest are strings. */
export function setPath(resource: Resource, assignment: string): void {
  const eq = assignment.indexOf('=');
  const path = eq > 0 ? assignment.slice(0, eq).trim() : '';
  const raw = assignment.slice(eq + 1);
  if (path === 'properties.allocationPolicy') {
    resource.properties.allocationPolicy = raw;
    return;
  }
  const match = /^properties\.iotHubs\[(\d{1,4})\]\.([A-Za-z]+)$/.exec(path);
  if (!match || !SETTABLE.has(match[2]!)) {
    throw new ProvisioningError(
      'invalid-input',
      `--set ${safe(path) === '?' ? '' : `${path} `}is not supported: use properties.allocationPolicy=... or properties.iotHubs[<i>].<connectionString|location|allocationWeight|applyAllocationPolicy>=...`,
    );
  }
  const hub = resource.properties.iotHubs[Number(match[1])];
  if (!hub) throw new ProvisioningError('invalid-input', `--set: there is no properties.iotHubs[${match[1]}] (${resource.properties.iotHubs.length} linked hubs)`);
  const field = match[2] as keyof LinkedHubEntry;
  (hub as unknown as Record<string, unknown>)[field] = field === 'connectionString' || field === 'location' ? raw : typed(raw);
}

function typed(raw: string): unknown {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null') return null;
  if (/^-?\d+$/.test(raw)) return Number(raw);
  return raw;
}

const LINKED_HUB_HELP = `Usage: moddable-dps dps linked-hub <create|update|delete|list|show> [options]

  create --connection-string <cs> [--location <region>] [--allocation-weight <1..1000>]
         [--apply-allocation-policy true|false]      link an IoT hub (--connection-string-file <path> to read it)
  update --linked-hub <hostName> [--allocation-weight <n>] [--apply-allocation-policy true|false] [--location <region>]
  delete --linked-hub <hostName>
  list
  show   --linked-hub <hostName>

A connection string must name a policy with RegistryWrite and ServiceConnect (e.g. iothubowner).

${COMMON_HELP}`;

export async function linkedHubCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(LINKED_HUB_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (!['create', 'update', 'delete', 'list', 'show'].includes(sub)) {
    throw new ProvisioningError('invalid-input', `unknown command 'dps linked-hub ${safe(sub)}'. See --help`);
  }
  const values = parseFlags(
    rest,
    {
      'connection-string': { type: 'string' },
      'connection-string-file': { type: 'string' },
      'linked-hub': { type: 'string' },
      location: { type: 'string' },
      'allocation-weight': { type: 'string' },
      'apply-allocation-policy': { type: 'string' },
    },
    LINKED_HUB_HELP,
    io,
  );
  if (!values) return 0;
  const client = serviceClient(values, io);
  const resource = (await client.call('GET', '/resource')).body as Resource;
  const hubs = resource.properties.iotHubs;
  if (sub === 'list') return listHubs(io, hubs, values);
  if (sub === 'create') {
    const connectionString = readSecretFlag(values, 'connection-string');
    hubs.push({ connectionString, ...changes(values) });
    return putAndList(client, resource, io, values);
  }
  const wanted = required(values, 'linked-hub').toLowerCase();
  const index = hubs.findIndex((h) => (h.name ?? '').toLowerCase() === wanted);
  if (index < 0) throw new ProvisioningError('failed', `The IoT hub ${safe(wanted)} is not linked to this DPS instance`);
  if (sub === 'show') {
    printJson(io, hubs[index]);
    return 0;
  }
  if (sub === 'delete') hubs.splice(index, 1);
  else Object.assign(hubs[index]!, changes(values));
  return putAndList(client, resource, io, values);
}

function changes(values: Values): Partial<LinkedHubEntry> {
  const out: Partial<LinkedHubEntry> = {};
  if (typeof values.location === 'string') out.location = values.location;
  const weight = values['allocation-weight'];
  if (typeof weight === 'string') {
    if (!/^-?\d{1,9}$/.test(weight)) throw new ProvisioningError('invalid-input', '--allocation-weight must be a whole number from 1 to 1000');
    out.allocationWeight = Number(weight);
  }
  const apply = values['apply-allocation-policy'];
  if (typeof apply === 'string') {
    if (apply !== 'true' && apply !== 'false') throw new ProvisioningError('invalid-input', '--apply-allocation-policy must be true or false');
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

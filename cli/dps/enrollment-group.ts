// `moddable-dps dps enrollment-group create|show|delete|list`: the flags of `az iot dps
// enrollment-group`, over the DPS service API (so they work against real DPS as well).
// create prints the group with its keys (as az does: that is how you learn generated keys);
// show prints them only with --show-keys (as az); list never does.
import { isNestedDeeper, MAX_JSON_DEPTH } from '../../src/dps/messages.js';
import { ProvisioningError } from '../../src/errors.js';
import {
  COMMON_HELP,
  type Io,
  optionalSecretFlag,
  parseFlags,
  printJson,
  required,
  safe,
  serviceClient,
  type Values,
} from '../service/flags.js';

interface EnrollmentGroup {
  enrollmentGroupId: string;
  attestation?: { type: string; symmetricKey?: { primaryKey?: string; secondaryKey?: string } };
  provisioningStatus?: string;
  allocationPolicy?: string;
  iotHubs?: string[];
  initialTwin?: unknown;
  reprovisionPolicy?: { updateHubAssignment: boolean; migrateDeviceData: boolean };
  etag?: string;
  [field: string]: unknown;
}

const HELP = `Usage: moddable-dps dps enrollment-group <create|show|delete|list> [options]

  create --enrollment-id <id> [--primary-key <k>] [--secondary-key <k>] (or --primary-key-file / --secondary-key-file)
         [--allocation-policy hashed|geoLatency|static|custom] [--iot-hubs <h1,h2>]
         [--provisioning-status enabled|disabled] [--initial-twin-tags <json>] [--initial-twin-properties <json>]
         [--reprovision-policy reprovisionandmigratedata|reprovisionandresetdata|never]
         [--webhook-url <url> --api-version <v>]
         Creates or replaces the group and prints it with its keys (DPS generates keys not given).
  show   --enrollment-id <id> [--show-keys]
  delete --enrollment-id <id> [--etag <etag>]
  list   [--top <n>]

${COMMON_HELP}`;

const FLAGS = {
  'enrollment-id': { type: 'string' },
  'primary-key': { type: 'string' },
  'primary-key-file': { type: 'string' },
  'secondary-key': { type: 'string' },
  'secondary-key-file': { type: 'string' },
  'allocation-policy': { type: 'string' },
  'iot-hubs': { type: 'string' },
  'provisioning-status': { type: 'string' },
  'initial-twin-tags': { type: 'string' },
  'initial-twin-properties': { type: 'string' },
  'reprovision-policy': { type: 'string' },
  'webhook-url': { type: 'string' },
  'api-version': { type: 'string' },
  'show-keys': { type: 'boolean' },
  etag: { type: 'string' },
  top: { type: 'string' },
} as const;

const REPROVISION: Record<string, { updateHubAssignment: boolean; migrateDeviceData: boolean }> = {
  reprovisionandmigratedata: { updateHubAssignment: true, migrateDeviceData: true },
  reprovisionandresetdata: { updateHubAssignment: true, migrateDeviceData: false },
  never: { updateHubAssignment: false, migrateDeviceData: true },
};

export async function enrollmentGroupCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (!['create', 'show', 'delete', 'list'].includes(sub)) {
    throw new ProvisioningError('invalid-input', `unknown command 'dps enrollment-group ${safe(sub)}'. See --help`);
  }
  const values = parseFlags(rest, { ...FLAGS }, HELP, io);
  if (!values) return 0;
  const client = serviceClient(values, io);
  if (sub === 'list') {
    const top = values.top === undefined ? Infinity : whole(values.top as string, '--top');
    const groups: EnrollmentGroup[] = [];
    let continuation: string | undefined;
    do {
      const reply = await client.call('POST', '/enrollmentGroups/query', {
        body: { query: '*' },
        headers: { 'x-ms-max-item-count': '100', ...(continuation ? { 'x-ms-continuation': continuation } : {}) },
      });
      groups.push(...(reply.body as EnrollmentGroup[]));
      const next = reply.headers['x-ms-continuation'];
      continuation = typeof next === 'string' && next !== '' ? next : undefined;
    } while (continuation && groups.length < top);
    const shown = groups.slice(0, top === Infinity ? undefined : top).map(withoutKeys);
    if (values.json) printJson(io, shown);
    else io.stdout(shown.length === 0 ? 'no enrollment groups\n' : shown.map(summary).join(''));
    return 0;
  }
  const id = required(values, 'enrollment-id');
  const path = `/enrollmentGroups/${encodeURIComponent(id)}`;
  if (sub === 'delete') {
    await client.call('DELETE', path, typeof values.etag === 'string' ? { headers: { 'if-match': values.etag } } : {});
    if (!values.json) io.stdout(`deleted enrollment group ${id}\n`);
    return 0;
  }
  if (sub === 'show') {
    const group = (await client.call('GET', path)).body as EnrollmentGroup;
    print(io, values.json === true, values['show-keys'] === true ? group : withoutKeys(group));
    return 0;
  }
  const created = (await client.call('PUT', path, { body: groupFromFlags(id, values) })).body as EnrollmentGroup;
  print(io, values.json === true, created);
  return 0;
}

function groupFromFlags(id: string, values: Values): EnrollmentGroup {
  const primaryKey = optionalSecretFlag(values, 'primary-key');
  const secondaryKey = optionalSecretFlag(values, 'secondary-key');
  const group: EnrollmentGroup = {
    enrollmentGroupId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { ...(primaryKey && { primaryKey }), ...(secondaryKey && { secondaryKey }) } },
  };
  const status = values['provisioning-status'];
  if (typeof status === 'string') {
    if (status !== 'enabled' && status !== 'disabled')
      throw new ProvisioningError('invalid-input', '--provisioning-status must be enabled or disabled');
    group.provisioningStatus = status;
  }
  if (typeof values['allocation-policy'] === 'string') group.allocationPolicy = values['allocation-policy'];
  if (typeof values['iot-hubs'] === 'string') group.iotHubs = values['iot-hubs'].split(/[,\s]+/).filter(Boolean);
  const tags = json(values['initial-twin-tags'], '--initial-twin-tags');
  const desired = json(values['initial-twin-properties'], '--initial-twin-properties');
  if (tags !== undefined || desired !== undefined) {
    group.initialTwin = { ...(tags !== undefined && { tags }), ...(desired !== undefined && { properties: { desired } }) };
  }
  const reprovision = values['reprovision-policy'];
  if (typeof reprovision === 'string') {
    const policy = REPROVISION[reprovision.toLowerCase()];
    if (!policy)
      throw new ProvisioningError(
        'invalid-input',
        '--reprovision-policy must be reprovisionandmigratedata, reprovisionandresetdata or never',
      );
    group.reprovisionPolicy = policy;
  }
  if (typeof values['webhook-url'] === 'string') {
    group.customAllocationDefinition = {
      webhookUrl: values['webhook-url'],
      apiVersion: (values['api-version'] as string | undefined) ?? '2021-10-01',
    };
  }
  return group;
}

/** A JSON-valued flag. Its depth is bounded as the core bounds what DPS sends: deeper JSON cannot be sent (JSON.stringify recurses). */
function json(text: string | boolean | string[] | undefined, flag: string): unknown {
  if (typeof text !== 'string') return undefined;
  if (isNestedDeeper(text, MAX_JSON_DEPTH)) {
    throw new ProvisioningError('invalid-input', `${flag} nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ProvisioningError('invalid-input', `${flag} is not valid JSON`);
  }
}

function whole(text: string, flag: string): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1)
    throw new ProvisioningError('invalid-input', `${flag} must be a whole number of at least 1`);
  return Number(text);
}

function withoutKeys(group: EnrollmentGroup): EnrollmentGroup {
  return group.attestation ? { ...group, attestation: { type: group.attestation.type } } : group;
}

function summary(group: EnrollmentGroup): string {
  const hubs = group.iotHubs?.length ? group.iotHubs.join(',') : 'all linked hubs';
  return `${group.enrollmentGroupId}  ${group.provisioningStatus ?? 'enabled'}  allocationPolicy ${group.allocationPolicy ?? '(instance default)'}  iotHubs ${hubs}\n`;
}

function print(io: Io, asJson: boolean, group: EnrollmentGroup): void {
  if (asJson) return printJson(io, group);
  const keys = group.attestation?.symmetricKey;
  io.stdout(
    summary(group) +
      (group.initialTwin !== undefined ? `initialTwin: ${JSON.stringify(group.initialTwin)}\n` : '') +
      (keys?.primaryKey ? `primaryKey: ${keys.primaryKey}\nsecondaryKey: ${keys.secondaryKey}\n` : ''),
  );
}

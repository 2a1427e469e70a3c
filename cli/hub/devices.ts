// `hub device-identity show|list|update|delete` and `hub device-twin show|update`: a hub's device
// identities (created by DPS) and their twins, with the names and flags of `az iot hub
// device-identity` and `az iot hub device-twin`. An identity is shown without its keys (the
// device's secret). `hub device show|list`, the first names of show and list, still work.
import { ProvisioningError } from '../../src/errors.js';
import { type Io, printJson, required, serviceClient, type Values } from '../service/flags.js';
import { DEVICE_ID, HUB_NAME, type HubCommand, hubBase, jsonObjectFlag } from './shared.js';

interface Device {
  deviceId: string;
  registrationId?: string;
  status?: string;
  authentication?: { type: string };
  tags?: unknown;
  properties?: { desired?: unknown };
  [field: string]: unknown;
}

interface Twin {
  deviceId: string;
  status: string;
  etag: string;
  tags: unknown;
  properties: { desired: unknown; reported: unknown };
}

const identityShow: HubCommand = {
  usage: `device-identity show --hub-name <host> --device-id <id>
                   the identity DPS created (registration ID, status), its tags and desired properties; never its keys`,
  flags: { ...HUB_NAME, ...DEVICE_ID },
  async run(values, io) {
    const path = `${hubBase(values)}/devices/${encodeURIComponent(required(values, 'device-id'))}`;
    const device = withoutKeys((await serviceClient(values, io).call('GET', path)).body as Device);
    if (values.json === true) printJson(io, device);
    else
      io.stdout(
        `deviceId: ${device.deviceId}\nhub: ${required(values, 'hub-name').toLowerCase()}\nregistrationId: ${device.registrationId ?? '(none: created in the hub, not by DPS)'}\n` +
          `status: ${device.status}\ntags: ${JSON.stringify(device.tags ?? {})}\n` +
          `desired properties: ${JSON.stringify(device.properties?.desired ?? {})}\n`,
      );
    return 0;
  },
};

const identityList: HubCommand = {
  usage: `device-identity list --hub-name <host>
                   every identity in the hub: device ID, registration, status`,
  flags: { ...HUB_NAME },
  async run(values, io) {
    const devices = ((await serviceClient(values, io).call('GET', `${hubBase(values)}/devices`)).body as Device[]).map(withoutKeys);
    if (values.json === true) printJson(io, devices);
    else
      io.stdout(
        devices.length === 0
          ? `no devices in ${required(values, 'hub-name')}\n`
          : devices
              .map(
                (d) =>
                  `${d.deviceId}  ${d.status ?? 'enabled'}  (${d.registrationId === undefined ? 'created in the hub' : `registration ${d.registrationId}`})\n`,
              )
              .join(''),
      );
    return 0;
  },
};

const identityUpdate: HubCommand = {
  usage: `device-identity update --hub-name <host> --device-id <id> --status enabled|disabled
                   a disabled device is disconnected and refused at its next connect (CONNACK 5); the
                   status is what the emulator lets you change (the identity is DPS's)`,
  flags: { ...HUB_NAME, ...DEVICE_ID, status: { type: 'string' } },
  async run(values, io) {
    const status = values.status;
    if (status === undefined) throw new ProvisioningError('invalid-input', 'Nothing to update: give --status enabled|disabled');
    if (status !== 'enabled' && status !== 'disabled') throw new ProvisioningError('invalid-input', '--status must be enabled or disabled');
    const deviceId = required(values, 'device-id');
    const path = `${hubBase(values)}/devices/${encodeURIComponent(deviceId)}`;
    const updated = (await serviceClient(values, io).call('PUT', path, { body: { status } })).body as Device;
    if (values.json === true) printJson(io, updated);
    else io.stdout(`deviceId: ${updated.deviceId}\nstatus: ${updated.status}\n`);
    return 0;
  },
};

const identityDelete: HubCommand = {
  usage: `device-identity delete --hub-name <host> --device-id <id>
                   removes the identity and closes its connection; the device's next connect is refused
                   and it provisions again with DPS`,
  flags: { ...HUB_NAME, ...DEVICE_ID },
  async run(values, io) {
    const deviceId = required(values, 'device-id');
    await serviceClient(values, io).call('DELETE', `${hubBase(values)}/devices/${encodeURIComponent(deviceId)}`);
    if (values.json !== true) io.stdout(`deleted device ${deviceId}\n`);
    return 0;
  },
};

const twinShow: HubCommand = {
  usage: `device-twin show --hub-name <host> --device-id <id>
                   the twin: status, etag, tags, desired and reported properties`,
  flags: { ...HUB_NAME, ...DEVICE_ID },
  async run(values, io) {
    const path = `${hubBase(values)}/twins/${encodeURIComponent(required(values, 'device-id'))}`;
    printTwin(io, values, (await serviceClient(values, io).call('GET', path)).body as Twin);
    return 0;
  },
};

const twinUpdate: HubCommand = {
  usage: `device-twin update --hub-name <host> --device-id <id> [--desired <json>] [--tags <json>] [--etag <etag>]
                   merges into the desired properties and/or the tags (null removes a member); the device,
                   if connected, gets the desired patch at once. --etag: only if the twin is still the one
                   'device-twin show' gave (else exit 5)`,
  flags: { ...HUB_NAME, ...DEVICE_ID, desired: { type: 'string' }, tags: { type: 'string' }, etag: { type: 'string' } },
  async run(values, io) {
    const desired = jsonObjectFlag(values, 'desired');
    const tags = jsonObjectFlag(values, 'tags');
    if (desired === undefined && tags === undefined)
      throw new ProvisioningError('invalid-input', 'Nothing to update: give --desired <json> and/or --tags <json>');
    const etag = values.etag;
    if (etag === '') throw new ProvisioningError('invalid-input', '--etag needs the etag that device-twin show printed');
    const path = `${hubBase(values)}/twins/${encodeURIComponent(required(values, 'device-id'))}`;
    const body = { ...(tags !== undefined && { tags }), ...(desired !== undefined && { properties: { desired } }) };
    const twin = (
      await serviceClient(values, io).call('PATCH', path, {
        body,
        ...(typeof etag === 'string' && { headers: { 'if-match': etag } }),
      })
    ).body as Twin;
    printTwin(io, values, twin);
    return 0;
  },
};

function printTwin(io: Io, values: Values, twin: Twin): void {
  if (values.json === true) return printJson(io, twin);
  io.stdout(
    `deviceId: ${twin.deviceId}\nstatus: ${twin.status}\netag: ${twin.etag}\ntags: ${JSON.stringify(twin.tags ?? {})}\n` +
      `desired properties: ${JSON.stringify(twin.properties?.desired ?? {})}\n` +
      `reported properties: ${JSON.stringify(twin.properties?.reported ?? {})}\n`,
  );
}

/** The device's keys are the device's secret: never printed. */
function withoutKeys(device: Device): Device {
  return { ...device, authentication: { type: device.authentication?.type ?? 'sas' } };
}

export const DEVICE_COMMANDS: Record<string, HubCommand> = {
  'device-identity show': identityShow,
  'device-identity list': identityList,
  'device-identity update': identityUpdate,
  'device-identity delete': identityDelete,
  'device-twin show': twinShow,
  'device-twin update': twinUpdate,
  // Their first names, kept as aliases.
  'device show': identityShow,
  'device list': identityList,
};

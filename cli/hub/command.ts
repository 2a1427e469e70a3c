// `moddable-dps hub ...`: the emulated IoT hubs behind the links (emulator only), with the
// names and flags of `az iot hub`:
//   hub policy renew-key --hub-name <host> --name <policy> --renew-key primary|secondary|swap
//       prints the renewed policy with its keys, as az does (the new key is the point)
//   hub connection-string show --hub-name <host> [--policy-name iothubowner] [--key-type primary|secondary]
//       prints the policy's connection string (the secret is the point)
//   hub device show --hub-name <host> --device-id <id>    the identity DPS created and its twin (no keys)
//   hub device list --hub-name <host>
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, type Io, parseFlags, printJson, required, safe, serviceClient } from '../service/flags.js';

const HELP = `Usage: moddable-dps hub <command> [options]   (the local emulator's IoT hubs)

  policy renew-key --hub-name <host> --name <policy> --renew-key primary|secondary|swap
                   renew a shared access policy key; links holding the old key stop working
                   until 'dps update --set properties.iotHubs[<i>].connectionString=...'
  connection-string show --hub-name <host> [--policy-name <policy>] [--key-type primary|secondary]
  device show --hub-name <host> --device-id <id>      the device identity and its twin tags/desired properties
  device list --hub-name <host>

${COMMON_HELP}`;

interface Policy {
  keyName: string;
  primaryKey: string;
  secondaryKey: string;
  rights: string;
}

interface Device {
  deviceId: string;
  registrationId?: string;
  status?: string;
  authentication?: { type: string };
  tags?: unknown;
  properties?: { desired?: unknown };
  [field: string]: unknown;
}

export async function hubCommand(argv: string[], io: Io): Promise<number> {
  const [group, sub, ...rest] = argv;
  if (group === undefined || group === '--help' || group === '-h') {
    io.stdout(HELP);
    return group === undefined ? 2 : 0;
  }
  const name = `${group} ${sub ?? ''}`.trim();
  if (!['policy renew-key', 'connection-string show', 'device show', 'device list'].includes(name)) {
    if (sub === '--help' || sub === '-h') {
      io.stdout(HELP);
      return 0;
    }
    throw new ProvisioningError(
      'invalid-input',
      `unknown command 'hub ${safe(group)}${sub ? ` ${safe(sub)}` : ''}'. See 'moddable-dps hub --help'`,
    );
  }
  const values = parseFlags(
    rest,
    {
      'hub-name': { type: 'string' },
      name: { type: 'string' },
      'renew-key': { type: 'string' },
      'policy-name': { type: 'string' },
      'key-type': { type: 'string' },
      'device-id': { type: 'string' },
    },
    HELP,
    io,
  );
  if (!values) return 0;
  const client = serviceClient(values, io);
  const hub = required(values, 'hub-name');
  const base = `/hubs/${encodeURIComponent(hub)}`;
  const json = values.json === true;
  if (name === 'policy renew-key') {
    const which = required(values, 'renew-key').toLowerCase();
    if (!['primary', 'secondary', 'swap'].includes(which))
      throw new ProvisioningError('invalid-input', '--renew-key must be primary, secondary or swap');
    const path = `${base}/policies/${encodeURIComponent(required(values, 'name'))}/renew-key`;
    const policy = (await client.call('POST', path, { query: { key: which } })).body as Policy;
    if (json) printJson(io, policy);
    else
      io.stdout(
        `keyName: ${policy.keyName}\nrights: ${policy.rights}\nprimaryKey: ${policy.primaryKey}\nsecondaryKey: ${policy.secondaryKey}\n`,
      );
    return 0;
  }
  if (name === 'connection-string show') {
    const keyName = typeof values['policy-name'] === 'string' ? values['policy-name'] : 'iothubowner';
    const keyType = typeof values['key-type'] === 'string' ? values['key-type'].toLowerCase() : 'primary';
    if (keyType !== 'primary' && keyType !== 'secondary')
      throw new ProvisioningError('invalid-input', '--key-type must be primary or secondary');
    const policy = (await client.call('GET', `${base}/policies/${encodeURIComponent(keyName)}`)).body as Policy;
    const connectionString = `HostName=${hub.toLowerCase()};SharedAccessKeyName=${policy.keyName};SharedAccessKey=${keyType === 'primary' ? policy.primaryKey : policy.secondaryKey}`;
    if (json) printJson(io, { connectionString });
    else io.stdout(`${connectionString}\n`);
    return 0;
  }
  if (name === 'device list') {
    const devices = ((await client.call('GET', `${base}/devices`)).body as Device[]).map(withoutKeys);
    if (json) printJson(io, devices);
    else
      io.stdout(
        devices.length === 0
          ? `no devices in ${hub}\n`
          : devices.map((d) => `${d.deviceId}  (registration ${d.registrationId})\n`).join(''),
      );
    return 0;
  }
  const deviceId = required(values, 'device-id');
  const device = withoutKeys((await client.call('GET', `${base}/devices/${encodeURIComponent(deviceId)}`)).body as Device);
  if (json) printJson(io, device);
  else {
    io.stdout(
      `deviceId: ${device.deviceId}\nhub: ${hub.toLowerCase()}\nregistrationId: ${device.registrationId}\nstatus: ${device.status}\n` +
        `tags: ${JSON.stringify(device.tags ?? {})}\ndesired properties: ${JSON.stringify(device.properties?.desired ?? {})}\n`,
    );
  }
  return 0;
}

/** The device's keys are the device's secret: never printed. */
function withoutKeys(device: Device): Device {
  return { ...device, authentication: { type: device.authentication?.type ?? 'sas' } };
}

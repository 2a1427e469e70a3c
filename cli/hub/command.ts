// `moddable-dps hub ...`: the emulated IoT hubs behind the links (emulator only), with the names
// and flags of `az iot hub`: shared access policies and connection strings, device identities and
// twins (./devices.ts), direct methods and cloud-to-device messages (./messaging.ts), and the
// telemetry (./monitor-events.ts). Each command takes only its own flags and the common ones;
// any other is refused (exit 2), never ignored. A missing hub, device or policy: exit 5.
import { ProvisioningError } from '../../src/errors.js';
import { COMMON_HELP, parseFlags, printJson, required, safe, serviceClient } from '../service/flags.js';
import { DEVICE_COMMANDS } from './devices.js';
import { MESSAGING_COMMANDS } from './messaging.js';
import { MONITOR_COMMANDS } from './monitor-events.js';
import { HUB_NAME, type HubCommand, type HubIo, hubBase } from './shared.js';

interface Policy {
  keyName: string;
  primaryKey: string;
  secondaryKey: string;
  rights: string;
}

const renewKey: HubCommand = {
  usage: `policy renew-key --hub-name <host> --name <policy> --renew-key primary|secondary|swap
                   renews a shared access policy key and prints the policy with its keys; links holding
                   the old key stop working until 'dps linked-hub update --connection-string ...'`,
  flags: { ...HUB_NAME, name: { type: 'string' }, 'renew-key': { type: 'string' } },
  async run(values, io) {
    const which = required(values, 'renew-key').toLowerCase();
    if (!['primary', 'secondary', 'swap'].includes(which))
      throw new ProvisioningError('invalid-input', '--renew-key must be primary, secondary or swap');
    const path = `${hubBase(values)}/policies/${encodeURIComponent(required(values, 'name'))}/renew-key`;
    const policy = (await serviceClient(values, io).call('POST', path, { query: { key: which } })).body as Policy;
    if (values.json === true) printJson(io, policy);
    else
      io.stdout(
        `keyName: ${policy.keyName}\nrights: ${policy.rights}\nprimaryKey: ${policy.primaryKey}\nsecondaryKey: ${policy.secondaryKey}\n`,
      );
    return 0;
  },
};

const connectionString: HubCommand = {
  usage: `connection-string show --hub-name <host> [--policy-name iothubowner] [--key-type primary|secondary]
                   prints the policy's connection string (the secret is the point)`,
  flags: { ...HUB_NAME, 'policy-name': { type: 'string' }, 'key-type': { type: 'string' } },
  async run(values, io) {
    const hub = required(values, 'hub-name');
    const keyName = typeof values['policy-name'] === 'string' ? values['policy-name'] : 'iothubowner';
    const keyType = typeof values['key-type'] === 'string' ? values['key-type'].toLowerCase() : 'primary';
    if (keyType !== 'primary' && keyType !== 'secondary')
      throw new ProvisioningError('invalid-input', '--key-type must be primary or secondary');
    const policy = (await serviceClient(values, io).call('GET', `${hubBase(values)}/policies/${encodeURIComponent(keyName)}`))
      .body as Policy;
    const text = `HostName=${hub.toLowerCase()};SharedAccessKeyName=${policy.keyName};SharedAccessKey=${keyType === 'primary' ? policy.primaryKey : policy.secondaryKey}`;
    if (values.json === true) printJson(io, { connectionString: text });
    else io.stdout(`${text}\n`);
    return 0;
  },
};

const COMMANDS: Record<string, HubCommand> = {
  'policy renew-key': renewKey,
  'connection-string show': connectionString,
  ...DEVICE_COMMANDS,
  ...MESSAGING_COMMANDS,
  ...MONITOR_COMMANDS,
};

/** The aliases are left out of the list (their help is their new name's). */
const LISTED = Object.keys(COMMANDS).filter((name) => !name.startsWith('device '));

const HELP = `Usage: moddable-dps hub <command> [options]   (the local emulator's IoT hubs, as 'az iot hub')

${LISTED.map((name) => `  ${COMMANDS[name]!.usage}`).join('\n')}

'hub device show|list' are the first names of 'hub device-identity show|list'.
Run 'moddable-dps hub <command> --help' for one command.

${COMMON_HELP}  (invoke-device-method and monitor-events give --timeout az's meaning, as their help says)

Exit status: 0 ok, 2 bad input (a flag the command does not take included), 3 unauthorized,
5 not found (hub, device, policy), not connected, or a stale --etag, 7 the device did not answer
in time, 8 network, 9 TLS, 10 an answer that is not JSON.
`;

export async function hubCommand(argv: string[], io: HubIo): Promise<number> {
  const [group, sub] = argv;
  if (group === undefined || group === '--help' || group === '-h') {
    io.stdout(HELP);
    return group === undefined ? 2 : 0;
  }
  const single = Object.hasOwn(COMMANDS, group) ? group : undefined;
  const name = single ?? `${group} ${sub ?? ''}`.trim();
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    const groups = new Set(Object.keys(COMMANDS).map((known) => known.split(' ')[0]));
    if (groups.has(group) && (sub === undefined || sub === '--help' || sub === '-h')) {
      io.stdout(HELP);
      return sub === undefined ? 2 : 0;
    }
    const shown = sub === undefined ? safe(group) : `${safe(group)} ${safe(sub)}`;
    throw new ProvisioningError('invalid-input', `unknown command 'hub ${shown}'. See 'moddable-dps hub --help'`);
  }
  const values = parseFlags(argv.slice(single ? 1 : 2), command.flags, `Usage: moddable-dps hub ${command.usage}\n\n${COMMON_HELP}`, io);
  if (!values) return 0;
  return command.run(values, io);
}

// `moddable-dps`: the Node host's command line. Each command is a function of (argv, io) that
// returns the exit code, so tests run it in-process; bin.ts is the thin process wrapper.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ProvisioningError, isProvisioningError, type ErrorKind } from '../../src/errors.js';
import { deriveDeviceKey, validateIdScope, validateRegistrationId } from '../../src/identity.js';
import type { ProvisioningEvent } from '../../src/ports.js';
import { provisionDevice, type Assignment } from '../../src/provisioner.js';
import { dpsRegistrationSasToken } from '../../src/sas.js';
import { printable } from '../../src/text.js';
import { DEFAULT_SAS_TTL_SECONDS, DEFAULT_TIMEOUT_MS, MAX_SAS_TTL_SECONDS } from '../../src/dps/flow.js';
import { parseEndpoint, readSecret } from './args.js';
import { nodeRandom, systemClock } from './clock.js';
import { createFileStore } from './file-store.js';
import { createTlsConnect } from './tls-connect.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

/** Exit status for each kind of failure, so scripts can tell them apart. */
export const EXIT_CODES: Record<ErrorKind | 'unexpected', number> = {
  'invalid-input': 2,
  unauthorized: 3,
  disabled: 4,
  failed: 5,
  throttled: 6,
  server: 7,
  network: 8,
  tls: 9,
  protocol: 10,
  timeout: 11,
  storage: 12,
  unexpected: 1,
};

type Command = (argv: string[], io: CliIo) => Promise<number>;

const USAGE = `Usage: moddable-dps <command> [options]

Commands:
  register             provision a device with DPS (or the local emulator) and store the result
  compute-device-key   derive a device key from an enrollment group key
  sas-token            print a DPS registration SAS token
  dps                  manage DPS: show/update, linked-hub, enrollment-group (as az iot dps)
  hub                  the emulator's IoT hubs: policy renew-key, connection-string show, device show
  emulator             run a local DPS (device endpoint, service API) for development and CI
  fleet                provision many virtual devices at once (a load test)

Run 'moddable-dps <command> --help' for a command's options.
`;

const COMMANDS: Record<string, Command> = {
  register,
  'compute-device-key': computeDeviceKey,
  'sas-token': sasToken,
  // Loaded when used: the emulator and the management client are most of the CLI's start-up time.
  dps: async (argv, io) => (await import('./dps-commands.js')).dpsCommand(argv, io),
  hub: async (argv, io) => (await import('./dps-commands.js')).hubCommand(argv, io),
  emulator: async (argv, io) => (await import('./emulator-command.js')).emulatorCommand(argv, io),
  fleet: async (argv, io) => (await import('./fleet.js')).fleet(argv, io),
};

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? EXIT_CODES['invalid-input'] : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined; // not 'toString'
  if (!command) {
    // Named only when it can be a command name: a key pasted in its place must not be printed.
    const shown = /^[a-z][a-z0-9-]{0,31}$/.test(name) ? ` '${name}'` : '';
    io.stderr(`moddable-dps: unknown command${shown}\n${USAGE}`);
    return EXIT_CODES['invalid-input'];
  }
  try {
    return await command(rest, io);
  } catch (error) {
    return reportError(error, io);
  }
}

/**
 * One clear line per failure; secrets never appear in ProvisioningError messages. Messages may
 * quote a server (DPS, the management API): control characters are shown escaped, never acted on.
 */
export function reportError(error: unknown, io: CliIo): number {
  if (isProvisioningError(error)) {
    const details = [
      error.errorCode !== undefined ? `errorCode ${error.errorCode}` : '',
      error.trackingId !== undefined ? `trackingId ${error.trackingId}` : '',
    ].filter(Boolean);
    io.stderr(`${printable(`error (${error.kind}): ${error.message}${details.length ? ` [${details.join(', ')}]` : ''}`)}\n`);
    return EXIT_CODES[error.kind];
  }
  const message = error instanceof Error ? error.message : String(error);
  io.stderr(`${printable(`error (unexpected): ${message}`)}\n`);
  return EXIT_CODES.unexpected;
}

/** parseArgs with our error type, and --help handled. Returns undefined when help was printed. */
function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, help: string, io: CliIo) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (error) {
    // A stray positional may be a secret pasted in the wrong place: never echo it.
    const positional = (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL';
    const message = positional ? 'Unexpected argument without a flag' : (error as Error).message;
    throw new ProvisioningError('invalid-input', `${message}. See --help`);
  }
  if ((parsed.values as { help?: boolean }).help) {
    io.stdout(help);
    return undefined;
  }
  return parsed.values as { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string };
}

function required(value: string | undefined, flag: string, envName?: string): string {
  if (value === undefined || value === '') {
    throw new ProvisioningError('invalid-input', `Missing ${flag}${envName ? ` (or the ${envName} environment variable)` : ''}`);
  }
  return value;
}

const COMPUTE_HELP = `Usage: moddable-dps compute-device-key --key <groupKey> --registration-id <id>

Derives the device key of an enrollment group member (as 'az iot dps enrollment-group
compute-device-key' does) and prints only the key.

  --key <groupKey>         the enrollment group's primary or secondary key (base64)
  --key-file <path>        read the group key from a file instead
  --registration-id <id>   the device's registration ID
`;

async function computeDeviceKey(argv: string[], io: CliIo): Promise<number> {
  const v = parse(argv, { key: { type: 'string' }, 'key-file': { type: 'string' }, 'registration-id': { type: 'string' } }, COMPUTE_HELP, io);
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

async function sasToken(argv: string[], io: CliIo): Promise<number> {
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
  const expiry = v.expiry !== undefined
    ? integer(v.expiry, '--expiry', 1, 2 ** 53)
    : Math.floor(systemClock.now() / 1000) + (v.ttl !== undefined ? integer(v.ttl, '--ttl', 60, MAX_SAS_TTL_SECONDS) : DEFAULT_SAS_TTL_SECONDS);
  io.stdout(`${dpsRegistrationSasToken(idScope, registrationId, key, expiry)}\n`);
  return 0;
}

const REGISTER_HELP = `Usage: moddable-dps register --id-scope <s> (--registration-id <r> | --registration-id-template <t> [--serial <n>] [--mac <m>])
                             (--key <deviceKey> | --group-key <groupKey>) [options]

Provisions the device with DPS: registers, waits while DPS is assigning, and prints the
assigned hub. With --store, a matching stored assignment is reused and DPS is not contacted.

  --id-scope <s>                    ID scope (env PROVISIONING_IDSCOPE)
  --registration-id <r>             registration ID (env PROVISIONING_REGISTRATION_ID)
  --registration-id-template <t>    build the ID from the identity, e.g. '{serial}-{mac}'
  --serial <n>, --mac <m>           the identity the template is filled with
  --key <deviceKey>                 the device's key (env PROVISIONING_SYMMETRIC_KEY); --key-file <path>
  --group-key <groupKey>            an enrollment group key: the device key is derived; --group-key-file <path>
  --endpoint <host[:port]>          DPS endpoint (env PROVISIONING_HOST; default global.azure-devices-provisioning.net:8883)
  --ca <pem>                        trust this CA certificate as well (e.g. the emulator's)
  --payload <json>                  custom data sent with the registration
  --store <file>                    where the assignment is kept between runs (only a new file or a
                                    store file is written; a symbolic link's target is updated)
  --store-optional                  a store that cannot be used is a warning, not exit 12
  --force                           provision even when a matching assignment is stored
  --timeout <seconds>               give up after this long (default 300)
  --json                            print the result as JSON
  --quiet                           no progress lines on stderr (warnings still are printed)

Exit status: 0 assigned; 2 bad input; 3 unauthorized; 4 disabled; 5 failed; 6 throttled;
7 server errors; 8 network; 9 untrusted certificate; 10 protocol; 11 timeout; 12 storage.
`;

async function register(argv: string[], io: CliIo): Promise<number> {
  const v = parse(
    argv,
    {
      'id-scope': { type: 'string' },
      'registration-id': { type: 'string' },
      'registration-id-template': { type: 'string' },
      serial: { type: 'string' },
      mac: { type: 'string' },
      key: { type: 'string' },
      'key-file': { type: 'string' },
      'group-key': { type: 'string' },
      'group-key-file': { type: 'string' },
      endpoint: { type: 'string' },
      ca: { type: 'string' },
      payload: { type: 'string' },
      store: { type: 'string' },
      'store-optional': { type: 'boolean' },
      force: { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    REGISTER_HELP,
    io,
  );
  if (!v) return 0;
  const env = io.env;
  const template = v['registration-id-template'];
  const registrationId = v['registration-id'] ?? (template ? undefined : env.PROVISIONING_REGISTRATION_ID);
  if (registrationId && template) throw new ProvisioningError('invalid-input', 'Give --registration-id or --registration-id-template, not both');
  if (!registrationId && !template) throw new ProvisioningError('invalid-input', 'Missing --registration-id or --registration-id-template (or PROVISIONING_REGISTRATION_ID)');
  const groupKey = readSecret(v['group-key'], v['group-key-file'], '--group-key');
  const deviceKey = readSecret(v.key, v['key-file'], '--key') ?? (groupKey ? undefined : env.PROVISIONING_SYMMETRIC_KEY);
  let payload: unknown;
  if (v.payload !== undefined) {
    try {
      payload = JSON.parse(v.payload);
    } catch {
      throw new ProvisioningError('invalid-input', '--payload is not valid JSON');
    }
  }
  const caFile = v.ca;
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (error) {
      throw new ProvisioningError('invalid-input', `Cannot read the CA certificate ${caFile}: ${(error as Error).message}`);
    }
  }
  const endpointText = v.endpoint ?? env.PROVISIONING_HOST;
  const warning = (event: ProvisioningEvent) => event.type === 'store-failed' || event.type === 'store-unreadable';
  const print = (event: ProvisioningEvent) => {
    if (!v.quiet || warning(event)) io.stderr(`${describeEvent(event)}\n`);
  };
  if (v['store-optional'] && !v.store) throw new ProvisioningError('invalid-input', '--store-optional needs --store');
  const timeoutMs = v.timeout !== undefined ? integer(v.timeout, '--timeout', 1, 86_400) * 1000 : DEFAULT_TIMEOUT_MS;
  // The store's file operations end by the same deadline as the flow (a hung file system).
  const deadline = systemClock.now() + timeoutMs;
  const { assignment, fromCache } = await provisionDevice(
    {
      idScope: required(v['id-scope'] ?? env.PROVISIONING_IDSCOPE, '--id-scope', 'PROVISIONING_IDSCOPE'),
      ...(registrationId && { registrationId }),
      ...(template && { registrationIdTemplate: template, identity: { ...(v.serial && { serial: v.serial }), ...(v.mac && { mac: v.mac }) } }),
      ...(deviceKey && { deviceKey }),
      ...(groupKey && { groupKey }),
      ...(endpointText && { endpoint: parseEndpoint(endpointText) }),
      ...(payload !== undefined && { payload }),
      ...(v.force && { force: true }),
      ...(v.store && !v['store-optional'] && { storeRequired: true }),
      timeoutMs,
      clientVersion: 'moddable-dps/0.1.0',
    },
    {
      connect: createTlsConnect(ca ? { ca } : {}),
      clock: systemClock,
      random: nodeRandom,
      log: print,
      ...(v.store && { store: createFileStore(v.store, { deadline }) }),
    },
  );
  io.stdout(describeAssignment(assignment, fromCache, v.json === true));
  return 0;
}

/**
 * What register prints on stdout. The core checked what DPS sent (a host name, a device ID), and
 * it is shown escaped all the same; JSON's own escapes leave DEL, C1 controls, bidi overrides and
 * U+2028 raw, so each line of the JSON is escaped too (it stays JSON of the same value).
 */
export function describeAssignment(assignment: Assignment, fromCache: boolean, json: boolean): string {
  if (json) return `${JSON.stringify({ ...assignment, fromCache }, null, 2).split('\n').map(printable).join('\n')}\n`;
  return `assignedHub: ${printable(assignment.assignedHub)}\ndeviceId: ${printable(assignment.deviceId)}\n`;
}

/** A progress line for a person. Events carry no secrets by construction; what a server or a file said is shown escaped. */
export function describeEvent(event: ProvisioningEvent): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  switch (event.type) {
    case 'cached':
      return `using the stored assignment: ${printable(event.assignedHub)} as ${printable(event.deviceId)} (DPS not contacted; --force to provision again)`;
    case 'store-unreadable':
      return `warning: the stored assignment cannot be read, provisioning again: ${printable(event.message)}`;
    case 'store-failed':
      return `warning: could not store the assignment: ${printable(event.message)}`;
    case 'connecting':
      return `connecting to ${event.host}:${event.port}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
    case 'connected':
      return `connected to ${event.host}:${event.port}`;
    case 'registering':
      return `registering ${event.registrationId}`;
    case 'assigning':
      return `assigning — attempt ${event.attempt}, waiting ${seconds(event.waitMs)}`;
    case 'retrying':
      return `retrying: ${printable(event.reason)} — waiting ${seconds(event.waitMs)}`;
    case 'reconnecting':
      return `connection lost: ${printable(event.reason)} — reconnecting in ${seconds(event.waitMs)}`;
    case 'assigned':
      return `assigned hub ${printable(event.assignedHub)} (device ID ${printable(event.deviceId)})`;
    case 'stored':
      return `stored the assignment`;
  }
}

function integer(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ProvisioningError('invalid-input', `${flag} must be a whole number from ${min} to ${max}`);
  }
  return value;
}


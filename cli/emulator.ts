// `moddable-dps emulator`: a local DPS in the foreground. Prints what a client needs (ID scope,
// endpoints, the CA to trust, the linked hubs and enrollments), then one line per device event,
// until SIGINT or SIGTERM.
import { rm, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { isAbsolute, relative, resolve } from 'node:path';
import { ConfigFileError, loadConfigFile } from '../emulator/config-file.js';
import { DpsError } from '../emulator/dps-errors.js';
import { describeEvent } from '../emulator/event-text.js';
import { type FirmwareTarget, mcconfigLine } from '../emulator/firmware-line.js';
import {
  DEFAULT_RETRY_AFTER_SECONDS,
  DEFAULT_STATE_DIR,
  type DpsEmulator,
  type EmulatorOptions,
  type EnrollmentGroup,
  type IndividualEnrollment,
  type ModelConfig,
  startEmulator,
} from '../emulator/index.js';
import { isLoopback, isWildcard } from '../emulator/listen-address.js';
import { StateDirectoryError, stateFileError } from '../emulator/state-dir.js';
import { readStateFile, STATE_FILE, StateConflictError, StateFileError } from '../emulator/state-store.js';
import { ProvisioningError } from '../src/errors.js';
import { validateIdScope } from '../src/identity.js';
import { looksLikeSecret, parse } from './shared/args.js';
import type { CliIo } from './shared/io.js';

/** The ID scope when neither --id-scope nor the config file names one. */
export const DEFAULT_ID_SCOPE = '0ne00DEMO01';
export const DEFAULT_DEVICE_PORT = 8883;
export const DEFAULT_SERVICE_PORT = 8443;
/** The emulated IoT hubs' device endpoint (IoT Hub itself listens on 8883, which DPS takes here). */
export const DEFAULT_HUB_PORT = 8884;
/** DPS's HTTPS device API (DPS itself serves it on 443). */
export const DEFAULT_HTTPS_PORT = 8444;
/** The web console (HTTPS). */
export const DEFAULT_CONSOLE_PORT = 8445;

export const EMULATOR_HELP = `Usage: moddable-dps emulator [--config <file.json>] [options]

Runs a local Device Provisioning Service in the foreground until Ctrl+C (SIGINT) or SIGTERM:
the device endpoint (MQTT over TLS, as DPS; and DPS's HTTPS device API on its own port) and the
service API for managing it. Prints the ID scope, the endpoints, the CA certificate clients must
trust, the linked hubs and the enrollments, then one line per device event.

  --config <file.json>   linked hubs, allocation policy, enrollments, latency, ID scope
                         (see examples/emulator.json and the README)
  --id-scope <s>         the instance's ID scope (default: the config's, else ${DEFAULT_ID_SCOPE})
  --state-dir <dir>      where the CA, the keys and the state are kept (default ${DEFAULT_STATE_DIR})
  --in-memory            keep enrollments, registrations, hubs and twins in memory only (gone on stop)
  --reset                set the stored state aside (state.json.<time>.bak, its journal beside it) and seed it
                         afresh from --config
  --host <address>       listening address (default 127.0.0.1; 0.0.0.0 for devices on the LAN)
  --port <n>             device endpoint port (default ${DEFAULT_DEVICE_PORT}; 0 picks a free one)
  --service-port <n>     service API port (default ${DEFAULT_SERVICE_PORT}; 0 picks a free one)
  --hub-port <n>         the emulated IoT hubs' device endpoint port (default ${DEFAULT_HUB_PORT}; 0 picks a free one)
  --https-port <n>       DPS's HTTPS device API port (default ${DEFAULT_HTTPS_PORT}; 0 picks a free one)
  --console-port <n>     the web console's port (default ${DEFAULT_CONSOLE_PORT}; 0 picks a free one); off
                         loopback it asks for the service connection string
  --no-console           no web console
  --retry-after <s>      retry-after sent with each 202 "assigning" (default ${DEFAULT_RETRY_AFTER_SECONDS})
  --region <r>           this listener's Azure region, for the geoLatency policy (e.g. westus)

What it learns (enrollments, registrations, linked hubs, hub identities and twins) is kept in
<state-dir>/state.json (and state.journal, what changed since): --config seeds it on the first start, later starts keep it (a different
--config is refused: --reset, or start without --config). 'moddable-dps emulator export --out
<file.json>' writes the state as a config file.
`;

export interface EmulatorControl {
  /** Stops the emulator like SIGINT does (for tests and embedding). */
  signal?: AbortSignal;
  /** Called once the emulator is listening and the banner is printed. */
  onReady?: (dps: DpsEmulator) => void;
  /** How long the start-up may take (default STARTUP_TIMEOUT_MS). */
  startupTimeoutMs?: number;
}

const EMULATOR_FLAGS = {
  config: { type: 'string' },
  'id-scope': { type: 'string' },
  'state-dir': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'service-port': { type: 'string' },
  'hub-port': { type: 'string' },
  'https-port': { type: 'string' },
  'console-port': { type: 'string' },
  'no-console': { type: 'boolean' },
  'retry-after': { type: 'string' },
  region: { type: 'string' },
  'in-memory': { type: 'boolean' },
  reset: { type: 'boolean' },
} as const;

type EmulatorValues = { [K in keyof typeof EMULATOR_FLAGS]?: (typeof EMULATOR_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

export async function emulatorCommand(argv: string[], io: CliIo, control: EmulatorControl = {}): Promise<number> {
  const v = parse(argv, EMULATOR_FLAGS, EMULATOR_HELP, io);
  if (!v) return 0;
  // Paths are named in errors and in the banner: a secret pasted in place of one must not be.
  for (const flag of ['config', 'state-dir'] as const) {
    const looks = v[flag] === undefined ? undefined : looksLikeSecret(v[flag]);
    if (looks) throw new ProvisioningError('invalid-input', `the value of --${flag} looks like ${looks}, not a path`);
  }

  // Stop on the first SIGINT/SIGTERM, also while starting; the listeners go away with it, so a
  // second Ctrl+C kills.
  let stop!: (why: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const onSigint = () => stop('SIGINT');
  const onSigterm = () => stop('SIGTERM');
  const onAbort = () => stop('stop requested');
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);
  control.signal?.addEventListener('abort', onAbort, { once: true });
  if (control.signal?.aborted) stop('stop requested');

  const startupMs = control.startupTimeoutMs ?? STARTUP_TIMEOUT_MS;
  let startupTimer: NodeJS.Timeout | undefined;
  const startupExpired = new Promise<never>((_, reject) => {
    startupTimer = setTimeout(() => {
      const where = v['state-dir'] ?? DEFAULT_STATE_DIR;
      reject(
        new ProvisioningError(
          'timeout',
          `the emulator did not start within ${startupMs / 1000} s: do the state directory ${where}${v.config ? ` and --config ${v.config}` : ''} answer (a hung file system, a FIFO)?`,
        ),
      );
    }, startupMs);
  });
  const starting = start(v, io);
  try {
    // The start-up (config file, state directory, listeners) ends by its deadline or a signal.
    const first = await Promise.race([starting, stopped, startupExpired]);
    clearTimeout(startupTimer);
    if (typeof first === 'string') {
      io.stdout(`${first}: stopping the emulator before it started\n`);
      void starting.then(
        (late) => late.dps.close(), // in-process: do not leave it listening
        () => {},
      );
      // What holds the start-up may be a file operation stuck in the kernel (a FIFO, a hung file
      // system), and exiting waits for those: a signal is raised again with its default action,
      // which ends the process whatever it waits for.
      if (first === 'SIGINT' || first === 'SIGTERM') {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigterm);
        process.kill(process.pid, first);
      }
      return 0;
    }
    const { dps } = first;
    control.onReady?.(dps);
    const why = await stopped;
    io.stdout(`\n${why}: stopping the emulator\n`);
    // Connections are cut, not waited for; still, a stop never waits on a client.
    let closeTimer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      dps.close().then(() => true),
      new Promise<false>((resolve) => (closeTimer = setTimeout(() => resolve(false), CLOSE_TIMEOUT_MS))),
    ]);
    clearTimeout(closeTimer);
    io.stdout(closed ? 'stopped\n' : `stopped (not every connection had closed after ${CLOSE_TIMEOUT_MS / 1000} s)\n`);
    return 0;
  } catch (error) {
    if (error instanceof ProvisioningError && error.kind === 'timeout') {
      void starting.then(
        (late) => late.dps.close(),
        () => {},
      );
    }
    throw error;
  } finally {
    clearTimeout(startupTimer);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    control.signal?.removeEventListener('abort', onAbort);
  }
}

/** Start-up may take this long (a CA and server key are generated on the first start: seconds). */
export const STARTUP_TIMEOUT_MS = 60_000;
/** A stop waits this long for the emulator to close. */
const CLOSE_TIMEOUT_MS = 5_000;

/** Reads the config, starts the emulator, writes the connection string and prints the banner. */
async function start(v: EmulatorValues, io: CliIo): Promise<{ dps: DpsEmulator }> {
  let file: Awaited<ReturnType<typeof loadConfigFile>> | undefined;
  if (v.config !== undefined) {
    try {
      file = await loadConfigFile(v.config);
    } catch (error) {
      if (error instanceof ConfigFileError) throw new ProvisioningError('invalid-input', error.message, { cause: error });
      throw error;
    }
  }
  const stateDir = v['state-dir'] ?? DEFAULT_STATE_DIR;
  if (v['in-memory'] && v.reset) throw new ProvisioningError('invalid-input', '--reset has no state to reset with --in-memory');
  // Neither flag nor config names the ID scope: the stored state's, as the devices knew it.
  const stored =
    v['id-scope'] === undefined && file?.idScope === undefined && !v['in-memory'] && !v.reset
      ? await readStateFile(resolve(stateDir, STATE_FILE)).catch((error) => {
          throw error instanceof StateFileError ? new ProvisioningError('invalid-input', error.message, { cause: error }) : error;
        })
      : undefined;
  const idScope = validateIdScope(v['id-scope'] ?? file?.idScope ?? stored?.idScope ?? DEFAULT_ID_SCOPE);
  const host = v.host ?? '127.0.0.1';
  const port = whole(v.port, '--port', 0, 65535) ?? DEFAULT_DEVICE_PORT;
  const servicePort = whole(v['service-port'], '--service-port', 0, 65535) ?? DEFAULT_SERVICE_PORT;
  const hubPort = whole(v['hub-port'], '--hub-port', 0, 65535) ?? DEFAULT_HUB_PORT;
  const httpsPort = whole(v['https-port'], '--https-port', 0, 65535) ?? DEFAULT_HTTPS_PORT;
  if (v['no-console'] && v['console-port'] !== undefined)
    throw new ProvisioningError('invalid-input', '--console-port and --no-console contradict each other');
  const consolePort = whole(v['console-port'], '--console-port', 0, 65535) ?? DEFAULT_CONSOLE_PORT;
  const retryAfterSeconds = whole(v['retry-after'], '--retry-after', 0, 3600) ?? DEFAULT_RETRY_AFTER_SECONDS;
  const region = v.region?.toLowerCase();
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region)) {
    throw new ProvisioningError('invalid-input', '--region must be an Azure region name, e.g. westus');
  }

  let dps: DpsEmulator | undefined;
  const log = (line: string) => io.stdout(`[${new Date().toTimeString().slice(0, 8)}] ${line}\n`);
  const options: EmulatorOptions = {
    idScope,
    stateDir,
    host,
    port,
    servicePort,
    hubPort,
    httpsPort,
    ...(v['no-console'] ? { console: false } : { consolePort }),
    // Listening on every address: the certificate must also name the LAN address an ESP32 dials.
    hostNames: isWildcard(host) ? ['localhost', ...lanAddresses()] : [],
    retryAfterSeconds,
    ...(region !== undefined ? { region } : {}),
    ...(file ? { config: file.config } : {}),
    ...(v.config !== undefined && { configFile: v.config }),
    ...(v['in-memory'] && { inMemory: true }),
    ...(v.reset && { reset: true }),
    onStateError: (error) => log(`state      not saved: ${error.message} (tried again at the next change and at the stop)`),
    onEvent: (event, outcome) => {
      const line = describeEvent(event, outcome);
      if (line) log(line);
    },
  };
  const where = { host, port, servicePort, hubPort, httpsPort, consolePort, config: v.config };
  try {
    dps = await startEmulator(options);
  } catch (error) {
    throw startFailure(error, where);
  }
  let saved: string;
  try {
    saved = await saveServiceConnectionString(dps, stateDir);
  } catch (error) {
    await dps.close();
    throw startFailure(stateFileError(resolve(stateDir, SERVICE_CONNECTION_STRING_FILE), error), where);
  }
  io.stdout(banner(dps, { host, region, config: v.config, configFile: file?.config, saved }));
  return { dps };
}

/**
 * Write the service connection string into the state directory (mode 0600), so scripts and the
 * README's walkthrough can read it (`--service-file`) instead of copying it from the banner. It
 * names the service port, so it is rewritten at every start.
 */
export const SERVICE_CONNECTION_STRING_FILE = 'service-connection-string';

async function saveServiceConnectionString(dps: DpsEmulator, stateDir: string): Promise<string> {
  const path = resolve(stateDir, SERVICE_CONNECTION_STRING_FILE);
  await rm(path, { force: true }); // a file left by another user or mode keeps its mode on rewrite
  await writeFile(path, `${dps.service.connectionString}\n`, { mode: 0o600 });
  return path;
}

function whole(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new ProvisioningError('invalid-input', `${flag} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function startFailure(
  error: unknown,
  where: {
    host: string;
    port: number;
    servicePort: number;
    hubPort: number;
    httpsPort: number;
    consolePort: number;
    config: string | undefined;
  },
): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  const address = (error as { port?: number }).port;
  const which =
    address === where.servicePort && address !== where.port
      ? `--service-port ${where.servicePort}`
      : address === where.hubPort && address !== where.port
        ? `--hub-port ${where.hubPort}`
        : address === where.httpsPort && address !== where.port
          ? `--https-port ${where.httpsPort}`
          : address === where.consolePort && address !== where.port
            ? `--console-port ${where.consolePort}`
            : `--port ${where.port}`;
  if (code === 'EADDRINUSE') {
    return new ProvisioningError(
      'invalid-input',
      `${where.host} ${which} is in use (another emulator?): stop it or choose another port (0 picks a free one)`,
    );
  }
  if (code === 'EACCES')
    return new ProvisioningError('invalid-input', `not allowed to listen on ${where.host} ${which}: choose a port above 1023`);
  if (code === 'EADDRNOTAVAIL') return new ProvisioningError('invalid-input', `--host ${where.host} is not an address of this machine`);
  if (error instanceof DpsError) {
    return new ProvisioningError('invalid-input', `${where.config ?? 'the configuration'}: ${error.message}`);
  }
  if (error instanceof StateDirectoryError) return new ProvisioningError('invalid-input', `--state-dir: ${error.message}`);
  if (error instanceof StateFileError || error instanceof StateConflictError) return new ProvisioningError('invalid-input', error.message);
  if (error instanceof TypeError) return new ProvisioningError('invalid-input', error.message);
  return error;
}

// ---- what the user sees ----

interface BannerContext {
  host: string;
  region: string | undefined;
  config: string | undefined;
  configFile: ModelConfig | undefined;
  /** Where the service connection string was written. */
  saved: string;
}

function banner(dps: DpsEmulator, context: BannerContext): string {
  // A client on this machine dials loopback even when the emulator listens on every address.
  const device = `${isWildcard(context.host) ? '127.0.0.1' : hostForUrl(dps.endpoint.host)}:${dps.endpoint.port}`;
  const ca = shortPath(dps.caPath);
  const lines = [
    `DPS emulator running${context.config ? ` (config ${context.config})` : ''}. Ctrl+C stops it.`,
    '',
    row('ID scope', dps.idScope),
    row('device endpoint', `${device}  (MQTT over TLS, like global.azure-devices-provisioning.net:8883)`),
    row(
      'device HTTPS endpoint',
      `https://${device.slice(0, device.lastIndexOf(':'))}:${dps.httpsEndpoint.port}  (DPS's HTTPS device API, like https://global.azure-devices-provisioning.net)`,
    ),
    row(
      'MQTT over WebSockets',
      `wss://${device.slice(0, device.lastIndexOf(':'))}:${dps.httpsEndpoint.port}/$iothub/websocket  (DPS and every hub below, like <host>:443; --transport mqtt-ws)`,
    ),
    row(
      'IoT hubs endpoint',
      `${isWildcard(context.host) ? '127.0.0.1' : hostForUrl(dps.hubEndpoint.host)}:${dps.hubEndpoint.port}  (MQTT over TLS for every hub below, like <hub>:8883; --hub-endpoint)`,
    ),
  ];
  const { service } = dps;
  lines.push(
    row('service endpoint', `https://${hostForUrl(service.endpoint.host)}:${service.endpoint.port}  (policy ${service.keyName})`),
    row('service connection', service.connectionString),
    row('', `(also in ${shortPath(context.saved)}: --service-file, or DPS_SERVICE_CONNECTION_STRING)`),
  );
  if (dps.console) {
    const who = isLoopback(context.host) ? 'this machine only' : 'sign in with the service connection string';
    lines.push(row('web console', `${dps.console.url}  (${who}; --no-console turns it off)`));
  }
  lines.push(
    row('CA certificate', ca),
    row('  our CLI trusts it', `moddable-dps register --endpoint ${device} --ca ${ca} ...`),
    ...firmwareLines(dps, context.host, device),
    row('state', stateLine(dps)),
    row('region', context.region ?? '(none; --region sets it, for geoLatency)'),
    row('allocation policy', `${dps.model.allocationPolicy} (the instance default)`),
  );
  lines.push(...hubLines(dps));
  lines.push(...enrollmentLines('enrollment groups', dps.model.enrollmentGroups(), context.configFile, dps));
  lines.push(...enrollmentLines('individual enrollments', dps.model.individualEnrollments(), context.configFile, dps));
  lines.push('', 'Device events:', '');
  return `${lines.join('\n')}\n`;
}

function stateLine(dps: DpsEmulator): string {
  const { state } = dps;
  if (!state) return 'in memory only (--in-memory): forgotten when it stops';
  const where = shortPath(state.path);
  if (state.origin === 'restored') return `${where}  (kept from the last run: registrations, hubs, twins; --reset starts afresh)`;
  return `${where}  (new${state.setAside ? `; the previous state is in ${shortPath(state.setAside)}` : ''})`;
}

/**
 * How to build the firmware to trust this emulator: a whole mcconfig line that works as printed
 * once the key placeholder is filled in (the banner prints no key), and how to run the result.
 */
function firmwareLines(dps: DpsEmulator, host: string, device: string): string[] {
  const hubs = `${device.slice(0, device.lastIndexOf(':'))}:${dps.hubEndpoint.port}`;
  const run =
    'node $MODDABLE/tools/xsbug-log/xsbug-log.js $MODDABLE/build/bin/lin/release/mcsim $MODDABLE/build/bin/lin/mc/debug/moddable-dps/mc.so';
  if (!isWildcard(host)) {
    return [
      row('  firmware trusts it', firmwareBuildLine(dps, { platform: 'lin', endpoint: device, hubEndpoint: hubs })),
      row('', `(the simulator on this machine, with $MODDABLE/build/bin/lin/release and node_modules/.bin on PATH; run it: ${run})`),
      row('', '(for an ESP32 on the LAN, run the emulator with --host 0.0.0.0)'),
    ];
  }
  const lan = lanAddresses().find((a) => !a.includes(':')) ?? "<this machine's LAN address>";
  return [
    row(
      '  firmware trusts it',
      firmwareBuildLine(dps, {
        platform: 'esp32/<board>',
        endpoint: `${lan}:${dps.endpoint.port}`,
        hubEndpoint: `${lan}:${dps.hubEndpoint.port}`,
      }),
    ),
    row('', `(the simulator on this machine: ${firmwareBuildLine(dps, { platform: 'lin', endpoint: device, hubEndpoint: hubs })})`),
  ];
}

/** The mcconfig line of a development firmware for this emulator (emulator/firmware-line.ts). */
export function firmwareBuildLine(dps: DpsEmulator, target: FirmwareTarget): string {
  return mcconfigLine(
    {
      idScope: dps.idScope,
      caPath: dps.caPath,
      enrollmentGroups: dps.model.enrollmentGroups(),
      individualEnrollments: dps.model.individualEnrollments(),
    },
    target,
  );
}

const LABEL = 24;
const row = (label: string, value: string) => `  ${label.padEnd(LABEL)}${value}`.trimEnd();

function hubLines(dps: DpsEmulator): string[] {
  const hubs = dps.model.linkedHubs();
  if (hubs.length === 0) return [row('linked hubs', 'none: link one before devices can be assigned')];
  const total = hubs.filter((h) => h.applyAllocationPolicy).reduce((sum, h) => sum + h.allocationWeight, 0);
  const width = Math.max(...hubs.map((h) => h.hostName.length));
  return hubs
    .map((hub, i) => {
      const share = !hub.applyAllocationPolicy
        ? 'applyAllocationPolicy false: only enrollments that list it'
        : dps.model.allocationPolicy === 'hashed'
          ? `${Math.round((100 * hub.allocationWeight) / total)}% of hashed allocations`
          : '';
      const text = [
        hub.hostName.padEnd(width),
        `weight ${String(hub.allocationWeight).padEnd(4)}`,
        (hub.location || '-').padEnd(12),
        share,
      ].join('  ');
      return i === 0 ? row('linked hubs', text) : `${' '.repeat(LABEL + 2)}${text}`;
    })
    .map((line) => line.trimEnd());
}

function enrollmentLines(
  label: string,
  enrollments: (EnrollmentGroup | IndividualEnrollment)[],
  configFile: ModelConfig | undefined,
  dps: DpsEmulator,
): string[] {
  if (enrollments.length === 0) return [row(label, 'none')];
  return enrollments.map((e, i) => {
    const group = 'enrollmentGroupId' in e;
    const id = group ? e.enrollmentGroupId : e.registrationId;
    const given = (group ? configFile?.enrollmentGroups : configFile?.individualEnrollments)?.find((c) => {
      const cid = 'enrollmentGroupId' in c ? c.enrollmentGroupId : (c as { registrationId: string }).registrationId;
      return cid.toLowerCase() === id.toLowerCase();
    });
    const keys =
      e.attestation.type === 'x509'
        ? 'X.509'
        : given?.attestation?.type === 'symmetricKey' && given.attestation.symmetricKey?.primaryKey
          ? 'keys from the config file'
          : 'keys generated at start';
    const policy = e.allocationPolicy ?? `${dps.model.allocationPolicy} (instance default)`;
    const hubs = e.iotHubs?.length ? e.iotHubs.join(', ') : 'every linked hub';
    const text = `${id}  ${e.provisioningStatus}, policy ${policy}, hubs: ${hubs}; ${keys}`;
    return i === 0 ? row(label, text) : `${' '.repeat(LABEL + 2)}${text}`;
  });
}

function shortPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** This machine's non-loopback addresses: the server certificate must name the one an ESP32 dials. */
function lanAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && (a.family === 'IPv4' || !a.address.startsWith('fe80')))
    .map((a) => a!.address);
}

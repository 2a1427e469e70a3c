// No key or token in any output: the CLI (in-process through main(), and the built executable
// once) and the core flow are driven through every kind of outcome, against the local emulator
// (real TLS) and a scripted DPS, and everything they say is captured: stdout, stderr, each
// progress event, each error's message, stack, JSON and inspect() form (with its cause chain),
// the stored record, the emulator's events, and anything written to the console or to the
// process's own stdout/stderr. None may contain a device key, a group key, a derived key, a SAS
// signature or whole token, or the linked hub's connection string key, as they are, URL-encoded,
// base64url, as hex, or any 16 characters of them.
//
// By design two streams carry a secret: the stdout of a successful `compute-device-key` (the
// derived key) and of a successful `sas-token` (the token). Exactly those are left out; their
// stderr, and their stdout when they fail, are checked like the rest.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { inspect, promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli/main.js';
import { EXIT_CODES } from '../cli/shared/io.js';
import { SERVER_CERT_FILE, SERVER_KEY_FILE } from '../emulator/certificates.js';
import { type DpsEmulator, type EndpointEvent, startEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createFileStore } from '../hosts/node/file-store.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { DEFAULT_SAS_TTL_SECONDS } from '../src/dps/flow.js';
import { type ErrorKind, ProvisioningError } from '../src/errors.js';
import { deriveDeviceKey } from '../src/identity.js';
import { PacketDecoder } from '../src/mqtt/codec.js';
import type { Clock, Connect } from '../src/ports.js';
import { type DeviceConfig, type ProvisionerPorts, provisionDevice } from '../src/provisioner.js';
import { dpsRegistrationSasToken } from '../src/sas.js';
import { parseSasToken, verifySasToken } from '../src/sas-verify.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { assignedBody, assigningBody, errorBody, type Reply, ScriptedDps } from './support/scripted-dps.js';

const ID_SCOPE = '0ne000SECRT';
const key = (bytes: number) => randomBytes(bytes).toString('base64');
// Fresh random keys each run: no accidental match with anything else in the output.
const GROUP_KEY = key(64);
const GROUP_KEY_2 = key(64);
const WRONG_GROUP_KEY = key(64);
const DEVICE_KEY = key(32);
const DISABLED_DEVICE_KEY = key(32);
const HUB_KEY = key(32);
/** Keys a user may mistype: not base64 (a stray character), and base64 of a wrong length. */
const MALFORMED_KEY = `${key(30)}!`;
const TRUNCATED_KEY = key(33).slice(0, -1);

// ---- what must not appear, and where we look ----

/** name → secret. Derived keys and SAS tokens are added as they come into being. */
const secrets = new Map<string, string>([
  ['group key', GROUP_KEY],
  ['secondary group key', GROUP_KEY_2],
  ['wrong group key', WRONG_GROUP_KEY],
  ['device key', DEVICE_KEY],
  ['disabled device key', DISABLED_DEVICE_KEY],
  ['hub connection string key', HUB_KEY],
  ['malformed key', MALFORMED_KEY],
  ['truncated key', TRUNCATED_KEY],
]);
/** label → captured text, audited (and cleared) at the end of each test. */
const outputs: { label: string; text: string }[] = [];
const capture = (label: string, text: string) => void outputs.push({ label, text });

/** Registration IDs signed for, with the key used and when: the CLI's SAS tokens, recomputed for every second of the run. */
const signings: { registrationId: string; key: string; from: number; to: number }[] = [];
/** SAS tokens seen on the wire (the CONNECT password). */
const tokens: string[] = [];

function addToken(token: string): void {
  tokens.push(token);
  secrets.set(`SAS token #${tokens.length}`, token);
  secrets.set(`SAS signature #${tokens.length}`, parseSasToken(token).sig);
}

/** The ways a secret could be written out. */
function forms(value: string): string[] {
  const unpadded = value.replace(/=+$/, '');
  const out = new Set([value, encodeURIComponent(value), unpadded, unpadded.replace(/\+/g, '-').replace(/\//g, '_')]);
  if (!value.startsWith('SharedAccessSignature ')) {
    if (/^[A-Za-z0-9+/]+=*$/.test(value)) out.add(Buffer.from(value, 'base64').toString('hex'));
    // Any 16 characters of a key or signature (a token also holds its resource, which is no secret).
    for (let i = 0; i + 16 <= unpadded.length; i++) out.add(unpadded.slice(i, i + 16));
  }
  return [...out].filter((f) => f.length >= 16);
}

/** Fails naming the output and the secret (never quoting the output beyond the match). */
function audit(): void {
  for (const { registrationId, key: signingKey, from, to } of signings.splice(0)) {
    for (let second = Math.floor(from / 1000); second <= Math.floor(to / 1000) + 1; second++) {
      addToken(dpsRegistrationSasToken(ID_SCOPE, registrationId, signingKey, second + DEFAULT_SAS_TTL_SECONDS));
    }
  }
  const needles = [...secrets].flatMap(([name, value]) => forms(value).map((form) => ({ name, form })));
  const leaks = new Map<string, string>(); // the first match of each secret in each output
  for (const { label, text } of outputs.splice(0)) {
    for (const { name, form } of needles) {
      const at = text.indexOf(form);
      const where = `${label} contains the ${name}`;
      if (at >= 0 && !leaks.has(where)) leaks.set(where, `${where}: …${text.slice(Math.max(0, at - 40), at)}<secret>`);
    }
  }
  if (leaks.size > 0) throw new Error(`${leaks.size} secret(s) in the output:\n${[...leaks.values()].join('\n')}`);
}

/** Everything an error could show: message, stack, JSON, inspect() with the whole cause chain. */
function captureError(label: string, error: unknown): void {
  capture(`${label}: String(error)`, String(error));
  capture(`${label}: inspect(error)`, inspect(error, { depth: Infinity, showHidden: true }));
  if (error instanceof Error) {
    capture(`${label}: error.message`, error.message);
    capture(`${label}: error.stack`, error.stack ?? '');
    capture(`${label}: JSON.stringify(error)`, JSON.stringify(error) ?? '');
  }
}

// Each test's outputs are audited when it ends, pass or fail: a failed test's leak is its own.
afterEach(() => audit());

// Anything the code under test prints behind our back: console.* and the process's own streams.
const consoleMethods = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;

let dps: DpsEmulator;
let dir: string;
let garbageServer: Server;
let garbageEndpoint: string;
const emulatorEvents: EndpointEvent[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dps-secrets-'));
  dps = await startEmulator({
    idScope: ID_SCOPE,
    stateDir: join(dir, 'emulator'),
    retryAfterSeconds: 0,
    onEvent: (event) => void emulatorEvents.push(event),
    config: {
      iotHubs: [{ connectionString: `HostName=secret-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${HUB_KEY}` }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'secret-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY_2 } },
        },
      ],
      individualEnrollments: [
        {
          registrationId: 'secret-individual',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: DISABLED_DEVICE_KEY } },
        },
        {
          registrationId: 'secret-disabled',
          provisioningStatus: 'disabled',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DISABLED_DEVICE_KEY, secondaryKey: DEVICE_KEY } },
        },
      ],
    },
  });
  // A server with the emulator's certificate that answers CONNECT with a reserved packet type: protocol errors.
  const stateDir = join(dir, 'emulator');
  garbageServer = createServer(
    { cert: readFileSync(join(stateDir, SERVER_CERT_FILE)), key: readFileSync(join(stateDir, SERVER_KEY_FILE)) },
    (socket) => {
      socket.on('data', () => socket.write(Uint8Array.of(0xf0, 0x00)));
      socket.on('error', () => {});
    },
  );
  await new Promise<void>((resolve) => garbageServer.listen(0, '127.0.0.1', resolve));
  garbageEndpoint = `127.0.0.1:${(garbageServer.address() as { port: number }).port}`;

  for (const method of consoleMethods) {
    const original = console[method].bind(console);
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      capture(`console.${method}`, args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: Infinity }))).join(' '));
      original(...args);
    });
  }
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    vi.spyOn(stream, 'write').mockImplementation((...args: unknown[]) => {
      capture(stream === process.stdout ? 'process.stdout' : 'process.stderr', String(args[0]));
      return original(...args);
    });
  }
});

afterAll(async () => {
  vi.restoreAllMocks();
  await dps?.close();
  await new Promise((resolve) => garbageServer?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

// ---- the CLI ----

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI in-process. `signs`: the registration ID and device key a register run signs
 * with (its tokens are recomputed for the run's time span). `printsSecret`: compute-device-key
 * and sas-token, whose successful stdout is the secret itself and is not audited.
 */
async function cli(
  args: string[],
  options: { env?: Record<string, string>; signs?: { registrationId: string; key: string }; printsSecret?: boolean } = {},
): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const from = Date.now();
  const code = await main(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: options.env ?? {} });
  if (options.signs) signings.push({ ...options.signs, from, to: Date.now() });
  const label = `moddable-dps ${/^[a-z-]{1,24}$/.test(args[0] ?? '') ? args[0] : '<not a command>'} (exit ${code})`;
  capture(`${label} stderr`, stderr);
  if (!(options.printsSecret && code === 0)) capture(`${label} stdout`, stdout);
  return { code, stdout, stderr };
}

const endpoint = () => `${dps.endpoint.host}:${dps.endpoint.port}`;
const register = (registrationId: string, more: string[], timeout = '10') => [
  'register',
  '--id-scope',
  ID_SCOPE,
  '--registration-id',
  registrationId,
  '--endpoint',
  endpoint(),
  '--ca',
  dps.caPath,
  '--timeout',
  timeout,
  ...more,
];
const derived = (groupKey: string, registrationId: string) => {
  const value = deriveDeviceKey(groupKey, registrationId);
  secrets.set(`key derived for ${registrationId}`, value);
  return value;
};

function expectFailure(run: CliRun, kind: ErrorKind): void {
  expect(run.code, run.stderr).toBe(EXIT_CODES[kind]);
  expect(run.stderr).toMatch(new RegExp(`^error \\(${kind}\\): `, 'm'));
}

describe('the audit itself', () => {
  it('finds a secret in each form it looks for', () => {
    const base64url = GROUP_KEY.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
    const planted = [
      GROUP_KEY,
      encodeURIComponent(GROUP_KEY),
      base64url,
      Buffer.from(GROUP_KEY, 'base64').toString('hex'),
      GROUP_KEY.slice(20, 36),
    ];
    for (const form of planted) {
      capture('a planted output', `before ${form} after`);
      expect(() => audit()).toThrow(/a planted output contains the group key/);
    }
  });
});

describe('the CLI says no secret, whatever the outcome', () => {
  it('success: group member and individual enrollment, keys inline, from files and from the environment, JSON, stored and reused', async () => {
    const groupFile = join(dir, 'group.key');
    writeFileSync(groupFile, `${GROUP_KEY}\n`);
    const deviceFile = join(dir, 'device.key');
    writeFileSync(deviceFile, DEVICE_KEY);
    const store = join(dir, 'assignment.json');

    const inline = await cli(register('secret-member-1', ['--group-key', GROUP_KEY]), {
      signs: { registrationId: 'secret-member-1', key: derived(GROUP_KEY, 'secret-member-1') },
    });
    expect(inline.code, inline.stderr).toBe(0);
    expect(inline.stderr).toContain('assigned hub secret-hub.azure-devices.net');
    const fromFile = await cli(register('secret-member-2', ['--group-key-file', groupFile, '--json', '--store', store]), {
      signs: { registrationId: 'secret-member-2', key: derived(GROUP_KEY, 'secret-member-2') },
    });
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const cached = await cli(register('secret-member-2', ['--group-key-file', groupFile, '--json', '--store', store]));
    expect(cached.stderr).toMatch(/using the stored assignment/);
    capture('the store file', readFileSync(store, 'utf8'));
    const individual = await cli(register('secret-individual', ['--key-file', deviceFile]), {
      signs: { registrationId: 'secret-individual', key: DEVICE_KEY },
    });
    expect(individual.code, individual.stderr).toBe(0);
    const env = await cli(['register', '--ca', dps.caPath], {
      env: {
        PROVISIONING_HOST: endpoint(),
        PROVISIONING_IDSCOPE: ID_SCOPE,
        PROVISIONING_REGISTRATION_ID: 'secret-individual',
        PROVISIONING_SYMMETRIC_KEY: DEVICE_KEY,
      },
      signs: { registrationId: 'secret-individual', key: DEVICE_KEY },
    });
    expect(env.code, env.stderr).toBe(0);
  });

  it('compute-device-key and sas-token: the secret on stdout only, nothing on stderr', async () => {
    const computed = await cli(['compute-device-key', '--key', GROUP_KEY, '--registration-id', 'secret-member-9'], { printsSecret: true });
    expect(computed).toEqual({ code: 0, stdout: `${derived(GROUP_KEY, 'secret-member-9')}\n`, stderr: '' });
    const token = await cli(
      ['sas-token', '--id-scope', ID_SCOPE, '--registration-id', 'secret-member-9', '--key', computed.stdout.trim()],
      { printsSecret: true },
    );
    expect(token).toMatchObject({ code: 0, stderr: '' });
    expect(verifySasToken(token.stdout.trim(), computed.stdout.trim(), Math.floor(Date.now() / 1000)).ok).toBe(true);
    addToken(token.stdout.trim());
  });

  it('unauthorized: a wrong group key, and a group key given as the device key', async () => {
    expectFailure(
      await cli(register('secret-member-3', ['--group-key', WRONG_GROUP_KEY]), {
        signs: { registrationId: 'secret-member-3', key: derived(WRONG_GROUP_KEY, 'secret-member-3') },
      }),
      'unauthorized',
    );
    expectFailure(
      await cli(register('secret-member-4', ['--key', GROUP_KEY]), { signs: { registrationId: 'secret-member-4', key: GROUP_KEY } }),
      'unauthorized',
    );
  });

  it('disabled, tls (CA not given), network (nothing listening)', async () => {
    expectFailure(
      await cli(register('secret-disabled', ['--key', DISABLED_DEVICE_KEY]), {
        signs: { registrationId: 'secret-disabled', key: DISABLED_DEVICE_KEY },
      }),
      'disabled',
    );
    const noCa = register('secret-member-5', ['--group-key', GROUP_KEY]).filter((a) => a !== '--ca' && a !== dps.caPath);
    expectFailure(await cli(noCa, { signs: { registrationId: 'secret-member-5', key: derived(GROUP_KEY, 'secret-member-5') } }), 'tls');
    const closed = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'secret-member-6',
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      '127.0.0.1:1',
      '--timeout',
      '1',
    ];
    expectFailure(
      await cli(closed, { signs: { registrationId: 'secret-member-6', key: derived(GROUP_KEY, 'secret-member-6') } }),
      'network',
    );
  });

  it('protocol (a server answering garbage) and throttled (429 until the deadline)', async () => {
    const garbage = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'secret-member-7',
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      garbageEndpoint,
      '--ca',
      dps.caPath,
      '--timeout',
      '2',
    ];
    expectFailure(
      await cli(garbage, { signs: { registrationId: 'secret-member-7', key: derived(GROUP_KEY, 'secret-member-7') } }),
      'protocol',
    );
    dps.faults.push({
      on: 'register',
      registrationId: 'secret-member-8',
      action: { type: 'status', status: 429, retryAfter: 1 },
      times: 10,
    });
    const throttled = register('secret-member-8', ['--group-key', GROUP_KEY], '2');
    expectFailure(
      await cli(throttled, { signs: { registrationId: 'secret-member-8', key: derived(GROUP_KEY, 'secret-member-8') } }),
      'throttled',
    );
  });

  it('invalid input: malformed and misplaced keys are refused without being echoed', async () => {
    const twoLines = join(dir, 'two-lines.key');
    writeFileSync(twoLines, `${GROUP_KEY}\n${GROUP_KEY_2}\n`);
    const runs = [
      await cli(register('secret-member-10', ['--key', MALFORMED_KEY])),
      await cli(register('secret-member-10', ['--key', TRUNCATED_KEY])),
      await cli(register('secret-member-10', ['--group-key', MALFORMED_KEY])),
      await cli(register('secret-member-10', ['--group-key', TRUNCATED_KEY])),
      await cli(register('secret-member-10', ['--group-key-file', twoLines])),
      await cli(register('secret-member-10', ['--key', DEVICE_KEY, '--key-file', twoLines])),
      await cli(register('secret-member-10', ['--key', DEVICE_KEY, '--group-key', GROUP_KEY])),
      await cli([
        'register',
        '--id-scope',
        ID_SCOPE,
        '--registration-id',
        'secret-member-10',
        '--key',
        DEVICE_KEY,
        '--endpoint',
        GROUP_KEY,
      ]),
      await cli(['register', '--id-scope', ID_SCOPE, '--registration-id', GROUP_KEY, '--key', DEVICE_KEY]),
      await cli(['register', '--id-scope', GROUP_KEY, '--registration-id', 'secret-member-10', '--key', DEVICE_KEY]),
      await cli(['register', '--id-scope', ID_SCOPE, '--registration-id', 'secret-member-10', `--force=${DEVICE_KEY}`]),
      await cli(['register', '--id-scope', ID_SCOPE, '--registration-id', 'secret-member-10', DEVICE_KEY]),
      await cli(['compute-device-key', '--key', MALFORMED_KEY, '--registration-id', 'secret-member-10'], { printsSecret: true }),
      await cli(['compute-device-key', '--key', TRUNCATED_KEY, '--registration-id', 'secret-member-10'], { printsSecret: true }),
      await cli(['compute-device-key', GROUP_KEY], { printsSecret: true }),
      await cli(['sas-token', '--id-scope', ID_SCOPE, '--registration-id', 'secret-member-10', '--key', MALFORMED_KEY], {
        printsSecret: true,
      }),
      await cli(
        ['sas-token', '--id-scope', ID_SCOPE, '--registration-id', 'secret-member-10', '--key', TRUNCATED_KEY, '--ttl', DEVICE_KEY],
        { printsSecret: true },
      ),
    ];
    for (const run of runs) {
      expectFailure(run, 'invalid-input');
      expect(run.stdout).toBe('');
    }
  });

  it('every command: a secret typed where its file belongs (every *-file flag, --ca, --config) is named for what it looks like, never echoed', async () => {
    secrets.set('service connection string', dps.service.connectionString);
    secrets.set('service key', dps.service.key);
    const hubCs = `HostName=secret-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${HUB_KEY}`;
    const token = dpsRegistrationSasToken(ID_SCOPE, 'secret-member-11', DEVICE_KEY, 4_000_000_000);
    addToken(token);
    const service = ['--service', dps.service.connectionString, '--ca', dps.caPath];
    const member = ['--id-scope', ID_SCOPE, '--registration-id', 'secret-member-11'];
    // [command line with the secret where a path belongs, what it looks like]
    const cases: [string[], string][] = [
      [['register', ...member, '--key-file', DEVICE_KEY], 'a key'],
      [['register', ...member, '--group-key-file', GROUP_KEY], 'a key'],
      [['register', ...member, '--key', DEVICE_KEY, '--ca', token], 'a SAS token'],
      [['compute-device-key', '--registration-id', 'secret-member-11', '--key-file', GROUP_KEY], 'a key'],
      [['sas-token', ...member, '--key-file', DEVICE_KEY], 'a key'],
      [['fleet', '--id-scope', ID_SCOPE, '--count', '1', '--group-key-file', GROUP_KEY], 'a key'],
      [['fleet', '--id-scope', ID_SCOPE, '--count', '1', '--group-key', GROUP_KEY, '--ca', GROUP_KEY_2], 'a key'],
      [['dps', 'show', '--service-file', dps.service.connectionString, '--ca', dps.caPath], 'a connection string'],
      [['dps', 'show', '--service', dps.service.connectionString, '--ca', dps.service.key], 'a key'],
      [['dps', 'linked-hub', 'create', '--connection-string-file', hubCs, ...service], 'a connection string'],
      [['dps', 'enrollment-group', 'create', '--enrollment-id', 'secret-files', '--primary-key-file', GROUP_KEY, ...service], 'a key'],
      [['dps', 'enrollment-group', 'create', '--enrollment-id', 'secret-files', '--secondary-key-file', GROUP_KEY_2, ...service], 'a key'],
      [
        [
          'hub',
          'device',
          'show',
          '--hub-name',
          'secret-hub.azure-devices.net',
          '--device-id',
          'x',
          '--service-file',
          dps.service.connectionString,
        ],
        'a connection string',
      ],
      [['emulator', '--config', hubCs], 'a connection string'],
      [['emulator', '--state-dir', GROUP_KEY], 'a key'],
    ];
    for (const [args, looks] of cases) {
      const run = await cli(args);
      expectFailure(run, 'invalid-input');
      expect(run.stderr, args.join(' ')).toContain(`looks like ${looks}`);
      expect(run.stdout).toBe('');
    }
  });

  it('a key pasted in place of the command', async () => {
    const run = await cli([GROUP_KEY, 'register']);
    expect(run.code).toBe(EXIT_CODES['invalid-input']);
  });

  it('the built executable, once: a wrong key read from a file', async () => {
    const bin = join(import.meta.dirname, '..', 'dist', 'cli', 'bin.js');
    expect(existsSync(bin), 'dist/ is missing: run `npm run build` (npm test does)').toBe(true);
    const wrongFile = join(dir, 'wrong.key');
    writeFileSync(wrongFile, WRONG_GROUP_KEY);
    const from = Date.now();
    const args = register('secret-member-11', ['--group-key-file', wrongFile]);
    const result = await promisify(execFile)(process.execPath, [bin, ...args], { env: {} }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    signings.push({ registrationId: 'secret-member-11', key: derived(WRONG_GROUP_KEY, 'secret-member-11'), from, to: Date.now() });
    expect(result.code, result.stderr).toBe(EXIT_CODES.unauthorized);
    capture('moddable-dps executable stdout', result.stdout);
    capture('moddable-dps executable stderr', result.stderr);
  });
});

// ---- the core flow ----

/** The Connect port, passing through, noting each CONNECT password (the SAS token) sent. */
function sniffing(connect: Connect): Connect {
  return async (target, handlers) => {
    const connection = await connect(target, handlers);
    const decoder = new PacketDecoder(1 << 20);
    return {
      write(data) {
        for (const packet of decoder.push(data)) if (packet.type === 'connect' && packet.password) addToken(packet.password);
        connection.write(data);
      },
      close: () => connection.close(),
    };
  };
}

/** Runs provisionDevice, capturing its events, its result or error; with a FakeClock, fires its timers until it ends. */
async function provision(label: string, config: Partial<DeviceConfig>, ports: Omit<ProvisionerPorts, 'clock' | 'log'> & { clock?: Clock }) {
  const clock = ports.clock ?? systemClock;
  let outcome: { value: unknown } | { error: unknown } | undefined;
  const running = provisionDevice(
    {
      idScope: ID_SCOPE,
      registrationId: 'secret-core',
      endpoint: dps.endpoint,
      timeoutMs: 10_000,
      backoff: { minMs: 100, maxMs: 1000, jitterMs: 10 },
      ...config,
    },
    { ...ports, clock, log: (event) => capture(`${label}: event ${event.type}`, JSON.stringify(event)) },
  ).then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  if (clock instanceof FakeClock) {
    // Fire the fake timers as the flow sets them; with none pending it waits on real I/O (the store).
    for (let steps = 0; outcome === undefined && steps < 10_000; steps++) {
      await settle();
      if (outcome === undefined && !(await clock.runNext())) await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  await running;
  if ('error' in outcome!) {
    captureError(label, outcome.error);
    return outcome.error;
  }
  capture(`${label}: result`, JSON.stringify(outcome!.value));
  return outcome!.value;
}

const kindOf = (error: unknown) => (error instanceof ProvisioningError ? error.kind : `not a ProvisioningError: ${inspect(error)}`);

describe('the core flow says no secret, whatever the outcome', () => {
  it('through real TLS against the emulator: assigned, unauthorized, disabled, tls, network', async () => {
    const trusted = sniffing(createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }));
    const firstToken = tokens.length;
    const assigned = await provision(
      'emulator assigned',
      { registrationId: 'secret-core-1', groupKey: GROUP_KEY },
      { connect: trusted, store: createFileStore(join(dir, 'core-store.json')) },
    );
    expect(assigned).toMatchObject({ assignment: { deviceId: 'secret-core-1' } });
    capture('the core store file', readFileSync(join(dir, 'core-store.json'), 'utf8'));
    secrets.set('key derived for secret-core-1', deriveDeviceKey(GROUP_KEY, 'secret-core-1'));
    expect(
      kindOf(
        await provision('emulator unauthorized', { registrationId: 'secret-core-2', groupKey: WRONG_GROUP_KEY }, { connect: trusted }),
      ),
    ).toBe('unauthorized');
    secrets.set('key derived for secret-core-2', deriveDeviceKey(WRONG_GROUP_KEY, 'secret-core-2'));
    expect(
      kindOf(
        await provision('emulator disabled', { registrationId: 'secret-disabled', deviceKey: DISABLED_DEVICE_KEY }, { connect: trusted }),
      ),
    ).toBe('disabled');
    expect(
      kindOf(
        await provision(
          'emulator tls',
          { registrationId: 'secret-core-3', groupKey: GROUP_KEY },
          { connect: sniffing(createTlsConnect({ connectTimeoutMs: 5000 })) },
        ),
      ),
    ).toBe('tls');
    expect(
      kindOf(
        await provision(
          'emulator network',
          { registrationId: 'secret-core-4', groupKey: GROUP_KEY, endpoint: { host: '127.0.0.1', port: 1 }, timeoutMs: 1000 },
          { connect: trusted },
        ),
      ),
    ).toBe('network');
    // The tokens were really captured: each verifies with the key it was signed with.
    expect(tokens.length - firstToken).toBeGreaterThanOrEqual(3);
    expect(verifySasToken(tokens[firstToken]!, deriveDeviceKey(GROUP_KEY, 'secret-core-1'), 0).ok).toBe(true);
  });

  const registrationId = 'secret-core';
  const disabledBody = { operationId: 'op-1', status: 'disabled', registrationState: { registrationId, status: 'disabled' } };
  const failedBody = {
    operationId: 'op-1',
    status: 'failed',
    registrationState: { registrationId, status: 'failed', errorCode: 400207, errorMessage: 'Custom allocation failed' },
  };
  const cases: [string, ErrorKind | 'assigned', Reply[], { connack?: number; fail?: Error; deviceKey?: string; groupKey?: string }][] = [
    [
      'assigned',
      'assigned',
      [
        { status: 202, body: assigningBody() },
        { status: 200, body: assignedBody(registrationId) },
      ],
      {},
    ],
    ['CONNACK 5', 'unauthorized', [], { connack: 5 }],
    ['401', 'unauthorized', [{ status: 401, body: errorBody(401002, 'The device is unauthorized.') }], {}],
    ['disabled', 'disabled', [{ status: 200, body: disabledBody }], {}],
    ['failed', 'failed', [{ status: 200, body: failedBody }], {}],
    ['throttled', 'throttled', Array.from({ length: 40 }, () => ({ status: 429, retryAfter: 1, body: errorBody(429001) })), {}],
    ['server errors', 'server', Array.from({ length: 40 }, () => ({ status: 503, body: errorBody(503000) })), {}],
    [
      'dropped while polling',
      'network',
      [{ status: 202, retryAfter: 1, body: assigningBody() }, ...Array.from({ length: 40 }, () => ({ drop: true as const }))],
      {},
    ],
    // The register itself refused by a close, 3 times in a row: not sent again (issue 18).
    ['dropped after every register', 'failed', Array.from({ length: 40 }, () => ({ drop: true as const })), {}],
    ['untrusted', 'tls', [], { fail: new ProvisioningError('tls', 'The server certificate is not trusted') }],
    ['garbage', 'protocol', Array.from({ length: 10 }, () => ({ raw: Uint8Array.of(0xf0, 0) })), {}],
    ['still assigning', 'timeout', Array.from({ length: 40 }, () => ({ status: 202, retryAfter: 1, body: assigningBody() })), {}],
    ['malformed device key', 'invalid-input', [], { deviceKey: MALFORMED_KEY }],
    ['truncated group key', 'invalid-input', [], { groupKey: TRUNCATED_KEY }],
  ];

  it.each(cases)('against a scripted DPS: %s ends %s', async (name, expected, script, options) => {
    const scripted = new ScriptedDps(script, options.connack !== undefined ? { connack: options.connack } : {});
    if (options.fail) scripted.network.failNext(options.fail);
    const keys = options.deviceKey ? { deviceKey: options.deviceKey } : { groupKey: options.groupKey ?? GROUP_KEY };
    const result = await provision(
      `scripted ${name}`,
      { registrationId, ...keys },
      { connect: scripted.connect, clock: new FakeClock(), store: createFileStore(join(dir, `scripted-${expected}.json`)) },
    );
    expect(expected === 'assigned' ? (result as { assignment: { deviceId: string } }).assignment.deviceId : kindOf(result)).toBe(
      expected === 'assigned' ? registrationId : expected,
    );
    secrets.set(`key derived for ${registrationId}`, deriveDeviceKey(GROUP_KEY, registrationId));
    const storeFile = join(dir, `scripted-${expected}.json`);
    if (existsSync(storeFile)) capture(`scripted ${name}: the store file`, readFileSync(storeFile, 'utf8'));
    for (const connection of scripted.network.connections) {
      for (const connect of connection.sentOf('connect')) addToken(connect.password!);
    }
  });
});

describe('the emulator says no secret', () => {
  it('in any of its events', () => {
    expect(emulatorEvents.length).toBeGreaterThan(0);
    for (const event of emulatorEvents) capture(`emulator event ${event.type}`, JSON.stringify(event));
  });
});

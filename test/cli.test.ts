// The CLI as a user runs it: in-process through main() for speed, and once through the built
// executable. Output streams are checked for what must and must not appear in them.
import { execFile, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { verifySasToken } from '../src/sas-verify.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

// Published enrollment-group vector (Azure docs, articles/iot-dps/how-to-legacy-device-symm-key.md).
const PUBLISHED_GROUP_KEY = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
const PUBLISHED_ID = 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6';
const PUBLISHED_DEVICE_KEY = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=';

const ID_SCOPE = '0ne000CLI01';
const GROUP_KEY = Buffer.from('cli-test-group-key-0123456789abcdefghij').toString('base64');

const run = runCli;

let dps: DpsEmulator;
let dir: string;
let caFile: string;

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-cli-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: `HostName=cli-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${GROUP_KEY}` }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'cli-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
        },
      ],
    },
  });
  ({ dps, dir } = fixture);
  caFile = dps.caPath;
});

afterAll(async () => {
  await fixture?.close();
});

const endpointArg = () => `${dps.endpoint.host}:${dps.endpoint.port}`;

describe('compute-device-key', () => {
  it('prints only the derived key of the published vector', async () => {
    const r = await run(['compute-device-key', '--key', PUBLISHED_GROUP_KEY, '--registration-id', PUBLISHED_ID]);
    expect(r).toEqual({ code: 0, stdout: `${PUBLISHED_DEVICE_KEY}\n`, stderr: '' });
  });

  it('reads the group key from a file', async () => {
    const file = join(dir, 'group.key');
    writeFileSync(file, `${PUBLISHED_GROUP_KEY}\n`);
    const r = await run(['compute-device-key', '--key-file', file, '--registration-id', PUBLISHED_ID]);
    expect(r.stdout).toBe(`${PUBLISHED_DEVICE_KEY}\n`);
  });

  it('rejects a bad registration ID and a key that is not base64 with exit 2, without echoing the key', async () => {
    const badId = await run(['compute-device-key', '--key', PUBLISHED_GROUP_KEY, '--registration-id', 'Not Valid']);
    expect(badId.code).toBe(EXIT_CODES['invalid-input']);
    expect(badId.stderr).toMatch(/^error \(invalid-input\): The registration ID/);
    const badKey = await run(['compute-device-key', '--key', 'sekrit!!', '--registration-id', 'dev-1']);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).not.toContain('sekrit');
  });
});

describe('sas-token', () => {
  it('prints a token signed over the sent sr and the given expiry (checked with node:crypto)', async () => {
    const r = await run([
      'sas-token',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'dev-1',
      '--key',
      PUBLISHED_DEVICE_KEY,
      '--expiry',
      '1900000000',
    ]);
    expect(r.code).toBe(0);
    const token = r.stdout.trim();
    const fields = new URLSearchParams(token.replace(/^SharedAccessSignature /, ''));
    const sr = token.match(/sr=([^&]+)/)![1]!;
    const expected = createHmac('sha256', Buffer.from(PUBLISHED_DEVICE_KEY, 'base64')).update(`${sr}\n1900000000`).digest('base64');
    expect(fields.get('sig')).toBe(expected);
    expect(fields.get('se')).toBe('1900000000');
    expect(fields.get('skn')).toBe('registration');
    expect(decodeURIComponent(sr)).toBe(`${ID_SCOPE}/registrations/dev-1`);
  });

  it('defaults to one hour and takes --ttl', async () => {
    for (const [args, ttl] of [
      [[], 3600],
      [['--ttl', '120'], 120],
    ] as const) {
      const before = Math.floor(Date.now() / 1000);
      const r = await run(['sas-token', '--id-scope', ID_SCOPE, '--registration-id', 'dev-1', '--key', PUBLISHED_DEVICE_KEY, ...args]);
      const se = Number(r.stdout.match(/se=(\d+)/)![1]);
      expect(se - before).toBeGreaterThanOrEqual(ttl);
      expect(se - before).toBeLessThanOrEqual(ttl + 2);
      expect(verifySasToken(r.stdout.trim(), PUBLISHED_DEVICE_KEY, before).ok).toBe(true);
    }
  });

  it('bounds --ttl to a day, like the tokens the device makes', async () => {
    const r = await run([
      'sas-token',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'dev-1',
      '--key',
      PUBLISHED_DEVICE_KEY,
      '--ttl',
      '86401',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--ttl must be a whole number from 60 to 86400/);
  });

  it('refuses --expiry with --ttl', async () => {
    const r = await run([
      'sas-token',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'dev-1',
      '--key',
      PUBLISHED_DEVICE_KEY,
      '--ttl',
      '5',
      '--expiry',
      '5',
    ]);
    expect(r.code).toBe(2);
  });
});

describe('register', () => {
  it('provisions through the emulator: progress on stderr, the hub on stdout, exit 0', async () => {
    const r = await run([
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'cli-device-1',
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      endpointArg(),
      '--ca',
      caFile,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('assignedHub: cli-hub.azure-devices.net\ndeviceId: cli-device-1\n');
    expect(r.stderr).toMatch(/^connecting to 127\.0\.0\.1:\d+\n/);
    expect(r.stderr).toContain('registering cli-device-1');
    expect(r.stderr).toContain('assigned hub cli-hub.azure-devices.net');
    expect(r.stderr + r.stdout).not.toContain(GROUP_KEY);
  });

  it('builds the ID from a template, prints JSON, stores, and reuses the stored result', async () => {
    const store = join(dir, 'cli-store.json');
    const args = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id-template',
      '{serial}-{mac}',
      '--serial',
      'SN42',
      '--mac',
      'A1:B2:C3:D4:E5:F6',
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      endpointArg(),
      '--ca',
      caFile,
      '--store',
      store,
      '--json',
    ];
    const first = await run(args);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({
      registrationId: 'sn42-a1b2c3d4e5f6',
      deviceId: 'sn42-a1b2c3d4e5f6',
      assignedHub: 'cli-hub.azure-devices.net',
      fromCache: false,
    });
    expect(existsSync(store)).toBe(true);
    const second = await run(args);
    expect(JSON.parse(second.stdout)).toMatchObject({ registrationId: 'sn42-a1b2c3d4e5f6', fromCache: true });
    expect(second.stderr).toMatch(/using the stored assignment/);
    const forced = await run([...args, '--force']);
    expect(JSON.parse(forced.stdout).fromCache).toBe(false);
  });

  it("fills absent flags from the environment variables of Microsoft's samples", async () => {
    const deviceKey = (await run(['compute-device-key', '--key', GROUP_KEY, '--registration-id', 'cli-env-device'])).stdout.trim();
    const r = await run(['register', '--ca', caFile, '--quiet'], {
      PROVISIONING_HOST: endpointArg(),
      PROVISIONING_IDSCOPE: ID_SCOPE,
      PROVISIONING_REGISTRATION_ID: 'cli-env-device',
      PROVISIONING_SYMMETRIC_KEY: deviceKey,
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toContain('deviceId: cli-env-device');
  });

  it('says what --timeout must be, for a negative, zero or non-numeric value (-1 was "ambiguous" to the flag parser)', async () => {
    for (const value of ['-1', '-0.5', '0', 'soon', '86401']) {
      const r = await run([
        'register',
        '--id-scope',
        ID_SCOPE,
        '--registration-id',
        'cli-timeout',
        '--group-key',
        GROUP_KEY,
        '--timeout',
        value,
      ]);
      expect(r.code, value).toBe(EXIT_CODES['invalid-input']);
      expect(r.stderr).toBe('error (invalid-input): --timeout must be a positive number of seconds (a whole number up to 86400)\n');
    }
    // Any flag that takes a value: its own check speaks, not the parser.
    const port = await run(['emulator', '--port', '-1']);
    expect(port.stderr).toBe('error (invalid-input): --port must be a whole number from 0 to 65535\n');
  });

  it('ends each kind of failure with its exit code and one clear line', async () => {
    const base = ['register', '--id-scope', ID_SCOPE, '--endpoint', endpointArg(), '--timeout', '10', '--quiet'];
    const wrongKey = Buffer.from('wrong-key-wrong-key-wrong-key-0123').toString('base64');
    const cases: [string[], keyof typeof EXIT_CODES][] = [
      [[...base, '--registration-id', 'cli-device-2', '--group-key', wrongKey, '--ca', caFile], 'unauthorized'],
      [[...base, '--registration-id', 'cli-device-3', '--group-key', GROUP_KEY], 'tls'],
      [[...base, '--registration-id', 'Bad Id', '--group-key', GROUP_KEY, '--ca', caFile], 'invalid-input'],
      [[...base, '--registration-id', 'cli-device-4', '--ca', caFile], 'invalid-input'],
      [[...base, '--registration-id', 'cli-device-5', '--group-key', GROUP_KEY, '--ca', caFile, '--payload', '{oops'], 'invalid-input'],
      // About 100 KB of JSON: over DPS's 96 KB message limit, refused before connecting (it was resent until --timeout).
      [
        [
          ...base,
          '--registration-id',
          'cli-device-7',
          '--group-key',
          GROUP_KEY,
          '--ca',
          caFile,
          '--payload',
          JSON.stringify({ d: 'x'.repeat(100_000) }),
        ],
        'invalid-input',
      ],
      [
        [
          ...base,
          '--registration-id',
          'cli-device-8',
          '--group-key',
          GROUP_KEY,
          '--ca',
          caFile,
          '--payload',
          `${'['.repeat(5000)}${']'.repeat(5000)}`,
        ],
        'invalid-input',
      ],
      [
        [
          'register',
          '--id-scope',
          ID_SCOPE,
          '--registration-id',
          'cli-device-6',
          '--group-key',
          GROUP_KEY,
          '--endpoint',
          '127.0.0.1:1',
          '--timeout',
          '2',
          '--quiet',
        ],
        'network',
      ],
    ];
    for (const [args, kind] of cases) {
      const r = await run(args);
      expect(r.code, `${kind}: ${r.stderr}`).toBe(EXIT_CODES[kind]);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^error \\(${kind}\\): `));
      expect(r.stderr).not.toContain(GROUP_KEY);
      expect(r.stderr).not.toContain(wrongKey);
      expect(r.stdout).toBe('');
    }
  });

  it('has --help on every command, and refuses unknown commands and flags', async () => {
    for (const command of ['register', 'compute-device-key', 'sas-token']) {
      const r = await run([command, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: moddable-dps ${command}`));
    }
    expect((await run(['--help'])).stdout).toMatch(/^Usage: moddable-dps <command>/);
    expect((await run(['frobnicate'])).code).toBe(2);
    expect((await run(['register', '--frobnicate'])).code).toBe(2);
    const positional = await run(['compute-device-key', PUBLISHED_GROUP_KEY]);
    expect(positional.code).toBe(2);
    expect(positional.stderr).not.toContain(PUBLISHED_GROUP_KEY);
  });
});

describe('register --store: only a new file or a store file is ever written', () => {
  const register = (id: string, store: string, ...more: string[]) => [
    'register',
    '--id-scope',
    ID_SCOPE,
    '--registration-id',
    id,
    '--group-key',
    GROUP_KEY,
    '--endpoint',
    endpointArg(),
    '--ca',
    caFile,
    '--timeout',
    '10',
    '--store',
    store,
    ...more,
  ];
  /** Exit 12 with one line naming the reason, nothing on stdout, and DPS not contacted. */
  async function refused(args: string[], reason: RegExp) {
    const r = await run(args);
    expect(r.code, r.stderr).toBe(EXIT_CODES.storage);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error \(storage\): [^\n]*\n$/);
    expect(r.stderr).toMatch(reason);
    expect(r.stderr).not.toContain(GROUP_KEY);
    return r;
  }

  it('refuses the device key given as --store: exit 12, the key file untouched, the key not printed', async () => {
    const deviceKey = (await run(['compute-device-key', '--key', GROUP_KEY, '--registration-id', 'cli-store-key'])).stdout;
    const keyFile = join(dir, 'dev.key');
    writeFileSync(keyFile, deviceKey);
    const args = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'cli-store-key',
      '--key-file',
      keyFile,
      '--endpoint',
      endpointArg(),
      '--ca',
      caFile,
      '--store',
      keyFile,
    ];
    const r = await refused(args, /refusing to use .*dev\.key as the store: it is not a store file \(not JSON\); it is left untouched/);
    expect(r.stderr).not.toContain(deviceKey.trim());
    expect(readFileSync(keyFile, 'utf8')).toBe(deviceKey);
    // Also with --force, which registers first: the key still survives, and the run still fails.
    await refused([...args, '--force', '--quiet'], /it is not a store file/);
    expect(readFileSync(keyFile, 'utf8')).toBe(deviceKey);
  });

  it('refuses a config file, a directory and a path under a regular file', async () => {
    const config = join(dir, 'config.json');
    const text = '{\n  "idScope": "0ne0012ABCD",\n  "retries": 3\n}\n';
    writeFileSync(config, text);
    await refused(register('cli-store-config', config), /it is not a store file;/);
    expect(readFileSync(config, 'utf8')).toBe(text);

    const directory = join(dir, 'store-dir');
    mkdirSync(directory);
    await refused(register('cli-store-config', directory), /it is a directory/);
    expect(readdirSync(directory)).toEqual([]);

    await refused(
      register('cli-store-config', join(config, 'store.json'), '--quiet'),
      /cannot read the store .*config\.json\/store\.json \(ENOTDIR\)/,
    );
    expect(readFileSync(config, 'utf8')).toBe(text);
  });

  it.runIf(process.platform === 'linux')(
    'refuses a store whose directory cannot be made, at once (/proc/nope: the process never exited)',
    async () => {
      const started = Date.now();
      await refused(
        [...register('cli-store-proc', '/proc/nope/x.json', '--quiet'), '--timeout', '20'],
        /cannot create the directory \/proc\/nope \(ENOENT\)/,
      );
      expect(Date.now() - started).toBeLessThan(20_000);
    },
  );

  it.runIf(process.platform !== 'win32')('refuses a FIFO at once instead of blocking past --timeout', async () => {
    const fifo = join(dir, 'store.fifo');
    execFileSync('mkfifo', [fifo]);
    const started = Date.now();
    await refused([...register('cli-store-fifo', fifo), '--timeout', '2'], /it is a FIFO/);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it.runIf(process.platform !== 'win32')('refuses a read-only directory with exit 12, also with --quiet', async (ctx) => {
    if (process.getuid?.() === 0) ctx.skip('running as root, which ignores directory permissions');
    const locked = join(dir, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    try {
      await refused(register('cli-store-locked', join(locked, 'store.json'), '--quiet'), /cannot write the store .*\(EACCES\)/);
    } finally {
      chmodSync(locked, 0o700);
    }
  });

  it.runIf(process.platform !== 'win32')(
    'follows a symbolic link: the store it points to is updated and reused, the link stays',
    async () => {
      mkdirSync(join(dir, 'state'));
      const target = join(dir, 'state', 'assignment.json');
      const link = join(dir, 'linked-store.json');
      symlinkSync(target, link);
      // A link to a missing file is refused (it could create a file anywhere)...
      await refused(register('cli-store-link', link), /it is a symbolic link to a missing file/);
      expect(existsSync(target)).toBe(false);
      // ...a link to a store file is followed.
      writeFileSync(target, '');
      const first = await run(register('cli-store-link', link, '--json'));
      expect(first.code, first.stderr).toBe(0);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      const onDisk = JSON.parse(readFileSync(target, 'utf8')) as { records: { assignment: string } };
      expect(JSON.parse(onDisk.records.assignment)).toMatchObject({
        registrationId: 'cli-store-link',
        assignedHub: 'cli-hub.azure-devices.net',
      });
      const second = await run(register('cli-store-link', link, '--json'));
      expect(JSON.parse(second.stdout)).toMatchObject({ registrationId: 'cli-store-link', fromCache: true });
    },
  );

  it('--store-optional: a store that cannot be used is a warning on stderr (even with --quiet) and exit 0', async () => {
    const plain = join(dir, 'plain-file');
    writeFileSync(plain, 'x');
    const r = await run(register('cli-store-optional', join(plain, 'store.json'), '--store-optional', '--quiet'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('assignedHub: cli-hub.azure-devices.net\ndeviceId: cli-store-optional\n');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^warning: the stored assignment cannot be read, provisioning again: .*ENOTDIR/);
    expect(lines[1]).toMatch(/^warning: could not store the assignment: .*ENOTDIR/);
    expect(readFileSync(plain, 'utf8')).toBe('x');

    const alone = await run([
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'cli-store-optional',
      '--group-key',
      GROUP_KEY,
      '--store-optional',
    ]);
    expect(alone.code).toBe(EXIT_CODES['invalid-input']);
    expect(alone.stderr).toBe('error (invalid-input): --store-optional needs --store\n');
  });
});

describe('the moddable-dps executable', () => {
  it("runs as a process and exits with the command's status", async () => {
    const bin = join(import.meta.dirname, '..', 'dist', 'cli', 'bin.js');
    const { stdout } = await promisify(execFile)(process.execPath, [
      bin,
      'compute-device-key',
      '--key',
      PUBLISHED_GROUP_KEY,
      '--registration-id',
      PUBLISHED_ID,
    ]);
    expect(stdout).toBe(`${PUBLISHED_DEVICE_KEY}\n`);
    const failed = await promisify(execFile)(process.execPath, [bin, 'register']).catch((e: { code: number; stderr: string }) => e);
    expect((failed as { code: number }).code).toBe(2);
  });
});

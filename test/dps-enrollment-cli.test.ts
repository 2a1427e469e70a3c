// The operator commands of `az iot dps` that issue 11 asks for, end to end against a started
// emulator, in-process through main(): `dps linked-hub update --connection-string` (key rotation),
// individual enrollments (`dps enrollment create|update|show|delete|list`), `dps enrollment-group
// update|compute-device-key`, and the registration records (`... registration list|show|delete`),
// with real registrations through the `register` command. Every flag acts or is refused; a missing
// resource is one line and exit 5; keys are printed only by create, show --show-keys and
// compute-device-key.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { deriveDeviceKey } from '../src/identity.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000ENRCL';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const A = 'enr-hub-a.azure-devices.net';
const B = 'enr-hub-b.azure-devices.net';
const cs = (host: string, secret: string, policy = 'iothubowner') =>
  `HostName=${host};SharedAccessKeyName=${policy};SharedAccessKey=${secret}`;

let fixture: TestEmulator;
let dps: DpsEmulator;
let dir: string;
const outputs: string[] = [];

async function run(args: string[]) {
  const result = await runCli(args);
  outputs.push(result.stdout, result.stderr);
  return result;
}

/** A `dps` / `hub` command with --service and --ca. */
const cli = (...args: string[]) => run([...args, '--service', dps.service.connectionString, '--ca', dps.caPath]);
/** The same, for a command whose output is a secret by design: left out of the no-secrets check. */
async function cliSecret(...args: string[]) {
  const result = await cli(...args);
  outputs.splice(-2);
  return result;
}

/** `register` for one device, provisioning afresh each time; --json. */
const register = (registrationId: string, keyFlag: '--key' | '--group-key', secret: string) =>
  run([
    'register',
    '--id-scope',
    ID_SCOPE,
    '--registration-id',
    registrationId,
    keyFlag,
    secret,
    '--endpoint',
    `${dps.endpoint.host}:${dps.endpoint.port}`,
    '--ca',
    dps.caPath,
    '--quiet',
    '--force',
    '--json',
  ]);

const assigned = (result: { code: number; stdout: string }) => {
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as { assignedHub: string; deviceId: string; substatus?: string };
};

beforeAll(async () => {
  fixture = await startTestEmulator('dps-enrollment-cli-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: { iotHubs: [{ connectionString: cs(A, key(1)) }, { connectionString: cs(B, key(2)) }] },
  });
  ({ dps, dir } = fixture);
});

afterAll(async () => {
  // The service key, the hubs' keys and the enrollments' keys never appear in what was printed,
  // except by the commands whose output they are (left out above).
  const printed = outputs.join('\n');
  expect(printed).not.toContain(dps.service.key);
  for (const secret of [key(1), key(2), key(50), key(51), key(60), key(61)]) expect(printed).not.toContain(secret);
  await fixture?.close();
});

describe('dps linked-hub update --connection-string', () => {
  it('re-links the hub with its renewed key, so that DPS can create devices there again', async () => {
    expect(
      (
        await cliSecret(
          'dps',
          'enrollment-group',
          'create',
          '--enrollment-id',
          'rotate',
          '--primary-key',
          key(50),
          '--allocation-policy',
          'static',
          '--iot-hubs',
          A,
        )
      ).code,
    ).toBe(0);
    expect(assigned(await register('rotate-1', '--group-key', key(50))).assignedHub).toBe(A);

    expect((await cliSecret('hub', 'policy', 'renew-key', '--hub-name', A, '--name', 'iothubowner', '--renew-key', 'primary')).code).toBe(
      0,
    );
    expect(await register('rotate-1', '--group-key', key(50))).toMatchObject({
      code: EXIT_CODES.failed,
      stderr: expect.stringContaining('errorCode 400006'),
    });
    const fresh = (await cliSecret('hub', 'connection-string', 'show', '--hub-name', A)).stdout.trim();
    const freshKey = fresh.split('SharedAccessKey=')[1]!;

    // The connection string must name the hub it re-links; nothing changes otherwise.
    const other = await cli('dps', 'linked-hub', 'update', '--linked-hub', B, '--connection-string', fresh);
    expect(other).toMatchObject({ code: 2, stderr: expect.stringContaining(`names the hub ${A}, not ${B}`) });
    expect(other.stderr).not.toContain(freshKey);
    // A key the hub does not hold is refused by the service, and not echoed.
    const wrong = await cli('dps', 'linked-hub', 'update', '--connection-string', cs(A, key(3)));
    expect(wrong.code).toBe(EXIT_CODES['invalid-input']);
    expect(wrong.stderr).not.toContain(key(3));
    expect(dps.model.linkedHub(A)?.connectionString).toBe(cs(A, key(1)));

    // The hub is named by the connection string (--linked-hub may be left out), or by both; a file works too.
    const file = join(dir, 'hub-a.cs');
    writeFileSync(file, `${fresh}\n`);
    const updated = await cli('dps', 'linked-hub', 'update', '--linked-hub', A.toUpperCase(), '--connection-string-file', file, '--json');
    expect(updated.code).toBe(0);
    expect(updated.stdout).not.toContain(freshKey);
    expect(JSON.parse(updated.stdout)[0]).toMatchObject({ name: A, connectionString: expect.stringContaining('SharedAccessKey=****') });
    expect(dps.model.linkedHub(A)?.connectionString).toBe(fresh);
    expect(assigned(await register('rotate-1', '--group-key', key(50))).assignedHub).toBe(A);

    // Renewed again: re-linked by the connection string alone, with a weight change in the same step.
    await cliSecret('hub', 'policy', 'renew-key', '--hub-name', A, '--name', 'iothubowner', '--renew-key', 'swap');
    const swapped = (await cliSecret('hub', 'connection-string', 'show', '--hub-name', A)).stdout.trim();
    const relinked = await cliSecret('dps', 'linked-hub', 'update', '--connection-string', swapped, '--allocation-weight', '2');
    expect(relinked).toMatchObject({ code: 0, stdout: expect.stringContaining(`[0] ${A}  location -  weight 2`) });
    expect(dps.model.linkedHub(A)).toMatchObject({ connectionString: swapped, allocationWeight: 2 });
    expect(assigned(await register('rotate-1', '--group-key', key(50))).assignedHub).toBe(A);
    expect((await cli('dps', 'linked-hub', 'update', '--linked-hub', A, '--allocation-weight', '1')).code).toBe(0);
    expect((await cli('dps', 'enrollment-group', 'delete', '--enrollment-id', 'rotate')).code).toBe(0);
  });

  it('refuses an update that changes nothing, and a flag its command does not take', async () => {
    expect(await cli('dps', 'linked-hub', 'update', '--linked-hub', A)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('Nothing to update'),
    });
    expect((await cli('dps', 'linked-hub', 'update', '--allocation-weight', '3')).stderr).toContain('Missing --linked-hub');
    for (const args of [
      ['delete', '--linked-hub', A, '--allocation-weight', '3'],
      ['show', '--linked-hub', A, '--location', 'westus'],
      ['list', '--linked-hub', A],
      ['create', '--connection-string', cs(A, key(1)), '--linked-hub', A],
    ]) {
      const result = await cli('dps', 'linked-hub', ...args);
      expect(result, args.join(' ')).toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/^error \(invalid-input\): Unknown option '--/),
      });
      expect(result.stderr.split('\n')).toHaveLength(2); // one line
    }
    expect(dps.model.linkedHubs().map((h) => h.hostName)).toEqual([A, B]);
  });
});

describe('dps enrollment (individual enrollments)', () => {
  it('creates one with generated keys, provisions its device, shows and lists it without keys', async () => {
    const created = await cliSecret(
      'dps',
      'enrollment',
      'create',
      '--enrollment-id',
      'solo-1',
      '--attestation-type',
      'symmetricKey',
      '--device-id',
      'solo-device',
      '--allocation-policy',
      'static',
      '--iot-hubs',
      A,
      '--initial-twin-tags',
      '{"room":"lab"}',
      '--initial-twin-properties',
      '{"interval":5}',
      '--reprovision-policy',
      'never',
      '--json',
    );
    expect(created.code).toBe(0);
    const enrollment = JSON.parse(created.stdout);
    expect(enrollment).toMatchObject({
      registrationId: 'solo-1',
      deviceId: 'solo-device',
      provisioningStatus: 'enabled',
      iotHubs: [A],
      initialTwin: { tags: { room: 'lab' }, properties: { desired: { interval: 5 } } },
      reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: true },
    });
    const { primaryKey, secondaryKey } = enrollment.attestation.symmetricKey;
    for (const generated of [primaryKey, secondaryKey]) expect(Buffer.from(generated, 'base64')).toHaveLength(64);

    expect(assigned(await register('solo-1', '--key', primaryKey))).toMatchObject({ assignedHub: A, deviceId: 'solo-device' });
    expect((await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'solo-device')).stdout).toContain('tags: {"room":"lab"}');

    const shown = await cli('dps', 'enrollment', 'show', '--enrollment-id', 'solo-1');
    expect(shown.stdout).toBe(
      `solo-1  enabled  deviceId solo-device  allocationPolicy static  iotHubs ${A}\n` +
        'initialTwin: {"tags":{"room":"lab"},"properties":{"desired":{"interval":5}}}\nreprovisionPolicy: never\n',
    );
    expect(JSON.parse((await cli('dps', 'enrollment', 'show', '--enrollment-id', 'solo-1', '--json')).stdout).attestation).toEqual({
      type: 'symmetricKey',
    });
    const withKeys = await cliSecret('dps', 'enrollment', 'show', '--enrollment-id', 'SOLO-1', '--show-keys');
    expect(withKeys.stdout).toContain(`primaryKey: ${primaryKey}\nsecondaryKey: ${secondaryKey}\n`);

    expect(
      (await cliSecret('dps', 'enrollment', 'create', '--enrollment-id', 'solo-2', '--primary-key', key(60), '--secondary-key', key(61)))
        .code,
    ).toBe(0);
    const list = await cli('dps', 'enrollment', 'list');
    expect(list.stdout).toBe(
      `solo-1  enabled  deviceId solo-device  allocationPolicy static  iotHubs ${A}\n` +
        'solo-2  enabled  deviceId solo-2  allocationPolicy (instance default)  iotHubs all linked hubs\n',
    );
    const listed = JSON.parse((await cli('dps', 'enrollment', 'list', '--top', '1', '--json')).stdout);
    expect(listed).toEqual([expect.objectContaining({ registrationId: 'solo-1', attestation: { type: 'symmetricKey' } })]);
  });

  it('updates what is given and keeps the rest: status, keys, twin parts, device ID, reprovision policy', async () => {
    const disabled = await cli('dps', 'enrollment', 'update', '--enrollment-id', 'solo-2', '--provisioning-status', 'disabled');
    expect(disabled).toMatchObject({ code: 0, stdout: expect.stringMatching(/^solo-2 {2}disabled {2}/) });
    expect(disabled.stdout).not.toContain('primaryKey');
    expect(await register('solo-2', '--key', key(60))).toMatchObject({ code: EXIT_CODES.disabled });
    expect((await cli('dps', 'enrollment', 'update', '--enrollment-id', 'solo-2', '--provisioning-status', 'enabled')).code).toBe(0);
    expect(assigned(await register('solo-2', '--key', key(60))).deviceId).toBe('solo-2');

    // A new primary key: the old one is refused, the new one and the kept secondary work.
    expect((await cli('dps', 'enrollment', 'update', '--enrollment-id', 'solo-2', '--primary-key', key(51))).code).toBe(0);
    expect(await register('solo-2', '--key', key(60))).toMatchObject({ code: EXIT_CODES.unauthorized });
    expect((await register('solo-2', '--key', key(51))).code).toBe(0);
    expect((await register('solo-2', '--key', key(61))).code).toBe(0);

    await cli(
      'dps',
      'enrollment',
      'update',
      '--enrollment-id',
      'solo-2',
      '--initial-twin-tags',
      '{"a":1}',
      '--initial-twin-properties',
      '{"p":1}',
    );
    const twin = await cli(
      'dps',
      'enrollment',
      'update',
      '--enrollment-id',
      'solo-2',
      '--initial-twin-tags',
      '{"a":2}',
      '--device-id',
      'renamed',
    );
    expect(twin.stdout).toContain('initialTwin: {"tags":{"a":2},"properties":{"desired":{"p":1}}}');
    const reset = await cli(
      'dps',
      'enrollment',
      'update',
      '--enrollment-id',
      'solo-2',
      '--reprovision-policy',
      'ReprovisionAndResetData',
      '--json',
    );
    expect(JSON.parse(reset.stdout)).toMatchObject({
      deviceId: 'renamed',
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
      initialTwin: { tags: { a: 2 } },
      attestation: { type: 'symmetricKey' },
    });
    expect(assigned(await register('solo-2', '--key', key(51))).deviceId).toBe('renamed');
  });

  it('refuses what cannot be done, each with one line and its exit code', async () => {
    const one = async (args: string[], code: number, text: string | RegExp) => {
      const result = await cli('dps', 'enrollment', ...args);
      expect(result, args.join(' ')).toMatchObject({
        code,
        stderr: typeof text === 'string' ? expect.stringContaining(text) : expect.stringMatching(text),
      });
      expect(result.stderr.split('\n'), args.join(' ')).toHaveLength(2);
    };
    await one(['show', '--enrollment-id', 'nobody'], EXIT_CODES.failed, 'The enrollment nobody does not exist');
    await one(['update', '--enrollment-id', 'nobody', '--provisioning-status', 'disabled'], EXIT_CODES.failed, 'does not exist');
    await one(['delete', '--enrollment-id', 'nobody'], EXIT_CODES.failed, 'does not exist');
    await one(['update', '--enrollment-id', 'solo-2'], 2, 'Nothing to update: give at least one of --primary-key');
    await one(
      ['update', '--enrollment-id', 'solo-2', '--provisioning-status', 'paused'],
      2,
      '--provisioning-status must be enabled or disabled',
    );
    await one(['update', '--enrollment-id', 'solo-2', '--reprovision-policy', 'sometimes'], 2, '--reprovision-policy must be');
    await one(['update', '--enrollment-id', 'solo-2', '--etag', '"stale"', '--device-id', 'x'], EXIT_CODES.failed, 'etag does not match');
    await one(['update', '--enrollment-id', 'solo-2', '--api-version', '2021-10-01'], 2, '--api-version goes with --webhook-url');
    await one(
      ['update', '--enrollment-id', 'solo-2', '--allocation-policy', 'static', '--iot-hubs', `${A},${B}`],
      2,
      'exactly one IoT hub',
    );
    await one(['create', '--enrollment-id', 'solo-3', '--attestation-type', 'x509'], 2, '--attestation-type x509 needs --certificate-path');
    await one(['create', '--enrollment-id', 'solo-3', '--attestation-type', 'tpm'], 2, 'tpm is not supported');
    await one(['create', '--enrollment-id', 'solo-3', '--primary-key', 'not base64!'], 2, 'not base64');
    await one(['create', '--enrollment-id', 'solo-3', '--device-id', ''], 2, '--device-id needs a device ID');
    await one(['create', '--primary-key', key(60)], 2, 'Missing --enrollment-id');
    await one(['show', '--enrollment-id', 'solo-2', '--primary-key', key(60)], 2, "Unknown option '--primary-key'");
    await one(['list', '--enrollment-id', 'solo-2'], 2, "Unknown option '--enrollment-id'");
    await one(['delete', '--enrollment-id', 'solo-2', '--show-keys'], 2, "Unknown option '--show-keys'");
    await one(['update', '--enrollment-id', 'solo-2', '--attestation-type', 'symmetricKey'], 2, "Unknown option '--attestation-type'");
    await one(['list', '--top', '0'], 2, '--top must be a whole number');
    await one(['frobnicate'], 2, "unknown command 'dps enrollment frobnicate'");
    expect(dps.model.individualEnrollment('solo-3')).toBeUndefined();
    expect(dps.model.individualEnrollment('solo-2')?.deviceId).toBe('renamed');
  });
});

describe('dps enrollment-group update and compute-device-key', () => {
  it('enables and disables, replaces a key, moves the group to another hub, changes the twin and the reprovision policy', async () => {
    expect(
      (
        await cliSecret(
          'dps',
          'enrollment-group',
          'create',
          '--enrollment-id',
          'line-9',
          '--primary-key',
          key(60),
          '--secondary-key',
          key(61),
          '--allocation-policy',
          'static',
          '--iot-hubs',
          A,
          '--initial-twin-tags',
          '{"line":9}',
        )
      ).code,
    ).toBe(0);
    const device = deriveDeviceKey(key(60), 'line9-001');
    const off = await cli('dps', 'enrollment-group', 'update', '--group-id', 'line-9', '--provisioning-status', 'disabled');
    expect(off).toMatchObject({ code: 0, stdout: expect.stringMatching(/^line-9 {2}disabled {2}allocationPolicy static/) });
    expect(off.stdout).not.toContain('primaryKey');
    expect(await register('line9-001', '--key', device)).toMatchObject({ code: EXIT_CODES.disabled });
    expect((await cli('dps', 'enrollment-group', 'update', '--enrollment-id', 'line-9', '--provisioning-status', 'enabled')).code).toBe(0);
    expect(assigned(await register('line9-001', '--key', device)).assignedHub).toBe(A);

    // Moved to B, data migrated (the default reprovision policy), the desired properties added to the tags.
    const moved = await cli(
      'dps',
      'enrollment-group',
      'update',
      '--enrollment-id',
      'line-9',
      '--iot-hubs',
      B,
      '--initial-twin-properties',
      '{"rate":3}',
    );
    expect(moved.stdout).toContain(
      `line-9  enabled  allocationPolicy static  iotHubs ${B}\ninitialTwin: {"tags":{"line":9},"properties":{"desired":{"rate":3}}}\nreprovisionPolicy: reprovisionandmigratedata\n`,
    );
    expect(assigned(await register('line9-001', '--key', device))).toMatchObject({ assignedHub: B, substatus: 'deviceDataMigrated' });

    // A new primary key: devices keyed from the old one are refused, those from the secondary are not.
    expect((await cli('dps', 'enrollment-group', 'update', '--enrollment-id', 'line-9', '--primary-key', key(51))).code).toBe(0);
    expect(await register('line9-001', '--key', device)).toMatchObject({ code: EXIT_CODES.unauthorized });
    expect((await register('line9-001', '--key', deriveDeviceKey(key(61), 'line9-001'))).code).toBe(0);
    expect((await register('line9-001', '--group-key', key(51))).code).toBe(0);

    const never = await cli(
      'dps',
      'enrollment-group',
      'update',
      '--enrollment-id',
      'line-9',
      '--reprovision-policy',
      'never',
      '--allocation-policy',
      'hashed',
      '--iot-hubs',
      '',
    );
    expect(never.stdout).toBe(
      'line-9  enabled  allocationPolicy hashed  iotHubs all linked hubs\ninitialTwin: {"tags":{"line":9},"properties":{"desired":{"rate":3}}}\nreprovisionPolicy: never\n',
    );
    expect(dps.model.enrollmentGroup('line-9')).toMatchObject({
      attestation: { symmetricKey: { primaryKey: key(51), secondaryKey: key(61) } },
    });
  });

  it("compute-device-key prints only the key derived from the group's primary key, or from --key offline", async () => {
    const expected = `${deriveDeviceKey(key(51), 'line9-002')}\n`;
    expect(
      await cliSecret('dps', 'enrollment-group', 'compute-device-key', '--enrollment-id', 'line-9', '--registration-id', 'line9-002'),
    ).toMatchObject({
      code: 0,
      stdout: expected,
      stderr: '',
    });
    expect(
      (await cliSecret('dps', 'enrollment-group', 'compute-device-key', '--group-id', 'LINE-9', '--registration-id', 'line9-002')).stdout,
    ).toBe(expected);
    const offline = await runCli(['dps', 'enrollment-group', 'compute-device-key', '--key', key(51), '--registration-id', 'line9-002']);
    expect(offline).toMatchObject({ code: 0, stdout: expected });
    const json = await cliSecret(
      'dps',
      'enrollment-group',
      'compute-device-key',
      '--enrollment-id',
      'line-9',
      '--registration-id',
      'line9-002',
      '--json',
    );
    expect(JSON.parse(json.stdout)).toBe(expected.trim());

    expect(await cli('dps', 'enrollment-group', 'compute-device-key', '--enrollment-id', 'nobody', '--registration-id', 'x')).toMatchObject(
      {
        code: EXIT_CODES.failed,
        stderr: expect.stringContaining('The enrollment group nobody does not exist'),
      },
    );
    expect((await cli('dps', 'enrollment-group', 'compute-device-key', '--enrollment-id', 'line-9')).stderr).toContain(
      'Missing --registration-id',
    );
    expect((await cli('dps', 'enrollment-group', 'compute-device-key', '--registration-id', 'x')).stderr).toContain(
      'Missing --enrollment-id',
    );
    expect(
      (await cli('dps', 'enrollment-group', 'compute-device-key', '--enrollment-id', 'line-9', '--key', key(51), '--registration-id', 'x'))
        .stderr,
    ).toContain('not both');
    expect(
      (
        await cli(
          'dps',
          'enrollment-group',
          'compute-device-key',
          '--enrollment-id',
          'line-9',
          '--group-id',
          'line-9',
          '--registration-id',
          'x',
        )
      ).stderr,
    ).toContain('not both');
  });

  it('refuses what cannot be done, each with one line and its exit code', async () => {
    for (const [args, code, text] of [
      [
        ['update', '--enrollment-id', 'nobody', '--provisioning-status', 'enabled'],
        EXIT_CODES.failed,
        'The enrollment group nobody does not exist',
      ],
      [['update', '--enrollment-id', 'line-9'], 2, 'Nothing to update'],
      [['update', '--enrollment-id', 'line-9', '--iot-hubs', 'elsewhere.azure-devices.net'], 2, 'not linked: elsewhere.azure-devices.net'],
      [
        ['update', '--enrollment-id', 'line-9', '--etag', 'stale', '--provisioning-status', 'enabled'],
        EXIT_CODES.failed,
        'etag does not match',
      ],
      [['update', '--enrollment-id', 'line-9', '--initial-twin-tags', '[1'], 2, '--initial-twin-tags is not valid JSON'],
      [['show', '--enrollment-id', 'nobody'], EXIT_CODES.failed, 'does not exist'],
      [['show', '--enrollment-id', 'line-9', '--primary-key', key(60)], 2, "Unknown option '--primary-key'"],
      [['list', '--enrollment-id', 'line-9'], 2, "Unknown option '--enrollment-id'"],
      [['delete', '--enrollment-id', 'line-9', '--reprovision-policy', 'never'], 2, "Unknown option '--reprovision-policy'"],
      [['create', '--enrollment-id', 'line-10', '--show-keys'], 2, "Unknown option '--show-keys'"],
    ] as const) {
      const result = await cli('dps', 'enrollment-group', ...args);
      expect(result, args.join(' ')).toMatchObject({ code, stderr: expect.stringContaining(text) });
      expect(result.stderr.split('\n'), args.join(' ')).toHaveLength(2);
    }
    expect(dps.model.enrollmentGroup('line-9')?.provisioningStatus).toBe('enabled');
  });
});

describe('registration records', () => {
  it("lists, shows and deletes a group's records; a deleted record makes the next registration a first one", async () => {
    // 'never': a device that registers again keeps its hub while the hub is still a candidate.
    const groupKey = key(60);
    await cliSecret(
      'dps',
      'enrollment-group',
      'create',
      '--enrollment-id',
      'fresh',
      '--primary-key',
      groupKey,
      '--reprovision-policy',
      'never',
    );
    const first = assigned(await register('fresh-1', '--group-key', groupKey));
    expect(first.substatus).toBe('initialAssignment');
    assigned(await register('fresh-2', '--group-key', groupKey));
    const other = first.assignedHub === A ? B : A;

    const list = await cli('dps', 'enrollment-group', 'registration', 'list', '--enrollment-id', 'fresh');
    expect(list.stdout).toContain(`fresh-1  assigned  assignedHub ${first.assignedHub}  deviceId fresh-1\n`);
    expect(list.stdout.split('\n')).toHaveLength(3);
    const listed = JSON.parse((await cli('dps', 'enrollment-group', 'registration', 'list', '--group-id', 'fresh', '--json')).stdout);
    expect(listed.map((r: { registrationId: string }) => r.registrationId).sort()).toEqual(['fresh-1', 'fresh-2']);
    const shown = await cli('dps', 'enrollment-group', 'registration', 'show', '--registration-id', 'fresh-1');
    expect(shown.stdout).toMatch(
      new RegExp(
        `^registrationId: fresh-1\nstatus: assigned\nsubstatus: initialAssignment\nassignedHub: ${first.assignedHub}\ndeviceId: fresh-1\ncreatedDateTimeUtc: \\S+\nlastUpdatedDateTimeUtc: \\S+\netag: \\S+\n$`,
      ),
    );

    // Its hub no longer takes part in allocation: with its record, the device stays there ('never')...
    expect((await cli('dps', 'linked-hub', 'update', '--linked-hub', first.assignedHub, '--apply-allocation-policy', 'false')).code).toBe(
      0,
    );
    expect(assigned(await register('fresh-1', '--group-key', groupKey)).assignedHub).toBe(first.assignedHub);
    // ...without it, DPS allocates it afresh, as a first registration.
    const etag = JSON.parse(
      (await cli('dps', 'enrollment-group', 'registration', 'show', '--registration-id', 'fresh-1', '--json')).stdout,
    ).etag;
    expect((await cli('dps', 'enrollment-group', 'registration', 'delete', '--registration-id', 'fresh-1', '--etag', 'stale')).code).toBe(
      EXIT_CODES.failed,
    );
    expect(await cli('dps', 'enrollment-group', 'registration', 'delete', '--registration-id', 'fresh-1', '--etag', etag)).toMatchObject({
      code: 0,
      stdout: 'deleted registration fresh-1\n',
    });
    expect(await cli('dps', 'enrollment-group', 'registration', 'show', '--registration-id', 'fresh-1')).toMatchObject({
      code: EXIT_CODES.failed,
      stderr: expect.stringContaining('The registration fresh-1 does not exist'),
    });
    expect(assigned(await register('fresh-1', '--group-key', groupKey))).toMatchObject({
      assignedHub: other,
      substatus: 'initialAssignment',
    });
    expect((await cli('dps', 'linked-hub', 'update', '--linked-hub', first.assignedHub, '--apply-allocation-policy', 'true')).code).toBe(0);

    expect((await cli('dps', 'enrollment-group', 'registration', 'delete', '--registration-id', 'fresh-1')).code).toBe(0);
    expect((await cli('dps', 'enrollment-group', 'registration', 'delete', '--registration-id', 'fresh-1')).code).toBe(EXIT_CODES.failed);
    expect((await cli('dps', 'enrollment-group', 'registration', 'list', '--enrollment-id', 'fresh')).stdout).toBe(
      `fresh-2  assigned  assignedHub ${dps.model.registration('fresh-2')?.state.assignedHub}  deviceId fresh-2\n`,
    );
  });

  it("shows and deletes an individual enrollment's record; its device then registers afresh", async () => {
    await cliSecret(
      'dps',
      'enrollment',
      'create',
      '--enrollment-id',
      'solo-fresh',
      '--primary-key',
      key(61),
      '--reprovision-policy',
      'never',
    );
    const first = assigned(await register('solo-fresh', '--key', key(61)));
    const shown = JSON.parse((await cli('dps', 'enrollment', 'registration', 'show', '--registration-id', 'solo-fresh', '--json')).stdout);
    expect(shown).toMatchObject({
      registrationId: 'solo-fresh',
      status: 'assigned',
      assignedHub: first.assignedHub,
      deviceId: 'solo-fresh',
    });
    expect(JSON.stringify(shown)).not.toContain(key(61));

    await cli('dps', 'linked-hub', 'update', '--linked-hub', first.assignedHub, '--apply-allocation-policy', 'false');
    expect(assigned(await register('solo-fresh', '--key', key(61))).assignedHub).toBe(first.assignedHub);
    expect(await cli('dps', 'enrollment', 'registration', 'delete', '--registration-id', 'solo-fresh')).toMatchObject({
      code: 0,
      stdout: 'deleted registration solo-fresh\n',
    });
    expect(assigned(await register('solo-fresh', '--key', key(61))).assignedHub).toBe(first.assignedHub === A ? B : A);
    await cli('dps', 'linked-hub', 'update', '--linked-hub', first.assignedHub, '--apply-allocation-policy', 'true');
  });

  it('refuses missing records and groups, missing IDs and flags the command does not take', async () => {
    for (const [args, code, text] of [
      [['enrollment', 'registration', 'show', '--registration-id', 'nobody'], EXIT_CODES.failed, 'The registration nobody does not exist'],
      [['enrollment', 'registration', 'delete', '--registration-id', 'nobody'], EXIT_CODES.failed, 'does not exist'],
      [
        ['enrollment-group', 'registration', 'list', '--enrollment-id', 'nobody'],
        EXIT_CODES.failed,
        'The enrollment group nobody does not exist',
      ],
      [['enrollment-group', 'registration', 'list'], 2, 'Missing --enrollment-id'],
      [['enrollment-group', 'registration', 'show'], 2, 'Missing --registration-id'],
      [
        ['enrollment-group', 'registration', 'show', '--registration-id', 'x', '--enrollment-id', 'fresh'],
        2,
        "Unknown option '--enrollment-id'",
      ],
      [['enrollment', 'registration', 'list'], 2, "unknown command 'dps enrollment registration list'"],
    ] as const) {
      const result = await cli('dps', ...args);
      expect(result, args.join(' ')).toMatchObject({ code, stderr: expect.stringContaining(text) });
      expect(result.stderr.split('\n'), args.join(' ')).toHaveLength(2);
    }
    expect((await cli('dps', 'enrollment-group', 'registration', 'list', '--enrollment-id', 'line-9')).stdout).toMatch(
      /^line9-001 {2}assigned/,
    );
  });
});

describe('secrets typed where their file belongs', () => {
  it('are named for what they look like, never echoed, and nothing is changed', async () => {
    const hubCs = cs(A, key(1));
    for (const args of [
      ['dps', 'linked-hub', 'update', '--connection-string-file', hubCs],
      ['dps', 'enrollment', 'create', '--enrollment-id', 'secret-file', '--primary-key-file', key(60)],
      ['dps', 'enrollment', 'update', '--enrollment-id', 'solo-2', '--secondary-key-file', key(60)],
      ['dps', 'enrollment-group', 'update', '--enrollment-id', 'line-9', '--primary-key-file', key(60)],
      ['dps', 'enrollment-group', 'compute-device-key', '--registration-id', 'x', '--key-file', key(60)],
    ]) {
      const result = await cli(...args);
      expect(result, args.join(' ')).toMatchObject({
        code: 2,
        stdout: '',
        stderr: expect.stringMatching(/looks like a (key|connection string)/),
      });
    }
    expect(dps.model.individualEnrollment('secret-file')).toBeUndefined();
    expect(dps.model.linkedHub(A)?.connectionString).not.toBe(hubCs);
  });
});

describe('help', () => {
  it('each new command prints help listing its flags', async () => {
    for (const [args, words] of [
      [
        ['dps', '--help'],
        ['enrollment create|update|show|delete|list', 'enrollment-group registration list|show|delete', 'compute-device-key'],
      ],
      [
        ['dps', 'enrollment', '--help'],
        ['--device-id', '--attestation-type', '--show-keys', 'registration show|delete', '--timeout'],
      ],
      [['dps', 'enrollment', 'update', '--help'], ['Changes what is given and keeps the rest']],
      [['dps', 'enrollment', 'registration', '--help'], ['registration show|delete']],
      [
        ['dps', 'enrollment-group', 'update', '--help'],
        ['--etag', 'compute-device-key', '--group-id'],
      ],
      [['dps', 'enrollment-group', 'registration', 'list', '--help'], ['registration list --enrollment-id']],
      [['dps', 'linked-hub', 'update', '--help'], ['re-links the hub']],
    ] as const) {
      const result = await run([...args]);
      expect(result.code, args.join(' ')).toBe(0);
      for (const word of words) expect(result.stdout, `${args.join(' ')}: ${word}`).toContain(word);
    }
    expect((await run(['dps', 'enrollment'])).code).toBe(2);
  });
});

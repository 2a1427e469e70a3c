// The operator commands of `az iot dps` that issue 11 asks for, end to end against a started
// emulator, in-process through main(): `dps linked-hub update --connection-string` (key rotation),
// with real registrations through the `register` command. Every flag acts or is refused.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
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

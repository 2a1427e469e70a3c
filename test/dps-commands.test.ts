// The `dps` and `hub` CLI commands end to end against a started emulator, in-process through
// main() as cli.test.ts does: az's names and flags, get-modify-put on the resource, the seeds'
// walkthrough (link hubs, set weights and policy, create a group, provision, see where it
// landed), the key-renewal interim failure, exit codes per failure kind, and no secret in any
// output except where the command's output is the secret.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000CLIDP';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const A = 'cli-hub-a.azure-devices.net';
const B = 'cli-hub-b.azure-devices.net';
const C = 'cli-hub-c.azure-devices.net';
const cs = (host: string, secret: string, policy = 'iothubowner') =>
  `HostName=${host};SharedAccessKeyName=${policy};SharedAccessKey=${secret}`;

let dps: DpsEmulator;
let dir: string;
const outputs: string[] = [];

async function run(args: string[], env: Record<string, string | undefined> = {}) {
  const result = await runCli(args, env);
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

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-commands-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [
        { connectionString: cs(A, key(1)), location: 'westus' },
        { connectionString: cs(B, key(2)), location: 'eastus' },
      ],
    },
  });
  ({ dps, dir } = fixture);
});

afterAll(async () => {
  // The service key, the hubs' keys and the device keys never appear in what was printed,
  // except by the commands whose output they are (checked in their own tests).
  const printed = outputs.join('\n');
  expect(printed).not.toContain(dps.service.key);
  for (const secret of [key(1), key(3), key(40)]) expect(printed).not.toContain(secret);
  await fixture?.close();
});

describe('dps show and dps update', () => {
  it('shows the resource, from --service, --service-file or DPS_SERVICE_CONNECTION_STRING', async () => {
    const shown = await cli('dps', 'show');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`idScope: ${ID_SCOPE}`);
    expect(shown.stdout).toMatch(new RegExp(`\\[0\\] ${A}  location westus  weight 1  applyAllocationPolicy true`));
    const file = join(dir, 'service.txt');
    writeFileSync(file, `${dps.service.connectionString}\n`);
    const json = await run(['dps', 'show', '--service-file', file, '--ca', dps.caPath, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      properties: {
        allocationPolicy: 'Hashed',
        iotHubs: [{ name: A, connectionString: expect.stringContaining('SharedAccessKey=****') }, { name: B }],
      },
    });
    const fromEnv = await run(['dps', 'show', '--ca', dps.caPath], { DPS_SERVICE_CONNECTION_STRING: dps.service.connectionString });
    expect(fromEnv.code).toBe(0);
  });

  it('sets the allocation policy and a hub weight with --set, and refuses what the service refuses', async () => {
    const set = await cli(
      'dps',
      'update',
      '--set',
      'properties.allocationPolicy=geoLatency',
      '--set',
      'properties.iotHubs[1].allocationWeight=4',
    );
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('allocationPolicy: GeoLatency');
    expect(dps.model.linkedHub(B)?.allocationWeight).toBe(4);
    expect(dps.model.linkedHub(A)?.connectionString).toBe(cs(A, key(1))); // the masked key was kept
    expect(await cli('dps', 'update', '--set', 'properties.allocationPolicy=hashed')).toMatchObject({ code: 0 });

    const custom = await cli('dps', 'update', '--set', 'properties.allocationPolicy=custom');
    expect(custom).toMatchObject({
      code: EXIT_CODES['invalid-input'],
      stderr: expect.stringMatching(/cannot be custom.*errorCode 400002, trackingId/),
    });
    expect((await cli('dps', 'update', '--set', 'properties.iotHubs[0].allocationWeight=1001')).stderr).toContain('from 1 to 1000');
    expect((await cli('dps', 'update', '--set', 'properties.iotHubs[7].location=x')).stderr).toContain('no properties.iotHubs[7]');
    expect((await cli('dps', 'update', '--set', 'properties.idScope=x')).code).toBe(EXIT_CODES['invalid-input']);
    expect((await cli('dps', 'update')).stderr).toContain('at least one --set');
  });
});

describe('dps linked-hub', () => {
  it('creates, updates, shows, lists and deletes a linked hub', async () => {
    const created = await cli(
      'dps',
      'linked-hub',
      'create',
      '--connection-string',
      cs(C, key(3)),
      '--location',
      'northeurope',
      '--allocation-weight',
      '10',
      '--apply-allocation-policy',
      'false',
    );
    expect(created.code).toBe(0);
    expect(created.stdout).toContain(`[2] ${C}  location northeurope  weight 10  applyAllocationPolicy false`);
    expect(created.stdout).not.toContain(key(3));
    expect(dps.model.linkedHub(C)).toMatchObject({ allocationWeight: 10, applyAllocationPolicy: false });

    expect(
      (await cli('dps', 'linked-hub', 'update', '--linked-hub', C, '--allocation-weight', '20', '--apply-allocation-policy', 'true')).code,
    ).toBe(0);
    const shown = JSON.parse((await cli('dps', 'linked-hub', 'show', '--linked-hub', C.toUpperCase())).stdout);
    expect(shown).toMatchObject({
      name: C,
      allocationWeight: 20,
      applyAllocationPolicy: true,
      connectionString: expect.stringContaining('****'),
    });
    const list = JSON.parse((await cli('dps', 'linked-hub', 'list', '--json')).stdout) as Array<{ name: string }>;
    expect(list.map((h) => h.name)).toEqual([A, B, C]);

    expect((await cli('dps', 'linked-hub', 'delete', '--linked-hub', C)).code).toBe(0);
    expect(dps.model.linkedHub(C)).toBeUndefined();
    expect(await cli('dps', 'linked-hub', 'delete', '--linked-hub', C)).toMatchObject({
      code: EXIT_CODES.failed,
      stderr: expect.stringContaining('not linked'),
    });
  });

  it('refuses bad weights, bad connection strings and policies without RegistryWrite', async () => {
    const weight = await cli('dps', 'linked-hub', 'create', '--connection-string', cs(C, key(3)), '--allocation-weight', '0');
    expect(weight).toMatchObject({ code: EXIT_CODES['invalid-input'], stderr: expect.stringContaining('from 1 to 1000') });
    expect((await cli('dps', 'linked-hub', 'create', '--connection-string', cs(C, key(3)), '--allocation-weight', 'ten')).code).toBe(2);
    const bad = await cli('dps', 'linked-hub', 'create', '--connection-string', `HostName=${C};SharedAccessKey=${key(3)}`);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining('lacks SharedAccessKeyName') });
    expect(bad.stderr).not.toContain(key(3));

    const readOnly = await cliSecret('hub', 'connection-string', 'show', '--hub-name', A, '--policy-name', 'registryRead');
    expect(readOnly.stdout).toMatch(new RegExp(`^HostName=${A};SharedAccessKeyName=registryRead;SharedAccessKey=[A-Za-z0-9+/=]{40,}\\n$`));
    const refused = await cli('dps', 'update', '--set', `properties.iotHubs[0].connectionString=${readOnly.stdout.trim()}`);
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringContaining('lacks RegistryWrite and ServiceConnect') });
    expect(refused.stderr).not.toContain(readOnly.stdout.trim().split('SharedAccessKey=')[1]);
    expect(dps.model.linkedHub(A)?.sharedAccessKeyName).toBe('iothubowner');
  });
});

describe("the seeds' walkthrough through the CLI", () => {
  it('creates a group, provisions a device, shows where it landed; survives a hub key renewal once the link is updated', async () => {
    const groupKey = key(40);
    const created = await cliSecret(
      'dps',
      'enrollment-group',
      'create',
      '--enrollment-id',
      'cli-line-1',
      '--primary-key',
      groupKey,
      '--allocation-policy',
      'static',
      '--iot-hubs',
      A,
      '--initial-twin-tags',
      '{"line":"one"}',
      '--initial-twin-properties',
      '{"interval":15}',
    );
    expect(created.code).toBe(0);
    expect(created.stdout).toContain(`cli-line-1  enabled  allocationPolicy static  iotHubs ${A}`);
    expect(created.stdout).toContain(`primaryKey: ${groupKey}`); // create prints the keys, as az does
    expect((await cli('dps', 'enrollment-group', 'show', '--enrollment-id', 'cli-line-1')).stdout).not.toContain(groupKey);
    const withKeys = await cliSecret('dps', 'enrollment-group', 'show', '--enrollment-id', 'cli-line-1', '--show-keys', '--json');
    expect(JSON.parse(withKeys.stdout).attestation.symmetricKey.primaryKey).toBe(groupKey);
    const list = await cli('dps', 'enrollment-group', 'list', '--json');
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ enrollmentGroupId: 'cli-line-1', attestation: { type: 'symmetricKey' } }),
    ]);

    const register = () =>
      run([
        'register',
        '--id-scope',
        ID_SCOPE,
        '--registration-id',
        'cli-walk-1',
        '--group-key',
        groupKey,
        '--endpoint',
        `${dps.endpoint.host}:${dps.endpoint.port}`,
        '--ca',
        dps.caPath,
        '--quiet',
        '--force',
      ]);
    expect(await register()).toMatchObject({ code: 0, stdout: `assignedHub: ${A}\ndeviceId: cli-walk-1\n` });
    const device = await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'cli-walk-1');
    expect(device.stdout).toBe(
      `deviceId: cli-walk-1\nhub: ${A}\nregistrationId: cli-walk-1\nstatus: enabled\ntags: {"line":"one"}\ndesired properties: {"interval":15}\n`,
    );
    expect(
      JSON.parse((await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'cli-walk-1', '--json')).stdout).authentication,
    ).toEqual({ type: 'sas' });

    const renewed = await cliSecret('hub', 'policy', 'renew-key', '--hub-name', A, '--name', 'iothubowner', '--renew-key', 'primary');
    expect(renewed.stdout).toMatch(
      /^keyName: iothubowner\nrights: RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect\nprimaryKey: \S+\nsecondaryKey: \S+\n$/,
    );
    const interim = await register();
    expect(interim).toMatchObject({
      code: EXIT_CODES.failed,
      stderr: expect.stringMatching(/linked IoT hub cli-hub-a.* is out of date.*errorCode 400006/),
    });

    const fresh = (await cliSecret('hub', 'connection-string', 'show', '--hub-name', A)).stdout.trim();
    expect((await cli('dps', 'update', '--set', `properties.iotHubs[0].connectionString=${fresh}`)).code).toBe(0);
    expect(await register()).toMatchObject({ code: 0, stdout: `assignedHub: ${A}\ndeviceId: cli-walk-1\n` });

    expect((await cli('dps', 'enrollment-group', 'delete', '--enrollment-id', 'cli-line-1')).code).toBe(0);
    expect((await cli('dps', 'enrollment-group', 'show', '--enrollment-id', 'cli-line-1')).code).toBe(EXIT_CODES.failed);
  });

  it("prints what the service sent escaped: a twin's text cannot drive the terminal or forge a line", async () => {
    const hostile = { note: 'a\u001b[2Jb\u2028deviceId: forged\u202eevil\u0085' };
    const created = await cliSecret(
      'dps',
      'enrollment-group',
      'create',
      '--enrollment-id',
      'cli-hostile',
      '--primary-key',
      key(41),
      '--allocation-policy',
      'static',
      '--iot-hubs',
      A,
      '--initial-twin-tags',
      JSON.stringify(hostile),
    );
    expect(created.code).toBe(0);
    const groupShown = await cli('dps', 'enrollment-group', 'show', '--enrollment-id', 'cli-hostile', '--json');
    const register = await run([
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'cli-hostile-1',
      '--group-key',
      key(41),
      '--endpoint',
      `${dps.endpoint.host}:${dps.endpoint.port}`,
      '--ca',
      dps.caPath,
      '--quiet',
      '--force',
    ]);
    expect(register.code).toBe(0);
    const device = await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'cli-hostile-1');
    const deviceJson = await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'cli-hostile-1', '--json');
    for (const shown of [groupShown.stdout, device.stdout, deviceJson.stdout]) {
      expect(shown).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    }
    expect(device.stdout).toContain('\\u2028deviceId: forged\\u202eevil');
    expect(JSON.parse(deviceJson.stdout).tags).toEqual(hostile); // still JSON of the same value
    expect(JSON.parse(groupShown.stdout).initialTwin.tags).toEqual(hostile);
    expect((await cli('dps', 'enrollment-group', 'delete', '--enrollment-id', 'cli-hostile')).code).toBe(0);
  });

  it('refuses a static group without a hub, and bad flags, before or at the service', async () => {
    expect(await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-bad', '--allocation-policy', 'static')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('exactly one IoT hub'),
    });
    expect((await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-bad', '--initial-twin-tags', '{nope')).stderr).toContain(
      'not valid JSON',
    );
    expect((await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-bad', '--provisioning-status', 'paused')).code).toBe(2);
    expect((await cli('hub', 'policy', 'renew-key', '--hub-name', A, '--name', 'iothubowner', '--renew-key', 'tertiary')).code).toBe(2);
    expect((await cli('hub', 'device', 'show', '--hub-name', A, '--device-id', 'nobody')).code).toBe(EXIT_CODES.failed);
    expect((await cli('dps', 'enrollment-group', 'list')).stdout).toBe('no enrollment groups\n');
  });
});

describe('errors and help', () => {
  it('exits by failure kind: missing service, wrong key, untrusted CA, unreachable, unknown command', async () => {
    expect(await run(['dps', 'show'])).toMatchObject({ code: 2, stderr: expect.stringContaining('DPS_SERVICE_CONNECTION_STRING') });
    const wrongKey = dps.service.connectionString.replace(/SharedAccessKey=.*/, `SharedAccessKey=${key(9)}`);
    expect(await run(['dps', 'show', '--service', wrongKey, '--ca', dps.caPath])).toMatchObject({
      code: EXIT_CODES.unauthorized,
      stderr: expect.stringContaining('errorCode 401002'),
    });
    expect(await run(['dps', 'show', '--service', dps.service.connectionString])).toMatchObject({
      code: EXIT_CODES.tls,
      stderr: expect.stringContaining('--ca'),
    });
    const closed = dps.service.connectionString.replace(/:\d+;/, ':1;');
    expect((await run(['dps', 'show', '--service', closed, '--ca', dps.caPath])).code).toBe(EXIT_CODES.network);
    expect((await run(['dps', 'show', '--service', 'not a connection string'])).stderr).not.toContain('not a connection string');
    expect((await cli('dps', 'frobnicate')).code).toBe(2);
    expect((await cli('hub', 'policy', 'list')).code).toBe(2);
    expect((await run(['dps', 'show', '--service', dps.service.connectionString, 'stray-secret'])).stderr).not.toContain('stray-secret');
  });

  it('prints help for each command group', async () => {
    for (const args of [
      ['dps', '--help'],
      ['dps', 'show', '--help'],
      ['dps', 'linked-hub', '--help'],
      ['dps', 'enrollment-group', 'create', '--help'],
      ['hub', '--help'],
    ]) {
      const res = await run(args);
      expect(res.code, args.join(' ')).toBe(0);
      expect(res.stdout).toMatch(/^Usage: moddable-dps (dps|hub)/);
    }
    expect((await run(['--help'])).stdout).toMatch(/dps .*az iot dps/);
  });
});

/** An HTTPS server with the emulator's certificate, answering with `handler`; `service` is a connection string for it. */
async function hostileService(handler: (res: ServerResponse) => void): Promise<{ service: string; close(): Promise<void> }> {
  const emulatorDir = join(dir, 'emulator');
  const server = createServer(
    { cert: readFileSync(join(emulatorDir, 'server.pem')), key: readFileSync(join(emulatorDir, 'server-key.pem')) },
    (_req, res) => handler(res),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    service: dps.service.connectionString.replace(/HostName=[^;]+/, `HostName=127.0.0.1:${port}`),
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('--timeout bounds each request as a whole', () => {
  it('a service that trickles its answer ends the command at the deadline with exit 8', async () => {
    // 200, then one byte every 300 ms, forever.
    const trickling = await hostileService((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const drip = setInterval(() => res.write(' '), 300);
      res.on('close', () => clearInterval(drip));
    });
    try {
      for (const args of [
        ['dps', 'show'],
        ['hub', 'device', 'list', '--hub-name', A],
        ['dps', 'enrollment-group', 'list'],
      ]) {
        const started = Date.now();
        const result = await run([...args, '--service', trickling.service, '--ca', dps.caPath, '--timeout', '2']);
        const elapsed = Date.now() - started;
        expect(result, args.join(' ')).toMatchObject({
          code: EXIT_CODES.network,
          stderr: expect.stringMatching(/no complete answer from 127\.0\.0\.1:\d+ within 2 s \(--timeout\)/),
        });
        expect(elapsed, args.join(' ')).toBeGreaterThanOrEqual(1900);
        expect(elapsed, args.join(' ')).toBeLessThan(6000); // the trickle kept the socket busy: only the total deadline ends it
      }
    } finally {
      await trickling.close();
    }
  });

  it('is a whole number of seconds (-1 too is refused by that rule, not as "ambiguous"), listed in every help', async () => {
    for (const value of ['-1', '0', '1.5', 'soon', '86401']) {
      expect(await cli('dps', 'show', '--timeout', value), value).toMatchObject({
        code: 2,
        stderr: 'error (invalid-input): --timeout must be a whole number of seconds from 1 to 86400\n',
      });
    }
    expect((await cli('dps', 'show', '--timeout', '5')).code).toBe(0);
    for (const args of [
      ['dps', '--help'],
      ['dps', 'linked-hub', '--help'],
      ['dps', 'enrollment-group', '--help'],
      ['hub', '--help'],
    ]) {
      expect((await run(args)).stdout, args.join(' ')).toContain('--timeout <seconds>');
    }
  });
});

describe('JSON nesting is bounded as the core bounds it', () => {
  it('a JSON-valued flag nested 5,000 levels deep is bad input (exit 2) naming the limit, and nothing is sent', async () => {
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    for (const flag of ['--initial-twin-tags', '--initial-twin-properties']) {
      const result = await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-deep', flag, deep);
      expect(result, flag).toMatchObject({
        code: EXIT_CODES['invalid-input'],
        stderr: `error (invalid-input): ${flag} nests objects and arrays deeper than 64 levels, the limit\n`,
      });
    }
    expect(dps.model.enrollmentGroup('cli-deep')).toBeUndefined();
    const fits = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`;
    expect((await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-deep', '--initial-twin-tags', fits)).code).toBe(0);
    expect((await cli('dps', 'enrollment-group', 'delete', '--enrollment-id', 'cli-deep')).code).toBe(0);
  });

  it('a reply nested deeper than twice the limit is a protocol error (exit 10), not a crash', async () => {
    const deep = await hostileService((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${'['.repeat(5000)}${']'.repeat(5000)}`);
    });
    try {
      for (const args of [
        ['dps', 'show'],
        ['dps', 'enrollment-group', 'show', '--enrollment-id', 'g'],
        ['hub', 'device', 'list', '--hub-name', A],
      ]) {
        const result = await run([...args, '--service', deep.service, '--ca', dps.caPath]);
        expect(result, args.join(' ')).toMatchObject({
          code: EXIT_CODES.protocol,
          stderr: expect.stringMatching(/answered 200 with JSON nested deeper than 128 levels/),
        });
      }
    } finally {
      await deep.close();
    }
  });
});

// `moddable-dps device` end to end against the emulator (its DPS and its IoT hub, real TLS):
// provisioned, online with the enrollment's initial twin, reports, sends telemetry at the twin's
// interval, answers a direct method; turned away by its hub (deleted there), it provisions again
// and goes online; a `reprovision` method does the same on demand.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { deriveDeviceKey } from '../src/identity.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { until } from './support/until.js';

const ID_SCOPE = '0ne000DEVIC';
const HUB = 'device-cli-hub.azure-devices.net';
const GROUP_KEY = Buffer.from('device-cli-test-group-key-0123456789abcdef').toString('base64');

let fixture: TestEmulator;
let dps: DpsEmulator;
let dir: string;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-device-cli-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${GROUP_KEY}` }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'device-cli-line',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
          initialTwin: { tags: { line: 'a' }, properties: { desired: { telemetryInterval: 1 } } },
        },
      ],
    },
  });
  ({ dps, dir } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

const device = (registrationId: string, ...more: string[]) =>
  runCli([
    'device',
    '--id-scope',
    ID_SCOPE,
    '--registration-id',
    registrationId,
    '--group-key',
    GROUP_KEY,
    '--endpoint',
    `${dps.endpoint.host}:${dps.endpoint.port}`,
    '--hub-endpoint',
    `${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`,
    '--ca',
    dps.caPath,
    ...more,
  ]);

describe('moddable-dps device', () => {
  it('provisions, goes online with the initial twin, reports, sends at the twin interval and answers a method', async () => {
    const running = device(
      'cli-device-1',
      '--msg-count',
      '3',
      '--properties',
      'site=lab;kind=test',
      '--method-response-code',
      '201',
      '--method-response-payload',
      '{"ok":true}',
    );
    // A direct method from the service side while it sends.
    // Online once it sends: its subscriptions, sent behind CONNECT, are in place by then.
    await until(() => dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'cli-device-1'), 15_000);
    const answer = await dps.hubs.invokeMethod(HUB, 'cli-device-1', 'ping', { n: 1 }, 10_000);
    const run = await running;
    expect(run.code, run.stderr).toBe(0);
    expect(answer).toEqual({ status: 201, payload: { ok: true } });
    expect(run.stdout).toContain(`assignedHub: ${HUB}\ndeviceId: cli-device-1\n`);
    expect(run.stdout).toMatch(/twin: \{"desired":\{"telemetryInterval":1,"\$version":1\}/);
    expect(run.stdout).toContain('sent: 3 messages');
    const messages = dps.hubs.telemetry(HUB).filter((m) => m.deviceId === 'cli-device-1');
    expect(messages.map((m) => JSON.parse(m.body).seq)).toEqual([1, 2, 3]);
    expect(messages[0]!.properties).toMatchObject({ site: 'lab', kind: 'test', '$.ct': 'application/json' });
    expect(dps.hubs.twin(HUB, 'cli-device-1')?.properties.reported).toMatchObject({
      client: 'moddable-dps/0.1.0',
      registrationId: 'cli-device-1',
    });
    expect(run.stderr).toMatch(/direct method ping answered 201/);
    expect(run.stderr).not.toContain(GROUP_KEY);
    expect(run.stderr).not.toContain(deriveDeviceKey(GROUP_KEY, 'cli-device-1'));
  }, 30_000);

  it('turned away by its hub (deleted there), provisions again from the stored assignment and goes online', async () => {
    const store = join(dir, 'cli-device-2.json');
    expect((await device('cli-device-2', '--store', store, '--msg-count', '0')).code).toBe(0);
    dps.hubs.deleteDevice(HUB, 'cli-device-2');
    const run = await device('cli-device-2', '--store', store, '--msg-count', '1', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/using the stored assignment/);
    expect(run.stderr).toMatch(/the hub turned the device away \(.*CONNACK 5.*\): provisioning again, round 1/);
    expect(JSON.parse(run.stdout)).toMatchObject({ reprovisions: 1, fromCache: false, sent: 1, assignment: { assignedHub: HUB } });
    await until(() => !dps.hubs.connected(HUB, 'cli-device-2')); // it disconnects when done
  }, 30_000);

  it('a direct method "reprovision" provisions again on demand, then carries on sending', async () => {
    const running = device('cli-device-3', '--msg-count', '3', '--msg-interval', '1');
    // Online once it sends: its subscriptions, sent behind CONNECT, are in place by then.
    await until(() => dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'cli-device-3'), 15_000);
    expect(await dps.hubs.invokeMethod(HUB, 'cli-device-3', 'reprovision', {}, 10_000)).toEqual({
      status: 200,
      payload: { reprovisioning: true },
    });
    const run = await running;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/online again on device-cli-hub/);
    expect(run.stdout).toContain('reprovisions: 1');
    expect(dps.model.registration('cli-device-3')).toBeDefined();
  }, 30_000);

  it('refuses bad flags before any traffic', async () => {
    expect((await device('cli-device-4', '--msg-count', '-1')).code).toBe(EXIT_CODES['invalid-input']);
    expect((await device('cli-device-4', '--method-response-payload', '{nope')).code).toBe(EXIT_CODES['invalid-input']);
    expect((await device('cli-device-4', '--properties', 'novalue')).code).toBe(EXIT_CODES['invalid-input']);
    expect(dps.hubs.connected(HUB, 'cli-device-4')).toBe(false);
  });
});

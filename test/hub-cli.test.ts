// `moddable-dps hub` against the emulator, with a device online through the core's hub session
// (goOnline, as `moddable-dps device` and the Node host use it): the CLI invokes a direct method and
// prints the device's answer, sends a cloud-to-device message the device receives, updates desired
// properties the device sees (and tags, guarded by the etag), follows the telemetry the device
// sends as az prints it, and disables the device so that its next connect is refused. Each command
// refuses a flag it does not take (exit 2); a missing device is one line and exit 5.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.js';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { goOnline, type Online } from '../src/device.js';
import { isProvisioningError } from '../src/errors.js';
import type { JsonObject } from '../src/hub/messages.js';
import { connectHub } from '../src/hub/session.js';
import type { MessageProperties } from '../src/hub/topics.js';
import { deriveDeviceKey } from '../src/identity.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { until } from './support/until.js';

const ID_SCOPE = '0ne000HUBCL';
const HUB = 'hub-cli.azure-devices.net';
const GROUP_KEY = Buffer.from('hub-cli-test-group-key-0123456789abcdef').toString('base64');

let fixture: TestEmulator;
let dps: DpsEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-hub-cli-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${GROUP_KEY}` }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'hub-cli-line',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
          initialTwin: { tags: { line: 'a' }, properties: { desired: { interval: 1 } } },
        },
      ],
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

/** What the device saw. */
interface Seen {
  desired: { patch: JsonObject; version: number }[];
  methods: { name: string; payload: unknown }[];
  c2d: { body: string; properties: MessageProperties }[];
}

const connect = () => createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 });

/** A device of the group online with its hub (the core's session), answering `reboot` with 201. */
async function online(registrationId: string): Promise<{ device: Online; seen: Seen }> {
  const seen: Seen = { desired: [], methods: [], c2d: [] };
  const device = await goOnline(
    {
      idScope: ID_SCOPE,
      registrationId,
      groupKey: GROUP_KEY,
      endpoint: dps.endpoint,
      hubEndpoint: dps.hubEndpoint,
      timeoutMs: 20_000,
      maxReprovisions: 0,
      session: {
        offlineTimeoutMs: 3000,
        onDesired: (patch, version) => seen.desired.push({ patch, version }),
        onMethod: (name, payload) => {
          seen.methods.push({ name, payload });
          return { status: 201, payload: { rebooting: true, asked: payload } };
        },
        onC2D: (body, properties) => seen.c2d.push({ body: new TextDecoder().decode(body), properties }),
      },
    },
    { connect: connect(), clock: systemClock },
  );
  return { device, seen };
}

const hub = (...args: string[]) => runCli(['hub', ...args, '--service', dps.service.connectionString, '--ca', dps.caPath]);

describe('moddable-dps hub, with a device online', () => {
  it('invokes a direct method and prints the answer the device gave', async () => {
    const { device, seen } = await online('hub-cli-method');
    try {
      const deviceId = device.assignment.deviceId;
      const run = await hub(
        'invoke-device-method',
        '--hub-name',
        HUB,
        '--device-id',
        deviceId,
        '--method-name',
        'reboot',
        '--method-payload',
        '{"delay": 2}',
        '--timeout',
        '10',
        '--json',
      );
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(run.stdout)).toEqual({ status: 201, payload: { rebooting: true, asked: { delay: 2 } } });
      expect(seen.methods).toEqual([{ name: 'reboot', payload: { delay: 2 } }]);

      const plain = await hub('invoke-device-method', '--hub-name', HUB, '--device-id', deviceId, '--method-name', 'reboot');
      expect(plain).toMatchObject({ code: 0, stdout: 'status: 201\npayload: {"rebooting":true,"asked":{}}\n' }); // the payload defaults to {}
    } finally {
      device.session.close();
    }
    const offline = await hub('invoke-device-method', '--hub-name', HUB, '--device-id', 'hub-cli-method', '--method-name', 'reboot');
    expect(offline.code).toBe(EXIT_CODES.failed);
    expect(offline.stderr).toMatch(/^error \(failed\): .*not connected.*\[errorCode 404103/);
    expect(offline.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('sends a cloud-to-device message the device receives, with its properties', async () => {
    const { device, seen } = await online('hub-cli-c2d');
    try {
      const run = await hub(
        'c2d-message',
        'send',
        '--hub-name',
        HUB,
        '--device-id',
        device.assignment.deviceId,
        '--data',
        'open the valve',
        '--props',
        'valve=3;urgent=yes',
        '--content-type',
        'text/plain',
      );
      expect(run).toMatchObject({ code: 0, stdout: `sent a cloud-to-device message to ${device.assignment.deviceId}\n` });
      await until(() => seen.c2d.length === 1);
      expect(seen.c2d[0]!.body).toBe('open the valve');
      expect({ ...seen.c2d[0]!.properties }).toMatchObject({ valve: '3', urgent: 'yes', '$.ct': 'text/plain' });
    } finally {
      device.session.close();
    }
  });

  it('updates desired properties the device sees, and tags, guarded by the etag', async () => {
    const { device, seen } = await online('hub-cli-twin');
    try {
      const deviceId = device.assignment.deviceId;
      const shown = await hub('device-twin', 'show', '--hub-name', HUB, '--device-id', deviceId, '--json');
      expect(shown.code).toBe(0);
      const twin = JSON.parse(shown.stdout) as { etag: string; tags: object; properties: { desired: object } };
      expect(twin).toMatchObject({ tags: { line: 'a' }, properties: { desired: { interval: 1, $version: 1 } } });

      const updated = await hub(
        'device-twin',
        'update',
        '--hub-name',
        HUB,
        '--device-id',
        deviceId,
        '--desired',
        '{"interval": 9, "mode": "eco"}',
        '--tags',
        '{"site": "north"}',
        '--etag',
        twin.etag,
        '--json',
      );
      expect(updated.code).toBe(0);
      expect(JSON.parse(updated.stdout)).toMatchObject({
        tags: { line: 'a', site: 'north' },
        properties: { desired: { interval: 9, mode: 'eco', $version: 2 } },
      });
      await until(() => seen.desired.some((d) => d.version === 2));
      expect(seen.desired.find((d) => d.version === 2)!.patch).toMatchObject({ interval: 9, mode: 'eco' });

      const stale = await hub(
        'device-twin',
        'update',
        '--hub-name',
        HUB,
        '--device-id',
        deviceId,
        '--tags',
        '{"site": "south"}',
        '--etag',
        twin.etag,
      );
      expect(stale.code).toBe(EXIT_CODES.failed);
      expect(stale.stderr).toMatch(/etag does not match/);
      const plain = await hub('device-twin', 'show', '--hub-name', HUB, '--device-id', deviceId);
      expect(plain.stdout).toContain('tags: {"line":"a","site":"north"}\n'); // the stale update changed nothing
      expect(plain.stdout).toContain('desired properties: {"interval":9,"mode":"eco","$version":2}\n');
    } finally {
      device.session.close();
    }
  });

  it('monitor-events prints the telemetry the device sends, as az does, until stopped or --timeout', async () => {
    const { device } = await online('hub-cli-events');
    const deviceId = device.assignment.deviceId;
    try {
      await device.session.sendTelemetry('{"n": 0}', { contentType: 'application/json' }); // before the monitor starts
      const stop = new AbortController();
      let stdout = '';
      let stderr = '';
      const io = {
        env: {},
        signal: stop.signal,
        stdout: (text: string) => (stdout += text),
        stderr: (text: string) => (stderr += text),
      };
      const monitoring = main(
        ['hub', 'monitor-events', '--hub-name', HUB, '--device-id', deviceId, '--props', 'app,sys', '--timeout', '0', '--json'].concat([
          '--service',
          dps.service.connectionString,
          '--ca',
          dps.caPath,
        ]),
        io,
      );
      await until(() => stderr.includes('Starting event monitor'));
      await device.session.sendTelemetry('{"n": 1}', {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        properties: { site: 'lab' },
      });
      await device.session.sendTelemetry('plain text');
      await until(() => stdout.split('\n').length >= 3);
      stop.abort();
      expect(await monitoring).toBe(0);
      const events = stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      expect(events).toEqual([
        {
          event: {
            origin: deviceId,
            module: '',
            interface: '',
            component: '',
            properties: {
              system: expect.objectContaining({ content_type: 'application/json', content_encoding: 'utf-8' }),
              application: { site: 'lab' },
            },
            payload: { n: 1 },
          },
        },
        { event: expect.objectContaining({ origin: deviceId, payload: 'plain text', properties: { system: {}, application: {} } }) },
      ]); // not {"n": 0}: it starts with the next message
      expect(stderr).toContain('Stopping event monitor');

      // --from replays what the hub still logs; --timeout ends it; without --properties, no properties
      const first = dps.hubs.telemetry(HUB).find((m) => m.deviceId === deviceId)!.sequenceNumber;
      const replay = await hub('monitor-events', '--hub-name', HUB, '--device-id', deviceId, '--from', String(first), '--timeout', '1');
      expect(replay.code).toBe(0);
      expect(replay.stdout).toContain(`{\n    "event": {\n        "origin": "${deviceId}",`); // az's indentation
      const replayed = replay.stdout.split(/\n(?=\{)/).map((text) => JSON.parse(text) as { event: { payload: unknown } });
      expect(replayed.map((e) => e.event.payload)).toEqual([{ n: 0 }, { n: 1 }, 'plain text']);
      expect(replayed[0]!.event).not.toHaveProperty('properties');
    } finally {
      device.session.close();
    }
  });

  it('device-identity update --status disabled drops the device and refuses its next connect; enabled lets it back', async () => {
    const { device } = await online('hub-cli-disable');
    const { deviceId } = device.assignment;
    const deviceKey = deriveDeviceKey(GROUP_KEY, 'hub-cli-disable');
    const reconnect = () =>
      connectHub(
        { hub: HUB, deviceId, deviceKey, endpoint: dps.hubEndpoint, offlineTimeoutMs: 3000 },
        { connect: connect(), clock: systemClock },
      );
    try {
      const disabled = await hub('device-identity', 'update', '--hub-name', HUB, '--device-id', deviceId, '--status', 'disabled');
      expect(disabled).toMatchObject({ code: 0, stdout: `deviceId: ${deviceId}\nstatus: disabled\n` });
      const why = await device.session.ended;
      expect(why?.kind).toBe('unauthorized');
      const refused = await reconnect().then(
        (session) => (session.close(), undefined),
        (error: unknown) => error,
      );
      expect(isProvisioningError(refused) && refused.kind).toBe('unauthorized');
      const shown = await hub('device-identity', 'show', '--hub-name', HUB, '--device-id', deviceId, '--json');
      expect(JSON.parse(shown.stdout)).toMatchObject({ deviceId, status: 'disabled', authentication: { type: 'sas' } });
      expect(shown.stdout).not.toContain('primaryKey');

      expect((await hub('device-identity', 'update', '--hub-name', HUB, '--device-id', deviceId, '--status', 'enabled')).code).toBe(0);
      const back = await reconnect();
      expect(back.isConnected).toBe(true);
      back.close();

      expect(await hub('device-identity', 'delete', '--hub-name', HUB, '--device-id', deviceId)).toMatchObject({
        code: 0,
        stdout: `deleted device ${deviceId}\n`,
      });
      const gone = await hub('device-identity', 'show', '--hub-name', HUB, '--device-id', deviceId);
      expect(gone.code).toBe(EXIT_CODES.failed);
      expect(gone.stderr.trim().split('\n')).toHaveLength(1);
      expect((await hub('device', 'list', '--hub-name', HUB)).stdout).not.toContain(`${deviceId} `); // the first name still works
    } finally {
      device.session.close();
    }
  });
});

describe('moddable-dps hub refuses bad input (exit 2) before any request', () => {
  it.each([
    [
      'a flag another command takes',
      ['device-twin', 'show', '--hub-name', HUB, '--device-id', 'd', '--status', 'enabled'],
      /Unknown option '--status'/,
    ],
    ['a flag of no command', ['monitor-events', '--hub-name', HUB, '--method-name', 'x'], /Unknown option '--method-name'/],
    ['an update that changes nothing', ['device-twin', 'update', '--hub-name', HUB, '--device-id', 'd'], /Nothing to update/],
    [
      'a status that is not one',
      ['device-identity', 'update', '--hub-name', HUB, '--device-id', 'd', '--status', 'off'],
      /enabled or disabled/,
    ],
    ['no status', ['device-identity', 'update', '--hub-name', HUB, '--device-id', 'd'], /Nothing to update/],
    [
      'desired properties that are not a JSON object',
      ['device-twin', 'update', '--hub-name', HUB, '--device-id', 'd', '--desired', '[1]'],
      /JSON object/,
    ],
    [
      'a method payload that is not JSON',
      ['invoke-device-method', '--hub-name', HUB, '--device-id', 'd', '--method-name', 'm', '--method-payload', '{x'],
      /not valid JSON/,
    ],
    [
      'a method timeout past 300 s',
      ['invoke-device-method', '--hub-name', HUB, '--device-id', 'd', '--method-name', 'm', '--timeout', '301'],
      /5 to 300/,
    ],
    ['a property kind az does not have', ['monitor-events', '--hub-name', HUB, '--properties', 'everything'], /sys, app, anno, all/],
    ['a sequence number that is not one', ['monitor-events', '--hub-name', HUB, '--from', '-1'], /--from/],
    [
      'a system property among the application ones',
      ['c2d-message', 'send', '--hub-name', HUB, '--device-id', 'd', '--props', '$.to=x'],
      /may not start with \$/,
    ],
    ['no hub', ['device-twin', 'show', '--device-id', 'd'], /Missing --hub-name/],
    ['an unknown command', ['device-twin', 'replace'], /unknown command 'hub device-twin replace'/],
  ])('%s', async (_what, args, message) => {
    const run = await hub(...args);
    expect(run.code).toBe(EXIT_CODES['invalid-input']);
    expect(run.stderr).toMatch(message);
    expect(run.stdout).toBe('');
  });
});

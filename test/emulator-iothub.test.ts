// The emulator's IoT Hub device endpoint over real TLS on loopback, with our own device session
// (src/hub/session.ts): a device provisioned through the emulator's DPS connects to its hub, reads
// its twin (the enrollment's initial twin), reports, receives desired updates, answers a method,
// receives a C2D message and sends telemetry; refused devices end `unauthorized`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEmulator, type EndpointEvent, IotHubError } from '../emulator/index.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import type { JsonObject } from '../src/hub/messages.js';
import type { HubSessionOptions } from '../src/hub/options.js';
import { connectHub, type HubSession } from '../src/hub/session.js';
import { hubSasToken, hubUsername } from '../src/hub/topics.js';
import { MqttClient } from '../src/mqtt/client.js';
import type { Clock } from '../src/ports.js';
import { provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { failure } from './support/errors.js';
import { until } from './support/until.js';

const ID_SCOPE = '0ne000HUB01';
const HUB = 'hub-a.azure-devices.net';
const keyOf = (text: string): string => Buffer.from(text.padEnd(32, '.')).toString('base64');
const DEVICE_KEY = keyOf('iothub-endpoint-device-key');
const INITIAL_TWIN = { tags: { site: 'lab' }, properties: { desired: { telemetryInterval: 10, mode: 'eco' } } };

let fixture: TestEmulator;
let dps: DpsEmulator;
const events: EndpointEvent[] = [];

beforeAll(async () => {
  fixture = await startTestEmulator('dps-iothub-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    onEvent: (event) => events.push(event),
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${keyOf(HUB)}` }],
      individualEnrollments: ['thermo-1', 'thermo-2', 'thermo-3', 'thermo-4'].map((registrationId) => ({
        registrationId,
        attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: keyOf('secondary') } },
        initialTwin: INITIAL_TWIN,
      })),
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

async function provision(registrationId: string) {
  const { assignment } = await provisionDevice(
    { idScope: ID_SCOPE, endpoint: dps.endpoint, registrationId, deviceKey: DEVICE_KEY, timeoutMs: 20_000 },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock },
  );
  return assignment;
}

function connect(deviceId: string, options: Partial<HubSessionOptions> = {}, clock: Clock = systemClock): Promise<HubSession> {
  return connectHub(
    { hub: HUB, deviceId, deviceKey: DEVICE_KEY, endpoint: dps.hubEndpoint, requestTimeoutMs: 5000, offlineTimeoutMs: 2000, ...options },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock, random: nodeRandom },
  );
}

describe("a provisioned device on the emulator's IoT hub", () => {
  it('reads the initial twin, reports, gets desired updates, answers a method, receives C2D and sends telemetry', async () => {
    const assignment = await provision('thermo-1');
    expect(assignment.assignedHub).toBe(HUB);
    const desired: { patch: JsonObject; version: number }[] = [];
    const c2d: { body: string; properties: Record<string, string | null> }[] = [];
    const session = await connect('thermo-1', {
      modelId: 'dtmi:com:example:Thermostat;1',
      onDesired: (patch, version) => desired.push({ patch, version }),
      onMethod: (name, payload) => ({ status: 200, payload: { name, echo: payload } }),
      onC2D: (body, properties) => c2d.push({ body: Buffer.from(body).toString('utf8'), properties }),
    });
    try {
      expect(session.twin).toEqual({ desired: { telemetryInterval: 10, mode: 'eco', $version: 1 }, reported: { $version: 1 } });
      expect(dps.hubs.connected(HUB, 'thermo-1')).toBe(true);
      expect(events).toContainEqual({ type: 'hub-connected', hub: HUB, deviceId: 'thermo-1', modelId: 'dtmi:com:example:Thermostat;1' });

      expect(await session.updateReported({ firmware: '1.0.0', battery: { level: 90 } })).toBe(2);
      expect(await session.updateReported({ battery: null })).toBe(3);
      expect(dps.hubs.twin(HUB, 'thermo-1')?.properties.reported).toEqual({ firmware: '1.0.0', $version: 3 });
      expect((await session.getTwin()).reported).toEqual({ firmware: '1.0.0', $version: 3 });

      expect(dps.hubs.updateDesired(HUB, 'thermo-1', { telemetryInterval: 5 })).toBe(2);
      await until(() => desired.some((d) => d.version === 2));
      expect(desired.at(-1)).toEqual({ patch: { telemetryInterval: 5 }, version: 2 });
      expect(dps.hubs.twin(HUB, 'thermo-1')).toMatchObject({
        tags: { site: 'lab' },
        properties: { desired: { telemetryInterval: 5, mode: 'eco', $version: 2 } },
      });

      expect(await dps.hubs.invokeMethod(HUB, 'thermo-1', 'reboot', { delay: 1 })).toEqual({
        status: 200,
        payload: { name: 'reboot', echo: { delay: 1 } },
      });

      await dps.hubs.sendC2D(HUB, 'thermo-1', 'hello device', { kind: 'greeting' });
      await until(() => c2d.length === 1);
      expect(c2d[0]).toMatchObject({
        body: 'hello device',
        properties: { kind: 'greeting', '$.to': '/devices/thermo-1/messages/devicebound' },
      });

      const followed: string[] = [];
      const stop = dps.hubs.onTelemetry((message) => followed.push(message.body));
      await session.sendTelemetry('{"temperature":21.5}', { contentType: 'application/json', properties: { alert: 'no way' } });
      stop();
      const [message] = dps.hubs.telemetry(HUB).filter((m) => m.deviceId === 'thermo-1');
      expect(message).toMatchObject({
        hub: HUB,
        body: '{"temperature":21.5}',
        properties: { '$.ct': 'application/json', alert: 'no way' },
      });
      expect(Date.parse(message!.enqueuedTimeUtc)).toBeGreaterThan(Date.now() - 60_000);
      expect(followed).toEqual(['{"temperature":21.5}']);
    } finally {
      session.close();
    }
    await until(() => !dps.hubs.connected(HUB, 'thermo-1'));
    await expect(dps.hubs.invokeMethod(HUB, 'thermo-1', 'reboot', {})).rejects.toMatchObject({ status: 404 });
  });

  it('times a method out with 504 when the device does not answer', async () => {
    await provision('thermo-2');
    const session = await connect('thermo-2', { onMethod: () => new Promise(() => {}) });
    try {
      const error = await dps.hubs.invokeMethod(HUB, 'thermo-2', 'slow', null, 200).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IotHubError);
      expect(error).toMatchObject({ status: 504 });
    } finally {
      session.close();
    }
  });

  it('refuses a wrong key, an expired token, a disabled device and a deleted one (unauthorized)', async () => {
    await provision('thermo-3');
    await failure(connect('thermo-3', { deviceKey: keyOf('not the key') }), 'unauthorized');
    const pastClock: Clock = { ...systemClock, now: () => Date.now() - 2 * 3600_000 };
    await failure(connect('thermo-3', {}, pastClock), 'unauthorized');

    const session = await connect('thermo-3');
    dps.hubs.setDeviceStatus(HUB, 'thermo-3', 'disabled');
    expect(await session.ended).toMatchObject({ kind: 'unauthorized' }); // dropped, then refused on reconnecting
    await failure(connect('thermo-3'), 'unauthorized');
    dps.hubs.setDeviceStatus(HUB, 'thermo-3', 'enabled');
    (await connect('thermo-3')).close();

    // A token valid for more than ten years (auth.ts MAX_TOKEN_LIFETIME_SECONDS): our session never makes one.
    const elevenYears = Math.floor(Date.now() / 1000) + 11 * 366 * 86_400;
    const tls = createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 });
    const options = { clientId: 'thermo-3', username: hubUsername(HUB, 'thermo-3'), onMessage: () => {}, onClose: () => {} };
    await failure(
      MqttClient.connect(tls, dps.hubEndpoint, systemClock, {
        ...options,
        password: hubSasToken(HUB, 'thermo-3', DEVICE_KEY, elevenYears),
      }),
      'unauthorized',
    );

    dps.hubs.deleteDevice(HUB, 'thermo-3');
    await failure(connect('thermo-3'), 'unauthorized');

    expect(events.filter((e) => e.type === 'hub-refused').map((e) => 'reason' in e && e.reason)).toEqual([
      'token-signature',
      'token-expired',
      'disabled',
      'disabled',
      'token-lifetime',
      'no-device',
    ]);
    expect(JSON.stringify(events)).not.toContain(DEVICE_KEY);
  });

  it("keeps a device to its own topics: another device's filter gets 0x80, a publish elsewhere is dropped, a bad patch gets 400", async () => {
    await provision('thermo-4');
    const received: { topic: string; body: string }[] = [];
    const client = await MqttClient.connect(createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), dps.hubEndpoint, systemClock, {
      clientId: 'thermo-4',
      username: hubUsername(HUB, 'thermo-4'),
      password: hubSasToken(HUB, 'thermo-4', DEVICE_KEY, Math.floor(Date.now() / 1000) + 600),
      onMessage: (topic, payload) => received.push({ topic, body: Buffer.from(payload).toString('utf8') }),
      onClose: () => {},
    });
    try {
      await failure(client.subscribe('devices/thermo-1/messages/devicebound/#', 1), 'failed');
      await failure(client.subscribe('#', 0), 'failed');
      expect(await client.subscribe('$iothub/twin/res/#', 1)).toBe(1);
      await client.publish('devices/thermo-1/messages/events/', new TextEncoder().encode('forged'), 1);
      await client.publish('$iothub/twin/PATCH/properties/reported/?$rid=7', new TextEncoder().encode('{not json'), 0);
      await client.publish('$iothub/twin/PATCH/properties/reported/?$rid=8', new TextEncoder().encode('[1,2]'), 0);
      await until(() => received.length === 2);
      expect(received.map((r) => r.topic)).toEqual(['$iothub/twin/res/400/?$rid=7', '$iothub/twin/res/400/?$rid=8']);
      expect(dps.hubs.telemetry(HUB).map((m) => m.body)).not.toContain('forged');
      expect(events.filter((e) => e.type === 'hub-topic-refused' && e.deviceId === 'thermo-4')).toEqual([
        {
          type: 'hub-topic-refused',
          hub: HUB,
          deviceId: 'thermo-4',
          action: 'subscribe',
          topic: 'devices/thermo-1/messages/devicebound/#',
        },
        { type: 'hub-topic-refused', hub: HUB, deviceId: 'thermo-4', action: 'subscribe', topic: '#' },
        { type: 'hub-topic-refused', hub: HUB, deviceId: 'thermo-4', action: 'publish', topic: 'devices/thermo-1/messages/events/' },
      ]);
      expect(dps.hubs.twin(HUB, 'thermo-4')?.properties.reported).toEqual({ $version: 1 });
    } finally {
      client.disconnect();
    }
  });
});

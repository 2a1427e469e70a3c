// Microsoft's device client is the referee of the emulator's IoT Hub endpoint (telemetry, twin and
// methods: emulator-iothub-sdk.test.ts): azure-iot-device + azure-iot-device-mqtt, over real TLS on
// loopback, as a device the emulator's DPS provisioned, receives a cloud-to-device message; a
// wrong key, an expired token, a disabled device and a deleted one get CONNACK 5, which the client
// reports as UnauthorizedError. The same device is then driven through the service API over HTTPS
// (emulator/hub-routes.ts, IoT Hub's REST names): twin, desired update, direct method, C2D,
// telemetry log and its follower's long poll, disable and delete. Last, the one port's TLS server names: a device that names
// its hub in SNI gets that hub's own certificate, and one whose SNI names another hub is refused;
// and a retained telemetry PUBLISH is passed on with the property mqtt-retain.
//
// How the client reaches a local port (node_modules/azure-iot-device-mqtt/dist/mqtt.js,
// _getBaseConfig; azure-iot-mqtt-base/dist/mqtt_base.js, _connectClient):
// - the connection string's GatewayHostName (IoT Edge's transparent gateway setting) replaces the
//   host of the URI: 'mqtts://' + (gatewayHostName || host), and mqtt.js takes the port from it,
//   while the username and the SAS token still name HostName, the hub;
// - the CA: Client.setOptions({ ca }) reaches MqttBase, which hands `ca` to the TLS connection.
// For a token that has expired, the client is built from a SharedAccessSignatureAuthenticationProvider
// holding Microsoft's own SharedAccessSignature.create(...) with an expiry in the past.
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { Client, Message, SharedAccessSignature, SharedAccessSignatureAuthenticationProvider } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator, EndpointEvent } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { hubSasToken, hubUsername } from '../src/hub/topics.js';
import { MqttClient } from '../src/mqtt/client.js';
import { provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { failure } from './support/errors.js';
import { serviceCall } from './support/service-https.js';
import { until } from './support/until.js';

const ID_SCOPE = '0ne000PEER2';
const HUB = 'hub-peer.azure-devices.net';
const OTHER_HUB = 'hub-other.azure-devices.net';
const keyOf = (text: string): string => Buffer.from(text.padEnd(32, '#')).toString('base64');
const DEVICE_KEY = keyOf('peer-device-key');

let fixture: TestEmulator;
let dps: DpsEmulator;
const events: EndpointEvent[] = [];

beforeAll(async () => {
  fixture = await startTestEmulator('dps-hub-peer-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    onEvent: (event) => events.push(event),
    config: {
      iotHubs: [HUB, OTHER_HUB].map((host) => ({
        connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${keyOf(host)}`,
      })),
      individualEnrollments: ['peer-1', 'peer-2', 'peer-3', 'peer-4', 'peer-5'].map((registrationId) => ({
        registrationId,
        iotHubs: [HUB],
        attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: keyOf('secondary') } },
      })),
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

/** Provision through the emulator's DPS, as a device would; returns the hub and device ID. */
async function provision(registrationId: string): Promise<{ hub: string; deviceId: string }> {
  const { assignment } = await provisionDevice(
    { idScope: ID_SCOPE, endpoint: dps.endpoint, registrationId, deviceKey: DEVICE_KEY, timeoutMs: 20_000 },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock },
  );
  return { hub: assignment.assignedHub, deviceId: assignment.deviceId };
}

const gateway = (): string => `127.0.0.1:${dps.hubEndpoint.port}`;

/** Microsoft's client for `deviceId` on `hub`, through the emulator's port, trusting its CA (setOptions is asynchronous). */
async function microsoftClient(hub: string, deviceId: string, key = DEVICE_KEY): Promise<Client> {
  const client = Client.fromConnectionString(
    `HostName=${hub};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=${gateway()}`,
    Mqtt,
  );
  await client.setOptions({ ca: dps.caPem });
  return client;
}

/** Open, or the error the client reports. */
async function openError(opening: Client | Promise<Client>): Promise<Error | undefined> {
  const client = await opening;
  try {
    await client.open();
    return undefined;
  } catch (error) {
    return error as Error;
  } finally {
    await client.close().catch(() => {});
  }
}

/** The client subscribes when a listener is added and tells nobody when the SUBACK came: give it time on loopback. */
function subscribing(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 300));
}

describe("Microsoft's device client on the emulator's IoT hub", () => {
  it('receives a cloud-to-device message with its properties, and completes it', async () => {
    const { hub, deviceId } = await provision('peer-1');
    expect(hub).toBe(HUB);
    const client = await microsoftClient(hub, deviceId);
    await client.open();
    try {
      const received: { body: string; kind: unknown; to: unknown }[] = [];
      client.on('message', (msg: Message) => {
        received.push({ body: msg.getData().toString(), kind: msg.properties.getValue('kind'), to: msg.to });
        void client.complete(msg);
      });
      await subscribing(); // the client subscribes when the first 'message' listener is added
      await dps.hubs.sendC2D(hub, deviceId, 'hello device', { kind: 'greeting' });
      await until(() => received.length === 1);
      expect(received[0]).toEqual({ body: 'hello device', kind: 'greeting', to: `/devices/${deviceId}/messages/devicebound` });
    } finally {
      await client.close();
    }
  });

  it('refuses a wrong key, an expired token, a disabled device and a deleted one with CONNACK 5 (UnauthorizedError)', async () => {
    const { hub, deviceId } = await provision('peer-2');
    const refusedBefore = events.filter((e) => e.type === 'hub-refused').length;

    expect((await openError(microsoftClient(hub, deviceId, keyOf('not the key'))))?.name).toBe('UnauthorizedError');

    const expired = SharedAccessSignature.create(hub, deviceId, DEVICE_KEY, Math.floor(Date.now() / 1000) - 60).toString();
    const provider = new SharedAccessSignatureAuthenticationProvider({
      host: hub,
      deviceId,
      gatewayHostName: gateway(),
      sharedAccessSignature: expired,
    });
    const expiredClient = Client.fromAuthenticationProvider(provider, Mqtt);
    await expiredClient.setOptions({ ca: dps.caPem });
    expect((await openError(expiredClient))?.name).toBe('UnauthorizedError');

    dps.hubs.setDeviceStatus(hub, deviceId, 'disabled');
    expect((await openError(microsoftClient(hub, deviceId)))?.name).toBe('UnauthorizedError');
    dps.hubs.setDeviceStatus(hub, deviceId, 'enabled');
    expect(await openError(microsoftClient(hub, deviceId))).toBeUndefined();

    dps.hubs.deleteDevice(hub, deviceId);
    expect((await openError(microsoftClient(hub, deviceId)))?.name).toBe('UnauthorizedError');

    const reasons = events
      .filter((e) => e.type === 'hub-refused')
      .slice(refusedBefore)
      .map((e) => ('reason' in e ? e.reason : ''));
    expect(reasons).toEqual(['token-signature', 'token-expired', 'disabled', 'no-device']);
    expect(JSON.stringify(events)).not.toContain(DEVICE_KEY);
  });
});

describe("the hubs' service API over HTTPS, with Microsoft's client as the device", () => {
  it('shows and updates the twin, invokes a method, sends C2D, lists telemetry, disables and deletes the device', async () => {
    const { hub, deviceId } = await provision('peer-3');
    const path = (rest: string): string => `/hubs/${hub}/${rest}`;
    const client = await microsoftClient(hub, deviceId);
    await client.open();
    try {
      const twin = await client.getTwin();
      const desired: Record<string, unknown>[] = [];
      twin.on('properties.desired', (delta: Record<string, unknown>) => desired.push(delta));
      client.onDeviceMethod('reboot', (request, response) => void response.send(200, { rebooting: request.payload }));
      const c2d: string[] = [];
      client.on('message', (msg: Message) => {
        c2d.push(msg.getData().toString());
        void client.complete(msg);
      });
      await subscribing();

      const shown = await serviceCall(dps, 'GET', path(`twins/${deviceId}`));
      expect(shown).toMatchObject({
        status: 200,
        json: { deviceId, status: 'enabled', properties: { desired: { $version: 1 }, reported: { $version: 1 } } },
      });

      const updated = await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), { body: { properties: { desired: { interval: 15 } } } });
      expect(updated).toMatchObject({ status: 200, json: { properties: { desired: { interval: 15, $version: 2 } } } });
      await until(() => desired.some((d) => d.$version === 2));
      const reportedPatch = { properties: { desired: {}, reported: { x: 1 } } }; // reported properties are the device's
      expect((await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), { body: reportedPatch })).status).toBe(400);
      expect((await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), { body: {} })).status).toBe(400);

      // Tags and desired properties in one Update Twin, guarded by the etag GET gave: a stale one is refused (412)
      const before = (await serviceCall(dps, 'GET', path(`twins/${deviceId}`))).json as { etag: string };
      const tagged = await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), {
        body: { tags: { site: 'north', floor: 3 }, properties: { desired: { interval: 20 } } },
        headers: { 'if-match': before.etag },
      });
      expect(tagged).toMatchObject({
        status: 200,
        json: { tags: { site: 'north', floor: 3 }, properties: { desired: { interval: 20, $version: 3 } } },
      });
      expect((tagged.json as { etag: string }).etag).not.toBe(before.etag);
      await until(() => desired.some((d) => d.$version === 3 && d.interval === 20));
      const stale = await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), {
        body: { tags: { site: 'south' } },
        headers: { 'if-match': before.etag },
      });
      expect(stale).toMatchObject({ status: 412, json: { error: { code: 'PreconditionFailed' } } });
      const untagged = await serviceCall(dps, 'PATCH', path(`twins/${deviceId}`), {
        body: { tags: { floor: null } },
        headers: { 'if-match': (tagged.json as { etag: string }).etag },
      });
      expect(untagged).toMatchObject({ status: 200, json: { tags: { site: 'north' }, properties: { desired: { $version: 3 } } } });
      expect((untagged.json as { tags: object }).tags).not.toHaveProperty('floor');
      expect((untagged.json as { etag: string }).etag).not.toBe((tagged.json as { etag: string }).etag); // tags alone change it too

      const invoked = await serviceCall(dps, 'POST', path(`twins/${deviceId}/methods`), {
        body: { methodName: 'reboot', payload: { in: 1 }, responseTimeoutInSeconds: 5 },
      });
      expect(invoked).toMatchObject({ status: 200, json: { status: 200, payload: { rebooting: { in: 1 } } } });
      expect(
        (await serviceCall(dps, 'POST', path(`twins/${deviceId}/methods`), { body: { methodName: 'reboot', responseTimeoutInSeconds: 1 } }))
          .status,
      ).toBe(400);

      expect(
        (
          await serviceCall(dps, 'POST', path(`devices/${deviceId}/messages/deviceBound`), {
            body: { body: 'from https', properties: { a: 'b' } },
          })
        ).status,
      ).toBe(204);
      await until(() => c2d.length === 1);
      expect(c2d).toEqual(['from https']);

      await client.sendEvent(new Message('{"n":1}'));
      const events = await serviceCall(dps, 'GET', `${path('events')}?deviceId=${deviceId}`);
      expect(events).toMatchObject({ status: 200, json: [{ deviceId, body: '{"n":1}', sequenceNumber: expect.any(Number) }] });
      const next = (events.json as { sequenceNumber: number }[])[0]!.sequenceNumber + 1;
      const following = serviceCall(dps, 'GET', `${path('events')}?deviceId=${deviceId}&from=${next}&waitSeconds=10`); // waits for the next message
      await new Promise((resolve) => setTimeout(resolve, 100));
      await client.sendEvent(new Message('{"n":2}'));
      expect(await following).toMatchObject({ status: 200, json: [{ deviceId, body: '{"n":2}', sequenceNumber: next }] });
      expect(await serviceCall(dps, 'GET', `${path('events')}?from=${next + 1}&waitSeconds=0`)).toMatchObject({ status: 200, json: [] });
      expect((await serviceCall(dps, 'GET', `${path('events')}?waitSeconds=61`)).status).toBe(400);

      const disabled = await serviceCall(dps, 'PUT', path(`devices/${deviceId}`), { body: { status: 'disabled' } });
      expect(disabled).toMatchObject({ status: 200, json: { deviceId, status: 'disabled' } });
      expect((await serviceCall(dps, 'GET', path(`devices/${deviceId}`))).json).toMatchObject({ status: 'disabled' });
      await until(() => !dps.hubs.connected(hub, deviceId)); // IoT Hub drops a device it disables
      expect((await openError(microsoftClient(hub, deviceId)))?.name).toBe('UnauthorizedError');
      const offline = await serviceCall(dps, 'POST', path(`twins/${deviceId}/methods`), { body: { methodName: 'reboot' } });
      expect(offline).toMatchObject({ status: 404, json: { error: { code: 'NotFound', errorCode: 404103 } } }); // DeviceNotOnline

      expect((await serviceCall(dps, 'DELETE', path(`devices/${deviceId}`))).status).toBe(204);
      expect((await serviceCall(dps, 'GET', path(`twins/${deviceId}`))).status).toBe(404);
      expect((await serviceCall(dps, 'PUT', path(`devices/${deviceId}`), { body: { status: 'enabled' } })).status).toBe(404);
      expect((await serviceCall(dps, 'GET', `/hubs/no-such-hub.azure-devices.net/twins/${deviceId}`)).status).toBe(404);
    } finally {
      await client.close();
    }
  });
});

describe('TLS server names (SNI) on the one port of every hub', () => {
  /** The certificate the endpoint serves to a client that sends `servername`, verified by Node against that name. */
  function certificateFor(servername: string): Promise<PeerCertificate> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: dps.hubEndpoint.port, servername, ca: dps.caPem }, () => {
        resolve(socket.getPeerCertificate());
        socket.end();
      });
      socket.once('error', reject);
    });
  }

  it("serves a hub's own certificate to a device that names it, the default one otherwise, refuses SNI naming another hub, and keeps one connection per device", async () => {
    expect((await certificateFor(HUB)).subjectaltname).toBe(`DNS:${HUB}`);
    expect((await certificateFor(OTHER_HUB)).subjectaltname).toBe(`DNS:${OTHER_HUB}`); // a hub, but not this device's
    expect((await certificateFor('localhost')).subjectaltname).toContain('DNS:localhost');
    await expect(certificateFor('hub-unknown.azure-devices.net')).rejects.toThrow(/altnames/); // the default certificate does not cover it

    const { hub, deviceId } = await provision('peer-4');
    const connectNaming = (servername: string): Promise<MqttClient> =>
      MqttClient.connect(createTlsConnect({ ca: dps.caPem, servername, connectTimeoutMs: 5000 }), dps.hubEndpoint, systemClock, {
        clientId: deviceId,
        username: hubUsername(hub, deviceId),
        password: hubSasToken(hub, deviceId, DEVICE_KEY, Math.floor(Date.now() / 1000) + 600),
        onMessage: () => {},
        onClose: () => {},
      });
    // IoT Hub keeps one connection per device: a new one drops the one before (iot-mqtt-connect-to-iot-hub.md).
    let firstClosed = false;
    const first = await MqttClient.connect(
      createTlsConnect({ ca: dps.caPem, servername: HUB, connectTimeoutMs: 5000 }),
      dps.hubEndpoint,
      systemClock,
      {
        clientId: deviceId,
        username: hubUsername(hub, deviceId),
        password: hubSasToken(hub, deviceId, DEVICE_KEY, Math.floor(Date.now() / 1000) + 600),
        onMessage: () => {},
        onClose: () => (firstClosed = true),
      },
    );
    const second = await connectNaming('localhost');
    await until(() => firstClosed);
    expect(dps.hubs.connected(hub, deviceId)).toBe(true);
    second.disconnect();
    first.disconnect();
    await failure(connectNaming(OTHER_HUB), 'unauthorized');
    expect(events.filter((e) => e.type === 'hub-refused').at(-1)).toEqual({
      type: 'hub-refused',
      clientId: deviceId,
      hub: HUB,
      reason: 'sni',
    });
  });
});

describe('MQTT details IoT Hub documents', () => {
  it('passes a retained telemetry message on with the property mqtt-retain instead of keeping it', async () => {
    const { hub, deviceId } = await provision('peer-5');
    const socket = tlsConnect({ host: '127.0.0.1', port: dps.hubEndpoint.port, ca: dps.caPem });
    socket.on('error', () => {});
    const password = hubSasToken(hub, deviceId, DEVICE_KEY, Math.floor(Date.now() / 1000) + 600);
    socket.write(
      generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        keepalive: 60,
        clientId: deviceId,
        username: hubUsername(hub, deviceId),
        password: Buffer.from(password),
      }),
    );
    socket.write(
      generate({
        cmd: 'publish',
        topic: `devices/${deviceId}/messages/events/a=1`,
        payload: Buffer.from('kept?'),
        qos: 0,
        retain: true,
        dup: false,
      }),
    );
    try {
      await until(() => dps.hubs.telemetry(hub).some((m) => m.deviceId === deviceId));
      expect(dps.hubs.telemetry(hub).find((m) => m.deviceId === deviceId)).toMatchObject({
        body: 'kept?',
        properties: { a: '1', 'mqtt-retain': 'true' },
      });
    } finally {
      socket.destroy();
    }
  });
});

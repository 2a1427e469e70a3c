// The emulator's IoT Hub endpoint against Microsoft's own device client: azure-iot-device 1.18.4
// with azure-iot-device-mqtt 1.16.4, over real TLS on loopback: telemetry with properties, the
// twin (initial desired properties, a reported update, a desired update pushed), a direct method.
//
// How the SDK reaches the emulator: its connection string names the hub (HostName), and the SDK
// signs its SAS token and writes its username for that name; the connection string's
// GatewayHostName field (meant for an IoT Edge gateway) is where it opens the socket instead:
// azure-iot-device-mqtt's Mqtt._getBaseTransportConfig sets `uri: 'mqtts://' +
// (credentials.gatewayHostName || credentials.host)`, so 'GatewayHostName=127.0.0.1:<port>' sends
// it to the emulator's hub endpoint with no forwarder; setOptions({ ca }) makes it trust the
// emulator's CA (azure-iot-mqtt-base passes `ca` to mqtt.js). The SDK's username differs from the
// documented one ('<hub>/<deviceId>/api-version=...&DeviceClientType=...', no '?'), its twin and
// method answers are QoS 0 and it connects with CleanSession 0: the endpoint must take all of it.
import { Client, Message, type Twin } from 'azure-iot-device';
import { Mqtt } from 'azure-iot-device-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000HUBSD';
const HUB = 'hub-sdk.azure-devices.net';
const DEVICE_KEY = Buffer.from('iothub-sdk-test-device-key-0123456789').toString('base64');

let fixture: TestEmulator;
let dps: DpsEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-iothub-sdk-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [
        { connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(HUB).toString('base64')}` },
      ],
      individualEnrollments: [
        {
          registrationId: 'sdk-device-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: DEVICE_KEY } },
          initialTwin: { properties: { desired: { interval: 30 } } },
        },
      ],
    },
  });
  dps = fixture.dps;
  await provisionDevice(
    { idScope: ID_SCOPE, endpoint: dps.endpoint, registrationId: 'sdk-device-1', deviceKey: DEVICE_KEY, timeoutMs: 20_000 },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock },
  );
});

afterAll(async () => {
  await fixture?.close();
});

describe("Microsoft's device SDK on the emulator's IoT hub", () => {
  it('sends telemetry, reads and patches its twin, gets a desired update and answers a method', async () => {
    const { port } = dps.hubEndpoint;
    const client = Client.fromConnectionString(
      `HostName=${HUB};DeviceId=sdk-device-1;SharedAccessKey=${DEVICE_KEY};GatewayHostName=127.0.0.1:${port}`,
      Mqtt,
    );
    await client.setOptions({ ca: dps.caPem });
    await client.open();
    try {
      expect(dps.hubs.connected(HUB, 'sdk-device-1')).toBe(true);

      const message = new Message(JSON.stringify({ temperature: 20 }));
      message.contentType = 'application/json';
      message.contentEncoding = 'utf-8';
      message.properties.add('level', 'info');
      await client.sendEvent(message);
      const [logged] = dps.hubs.telemetry(HUB);
      expect(logged).toMatchObject({
        deviceId: 'sdk-device-1',
        body: '{"temperature":20}',
        properties: { level: 'info', '$.ct': 'application/json', '$.ce': 'utf-8' },
      });

      const twin: Twin = await client.getTwin();
      expect(twin.properties.desired).toMatchObject({ interval: 30, $version: 1 });
      await new Promise<void>((resolve, reject) =>
        twin.properties.reported.update({ firmware: '2.0' }, (error?: Error) => (error ? reject(error) : resolve())),
      );
      expect(dps.hubs.twin(HUB, 'sdk-device-1')?.properties.reported).toEqual({ firmware: '2.0', $version: 2 });

      await new Promise<void>((resolve, reject) =>
        twin.enableTwinDesiredPropertiesUpdates((error?: Error) => (error ? reject(error) : resolve())),
      ); // SUBACK received
      const desired = new Promise<Record<string, unknown>>((resolve) =>
        twin.on('properties.desired', (delta: Record<string, unknown>) => {
          if (delta.$version === 2) resolve(delta);
        }),
      );
      dps.hubs.updateDesired(HUB, 'sdk-device-1', { interval: 5 });
      expect(await desired).toMatchObject({ interval: 5, $version: 2 });

      client.onDeviceMethod('getStatus', (request, response) => {
        response.send(200, { ok: true, asked: request.payload }, () => {});
      });
      // onDeviceMethod subscribes in the background: until its SUBSCRIBE is through, the hub answers 404 (not subscribed).
      let answer: unknown;
      for (let attempt = 0; answer === undefined; attempt++) {
        answer = await dps.hubs.invokeMethod(HUB, 'sdk-device-1', 'getStatus', { verbose: true }).catch((error: { status?: number }) => {
          if (error.status !== 404 || attempt > 100) throw error;
          return new Promise((resolve) => setTimeout(() => resolve(undefined), 10));
        });
      }
      expect(answer).toEqual({ status: 200, payload: { ok: true, asked: { verbose: true } } });
    } finally {
      await client.close();
    }
  });
});

// Microsoft's own MQTT over WebSockets transports are the referees of the emulator's wss endpoint:
// azure-iot-provisioning-device-mqtt's MqttWs provisions through it, and azure-iot-device-mqtt's
// MqttWs goes online with the hub through it (telemetry, twin, a method), over real TLS.
//
// Both build their URL as 'wss://<host>:443/$iothub/websocket' (mqtt_ws.js in each package); the
// emulator's HTTPS port is ephemeral here, so each transport is subclassed to put that port in
// the URL and nothing else: the WebSocket upgrade, the subprotocol, the frames, MQTT and the
// credentials are Microsoft's own code (mqtt.js 4 with ws 7 underneath). MqttBase.setOptions({ ca })
// makes them trust the emulator's CA (mqtt.js passes `ca` on to its WebSocket).
import { createRequire } from 'node:module';
import { Client, Message } from 'azure-iot-device';
import { MqttWs as DeviceMqttWs } from 'azure-iot-device-mqtt';
import { ProvisioningDeviceClient, type RegistrationRequest } from 'azure-iot-provisioning-device';
import { MqttWs as ProvisioningMqttWs } from 'azure-iot-provisioning-device-mqtt';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator } from '../emulator/index.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const requireFromTransport = createRequire(createRequire(import.meta.url).resolve('azure-iot-provisioning-device-mqtt'));
const { MqttBase } = requireFromTransport('azure-iot-mqtt-base') as {
  MqttBase: new () => { setOptions(options: { ca: string }): void };
};

const ID_SCOPE = '0ne000WSSDK';
const HUB = 'hub-wssdk.azure-devices.net';
const DEVICE_KEY = Buffer.from('websocket-sdk-device-key-0123456789').toString('base64');

let fixture: TestEmulator;
let dps: DpsEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-websocket-sdk-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [
        { connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(HUB).toString('base64')}` },
      ],
      individualEnrollments: [
        {
          registrationId: 'wssdk-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: DEVICE_KEY } },
          initialTwin: { properties: { desired: { interval: 12 } } },
        },
      ],
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

describe("Microsoft's MQTT over WebSockets transports on the emulator", () => {
  it('azure-iot-provisioning-device-mqtt MqttWs provisions through wss', async () => {
    const port = dps.httpsEndpoint.port;
    class MqttWsOnPort extends ProvisioningMqttWs {
      // Theirs: 'wss://' + provisioningHost + ':443/$iothub/websocket'.
      protected override _getConnectionUri(request: RegistrationRequest): string {
        return super._getConnectionUri(request).replace(':443/', `:${port}/`);
      }
    }
    const base = new MqttBase();
    base.setOptions({ ca: dps.caPem });
    const client = ProvisioningDeviceClient.create(
      '127.0.0.1',
      ID_SCOPE,
      new MqttWsOnPort(base as never),
      new SymmetricKeySecurityClient('wssdk-1', DEVICE_KEY) as never,
    );
    const result = (await client.register()) as unknown as { assignedHub: string; deviceId: string; status: string };
    expect(result).toMatchObject({ assignedHub: HUB, deviceId: 'wssdk-1', status: 'assigned' });
    expect(dps.model.hubDevice(HUB, 'wssdk-1')).toBeDefined();
  });

  it('azure-iot-device-mqtt MqttWs sends telemetry, reads and patches its twin and answers a method through wss', async () => {
    const port = dps.httpsEndpoint.port;
    // Theirs: 'wss://' + (gatewayHostName || host) + ':443/$iothub/websocket'. (Patched on the
    // prototype: the two nested copies of azure-iot-common defeat a typed override.)
    type WithConfig = { _getBaseTransportConfig(credentials: unknown): { uri: string } };
    const theirs = DeviceMqttWs.prototype as unknown as WithConfig;
    class MqttWsOnPort extends DeviceMqttWs {}
    (MqttWsOnPort.prototype as unknown as WithConfig)._getBaseTransportConfig = function (this: WithConfig, credentials: unknown) {
      const config = theirs._getBaseTransportConfig.call(this, credentials);
      config.uri = config.uri.replace(':443/', `:${port}/`);
      return config;
    };
    // GatewayHostName (meant for an IoT Edge gateway) is where the SDK opens the socket; the
    // username and the SAS token still name the hub, which routes the WebSocket to it.
    const client = Client.fromConnectionString(
      `HostName=${HUB};DeviceId=wssdk-1;SharedAccessKey=${DEVICE_KEY};GatewayHostName=127.0.0.1`,
      MqttWsOnPort as never,
    );
    await client.setOptions({ ca: dps.caPem });
    await client.open();
    try {
      expect(dps.hubs.connected(HUB, 'wssdk-1')).toBe(true);
      await client.sendEvent(new Message('{"temperature":19}'));
      expect(dps.hubs.telemetry(HUB).at(-1)).toMatchObject({ deviceId: 'wssdk-1', body: '{"temperature":19}' });
      const twin = await client.getTwin();
      expect(twin.properties.desired).toMatchObject({ interval: 12 });
      await new Promise<void>((resolve, reject) =>
        twin.properties.reported.update({ transport: 'mqtt-ws' }, (error?: Error) => (error ? reject(error) : resolve())),
      );
      expect(dps.hubs.twin(HUB, 'wssdk-1')?.properties.reported).toMatchObject({ transport: 'mqtt-ws' });
      client.onDeviceMethod('ping', (_request, response) => response.send(200, { pong: true }, () => {}));
      let answer: unknown;
      for (let attempt = 0; answer === undefined; attempt++) {
        answer = await dps.hubs.invokeMethod(HUB, 'wssdk-1', 'ping', {}).catch((error: { status?: number }) => {
          if (error.status !== 404 || attempt > 100) throw error;
          return new Promise((resolve) => setTimeout(() => resolve(undefined), 10));
        });
      }
      expect(answer).toEqual({ status: 200, payload: { pong: true } });
    } finally {
      await client.close();
    }
  });
});

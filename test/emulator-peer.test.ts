// Microsoft's device client is the referee: azure-iot-provisioning-device +
// azure-iot-provisioning-device-mqtt + azure-iot-security-symmetric-key provision through the
// emulator over TLS, trusting its CA.
//
// What the client needed (node_modules/azure-iot-provisioning-device-mqtt/dist/mqtt.js,
// azure-iot-mqtt-base/dist/mqtt_base.js):
// - the port: the transport connects to 'mqtts://' + provisioningHost, so a provisioningHost of
//   '127.0.0.1:<port>' reaches an ephemeral port (mqtt.js takes the port from the URL);
// - the CA: MqttBase.setOptions({ ca }) passes `ca` to the TLS connection, so the test builds the
//   transport around its own MqttBase (resolved from the transport package, which depends on it).
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Mqtt } from 'azure-iot-provisioning-device-mqtt';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEmulator, startEmulator } from '../emulator/index.js';
import { symmetricKeys } from '../emulator/model-types.js';
import { deriveDeviceKey } from '../src/identity.js';

const requireFromTransport = createRequire(createRequire(import.meta.url).resolve('azure-iot-provisioning-device-mqtt'));
const { MqttBase } = requireFromTransport('azure-iot-mqtt-base') as {
  MqttBase: new () => { setOptions(options: { ca: string }): void };
};

const ID_SCOPE = '0ne00000A1B';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const hubConnection = (host: string): string => `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key(200)}`;
const GROUP_KEY = key(7);
const DEVICE_KEY = key(9);

let emulator: DpsEmulator;
let stateDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'dps-emulator-peer-'));
  emulator = await startEmulator({
    idScope: ID_SCOPE,
    stateDir,
    retryAfterSeconds: 1,
    assignmentDelayMs: 500,
    config: {
      iotHubs: [
        { connectionString: hubConnection('hub-a.azure-devices.net'), location: 'westus', allocationWeight: 1 },
        { connectionString: hubConnection('hub-b.azure-devices.net'), location: 'eastus', allocationWeight: 3 },
      ],
      individualEnrollments: [
        {
          registrationId: 'peer-individual-1',
          deviceId: 'thermostat-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: key(10) } },
          allocationPolicy: 'static',
          iotHubs: ['hub-a.azure-devices.net'],
          initialTwin: { tags: { room: 'lab' }, properties: { desired: { interval: 30 } } },
        },
        {
          registrationId: 'peer-disabled-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: key(10) } },
          provisioningStatus: 'disabled',
        },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'peer-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: key(8) } },
        },
      ],
    },
  });
});

afterAll(async () => {
  await emulator?.close();
  await rm(stateDir, { recursive: true, force: true });
});

interface RegistrationResult {
  assignedHub: string;
  deviceId: string;
  registrationId: string;
  status: string;
  substatus: string;
}

function provision(registrationId: string, deviceKey: string): Promise<RegistrationResult> {
  const base = new MqttBase();
  base.setOptions({ ca: emulator.caPem });
  const transport = new Mqtt(base as never);
  const security = new SymmetricKeySecurityClient(registrationId, deviceKey);
  const client = ProvisioningDeviceClient.create(
    `${emulator.endpoint.host}:${emulator.endpoint.port}`,
    ID_SCOPE,
    transport,
    // Two copies of azure-iot-common are installed (the security package nests its own), so the
    // declared types differ while the objects are compatible at run time.
    security as never,
  );
  return client.register() as unknown as Promise<RegistrationResult>;
}

describe("Microsoft's device client against the emulator", () => {
  it('provisions an individual enrollment to its static hub, with its device ID and initial twin', async () => {
    const result = await provision('peer-individual-1', DEVICE_KEY);
    expect(result.assignedHub).toBe('hub-a.azure-devices.net');
    expect(result.deviceId).toBe('thermostat-1');
    expect(result.status).toBe('assigned');
    expect(result.substatus).toBe('initialAssignment');
    const device = emulator.model.hubDevice('hub-a.azure-devices.net', 'thermostat-1');
    expect(device?.tags).toEqual({ room: 'lab' });
    expect(device?.properties.desired).toEqual({ interval: 30 });
    expect(symmetricKeys(device?.authentication)?.primaryKey).toBe(DEVICE_KEY);
    expect(emulator.model.registration('peer-individual-1')?.enrollment).toEqual({
      kind: 'individual',
      registrationId: 'peer-individual-1',
    });
  });

  it('provisions through an enrollment group with the derived device key', async () => {
    const registrationId = 'peer-group-device-7';
    const result = await provision(registrationId, deriveDeviceKey(GROUP_KEY, registrationId));
    expect(['hub-a.azure-devices.net', 'hub-b.azure-devices.net']).toContain(result.assignedHub);
    expect(result.deviceId).toBe(registrationId);
    const record = emulator.model.registration(registrationId);
    expect(record?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'peer-group' });
    expect(record?.state.assignedHub).toBe(result.assignedHub);
    expect(emulator.model.hubDevice(result.assignedHub, registrationId)).toBeDefined();
  });

  it('accepts the group key derived from the secondary key too', async () => {
    const registrationId = 'peer-group-device-8';
    const result = await provision(registrationId, deriveDeviceKey(key(8), registrationId));
    expect(result.deviceId).toBe(registrationId);
  });

  it('refuses a wrong key with "not authorized" and records nothing', async () => {
    const registrationId = 'peer-group-device-9';
    const error = await provision(registrationId, GROUP_KEY /* the group key itself, not the derived one */).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: number },
    );
    expect(error).toBeDefined();
    // mqtt.js reports CONNACK return code 5 as 'Connection refused: Not authorized', code 5.
    expect(error?.message).toMatch(/Not authorized/);
    expect(error?.code).toBe(5);
    expect(emulator.model.registration(registrationId)).toBeUndefined();
  });

  it('reports a disabled enrollment as status disabled (the Node client surfaces it as an error)', async () => {
    const error = await provision('peer-disabled-1', DEVICE_KEY).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/disabled/);
    expect(emulator.model.registration('peer-disabled-1')?.state.status).toBe('disabled');
  });
});

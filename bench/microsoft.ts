// Microsoft's device client (azure-iot-provisioning-device + -device-mqtt +
// azure-iot-security-symmetric-key) provisioning one device, as their sample
// register_symkey.js does: derive the device key with node:crypto, register, done.
// Pointed at the emulator as test/emulator-peer.test.ts does: provisioningHost 'host:port'
// (the transport connects to 'mqtts://' + host) and the CA through its own MqttBase.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { BENCH_ID_SCOPE, type Target } from './common.js';

// CommonJS packages: required (Node's ESM loader does not see their named exports), and only
// when first used, so a process measuring our client does not load them.
const require = createRequire(import.meta.url);
let sdk:
  | {
      ProvisioningDeviceClient: typeof import('azure-iot-provisioning-device').ProvisioningDeviceClient;
      Mqtt: typeof import('azure-iot-provisioning-device-mqtt').Mqtt;
      SymmetricKeySecurityClient: typeof import('azure-iot-security-symmetric-key').SymmetricKeySecurityClient;
      MqttBase: new () => { setOptions(options: { ca: string }): void };
    }
  | undefined;

/** Load Microsoft's packages (done by the first provisioning otherwise: call it before timing). */
export function loadMicrosoftClient(): NonNullable<typeof sdk> {
  if (sdk) return sdk;
  const requireFromTransport = createRequire(require.resolve('azure-iot-provisioning-device-mqtt'));
  sdk = {
    ProvisioningDeviceClient: (require('azure-iot-provisioning-device') as typeof import('azure-iot-provisioning-device'))
      .ProvisioningDeviceClient,
    Mqtt: (require('azure-iot-provisioning-device-mqtt') as typeof import('azure-iot-provisioning-device-mqtt')).Mqtt,
    SymmetricKeySecurityClient: (require('azure-iot-security-symmetric-key') as typeof import('azure-iot-security-symmetric-key'))
      .SymmetricKeySecurityClient,
    MqttBase: (requireFromTransport('azure-iot-mqtt-base') as { MqttBase: NonNullable<typeof sdk>['MqttBase'] }).MqttBase,
  };
  return sdk;
}

export interface MicrosoftResult {
  assignedHub: string;
  deviceId: string;
}

/** The device key of a group member, as Microsoft's sample computes it. */
export function microsoftDeriveKey(groupKey: string, registrationId: string): string {
  return createHmac('SHA256', Buffer.from(groupKey, 'base64')).update(registrationId, 'utf8').digest('base64');
}

export async function provisionWithMicrosoft(target: Target, registrationId: string, groupKey: string): Promise<MicrosoftResult> {
  const { ProvisioningDeviceClient, Mqtt, SymmetricKeySecurityClient, MqttBase } = loadMicrosoftClient();
  const deviceKey = microsoftDeriveKey(groupKey, registrationId);
  const base = new MqttBase();
  base.setOptions({ ca: target.caPem });
  const client = ProvisioningDeviceClient.create(
    `${target.host}:${target.port}`,
    BENCH_ID_SCOPE,
    new Mqtt(base as never),
    // Two copies of azure-iot-common are installed; the objects are compatible at run time.
    new SymmetricKeySecurityClient(registrationId, deviceKey) as never,
  );
  const result = (await client.register()) as unknown as MicrosoftResult;
  if (!result?.assignedHub) throw new Error(`Microsoft's client got no assignment for ${registrationId}`);
  return result;
}

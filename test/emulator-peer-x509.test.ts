// Microsoft's device client as the referee of the emulator's X.509 attestation:
// azure-iot-provisioning-device + azure-iot-provisioning-device-mqtt + azure-iot-security-x509
// provision over MQTT/TLS with a client certificate, no SAS token (the transport passes the
// X509Security's { cert, key } to its MqttBase, which hands them to tls.connect:
// node_modules/azure-iot-mqtt-base/dist/mqtt_base.js). The emulator must take what that client
// sends: its username, no password, the certificate chain as Node sends it.
import { createRequire } from 'node:module';
import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Mqtt } from 'azure-iot-provisioning-device-mqtt';
import { X509Security } from 'azure-iot-security-x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IssuedCertificate, issueDeviceCertificate, type SigningCa } from '../cli/shared/certificates.js';
import type { DpsEmulator } from '../emulator/index.js';
import { startX509Emulator, type X509Emulator } from './support/x509-fixture.js';

const requireFromTransport = createRequire(createRequire(import.meta.url).resolve('azure-iot-provisioning-device-mqtt'));
const { MqttBase } = requireFromTransport('azure-iot-mqtt-base') as {
  MqttBase: new () => { setOptions(options: { ca: string }): void };
};

const ID_SCOPE = '0ne000PX509';
const HUB = 'peer-x509-hub.azure-devices.net';

let fixture: X509Emulator;
let dps: DpsEmulator;
let intermediate: SigningCa;
let individual: IssuedCertificate;

beforeAll(async () => {
  fixture = await startX509Emulator({
    name: 'peer-x509',
    idScope: ID_SCOPE,
    hub: HUB,
    individualId: 'peer-x509-individual',
    groupId: 'peer-line',
    groupTrusts: 'verified root',
    assignmentDelayMs: 200,
  });
  ({ dps, intermediate, individual } = fixture);
}, 60_000);

afterAll(async () => {
  await fixture?.close();
});

interface RegistrationResult {
  assignedHub: string;
  deviceId: string;
  status: string;
}

function provision(registrationId: string, issued: IssuedCertificate): Promise<RegistrationResult> {
  const base = new MqttBase();
  base.setOptions({ ca: dps.caPem });
  const transport = new Mqtt(base as never);
  const security = new X509Security(registrationId, { cert: issued.cert, key: issued.key });
  // Two copies of azure-iot-common are installed, so the declared types differ while the objects are compatible.
  const client = ProvisioningDeviceClient.create(`${dps.endpoint.host}:${dps.endpoint.port}`, ID_SCOPE, transport, security as never);
  return client.register() as unknown as Promise<RegistrationResult>;
}

describe("Microsoft's X.509 device client against the emulator", () => {
  it('provisions an individual enrollment with its self-signed certificate', async () => {
    const result = await provision('peer-x509-individual', individual);
    expect(result).toMatchObject({ status: 'assigned', assignedHub: HUB, deviceId: 'peer-x509-individual' });
    expect(dps.model.hubDevice(HUB, 'peer-x509-individual')?.authentication.type).toBe('selfSigned');
  });

  it('provisions a group device whose certificate an intermediate of the verified root issued (leaf + intermediate sent)', async () => {
    const result = await provision('peer-line-device-1', issueDeviceCertificate(intermediate, 'peer-line-device-1'));
    expect(result).toMatchObject({ status: 'assigned', assignedHub: HUB, deviceId: 'peer-line-device-1' });
    expect(dps.model.registration('peer-line-device-1')?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'peer-line' });
    expect(dps.model.hubDevice(HUB, 'peer-line-device-1')?.authentication).toEqual({ type: 'certificateAuthority' });
  });

  it('is refused (not authorized) when the certificate names another registration ID, and nothing is recorded', async () => {
    const error = await provision('peer-line-device-2', issueDeviceCertificate(intermediate, 'peer-line-device-3')).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message ?? '').toMatch(/not authorized|unauthorized/i);
    expect(dps.model.registration('peer-line-device-2')).toBeUndefined();
    expect(fixture.lastRefusal('peer-line-device-2')).toBe('cert-cn-mismatch');
  });
});

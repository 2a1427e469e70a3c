// Reprovisioning as the emulated hubs see it (DPS's reprovisionPolicy, concepts-device-reprovision.md):
// a device that registers again and moves to another hub takes its twin along ("migrate data":
// reported properties and $versions too) or starts from the enrollment's initial twin ("reset");
// with updateHubAssignment false it stays on its hub with its twin. Its old hub forgets it and
// drops its connection. Real TLS on loopback, our own device session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator } from '../emulator/index.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { connectHub } from '../src/hub/session.js';
import { provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000HUBRP';
const [HUB_A, HUB_B] = ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'];
const DEVICE_KEY = Buffer.from('iothub-reprovision-device-key-0123456').toString('base64');
const INITIAL_TWIN = { tags: { site: 'lab' }, properties: { desired: { interval: 10 } } };

let fixture: TestEmulator;
let dps: DpsEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-iothub-reprovision-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [HUB_A, HUB_B].map((host) => ({
        connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(host).toString('base64')}`,
      })),
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

function enroll(
  registrationId: string,
  hub: string,
  reprovisionPolicy: { updateHubAssignment?: boolean; migrateDeviceData?: boolean },
): void {
  dps.model.putIndividualEnrollment({
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: DEVICE_KEY } },
    iotHubs: [hub],
    initialTwin: INITIAL_TWIN,
    reprovisionPolicy,
  });
}

async function provision(registrationId: string): Promise<string> {
  const { assignment } = await provisionDevice(
    { idScope: ID_SCOPE, endpoint: dps.endpoint, registrationId, deviceKey: DEVICE_KEY, timeoutMs: 20_000 },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock },
  );
  return assignment.assignedHub;
}

/** Provision on hub A, report and get a desired update there; then re-enroll for hub B and register again. */
async function useThenMove(
  registrationId: string,
  policy: { updateHubAssignment?: boolean; migrateDeviceData?: boolean },
): Promise<string> {
  enroll(registrationId, HUB_A, policy);
  expect(await provision(registrationId)).toBe(HUB_A);
  const session = await connectHub(
    {
      hub: HUB_A,
      deviceId: registrationId,
      deviceKey: DEVICE_KEY,
      endpoint: dps.hubEndpoint,
      requestTimeoutMs: 5000,
      offlineTimeoutMs: 2000,
      backoff: { minMs: 10, maxMs: 50, jitterMs: 10 },
    },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock, random: nodeRandom },
  );
  expect(await session.updateReported({ firmware: '1.0' })).toBe(2);
  dps.hubs.updateDesired(HUB_A, registrationId, { interval: 5 });
  // Hub B only: a device that may move must; with updateHubAssignment false, A stays a candidate and keeps it.
  const hubs = policy.updateHubAssignment === false ? [HUB_A, HUB_B] : [HUB_B];
  dps.model.putIndividualEnrollment({ ...dps.model.individualEnrollment(registrationId)!, iotHubs: hubs });
  const hub = await provision(registrationId);
  if (hub !== HUB_A) {
    // The old hub forgot the device: its next request closes the connection, and it cannot connect again.
    await session.updateReported({ after: 'move' }).catch(() => {});
    expect(await session.ended).toMatchObject({ kind: 'unauthorized' });
    expect(dps.hubs.twin(HUB_A, registrationId)).toBeUndefined();
  } else {
    session.close();
  }
  return hub;
}

describe('reprovisioning on the hub side', () => {
  it('migrate data: the twin moves to the new hub with its reported properties and versions', async () => {
    expect(await useThenMove('mover-migrate', {})).toBe(HUB_B);
    expect(dps.hubs.twin(HUB_B, 'mover-migrate')).toMatchObject({
      tags: { site: 'lab' },
      properties: { desired: { interval: 5, $version: 2 }, reported: { firmware: '1.0', $version: 2 } },
    });
  });

  it('reset to initial config: the new hub starts from the enrollment initial twin', async () => {
    expect(await useThenMove('mover-reset', { migrateDeviceData: false })).toBe(HUB_B);
    expect(dps.hubs.twin(HUB_B, 'mover-reset')?.properties).toEqual({ desired: { interval: 10, $version: 1 }, reported: { $version: 1 } });
  });

  it('never reprovision: the device keeps its hub and its twin', async () => {
    expect(await useThenMove('stayer', { updateHubAssignment: false })).toBe(HUB_A);
    expect(dps.hubs.twin(HUB_A, 'stayer')?.properties).toEqual({
      desired: { interval: 5, $version: 2 },
      reported: { firmware: '1.0', $version: 2 },
    });
  });
});

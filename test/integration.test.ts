// The Node host end to end: real TLS sockets on loopback, our MQTT session and DPS flow, against
// the emulator's device endpoint, with the emulator's fault hooks playing a misbehaving DPS.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createFileStore } from '../hosts/node/file-store.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import type { ProvisioningEvent } from '../src/ports.js';
import { type DeviceConfig, provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { failure } from './support/errors.js';

const ID_SCOPE = '0ne000INTEG';
const GROUP_KEY = Buffer.from('integration-test-group-key-0123456789abcdef').toString('base64');
const DEVICE_KEY = Buffer.from('integration-test-device-key-0123456789abcdef').toString('base64');
const HUBS = ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'];

let dps: DpsEmulator;
let dir: string;

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-integration-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 1,
    config: {
      iotHubs: HUBS.map((host) => ({
        connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(host).toString('base64')}`,
      })),
      enrollmentGroups: [
        {
          enrollmentGroupId: 'factory-line-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: DEVICE_KEY } },
        },
      ],
      individualEnrollments: [
        {
          registrationId: 'individual-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: GROUP_KEY } },
        },
        {
          registrationId: 'disabled-1',
          provisioningStatus: 'disabled',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: GROUP_KEY } },
        },
      ],
    },
  });
  ({ dps, dir } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

async function provision(config: Partial<DeviceConfig>, options: { trust?: boolean; store?: string } = {}) {
  const events: ProvisioningEvent[] = [];
  const result = await provisionDevice(
    {
      idScope: ID_SCOPE,
      endpoint: dps.endpoint,
      groupKey: GROUP_KEY,
      timeoutMs: 20_000,
      backoff: { minMs: 50, maxMs: 200, jitterMs: 50 },
      ...config,
    },
    {
      connect: createTlsConnect(options.trust === false ? { connectTimeoutMs: 5000 } : { ca: dps.caPem, connectTimeoutMs: 5000 }),
      clock: systemClock,
      log: (event) => events.push(event),
      ...(options.store && { store: createFileStore(options.store) }),
    },
  );
  return { ...result, events };
}

describe('provisioning through real TLS against the emulator', () => {
  it('registers a group member, honours the retry-after, and is assigned a linked hub', async () => {
    const started = Date.now();
    const { assignment, events } = await provision({ registrationId: 'group-device-1' });
    expect(HUBS).toContain(assignment.assignedHub);
    expect(assignment).toMatchObject({ deviceId: 'group-device-1', registrationId: 'group-device-1', substatus: 'initialAssignment' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(events.map((e) => e.type)).toEqual(['connecting', 'connected', 'registering', 'assigning', 'assigned']);
    expect(dps.model.hubDevice(assignment.assignedHub, 'group-device-1')).toBeDefined();
  });

  it('registers an individual enrollment with its own key', async () => {
    const { assignment } = await provision({ registrationId: 'individual-1', groupKey: undefined, deviceKey: DEVICE_KEY });
    expect(assignment.deviceId).toBe('individual-1');
  });

  it('stores the assignment and skips DPS on the next run', async () => {
    const store = join(dir, 'assignment.json');
    const first = await provision({ registrationId: 'cached-device-1' }, { store });
    const second = await provision({ registrationId: 'cached-device-1' }, { store });
    expect(second.fromCache).toBe(true);
    expect(second.assignment).toEqual(first.assignment);
    expect(second.events.map((e) => e.type)).toEqual(['cached']);
  });

  it('rides out 429 on register and on poll', async () => {
    const registrationId = 'throttled-device-1';
    dps.faults.push({ on: 'register', registrationId, action: { type: 'status', status: 429, retryAfter: 1 } });
    dps.faults.push({ on: 'poll', registrationId, action: { type: 'status', status: 429 } });
    const { assignment, events } = await provision({ registrationId });
    expect(assignment.deviceId).toBe(registrationId);
    expect(events.filter((e) => e.type === 'retrying')).toHaveLength(2);
  });

  it('rides out server errors', async () => {
    const registrationId = 'server-error-device-1';
    dps.faults.push({ on: 'register', registrationId, action: { type: 'status', status: 503 } });
    dps.faults.push({ on: 'poll', registrationId, action: { type: 'status', status: 500 }, times: 2 });
    const { assignment } = await provision({ registrationId });
    expect(assignment.deviceId).toBe(registrationId);
  });

  it('resumes polling after the connection drops right after register', async () => {
    const registrationId = 'dropped-after-register-1';
    dps.faults.push({ on: 'register', registrationId, action: { type: 'drop', afterResponse: true } });
    const { assignment, events } = await provision({ registrationId });
    expect(assignment.deviceId).toBe(registrationId);
    expect(events.filter((e) => e.type === 'registering')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'connecting')).toHaveLength(2);
  });

  it('resumes after the connection drops during a poll', async () => {
    const registrationId = 'dropped-during-poll-1';
    dps.faults.push({ on: 'poll', registrationId, action: { type: 'drop' } });
    const { assignment, events } = await provision({ registrationId });
    expect(assignment.deviceId).toBe(registrationId);
    expect(events.filter((e) => e.type === 'reconnecting')).toHaveLength(1);
  });

  it('ignores a stray response meant for another request', async () => {
    const registrationId = 'stray-device-1';
    dps.faults.push({ on: 'register', registrationId, action: { type: 'stray' } });
    dps.faults.push({ on: 'poll', registrationId, action: { type: 'stray', status: 200 } });
    const { assignment } = await provision({ registrationId });
    expect(assignment.deviceId).toBe(registrationId);
  });

  it('reports a disabled enrollment', async () => {
    const error = await failure(provision({ registrationId: 'disabled-1', groupKey: undefined, deviceKey: DEVICE_KEY }));
    expect(error.kind).toBe('disabled');
  });

  it('reports a wrong key as unauthorized, naming key and clock', async () => {
    const wrongKey = Buffer.from('not-the-right-key-at-all-0123456789').toString('base64');
    const error = await failure(provision({ registrationId: 'group-device-2', groupKey: wrongKey }));
    expect(error.kind).toBe('unauthorized');
    expect(error.message).toMatch(/key/);
    expect(error.message).toMatch(/clock/);
  });

  it('refuses a server whose certificate it does not trust', async () => {
    const error = await failure(provision({ registrationId: 'group-device-3' }, { trust: false }));
    expect(error.kind).toBe('tls');
    expect(error.message).toMatch(/--ca/);
  });
});

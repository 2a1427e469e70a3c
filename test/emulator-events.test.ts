// The service API's device events and metrics (event-log.ts, event-routes.ts), what the web
// console's Live page follows: behind the service SAS, the events in order with the outcome of
// each registration, a follower's long poll answered by the next event, the counts, and each
// event's line of text (event-text.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoggedEvent, Metrics } from '../emulator/event-log.js';
import { describeEvent } from '../emulator/event-text.js';
import { registerWithCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { serviceCall } from './support/service-https.js';

const GROUP_KEY = Buffer.alloc(32, 7).toString('base64');
const HUB = `HostName=events-hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.alloc(32, 9).toString('base64')}`;

describe('GET /events and GET /metrics', () => {
  let emulator: TestEmulator;

  beforeAll(async () => {
    emulator = await startTestEmulator('events-', {
      idScope: '0ne00EVENT1',
      console: false,
      retryAfterSeconds: 1,
      assignmentDelayMs: 0,
      config: {
        iotHubs: [{ connectionString: HUB }],
        enrollmentGroups: [
          {
            enrollmentGroupId: 'g',
            attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
          },
        ],
      },
    });
  });

  afterAll(async () => {
    await emulator?.close();
  });

  const register = (registrationId: string, key = GROUP_KEY) =>
    registerWithCli(emulator.dps, '0ne00EVENT1', registrationId, key, '--quiet');

  it('refuses a request without the service SAS', async () => {
    const answer = await serviceCall(emulator.dps, 'GET', '/events', { auth: null });
    expect(answer.status).toBe(401);
  });

  it('lists the device events in order, with the outcome of the registration, and counts them', async () => {
    // A follower waiting for the next event is answered by it
    const waiting = serviceCall(emulator.dps, 'GET', '/events?from=1&waitSeconds=30');
    expect((await register('events-device-1')).code).toBe(0);
    const first = (await waiting).json as LoggedEvent[];
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ sequenceNumber: 1, event: { type: 'connected', registrationId: 'events-device-1' } });

    expect((await register('events-device-2', Buffer.alloc(32, 1).toString('base64'))).code).toBe(3);
    const events = (await serviceCall(emulator.dps, 'GET', '/events')).json as LoggedEvent[];
    expect(events.map((e) => e.sequenceNumber)).toEqual(events.map((_, i) => i + 1));
    const assigned = events.find((e) => e.outcome?.status === 'assigned');
    expect(assigned?.outcome).toMatchObject({
      assignedHub: 'events-hub.azure-devices.net',
      deviceId: 'events-device-1',
      enrollmentGroupId: 'g',
    });
    expect(events.some((e) => e.event.type === 'refused' && e.event.reason === 'token-signature')).toBe(true);
    expect(JSON.stringify(events)).not.toContain(GROUP_KEY);

    const later = (await serviceCall(emulator.dps, 'GET', `/events?from=${events.at(-1)!.sequenceNumber + 1}`)).json;
    expect(later).toEqual([]);

    const metrics = (await serviceCall(emulator.dps, 'GET', '/metrics')).json as Metrics;
    expect(metrics.totals).toMatchObject({
      attestationSucceeded: 1,
      attestationFailed: 1,
      registrations: 1,
      assignments: 1,
      assignmentsByHub: { 'events-hub.azure-devices.net': 1 },
      failures: { 'CONNACK 5 (token-signature)': 1 },
    });
    expect(metrics.buckets.reduce((sum, b) => sum + b.assignments, 0)).toBe(1);
  });

  it("describes the events as the emulator's log does, each once, for the Live page (event-text.ts)", async () => {
    const events = (await serviceCall(emulator.dps, 'GET', '/events')).json as LoggedEvent[];
    const lines = events.map((e) => describeEvent(e.event, e.outcome)).filter((line) => line !== undefined);
    expect(lines).toContain('registering events-device-1 (enrollment group g)');
    expect(lines).toContain('assigned   events-device-1 → events-hub.azure-devices.net as device events-device-1 (initialAssignment)');
    // The refusal in words, and not a second time as the connection closes
    expect(lines.filter((line) => line.includes('events-device-2'))).toEqual([
      expect.stringMatching(/^refused {4}events-device-2: the SAS signature does not match any enrollment key .*\(CONNACK 5\)$/),
    ]);
  });

  it('says which hub devices are connected to', async () => {
    const devices = (await serviceCall(emulator.dps, 'GET', '/hubs/events-hub.azure-devices.net/devices')).json as Array<{
      deviceId: string;
      connectionState: string;
    }>;
    expect(devices).toEqual([expect.objectContaining({ deviceId: 'events-device-1', connectionState: 'Disconnected' })]);
  });

  it('checks its query', async () => {
    expect((await serviceCall(emulator.dps, 'GET', '/events?waitSeconds=61')).status).toBe(400);
    expect((await serviceCall(emulator.dps, 'POST', '/metrics')).status).toBe(405);
  });
});

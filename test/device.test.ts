// goOnline (src/device.ts): the stored assignment or DPS, then the hub; a hub that turns the
// device away sends it back to DPS, a bounded number of times, with backoff. A scripted DPS and a
// scripted hub behind one Connect port (routed by host), on a fake clock.
import { describe, expect, it } from 'vitest';
import { goOnline, type OnlineConfig, type OnlineEvent } from '../src/device.js';
import type { Connect, HubEvent, ProvisioningEvent } from '../src/ports.js';
import { parseAssignment } from '../src/provisioner.js';
import { failure } from './support/errors.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { MemoryStore } from './support/memory-store.js';
import { assignedBody, HUB, type Reply, ScriptedDps } from './support/scripted-dps.js';
import { ScriptedHub } from './support/scripted-hub.js';

const ID_SCOPE = '0ne00000A0A';
const DEVICE = 'sensor-0042';
const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
const DPS_ENDPOINT = { host: 'dps.test', port: 8883 };
const HUB_B = 'hub-b.azure-devices.net';

/** DPS's answer assigning `hub`. */
const assignedTo = (hub: string, operationId = 'op-1') => {
  const body = assignedBody(DEVICE, operationId);
  return { ...body, registrationState: { ...body.registrationState, assignedHub: hub } };
};

function setup(script: Reply[], config: Partial<OnlineConfig> = {}) {
  const clock = new FakeClock();
  const dps = new ScriptedDps(script);
  const hub = new ScriptedHub();
  const store = new MemoryStore();
  const events: (ProvisioningEvent | OnlineEvent | HubEvent)[] = [];
  const connect: Connect = (endpoint, handlers) => (endpoint.host === DPS_ENDPOINT.host ? dps.connect : hub.connect)(endpoint, handlers);
  const run = async () => {
    const promise = goOnline(
      { idScope: ID_SCOPE, registrationId: DEVICE, deviceKey: KEY, endpoint: DPS_ENDPOINT, ...config },
      {
        connect,
        clock,
        store,
        random: () => 0.5,
        log: (e) => events.push(e),
        hubLog: (e) => events.push(e),
        onEvent: (e) => events.push(e),
      },
    );
    let done = false;
    promise.then(
      () => (done = true),
      () => (done = true),
    );
    while (!done) {
      await settle();
      if (!done && !(await clock.runNext())) break;
    }
    return promise;
  };
  const stored = () => parseAssignment(store.values.get('assignment') ?? '');
  const storeAssignment = (hubName: string) =>
    store.values.set(
      'assignment',
      JSON.stringify({
        version: 1,
        assignedHub: hubName,
        deviceId: DEVICE,
        registrationId: DEVICE,
        idScope: ID_SCOPE,
        endpoint: 'dps.test:8883',
        provisionedAt: '2026-01-01T00:00:00.000Z',
      }),
    );
  return { clock, dps, hub, store, events, run, stored, storeAssignment };
}

describe('goOnline', () => {
  it('provisions, connects to the assigned hub with the device key, and stores the assignment', async () => {
    const t = setup([{ status: 200, body: assignedTo(HUB) }]);
    const online = await t.run();
    expect(online).toMatchObject({ fromCache: false, reprovisions: 0, assignment: { assignedHub: HUB, deviceId: DEVICE } });
    expect(online.session.isConnected).toBe(true);
    expect(t.hub.network.attempts).toEqual([{ host: HUB, port: 8883 }]);
    expect(t.hub.last.sentOf('connect')[0]).toMatchObject({ clientId: DEVICE, username: `${HUB}/${DEVICE}/?api-version=2021-04-12` });
    expect(t.stored()?.assignedHub).toBe(HUB);
    online.session.close();
  });

  it('with a model ID: sends it to DPS in the payload and to the hub in the username (IoT Central)', async () => {
    const t = setup([{ status: 200, body: assignedTo(HUB) }], { modelId: 'dtmi:com:example:Thermostat;1', payload: { fw: '1.0' } });
    const online = await t.run();
    expect(JSON.parse(t.dps.requests[0]!.body)).toEqual({
      registrationId: DEVICE,
      payload: { fw: '1.0', modelId: 'dtmi:com:example:Thermostat;1' },
    });
    expect(t.hub.last.sentOf('connect')[0]!.username).toBe(
      `${HUB}/${DEVICE}/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1`,
    );
    online.session.close();
  });

  it('reuses the stored assignment without DPS, and connects to a development endpoint while the credentials name the hub', async () => {
    const t = setup([], { hubEndpoint: { host: '127.0.0.1', port: 18883 } });
    t.storeAssignment(HUB);
    const online = await t.run();
    expect(online).toMatchObject({ fromCache: true, reprovisions: 0 });
    expect(t.dps.requests).toHaveLength(0);
    expect(t.hub.network.attempts).toEqual([{ host: '127.0.0.1', port: 18883 }]);
    expect(t.hub.last.sentOf('connect')[0]!.username).toBe(`${HUB}/${DEVICE}/?api-version=2021-04-12`);
    online.session.close();
  });

  it('when the stored hub refuses the device (CONNACK 5), registers again at once and goes online on the new hub', async () => {
    const t = setup([{ status: 200, body: assignedTo(HUB_B) }]);
    t.storeAssignment(HUB);
    t.hub.connacks.push(5);
    const online = await t.run();
    expect(online).toMatchObject({ fromCache: false, reprovisions: 1, assignment: { assignedHub: HUB_B } });
    expect(t.hub.network.attempts.map((e) => e.host)).toEqual([HUB, HUB_B]);
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register']);
    expect(t.stored()?.assignedHub).toBe(HUB_B);
    expect(t.events.find((e) => e.type === 'reprovisioning')).toMatchObject({
      round: 1,
      waitMs: 0,
      reason: expect.stringMatching(/CONNACK 5/),
    });
    online.session.close();
  });

  it('is bounded: a hub that keeps refusing ends, after maxReprovisions registrations spaced by backoff, with its error', async () => {
    const t = setup(
      [
        { status: 200, body: assignedTo(HUB) },
        { status: 200, body: assignedTo(HUB) },
        { status: 200, body: assignedTo(HUB) },
      ],
      { maxReprovisions: 2 },
    );
    t.hub.connacks.push(5, 5, 5, 5);
    const started = t.clock.now();
    const error = await failure(t.run(), 'unauthorized');
    expect(error.message).toMatch(/CONNACK 5/);
    expect(t.dps.requests.filter((r) => r.type === 'register')).toHaveLength(3);
    expect(t.hub.network.attempts).toHaveLength(3);
    const waits = t.events.filter((e): e is OnlineEvent => e.type === 'reprovisioning').map((e) => e.waitMs);
    expect(waits).toEqual([3000, 5000]); // 2 s, then 4 s, each plus half the 2 s jitter
    expect(t.clock.now() - started).toBeGreaterThanOrEqual(8000);
  });

  it('does not send the device back to DPS for a failure another registration would not fix', async () => {
    const t = setup([{ status: 200, body: assignedTo(HUB) }]);
    t.hub.connacks.push(2); // identifier rejected: a configuration problem, not a refusal of this device
    await failure(t.run(), 'invalid-input');
    expect(t.dps.requests).toHaveLength(1);
    expect(t.events.some((e) => e.type === 'reprovisioning')).toBe(false);
  });

  it('refuses a model ID with a payload that is not an object, before any traffic', async () => {
    const t = setup([], { modelId: 'dtmi:x;1', payload: [1, 2] });
    await failure(t.run(), 'invalid-input');
    expect(t.dps.network.attempts).toHaveLength(0);
  });
});

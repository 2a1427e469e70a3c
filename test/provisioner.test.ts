import { describe, expect, it } from 'vitest';
import { ProvisioningError } from '../src/errors.js';
import { deriveDeviceKey } from '../src/identity.js';
import type { ProvisioningEvent, Store } from '../src/ports.js';
import { type DeviceConfig, parseAssignment, provisionDevice } from '../src/provisioner.js';
import { verifySasToken } from '../src/sas-verify.js';
import { failure } from './support/errors.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { MemoryStore } from './support/memory-store.js';
import { assignedBody, assigningBody, HUB, type Reply, ScriptedDps } from './support/scripted-dps.js';

const ID_SCOPE = '0ne00000A0A';
// The published enrollment-group vector (Azure docs, articles/iot-dps/how-to-legacy-device-symm-key.md).
const GROUP_KEY = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
const ENDPOINT = { host: 'dps.test', port: 8883 };

async function provision(config: Partial<DeviceConfig>, store: Store | undefined, script: Reply[]) {
  const clock = new FakeClock();
  const dps = new ScriptedDps(script);
  const events: ProvisioningEvent[] = [];
  const promise = provisionDevice(
    { idScope: ID_SCOPE, endpoint: ENDPOINT, ...config },
    { connect: dps.connect, clock, log: (e) => events.push(e), random: () => 0.5, ...(store && { store }) },
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
  return { result: await promise, dps, events };
}

describe('provisionDevice', () => {
  it('derives the device key from the group key and builds the ID from the identity template', async () => {
    const id = 'sn-007-888-abc-mac-a1b2c3d4e5f6';
    const { result, dps } = await provision(
      {
        groupKey: GROUP_KEY,
        registrationIdTemplate: 'sn-{serial}-mac-{mac}',
        identity: { serial: '007-888-ABC', mac: 'A1:B2:C3:D4:E5:F6' },
      },
      undefined,
      [{ status: 200, body: assignedBody(id) }],
    );
    expect(result.assignment.registrationId).toBe(id);
    const password = dps.network.connections[0]!.sentOf('connect')[0]!.password!;
    const derived = deriveDeviceKey(GROUP_KEY, id);
    expect(verifySasToken(password, derived, Math.floor(Date.UTC(2025, 0, 1) / 1000), `${ID_SCOPE}/registrations/${id}`).ok).toBe(true);
    expect(verifySasToken(password, GROUP_KEY, Math.floor(Date.UTC(2025, 0, 1) / 1000)).ok).toBe(false);
  });

  it('stores the assignment, and the next run reuses it without contacting DPS', async () => {
    const store = new MemoryStore();
    const config = { registrationId: 'dev-1', deviceKey: GROUP_KEY, payload: { a: 1 } };
    const first = await provision(config, store, [{ status: 200, body: assignedBody('dev-1', 'op-1', { hello: 'device' }) }]);
    expect(first.result.fromCache).toBe(false);
    const record = JSON.parse(store.values.get('assignment')!);
    expect(record).toMatchObject({
      version: 1,
      assignedHub: HUB,
      deviceId: 'dev-1',
      registrationId: 'dev-1',
      idScope: ID_SCOPE,
      endpoint: 'dps.test:8883',
      substatus: 'initialAssignment',
      payload: { hello: 'device' },
      provisionedAt: '2025-01-01T00:00:00.000Z',
    });

    const second = await provision(config, store, []);
    expect(second.result).toEqual({ assignment: first.result.assignment, fromCache: true });
    expect(second.dps.network.attempts).toHaveLength(0);
    expect(second.events).toEqual([{ type: 'cached', assignedHub: HUB, deviceId: 'dev-1' }]);
  });

  it('provisions again when the identity differs from the stored one, or when forced', async () => {
    for (const change of [
      { registrationId: 'dev-2' },
      { idScope: '0ne00000B0B' },
      { endpoint: { host: 'other.test', port: 8883 } },
      { force: true },
    ]) {
      const store = new MemoryStore();
      await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [{ status: 200, body: assignedBody('dev-1') }]);
      const id = change.registrationId ?? 'dev-1';
      const again = await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY, ...change }, store, [
        { status: 200, body: assignedBody(id) },
      ]);
      expect(again.result.fromCache).toBe(false);
      expect(again.dps.network.attempts).toHaveLength(1);
      expect(JSON.parse(store.values.get('assignment')!).registrationId).toBe(id);
    }
  });

  it('reports an unreadable store and provisions as if it were empty', async () => {
    for (const spoil of [
      (s: MemoryStore) => (s.failGet = new Error('flash read error')),
      (s: MemoryStore) => s.values.set('assignment', '{"version":1,"assignedHub":'),
      (s: MemoryStore) => s.values.set('assignment', '{"version":99}'),
    ]) {
      const store = new MemoryStore();
      spoil(store);
      const { result, events } = await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [
        { status: 200, body: assignedBody('dev-1') },
      ]);
      expect(result.fromCache).toBe(false);
      expect(events[0]?.type).toBe('store-unreadable');
    }
  });

  it('returns the assignment even when storing it fails, and says so', async () => {
    const store = new MemoryStore();
    store.failSet = new Error('disk full');
    const { result, events } = await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [
      { status: 200, body: assignedBody('dev-1') },
    ]);
    expect(result.assignment.assignedHub).toBe(HUB);
    expect(events).toContainEqual({ type: 'store-failed', message: 'disk full' });
  });

  it('with storeRequired, a store that cannot be read fails before DPS is contacted, and one that cannot be written fails after', async () => {
    const unreadable = new MemoryStore();
    unreadable.failGet = new Error('flash read error');
    const read = await failure(
      provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY, storeRequired: true }, unreadable, []),
      'storage',
    );
    expect(read.message).toBe('The store failed: flash read error');

    const unwritable = new MemoryStore();
    unwritable.failSet = new ProvisioningError('storage', 'refusing to use it');
    const written = await failure(
      provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY, storeRequired: true }, unwritable, [
        { status: 200, body: assignedBody('dev-1') },
      ]),
      'storage',
    );
    expect(written).toBe(unwritable.failSet);
  });

  it('timeoutMs bounds the whole call: the time a slow store took comes off the registration', async () => {
    const clock = new FakeClock();
    const slow: Store = {
      get: () => new Promise((resolve) => clock.setTimer(() => resolve(undefined), 4000)),
      set: async () => {},
      delete: async () => {},
    };
    const dps = new ScriptedDps([
      { status: 202, retryAfter: 3, body: assigningBody() },
      { status: 200, body: assignedBody('dev-1') },
    ]);
    const promise = provisionDevice(
      { idScope: ID_SCOPE, endpoint: ENDPOINT, registrationId: 'dev-1', deviceKey: GROUP_KEY, timeoutMs: 5000 },
      { connect: dps.connect, clock, store: slow },
    );
    const outcome = failure(promise, 'timeout');
    while (await clock.runNext()) await settle();
    await outcome;
    // Given its own 5 s, the registration would have waited the 3 s and been assigned.
    expect(clock.now() - Date.UTC(2025, 0, 1)).toBeLessThanOrEqual(5000);
  });

  // Issue 16: what a hostile DPS sends is never stored, so no later boot reuses it.
  it('stores no assignment whose hub or device ID is not one: a protocol error after the flow retried', async () => {
    const hostile = (state: Record<string, unknown>): Reply => {
      const body = assignedBody('dev-1');
      return { status: 200, body: { ...body, registrationState: { ...body.registrationState, ...state } } };
    };
    for (const state of [
      { assignedHub: 'hub.azure-devices.net\ndeviceId: attacker-controlled' },
      { assignedHub: 'evil/../../etc/passwd' },
      { deviceId: '\x1b[31mdev-1' },
    ]) {
      const store = new MemoryStore();
      // The flow takes a malformed answer as a broken connection: three reconnects, then it gives up.
      const run = provision(
        { registrationId: 'dev-1', deviceKey: GROUP_KEY },
        store,
        Array.from({ length: 4 }, () => hostile(state)),
      );
      const error = await failure(run, 'protocol');
      expect(error.message).toMatch(/not a DNS host name|deviceId that IoT Hub does not allow/);
      expect(store.values.size).toBe(0);
    }
  });

  it("refuses another device's assignment, and takes its own registration ID in any case", async () => {
    const store = new MemoryStore();
    const error = await failure(
      provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [{ status: 200, body: assignedBody('dev-2') }]),
      'protocol',
    );
    expect(error.message).toBe('DPS answered with the assignment of another registration ID');
    expect(store.values.size).toBe(0);
    const upper = await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [
      {
        status: 200,
        body: { ...assignedBody('DEV-1'), registrationState: { ...assignedBody('DEV-1').registrationState, deviceId: 'dev-1' } },
      },
    ]);
    expect(upper.result.assignment).toMatchObject({ registrationId: 'dev-1', deviceId: 'dev-1' });
    expect(store.values.size).toBe(1);
  });

  it('reports a stored record with an invalid hub or device ID as unreadable, and provisions again over it', async () => {
    const record = {
      version: 1,
      assignedHub: HUB,
      deviceId: 'dev-1',
      registrationId: 'dev-1',
      idScope: ID_SCOPE,
      endpoint: 'dps.test:8883',
      provisionedAt: '2025-01-01T00:00:00.000Z',
    };
    for (const edit of [
      { assignedHub: '\x1b]0;pwned\x07evil.net' },
      { assignedHub: 'evil.net/x' },
      { deviceId: 'dev-1\r' },
      { deviceId: 'dev 1' },
    ]) {
      const store = new MemoryStore();
      store.values.set('assignment', JSON.stringify({ ...record, ...edit }));
      const { result, events, dps } = await provision({ registrationId: 'dev-1', deviceKey: GROUP_KEY }, store, [
        { status: 200, body: assignedBody('dev-1') },
      ]);
      expect(events[0]).toEqual({ type: 'store-unreadable', message: 'The stored assignment under "assignment" is not a valid record' });
      expect(result).toMatchObject({ fromCache: false, assignment: { assignedHub: HUB, deviceId: 'dev-1' } });
      expect(dps.network.attempts).toHaveLength(1);
      expect(JSON.parse(store.values.get('assignment')!)).toMatchObject({ assignedHub: HUB, deviceId: 'dev-1' });
    }
  });

  it('refuses ambiguous or missing identity and keys before any traffic', async () => {
    for (const config of [
      { registrationId: 'dev-1' },
      { registrationId: 'dev-1', deviceKey: GROUP_KEY, groupKey: GROUP_KEY },
      { deviceKey: GROUP_KEY },
      { registrationIdTemplate: '{serial}', deviceKey: GROUP_KEY },
    ]) {
      await expect(provision(config, undefined, [])).rejects.toMatchObject({ kind: 'invalid-input' });
    }
  });
});

describe('parseAssignment', () => {
  it('accepts only complete records of the current version, keeping only known fields', () => {
    const good = { version: 1, assignedHub: 'h', deviceId: 'd', registrationId: 'r', idScope: 's', endpoint: 'e:1', provisionedAt: 't' };
    expect(parseAssignment(JSON.stringify({ ...good, extra: 'x' }))).toEqual({
      assignedHub: 'h',
      deviceId: 'd',
      registrationId: 'r',
      idScope: 's',
      endpoint: 'e:1',
      provisionedAt: 't',
    });
    for (const bad of [
      '',
      'null',
      '[]',
      '7',
      JSON.stringify({ ...good, version: 2 }),
      JSON.stringify({ ...good, deviceId: '' }),
      JSON.stringify({ ...good, assignedHub: 5 }),
      JSON.stringify({ ...good, substatus: 3 }),
    ]) {
      expect(parseAssignment(bad)).toBeUndefined();
    }
  });

  it('validates the hub and device ID as it does what DPS sends', () => {
    const good = {
      version: 1,
      assignedHub: 'hub.azure-devices.net',
      deviceId: "Dev-1.%_*?!(),:=@$'",
      registrationId: 'r',
      idScope: 's',
      endpoint: 'e:1',
      provisionedAt: 't',
    };
    expect(parseAssignment(JSON.stringify(good))).toMatchObject({ assignedHub: good.assignedHub, deviceId: good.deviceId });
    for (const edit of [
      { assignedHub: ' ' },
      { assignedHub: 'hub.net\n' },
      { assignedHub: 'a'.repeat(10_240) },
      { assignedHub: 'hub.net:8883' },
      { deviceId: 'dev+1' },
      { deviceId: '\u202edev' },
      { deviceId: 'd'.repeat(129) },
    ]) {
      expect(parseAssignment(JSON.stringify({ ...good, ...edit }))).toBeUndefined();
    }
  });
});

// XS side of bench/xs-footprint.js: each operation is a command Node delivers on its own, so
// xsnap reports its computrons and heap separately. Each starts with a garbage collection: the
// heap count after the delivery is then what stayed live plus what the operation allocated.

import { utf8Encode } from '../../src/bytes.js';
import { registerDevice } from '../../src/dps/flow.js';
import { connectHub, type HubSession } from '../../src/hub/session.js';
import { deriveDeviceKey } from '../../src/identity.js';
import { encodePacket, type Packet, PacketDecoder } from '../../src/mqtt/codec.js';
import { provisionDevice } from '../../src/provisioner.js';
import { dpsRegistrationSasToken } from '../../src/sas.js';
import { FakeClock, runToEnd } from '../support/fake-clock.js';
import { MemoryStore } from '../support/memory-store.js';
import { type Reply, ScriptedDps } from '../support/scripted-dps.js';
import { HUB, ScriptedHub } from '../support/scripted-hub.js';

declare const harness: {
  command(name: string, fn: (arg: unknown) => unknown): void;
  gc(): void;
  idle(): Promise<void>;
};

const GROUP_KEY = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
const REGISTRATION_ID = 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6';
const DEVICE_KEY = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=';
const ID_SCOPE = '0ne0012ABCD';
const T0 = 1_795_392_000_000;
const ENDPOINT = { host: 'dps.test', port: 8883 };

const ASSIGNED = {
  operationId: '4.d0a3a6a5a1e6c4d2.7c1f',
  status: 'assigned',
  registrationState: {
    registrationId: REGISTRATION_ID,
    createdDateTimeUtc: '2026-11-23T00:00:01.000Z',
    assignedHub: 'hub-a.azure-devices.net',
    deviceId: REGISTRATION_ID,
    status: 'assigned',
    substatus: 'initialAssignment',
    lastUpdatedDateTimeUtc: '2026-11-23T00:00:04.500Z',
    etag: 'IjA0MDA3ZjA0LTAwMDAtMDMwMC0wMDAwLTVmZjc4YmRhMDAwMCI=',
  },
};
const ASSIGNING = { operationId: ASSIGNED.operationId, status: 'assigning' };
const REPLIES: Reply[] = [
  { status: 202, retryAfter: 3, body: ASSIGNING },
  { status: 200, body: ASSIGNED },
];
/** No transcript (measure the device, not the bookkeeping); deliveries split, as in the engine scenarios. */
const scriptedDps = () => new ScriptedDps(REPLIES, { split: true });

/** What a device sends in one registration: CONNECT (with SAS), SUBSCRIBE, PUBLISH register, PUBLISH poll, DISCONNECT. */
const devicePackets = (password: string): Packet[] => [
  {
    type: 'connect',
    clientId: REGISTRATION_ID,
    username: `${ID_SCOPE}/registrations/${REGISTRATION_ID}/api-version=2019-03-31`,
    password,
    keepAlive: 60,
    clean: true,
  },
  { type: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] },
  {
    type: 'publish',
    topic: '$dps/registrations/PUT/iotdps-register/?$rid=1',
    payload: utf8Encode(`{"registrationId":"${REGISTRATION_ID}"}`),
    qos: 1,
    dup: false,
    retain: false,
    messageId: 2,
  },
  {
    type: 'publish',
    topic: `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=${ASSIGNED.operationId}`,
    payload: new Uint8Array(0),
    qos: 1,
    dup: false,
    retain: false,
    messageId: 3,
  },
  { type: 'disconnect' },
];
/** What DPS sends back in one registration, as one byte stream: CONNACK, SUBACK, 2 PUBACKs, 202 and 200 responses. */
const dpsStream = (() => {
  const packets: Packet[] = [
    { type: 'connack', sessionPresent: false, returnCode: 0 },
    { type: 'suback', messageId: 1, granted: [1] },
    { type: 'puback', messageId: 2 },
    {
      type: 'publish',
      topic: '$dps/registrations/res/202/?$rid=1&retry-after=3',
      payload: utf8Encode(JSON.stringify(ASSIGNING)),
      qos: 0,
      dup: false,
      retain: false,
    },
    { type: 'puback', messageId: 3 },
    {
      type: 'publish',
      topic: '$dps/registrations/res/200/?$rid=2',
      payload: utf8Encode(JSON.stringify(ASSIGNED)),
      qos: 0,
      dup: false,
      retain: false,
    },
  ];
  const parts = packets.map(encodePacket);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
})();
const samplePassword = dpsRegistrationSasToken(ID_SCOPE, REGISTRATION_ID, DEVICE_KEY, 1_795_395_600);

async function registerOnce() {
  const clock = new FakeClock(T0);
  const dps = scriptedDps();
  const result = await runToEnd(
    registerDevice(
      { idScope: ID_SCOPE, registrationId: REGISTRATION_ID, deviceKey: DEVICE_KEY, endpoint: ENDPOINT },
      { connect: dps.connect, clock, random: () => 0.5 },
    ),
    clock,
    harness.idle,
  );
  return result.assignedHub;
}

const store = new MemoryStore();
async function provisionOnce() {
  const clock = new FakeClock(T0);
  const dps = scriptedDps();
  const result = await runToEnd(
    provisionDevice(
      { idScope: ID_SCOPE, endpoint: ENDPOINT, groupKey: GROUP_KEY, registrationId: REGISTRATION_ID },
      { connect: dps.connect, clock, store, random: () => 0.5 },
    ),
    clock,
    harness.idle,
  );
  return { fromCache: result.fromCache, connections: dps.network.attempts.length };
}

/** A hub session over the scripted hub (its own encode/decode work included, as the DPS flows include DPS's). */
const HUB_KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
let hubClock = new FakeClock(T0);
let hubSession: HubSession | undefined;
let hub = new ScriptedHub();
async function hubConnect(): Promise<HubSession> {
  hubClock = new FakeClock(T0);
  hub = new ScriptedHub();
  return runToEnd(
    connectHub(
      { hub: HUB, deviceId: REGISTRATION_ID, deviceKey: HUB_KEY, sasTtlSeconds: 3600 },
      { connect: hub.connect, clock: hubClock, random: () => 0.5 },
    ),
    hubClock,
    harness.idle,
  );
}

export const operations: Record<string, () => unknown> = {
  noop: () => null,
  deriveDeviceKey: () => deriveDeviceKey(GROUP_KEY, REGISTRATION_ID),
  sasToken: () => dpsRegistrationSasToken(ID_SCOPE, REGISTRATION_ID, DEVICE_KEY, 1_795_395_600).length,
  mqttEncode: () => devicePackets(samplePassword).reduce((n, p) => n + encodePacket(p).length, 0),
  mqttDecode: () => new PacketDecoder().push(dpsStream).length,
  registerFlow: () => registerOnce(),
  provisionFirstBoot: () => {
    store.values.clear();
    return provisionOnce();
  },
  provisionSecondBoot: () => provisionOnce(),
  hubConnect: async () => {
    hubSession?.close();
    hubSession = await hubConnect(); // kept open for hubTelemetry
    return hubSession.twin.desired.$version;
  },
  hubTelemetry: async () => {
    await runToEnd(hubSession!.sendTelemetry('{"seq":1,"temperature":21.5}'), hubClock, harness.idle);
    // The scripted hub's records of what it received (not the device's memory) are emptied.
    hub.telemetry.length = 0;
    for (const connection of hub.network.connections) {
      connection.written.length = 0;
      connection.sent.length = 0;
    }
    return true;
  },
  gc: () => null,
};

for (const [name, operation] of Object.entries(operations)) {
  harness.command(name, () => {
    harness.gc();
    return operation();
  });
}

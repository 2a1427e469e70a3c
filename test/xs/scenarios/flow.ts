// Whole provisioning runs over the scripted DPS: registerDevice and provisionDevice, the happy
// path and the main failures. Each returns its outcome, the progress events and the transcript of
// every MQTT packet both ways, with the time (fake clock) each was sent.
import { type RegisterOptions, registerDevice } from '../../../src/dps/flow.js';
import type { ProvisioningEvent } from '../../../src/ports.js';
import { type DeviceConfig, provisionDevice } from '../../../src/provisioner.js';
import { FakeClock, runToEnd } from '../../support/fake-clock.js';
import { MemoryStore } from '../../support/memory-store.js';
import { type DpsOptions, type Reply, ScriptedDps } from '../../support/scripted-dps.js';
import { attemptAsync, fromHex, seededRandom } from './util.js';

/** What the scenarios need from their engine (harness.ts ScenarioEnv). */
interface Env {
  idle(): Promise<void>;
}

export const T0 = 1_795_392_000_000; // 2026-11-23T00:00:00Z
export const ID_SCOPE = '0ne0012ABCD';
export const ASSIGNED_HUB = 'hub-a.azure-devices.net';
const GROUP_KEY = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==';
const DEVICE_KEY = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc='; // derived from GROUP_KEY for REGISTRATION_ID
const REGISTRATION_ID = 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6';
const ENDPOINT = { host: 'dps.test', port: 8883 };

const assigning = (operationId = '4.d0a3a6a5a1e6c4d2.7c1f') => ({ operationId, status: 'assigning' });
const assigned = (registrationId = REGISTRATION_ID, operationId = '4.d0a3a6a5a1e6c4d2.7c1f') => ({
  operationId,
  status: 'assigned',
  registrationState: {
    registrationId,
    createdDateTimeUtc: '2026-11-23T00:00:01.000Z',
    assignedHub: ASSIGNED_HUB,
    deviceId: registrationId,
    status: 'assigned',
    substatus: 'initialAssignment',
    lastUpdatedDateTimeUtc: '2026-11-23T00:00:04.500Z',
    etag: 'IjA0MDA3ZjA0LTAwMDAtMDMwMC0wMDAwLTVmZjc4YmRhMDAwMCI=',
    payload: { firmware: 'ok', ü: '😀' },
  },
});
const error = (errorCode: number, message: string) => ({
  errorCode,
  trackingId: 'a5a0f5d1-6b2c-4d7e-9f3a-1b2c3d4e5f60',
  message,
  timestampUtc: '2026-11-23T00:00:00.000Z',
});

/** DPS's answers and how it sends them. */
interface DpsScript extends DpsOptions {
  replies: Reply[];
}

/** A DPS answering `script`, delivering as a socket does, with a transcript. */
const scriptedDps = ({ replies, ...options }: DpsScript, clock: FakeClock) => new ScriptedDps(replies, { ...options, split: true, clock });

/** One registerDevice run against `script`. */
export async function register(env: Env, script: DpsScript, options: Partial<RegisterOptions> = {}) {
  const clock = new FakeClock(T0);
  const dps = scriptedDps(script, clock);
  const events: ProvisioningEvent[] = [];
  const result = await attemptAsync(() =>
    runToEnd(
      registerDevice(
        {
          idScope: ID_SCOPE,
          registrationId: REGISTRATION_ID,
          deviceKey: DEVICE_KEY,
          endpoint: ENDPOINT,
          clientVersion: 'moddable-dps/xs-test',
          payload: { model: 'esp32' },
          ...options,
        },
        { connect: dps.connect, clock, log: (e) => events.push(e), random: seededRandom(42) },
      ),
      clock,
      env.idle,
    ),
  );
  return { result, events, transcript: dps.transcript, elapsedMs: clock.elapsed };
}

/** provisionDevice with a group key, an ID template and a store: first boot, then second boot. */
export async function provisionTwice(env: Env) {
  const store = new MemoryStore();
  const config: DeviceConfig = {
    idScope: ID_SCOPE,
    endpoint: ENDPOINT,
    groupKey: GROUP_KEY,
    registrationIdTemplate: 'sn-{serial}-mac-{mac}',
    identity: { serial: '007-888-ABC', mac: 'A1-B2-C3-D4-E5-F6' },
  };
  const boot = async (script: DpsScript) => {
    const clock = new FakeClock(T0);
    const dps = scriptedDps(script, clock);
    const events: ProvisioningEvent[] = [];
    const result = await attemptAsync(() =>
      runToEnd(
        provisionDevice(config, { connect: dps.connect, clock, store, log: (e) => events.push(e), random: seededRandom(9) }),
        clock,
        env.idle,
      ),
    );
    return { result, events, transcript: dps.transcript, connections: dps.network.attempts.length, stored: store.values.get('assignment') };
  };
  const firstBoot = await boot({
    replies: [
      { status: 202, retryAfter: 3, body: assigning() },
      { status: 200, body: assigned('sn-007-888-abc-mac-a1b2c3d4e5f6') },
    ],
    qos1Responses: true,
  });
  const secondBoot = await boot({ replies: [] });
  return { firstBoot, secondBoot };
}

export async function flows(env: Env) {
  const { firstBoot, secondBoot } = await provisionTwice(env);
  return {
    firstBoot,
    secondBoot,
    // register → 202 (retry-after 3) → poll → 200 assigned
    assigned: await register(env, {
      replies: [
        { status: 202, retryAfter: 3, body: assigning() },
        { status: 200, body: assigned() },
      ],
    }),
    // 202 without retry-after: the default wait; responses at QoS 1
    defaultWait: await register(env, {
      replies: [
        { status: 202, body: assigning() },
        { status: 202, body: assigning() },
        { status: 200, body: assigned() },
      ],
      qos1Responses: true,
    }),
    throttledThenAssigned: await register(env, {
      replies: [
        { status: 429, retryAfter: 2, body: error(429001, 'Throttled') },
        { status: 200, body: assigned() },
      ],
    }),
    unauthorized: await register(env, { replies: [{ status: 401, body: error(401002, 'Unauthorized') }] }),
    connackRefused: await register(env, { connack: [5], replies: [] }),
    serverUnavailableThenAssigned: await register(env, { connack: [3], replies: [{ status: 200, body: assigned() }] }),
    droppedThenResumed: await register(env, {
      replies: [{ status: 202, retryAfter: 1, body: assigning() }, { drop: true }, { status: 200, body: assigned() }],
    }),
    // A PUBLISH whose topic is not UTF-8: a protocol error, a reconnect, then success.
    malformedThenAssigned: await register(env, { replies: [{ raw: fromHex('3005000361c300') }, { status: 200, body: assigned() }] }),
    badJson: await register(env, {
      replies: [
        { status: 200, text: '{"operationId": "x", "status": ' },
        { status: 200, body: assigned() },
      ],
    }),
    silentUntilDeadline: await register(env, { replies: [] }, { timeoutMs: 90_000 }),
    failedAllocation: await register(env, {
      replies: [
        {
          status: 200,
          body: {
            operationId: 'op',
            status: 'failed',
            registrationState: {
              registrationId: REGISTRATION_ID,
              status: 'failed',
              errorCode: 400209,
              errorMessage: 'Custom allocation failed',
            },
          },
        },
      ],
    }),
    badInput: await register(env, { replies: [] }, { deviceKey: 'not base64' }),
  };
}

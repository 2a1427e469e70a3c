import { describe, expect, it } from 'vitest';
import { type RegisterOptions, registerDevice } from '../src/dps/flow.js';
import { DPS_MAX_MESSAGE_BYTES } from '../src/dps/messages.js';
import type { ProvisioningEvent } from '../src/ports.js';
import { verifySasToken } from '../src/sas-verify.js';
import { failure } from './support/errors.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { assignedBody, assigningBody, errorBody, HUB, type Reply, ScriptedDps } from './support/scripted-dps.js';

const ID_SCOPE = '0ne00000A0A';
const REGISTRATION_ID = 'sensor-0042';
const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='; // base64 of 32 ASCII bytes
const ENDPOINT = { host: 'dps.test', port: 8883 };

/** Runs the flow to its end, firing fake timers whenever it waits; fails if it hangs with nothing pending. */
async function drive<T>(promise: Promise<T>, clock: FakeClock): Promise<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let guard = 0; guard < 10_000; guard++) {
    await settle();
    if (settled) return promise;
    if (!(await clock.runNext())) throw new Error('the flow is stuck: not settled and no timer pending');
  }
  throw new Error('the flow did not end after 10 000 timer firings');
}

function setup(script: Reply[], options: Partial<RegisterOptions> = {}, dpsOptions: { connack?: number } = {}) {
  const clock = new FakeClock();
  const start = clock.now();
  const dps = new ScriptedDps(script, dpsOptions);
  const events: ProvisioningEvent[] = [];
  const run = () =>
    drive(
      registerDevice(
        { idScope: ID_SCOPE, registrationId: REGISTRATION_ID, deviceKey: KEY, endpoint: ENDPOINT, timeoutMs: 120_000, ...options },
        { connect: dps.connect, clock, log: (e) => events.push(e), random: () => 0.5 },
      ),
      clock,
    );
  const elapsed = () => clock.now() - start;
  return { clock, dps, events, run, elapsed };
}

describe('registerDevice against a scripted DPS', () => {
  it('registers, waits the retry-after, polls and returns the assignment', async () => {
    const t = setup(
      [
        { status: 202, retryAfter: 2, body: assigningBody('op-1') },
        { status: 200, body: assignedBody(REGISTRATION_ID, 'op-1', { fw: '1.2' }) },
      ],
      { payload: { modelId: 'dtmi:x;1' } },
    );
    const result = await t.run();
    expect(result).toMatchObject({
      assignedHub: HUB,
      deviceId: REGISTRATION_ID,
      operationId: 'op-1',
      substatus: 'initialAssignment',
      payload: { fw: '1.2' },
    });
    expect(t.elapsed()).toBe(2000);
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register', 'poll']);
    expect(t.dps.requests[1]!.operationId).toBe('op-1');
    expect(JSON.parse(t.dps.requests[0]!.body)).toEqual({ registrationId: REGISTRATION_ID, payload: { modelId: 'dtmi:x;1' } });
    expect(t.clock.pendingTimers).toBe(0);
    expect(t.dps.network.last.closedBy).toBe('client');
  });

  it('connects as DPS requires: client id, username, a SAS valid for an hour over the exact resource', async () => {
    const t = setup([{ status: 200, body: assignedBody(REGISTRATION_ID) }]);
    await t.run();
    const [connect] = t.dps.network.connections[0]!.sentOf('connect');
    expect(connect).toMatchObject({ clientId: REGISTRATION_ID, clean: true });
    expect(connect!.username).toMatch(new RegExp(`^${ID_SCOPE}/registrations/${REGISTRATION_ID}/api-version=2019-03-31`));
    const nowSeconds = Math.floor(t.clock.now() / 1000);
    const verdict = verifySasToken(connect!.password!, KEY, nowSeconds, `${ID_SCOPE}/registrations/${REGISTRATION_ID}`);
    expect(verdict.ok).toBe(true);
    if (verdict.ok) expect(verdict.token.se - nowSeconds).toBe(3600);
  });

  it('sends the register request right behind SUBSCRIBE, without waiting for SUBACK', async () => {
    const t = setup([{ status: 200, body: assignedBody(REGISTRATION_ID) }]);
    await t.run();
    const types = t.dps.network.connections[0]!.sent.map((p) => p.type);
    expect(types.slice(0, 3)).toEqual(['connect', 'subscribe', 'publish']);
    const [subscribe] = t.dps.network.connections[0]!.sentOf('subscribe');
    expect(subscribe!.subscriptions).toEqual([{ topic: '$dps/registrations/res/#', qos: 1 }]);
  });

  it('polls every 3 s by default when DPS gives no retry-after, reporting each attempt', async () => {
    const t = setup([
      { status: 202, body: assigningBody() },
      { status: 202, body: assigningBody() },
      { status: 200, body: assignedBody(REGISTRATION_ID) },
    ]);
    await t.run();
    expect(t.elapsed()).toBe(6000);
    expect(t.events.filter((e) => e.type === 'assigning')).toEqual([
      { type: 'assigning', operationId: 'op-1', attempt: 1, waitMs: 3000 },
      { type: 'assigning', operationId: 'op-1', attempt: 2, waitMs: 3000 },
    ]);
  });

  it('retries a throttled register after its retry-after, and a throttled poll with backoff', async () => {
    const t = setup([
      { status: 429, retryAfter: 5, body: errorBody(429001, 'Throttled') },
      { status: 202, retryAfter: 1, body: assigningBody('op-2') },
      { status: 429, body: errorBody(429001, 'Throttled') },
      { status: 200, body: assignedBody(REGISTRATION_ID, 'op-2') },
    ]);
    await t.run();
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register', 'register', 'poll', 'poll']);
    expect(t.dps.requests[3]!.operationId).toBe('op-2');
    expect(t.elapsed()).toBe(5000 + 1000 + 1500); // retry-after, retry-after, backoff (1 s + half the jitter)
  });

  it('retries server errors', async () => {
    const t = setup([
      { status: 503, body: errorBody(503000, 'Service unavailable') },
      { status: 500, retryAfter: 2, body: 'not json' },
      { status: 200, body: assignedBody(REGISTRATION_ID) },
    ]);
    await t.run();
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register', 'register', 'register']);
  });

  it.each([
    [
      5,
      'unauthorized',
      /^The server refused the connection \(CONNACK 5: not authorized\); check the ID scope, registration ID and key\. The SAS token's expiry comes from the device clock, which reads \S+: if that is wrong, sync the clock$/,
    ],
    [4, 'unauthorized', /^The server refused the credentials \(CONNACK 4: bad user name or password\); check the ID scope/],
    [
      2,
      'invalid-input',
      /^The server rejected the client identifier "sensor-0042" \(CONNACK 2: identifier rejected\); for DPS it must be the registration ID$/,
    ],
  ] as const)('explains CONNACK %i in DPS terms', async (connack, kind, message) => {
    const t = setup([], {}, { connack });
    const error = await failure(t.run());
    expect(error.kind).toBe(kind);
    expect(error.message).toMatch(message);
    expect(error.status).toBe(connack);
  });

  it("refuses another device's assignment, before announcing it", async () => {
    const t = setup([{ status: 200, body: assignedBody('someone-else') }]);
    const error = await failure(t.run());
    expect(error).toMatchObject({ kind: 'protocol', message: 'DPS answered with the assignment of another registration ID' });
    expect(t.events.some((e) => e.type === 'assigned')).toBe(false);
  });

  it('takes its own assignment whatever the case DPS writes the registration ID in', async () => {
    const t = setup([{ status: 200, body: assignedBody(REGISTRATION_ID.toUpperCase()) }]);
    await expect(t.run()).resolves.toMatchObject({ assignedHub: HUB });
  });

  it('numbers each retry, on one connection and across reconnections', async () => {
    const t = setup([
      { status: 503, body: errorBody(503000, 'Service unavailable') },
      { status: 429, body: errorBody(429001, 'Throttled') },
      { drop: true },
      { status: 503, body: errorBody(503000, 'Service unavailable') },
      { status: 200, body: assignedBody(REGISTRATION_ID) },
    ]);
    await t.run();
    const retries = t.events.filter((e) => e.type === 'retrying' || e.type === 'reconnecting');
    expect(retries.map((e) => [e.type, (e as { attempt: number }).attempt])).toEqual([
      ['retrying', 1],
      ['retrying', 2],
      ['reconnecting', 3],
      ['retrying', 4],
    ]);
    expect(t.events.filter((e) => e.type === 'connecting').map((e) => (e as { attempt: number }).attempt)).toEqual([1, 2]);
  });

  it('reconnects with a fresh SAS after a drop and resumes polling the same operation', async () => {
    const t = setup([
      { status: 202, retryAfter: 2, body: assigningBody('op-3') },
      { drop: true },
      { status: 200, body: assignedBody(REGISTRATION_ID, 'op-3') },
    ]);
    await t.run();
    expect(t.dps.requests.map((r) => [r.type, r.connection, r.operationId])).toEqual([
      ['register', 0, undefined],
      ['poll', 0, 'op-3'],
      ['poll', 1, 'op-3'],
    ]);
    const passwords = t.dps.network.connections.map((c) => c.sentOf('connect')[0]!.password);
    expect(passwords[0]).not.toBe(passwords[1]);
    expect(t.events.some((e) => e.type === 'reconnecting')).toBe(true);
  });

  it('treats a silent server as a lost connection and tries again', async () => {
    const t = setup([{ silent: true }, { status: 200, body: assignedBody(REGISTRATION_ID) }], { responseTimeoutMs: 10_000 });
    await t.run();
    expect(t.dps.network.connections).toHaveLength(2);
    expect(t.elapsed()).toBeGreaterThanOrEqual(10_000);
  });

  it('registers again when DPS no longer knows the operation', async () => {
    const t = setup([
      { status: 202, retryAfter: 1, body: assigningBody('op-4') },
      { status: 404, body: errorBody(404201, 'Operation not found') },
      { status: 202, retryAfter: 1, body: assigningBody('op-5') },
      { status: 200, body: assignedBody(REGISTRATION_ID, 'op-5') },
    ]);
    const result = await t.run();
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register', 'poll', 'register', 'poll']);
    expect(result.operationId).toBe('op-5');
  });

  it('ignores responses to requests it did not send (stray $rid)', async () => {
    const t = setup(
      [
        { status: 200, rid: 'someone-else', body: assignedBody('another-device') },
        { status: 200, body: assignedBody(REGISTRATION_ID) },
      ],
      { responseTimeoutMs: 5000 },
    );
    const result = await t.run();
    expect(result.deviceId).toBe(REGISTRATION_ID);
  });

  it("fails with kind disabled, and kind failed with DPS's error code", async () => {
    const disabled = setup([
      {
        status: 200,
        body: { operationId: 'op-1', status: 'disabled', registrationState: { registrationId: REGISTRATION_ID, status: 'disabled' } },
      },
    ]);
    expect((await failure(disabled.run())).kind).toBe('disabled');
    const failed = setup([
      {
        status: 200,
        body: {
          operationId: 'op-1',
          status: 'failed',
          registrationState: {
            registrationId: REGISTRATION_ID,
            status: 'failed',
            errorCode: 400207,
            errorMessage: 'Custom allocation failed with status code: 500',
          },
        },
      },
    ]);
    const error = await failure(failed.run());
    expect(error).toMatchObject({ kind: 'failed', errorCode: 400207 });
    expect(error.message).toContain('Custom allocation failed');
  });

  it('fails at once on 401, naming the clock', async () => {
    const t = setup([{ status: 401, body: errorBody(401002, 'The request was unauthorized') }]);
    const error = await failure(t.run());
    expect(error).toMatchObject({ kind: 'unauthorized', errorCode: 401002 });
    expect(error.message).toMatch(/clock.*reads 2025-01-01T/);
    expect(t.dps.requests).toHaveLength(1);
  });

  it('fails at once when CONNACK refuses the credentials', async () => {
    const t = setup([], {}, { connack: 5 });
    const error = await failure(t.run());
    expect(error.kind).toBe('unauthorized');
    expect(t.dps.network.attempts).toHaveLength(1);
  });

  it('retries while the server is unavailable, then ends throttled or unavailable at the deadline', async () => {
    const unavailable = setup([], { timeoutMs: 30_000 }, { connack: 3 });
    const error = await failure(unavailable.run());
    expect(error.kind).toBe('server');
    expect(unavailable.dps.network.attempts.length).toBeGreaterThan(2);
    expect(unavailable.elapsed()).toBeLessThanOrEqual(30_000);

    const throttled = setup(
      Array.from({ length: 100 }, () => ({ status: 429, retryAfter: 4, body: errorBody(429001) })),
      { timeoutMs: 30_000 },
    );
    const throttledError = await failure(throttled.run());
    expect(throttledError).toMatchObject({ kind: 'throttled', errorCode: 429001 });
    expect(throttled.elapsed()).toBeLessThanOrEqual(30_000);
  });

  it('gives up on a server that keeps sending garbage', async () => {
    const garbage = { raw: new Uint8Array([0x30, 0x05, 0x00, 0x09, 0x41, 0x42, 0x43]) };
    const t = setup([garbage, garbage, garbage, garbage, garbage]);
    const error = await failure(t.run());
    expect(error.kind).toBe('protocol');
    expect(t.dps.network.connections).toHaveLength(4);
  });

  it('rejects bad input before any traffic', async () => {
    for (const options of [{ registrationId: 'Bad ID!' }, { deviceKey: 'not base64!' }, { idScope: '' }, { sasTtlSeconds: 10 }]) {
      const t = setup([], options);
      expect((await failure(t.run())).kind).toBe('invalid-input');
      expect(t.dps.network.attempts).toHaveLength(0);
    }
  });

  it("refuses a register request over DPS's 96 KB message limit before any traffic, and sends one at the limit", async () => {
    // The PUBLISH packet around the body: its header, the topic with the request ID, the packet ID.
    const atLimit = DPS_MAX_MESSAGE_BYTES;
    const body = (filler: number) => ({ registrationId: REGISTRATION_ID, payload: 'x'.repeat(filler) });
    const overhead = 4 + 2 + '$dps/registrations/PUT/iotdps-register/?$rid=fffff.4294967295'.length + 2;
    const fits = atLimit - overhead - JSON.stringify(body(0)).length;
    const over = setup([], { payload: 'x'.repeat(fits + 1) });
    const error = await failure(over.run());
    expect(error.kind).toBe('invalid-input');
    expect(error.message).toMatch(new RegExp(`${atLimit + 1} bytes, over DPS's limit of ${atLimit} bytes`));
    expect(over.dps.network.attempts).toHaveLength(0);
    const at = setup([{ status: 200, body: assignedBody(REGISTRATION_ID) }], { payload: 'x'.repeat(fits) });
    await expect(at.run()).resolves.toMatchObject({ assignedHub: HUB });
    expect(at.dps.requests[0]!.body.length).toBe(JSON.stringify(body(fits)).length);
  });

  it('stops sending a register the server closes the connection on, after the third time in a row', async () => {
    const t = setup([{ drop: true }, { drop: true }, { drop: true }, { status: 200, body: assignedBody(REGISTRATION_ID) }]);
    const error = await failure(t.run());
    expect(error.kind).toBe('failed');
    expect(error.message).toMatch(/closed the connection right after the registration request \(\d+ bytes\), 3 times in a row/);
    expect(t.dps.requests.map((r) => r.type)).toEqual(['register', 'register', 'register']);
    expect(t.elapsed()).toBeLessThan(120_000);
  });

  it('never puts the key or the token in an error or an event', async () => {
    const runs = [
      setup([{ status: 401, body: errorBody(401002) }]),
      setup([], {}, { connack: 5 }),
      setup([{ status: 202, body: assigningBody() }, { drop: true }, { status: 200, body: assignedBody(REGISTRATION_ID) }]),
    ];
    for (const t of runs) {
      const outcome = await t.run().catch((error: Error) => `${error.message} ${JSON.stringify(error)}`);
      const passwords = t.dps.network.connections.map((c) => c.sentOf('connect')[0]?.password ?? '');
      const text = JSON.stringify(outcome) + JSON.stringify(t.events);
      expect(text).not.toContain(KEY);
      for (const password of passwords) {
        expect(password.length).toBeGreaterThan(0);
        expect(text).not.toContain(password.split('sig=')[1]!.split('&')[0]);
      }
    }
  });
});

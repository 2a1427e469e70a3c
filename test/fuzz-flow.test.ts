// Fuzzing the whole register/poll flow against a fuzzed DPS, and what reaches the terminal from it.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { reportError } from '../cli/shared/io.js';
import { describeAssignment, describeEvent } from '../cli/shared/output.js';
import { describeEvent as describeEmulatorEvent } from '../emulator/event-text.js';
import { base64Encode, utf8Encode } from '../src/bytes.js';
import { registerDevice } from '../src/dps/flow.js';
import { isHostName } from '../src/dps/messages.js';
import { parseRequestTopic, responseTopic } from '../src/dps/server.js';
import type { ErrorKind } from '../src/errors.js';
import { isDeviceId } from '../src/identity.js';
import { encodePacket } from '../src/mqtt/codec.js';
import type { ProvisioningEvent, Store } from '../src/ports.js';
import { type ProvisionResult, parseAssignment, provisionDevice } from '../src/provisioner.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { checkError, REGISTRATION_ID, responseBytes, runs, serverBytes, statusArb, textUnit, validBody } from './support/fuzz.js';
import { ScriptedNetwork } from './support/scripted-connection.js';
import { assignedBody, HUB } from './support/scripted-dps.js';

// ---- the whole flow against a fuzzed DPS ----

type ServerReply =
  | { status: number; retryAfter: number | undefined; body: Uint8Array; ownRid: boolean }
  | { raw: Uint8Array }
  | { drop: true }
  | { silent: true };

const serverReply: fc.Arbitrary<ServerReply> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      status: statusArb,
      retryAfter: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
      body: fc.oneof(
        responseBytes,
        validBody.map((b) => utf8Encode(JSON.stringify(b))),
      ),
      ownRid: fc.oneof(fc.constant(true), fc.boolean()),
    }),
  },
  { weight: 1, arbitrary: serverBytes.map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.constantFrom<ServerReply>({ drop: true }, { silent: true }) },
);
const connackPlan = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: fc.constant<number | 'silent'>(0) },
    { weight: 1, arbitrary: fc.constantFrom<number | 'silent'>(1, 2, 3, 4, 5, 6, 'silent') },
  ),
  { maxLength: 4 },
);

/** A DPS that answers CONNECT per `connacks` (then 0) and each request with the next reply (then nothing). */
function fuzzedDps(connacks: (number | 'silent')[], replies: ServerReply[], granted: number): ScriptedNetwork {
  return new ScriptedNetwork({
    respond: (packet, connection) => {
      switch (packet.type) {
        case 'connect': {
          const code = connacks.shift() ?? 0;
          if (code !== 'silent') connection.send({ type: 'connack', sessionPresent: false, returnCode: code });
          return;
        }
        case 'subscribe':
          return connection.send({ type: 'suback', messageId: packet.messageId, granted: [granted] });
        case 'pingreq':
          return connection.send({ type: 'pingresp' });
        case 'publish': {
          if (packet.qos === 1) connection.send({ type: 'puback', messageId: packet.messageId! });
          const request = parseRequestTopic(packet.topic);
          const reply = replies.shift();
          if (!request || !reply || 'silent' in reply || connection.closed) return;
          if ('drop' in reply) return connection.drop(new Error('reset by the fuzzed DPS'));
          if ('raw' in reply) return connection.sendBytes(reply.raw);
          const topic = responseTopic(reply.status, reply.ownRid ? request.rid : `${request.rid}x`, reply.retryAfter);
          return connection.sendBytes(encodePacket({ type: 'publish', topic, payload: reply.body, qos: 0, dup: false, retain: false }));
        }
        default:
          return undefined;
      }
    },
  });
}

/** One provisioning run against a fuzzed DPS, driven by firing the fake clock's timers until it ends. */
async function flowUnderFuzz(
  connacks: (number | 'silent')[],
  replies: ServerReply[],
  granted: number,
  timeoutMs: number,
  keepAliveSeconds: number,
): Promise<void> {
  const clock = new FakeClock();
  const network = fuzzedDps([...connacks], [...replies], granted);
  const start = clock.now();
  let result: { value: unknown } | { error: unknown } | undefined;
  registerDevice(
    {
      idScope: '0ne00000001',
      registrationId: REGISTRATION_ID,
      deviceKey: base64Encode(utf8Encode('fuzz-key')),
      timeoutMs,
      keepAliveSeconds,
      backoff: { minMs: 500, maxMs: 5000, jitterMs: 100 },
    },
    { connect: network.connect, clock, random: () => 0.5 },
  ).then(
    (value) => (result = { value }),
    (error: unknown) => (result = { error }),
  );
  // Fire timers until the flow ends; the step bound only guards against an endless loop.
  for (let steps = 0; result === undefined; steps++) {
    assert.ok(steps < 10_000, 'the flow did not end after 10,000 timer steps');
    await settle();
    if (result === undefined && !(await clock.runNext())) {
      await settle();
      assert.ok(result !== undefined, 'the flow neither ended nor set a timer: it would wait forever');
    }
  }
  const elapsed = clock.now() - start;
  if ('error' in result) {
    const kinds: ErrorKind[] = [
      'invalid-input',
      'unauthorized',
      'disabled',
      'failed',
      'throttled',
      'server',
      'network',
      'tls',
      'protocol',
      'timeout',
    ];
    checkError(result.error, kinds, 'registerDevice');
  } else {
    const value = result.value as { assignedHub: unknown; deviceId: unknown };
    assert.ok(typeof value.assignedHub === 'string' && value.assignedHub.length > 0);
    assert.ok(typeof value.deviceId === 'string' && value.deviceId.length > 0);
  }
  assert.ok(elapsed <= timeoutMs, `the flow ended ${elapsed} ms after it started; its deadline was ${timeoutMs} ms`);
  await settle();
  assert.equal(clock.pendingTimers, 0, 'timers left behind');
  assert.ok(
    network.connections.every((c) => c.closed),
    'a connection was left open',
  );
}

describe('the register/poll flow against a fuzzed DPS (scripted, fake clock)', () => {
  it('ends assigned or with a typed error, by its deadline, with every connection closed and no timer left', async () => {
    await fc.assert(
      fc.asyncProperty(
        connackPlan,
        fc.array(serverReply, { maxLength: 6 }),
        fc.constantFrom(0, 1, 1, 1, 0x80),
        fc.integer({ min: 1000, max: 120_000 }),
        fc.integer({ min: 0, max: 60 }),
        flowUnderFuzz,
      ),
      runs(200),
    );
  });

  it('found: a server that accepted the connection and never answered CONNECT held the flow 30 s past a 1 s deadline', async () => {
    await flowUnderFuzz(['silent'], [], 1, 1000, 0);
  });
});

// ---- what reaches the terminal ----

/** Every character a terminal or log reader acts on: C0, DEL, C1, bidi controls, U+2028/9 (listed here, not taken from src/text.ts). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
/** Text a hostile server or device sends: our fuzz text plus what repaints, forges or reorders a line. */
const hostileText = fc.string({
  unit: fc.oneof(textUnit, fc.constantFrom('\x1b[2K', '\x1b]0;t\x07', '\r', '\n', '\x9b', '\x7f', '\u202e', '\u2066', '\u2029')),
  maxLength: 30,
});
const hostileOr = (good: string) => fc.oneof(fc.constant(good), hostileText);
const hostileState = fc.record(
  {
    registrationId: hostileOr(REGISTRATION_ID),
    assignedHub: hostileOr(HUB),
    deviceId: hostileOr(REGISTRATION_ID),
    substatus: hostileText,
    errorMessage: hostileText,
    payload: fc.dictionary(hostileText, hostileText, { maxKeys: 2 }),
  },
  { requiredKeys: ['registrationId'] },
);
const hostileReply: fc.Arbitrary<ServerReply> = fc.oneof(
  fc
    .record({
      status: fc.constantFrom(200, 202),
      registrationStatus: fc.constantFrom('assigned', 'assigning', 'failed', 'disabled'),
      state: hostileState,
    })
    .map(({ status, registrationStatus, state }) => ({
      status,
      retryAfter: 1,
      body: utf8Encode(
        JSON.stringify({ operationId: 'op-1', status: registrationStatus, registrationState: { ...state, status: registrationStatus } }),
      ),
      ownRid: true,
    })),
  fc
    .record({ status: fc.constantFrom(400, 401, 404, 429, 500, 503), trackingId: hostileText, message: hostileText })
    .map(({ status, trackingId, message }) => ({
      status,
      retryAfter: 1,
      body: utf8Encode(JSON.stringify({ errorCode: status * 1000, trackingId, message })),
      ownRid: true,
    })),
);

/** One provisioning (with a store) against DPS answers from `replies`, and what the CLI prints of it: progress, result or error line. */
async function cliOutputUnderFuzz(replies: ServerReply[]): Promise<{ output: string; stored: string | undefined }> {
  const clock = new FakeClock();
  const network = fuzzedDps([], [...replies], 1);
  const events: ProvisioningEvent[] = [];
  const values = new Map<string, string>();
  const store: Store = {
    get: async (key) => values.get(key),
    set: async (key, value) => void values.set(key, value),
    delete: async (key) => void values.delete(key),
  };
  let result: { value: ProvisionResult } | { error: unknown } | undefined;
  provisionDevice(
    {
      idScope: '0ne00000001',
      registrationId: REGISTRATION_ID,
      deviceKey: base64Encode(utf8Encode('fuzz-key')),
      timeoutMs: 20_000,
      backoff: { minMs: 500, maxMs: 5000, jitterMs: 0 },
    },
    { connect: network.connect, clock, random: () => 0.5, log: (event) => events.push(event), store },
  ).then(
    (value) => (result = { value }),
    (error: unknown) => (result = { error }),
  );
  for (let steps = 0; result === undefined; steps++) {
    assert.ok(steps < 10_000, 'the provisioning did not end after 10,000 timer steps');
    await settle();
    if (result === undefined && !(await clock.runNext())) await settle();
  }
  let output = events.map((event) => `${describeEvent(event)}\n`).join('');
  if ('error' in result) reportError(result.error, { stdout: (t) => void (output += t), stderr: (t) => void (output += t), env: {} });
  else
    output +=
      describeAssignment(result.value.assignment, result.value.fromCache, false) +
      describeAssignment(result.value.assignment, result.value.fromCache, true);
  return { output, stored: values.get('assignment') };
}

describe('server and device text on its way to the terminal', () => {
  it('strings from DPS, through the core and the CLI, never reach stdout or stderr with a control character, nor the store unchecked', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileReply, { minLength: 1, maxLength: 4 }), async (replies) => {
        const { output, stored } = await cliOutputUnderFuzz(replies);
        for (const line of output.split('\n')) assert.doesNotMatch(line, CONTROL, `printed: ${JSON.stringify(line)}`);
        if (stored === undefined) return;
        const assignment = parseAssignment(stored);
        assert.ok(assignment && isHostName(assignment.assignedHub) && isDeviceId(assignment.deviceId), `stored: ${stored}`);
        assert.equal(assignment.registrationId, REGISTRATION_ID);
      }),
      runs(150),
    );
  });

  it("found: a hub name with a newline printed a forged 'deviceId:' line, and an error message repainted its own line", async () => {
    const answer = { status: 200, retryAfter: undefined, ownRid: true, body: utf8Encode(JSON.stringify(assignedBody(REGISTRATION_ID))) };
    const state = assignedBody(REGISTRATION_ID).registrationState;
    const newline = {
      ...answer,
      body: utf8Encode(
        JSON.stringify({
          ...assignedBody(REGISTRATION_ID),
          registrationState: { ...state, assignedHub: `${HUB}\ndeviceId: attacker-controlled` },
        }),
      ),
    };
    const { output, stored } = await cliOutputUnderFuzz([newline, newline, newline, newline]);
    assert.doesNotMatch(output, /^deviceId: attacker-controlled/m);
    assert.equal(stored, undefined);
    const repaint = {
      status: 400,
      retryAfter: undefined,
      ownRid: true,
      body: utf8Encode(JSON.stringify({ errorCode: 400004, message: '\x1b[2K\rerror (none): all good' })),
    };
    assert.match(
      (await cliOutputUnderFuzz([repaint])).output,
      /^error \(failed\): .*\\u001b\[2K\\rerror \(none\): all good \[errorCode 400004\]$/m,
    );
  });

  it('device text in the emulator log never carries a control character', () => {
    const emulatorEvent = fc.oneof(
      fc.record({
        type: fc.constant('refused' as const),
        clientId: hostileText,
        reason: fc.constantFrom('registration-id' as const, 'fault' as const),
      }),
      fc.record({ type: fc.constant('connected' as const), registrationId: hostileText }),
      fc.record({
        type: fc.constant('fault' as const),
        registrationId: hostileText,
        on: fc.constant('register'),
        action: fc.constant('drop' as const),
      }),
      fc.record({ type: fc.constant('closed-client' as const), clientId: hostileText, reason: hostileText }),
      fc.record({
        type: fc.constant('request' as const),
        registrationId: hostileText,
        request: fc.constantFrom('register' as const, 'poll' as const),
        status: fc.constantFrom(200, 400, 429),
      }),
    );
    fc.assert(
      fc.property(emulatorEvent, (event) => {
        const line = describeEmulatorEvent(event, undefined);
        if (line !== undefined) assert.doesNotMatch(line, CONTROL, `logged: ${JSON.stringify(line)}`);
      }),
      runs(300),
    );
  });
});

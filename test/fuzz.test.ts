// Fuzzing: everything that reads bytes or text from the network or the disk, fed arbitrary,
// mutated and hostile input. The property throughout: a well-formed result, or a
// ProvisioningError of the documented kind; never a TypeError or RangeError, never an
// unbounded buffer, never a hang (a hang would be an endless loop: vitest's timeout catches it;
// the flow and client properties also count their steps). No assertion here measures time.
//
// `npm test` runs a few thousand cases. bench/fuzz.js bundles this very file and runs the same
// properties with FUZZ_RUNS cases each (≥ 100,000), reporting time per case and heap.
// Properties assert with node:assert so that the bench can run them without vitest.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { base64Decode, base64Encode, utf8Encode } from '../src/bytes.js';
import { isHostName, isNestedDeeper, parseResponseBody, type DpsResponse } from '../src/dps/messages.js';
import { registerDevice } from '../src/dps/flow.js';
import { dpsUsername, parseResponseTopic, pollTopic, registerTopic } from '../src/dps/topics.js';
import { parseDpsUsername, parseRequestTopic, responseTopic } from '../src/dps/server.js';
import { ProvisioningError, type ErrorKind } from '../src/errors.js';
import { buildRegistrationId, isDeviceId, validateRegistrationId, type HardwareIdentity } from '../src/identity.js';
import { MqttClient } from '../src/mqtt/client.js';
import { encodePacket, PacketDecoder, type Packet } from '../src/mqtt/codec.js';
import type { ProvisioningEvent, Store } from '../src/ports.js';
import { parseAssignment, provisionDevice, type ProvisionResult } from '../src/provisioner.js';
import { buildSasToken } from '../src/sas.js';
import { parseSasToken, verifySasToken } from '../src/sas-verify.js';
import { describeEmulatorEvent } from '../cli/emulator.js';
import { main } from '../cli/main.js';
import { EXIT_CODES, reportError } from '../cli/shared/io.js';
import { describeAssignment, describeEvent } from '../cli/shared/output.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { ScriptedNetwork, type ScriptedConnection } from './support/scripted-connection.js';
import { assignedBody, assigningBody, errorBody, HUB } from './support/scripted-dps.js';

/** FUZZ_RUNS overrides every property's case count (bench/fuzz.js sets it). */
const FUZZ_RUNS = Number(process.env.FUZZ_RUNS) || undefined;
const runs = (numRuns: number) => ({ numRuns: FUZZ_RUNS ?? numRuns });
/** Errors caused by peer input name the fault, not the whole input: their messages stay short. */
const MAX_MESSAGE_LENGTH = 1000;

// ---- outcomes ----

function describeThrown(error: unknown): string {
  return error instanceof Error ? `${error.constructor.name}: ${error.message}\n${error.stack}` : `a thrown ${typeof error}: ${String(error)}`;
}

/** `error` must be a ProvisioningError of one of `kinds`, with a short, non-empty message. */
function checkError(error: unknown, kinds: readonly ErrorKind[], where: string): ProvisioningError {
  if (!(error instanceof ProvisioningError)) assert.fail(`${where}: ${describeThrown(error)} escaped instead of a ProvisioningError`);
  assert.ok(kinds.includes(error.kind), `${where}: kind '${error.kind}' (expected ${kinds.join(' | ')}): ${error.message}`);
  assert.ok(error.message.length > 0 && error.message.length <= MAX_MESSAGE_LENGTH, `${where}: message of ${error.message.length} characters`);
  return error;
}

type Outcome<T> = { value: T; error?: undefined } | { error: ProvisioningError; value?: undefined };

function outcome<T>(run: () => T, kinds: readonly ErrorKind[], where: string): Outcome<T> {
  try {
    return { value: run() };
  } catch (error) {
    return { error: checkError(error, kinds, where) };
  }
}

// ---- input generators ----

/** Text units that matter to our parsers (separators, escapes, surrogates, case folding), plus any code point. */
const textUnit = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '0', '9', '-', '.', '_', '~', ':', '/', '?', '&', '=', '%', '+', '#', '$', ' ', '{', '}', '"', '\\') },
  { weight: 2, arbitrary: fc.constantFrom('%2', '%zz', '%ED%A0%80', '%C0%AF', '%00', '%25', '%26', '%3D', '%2f', '\0', '\ud800', '\udc00', 'é', '😀', 'İ', 'K', '\u2028') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const fuzzText = (maxLength = 40) => fc.string({ unit: textUnit, maxLength });
/** Text without lone surrogates: what a well-behaved peer could send. */
const wellFormedText = (maxLength = 40) => fuzzText(maxLength).filter(isWellFormed);

function isWellFormed(text: string): boolean {
  try {
    encodeURIComponent(text); // throws on a lone surrogate
    return true;
  } catch {
    return false;
  }
}

type StringMutation =
  | { kind: 'insert' | 'replace'; at: number; text: string }
  | { kind: 'delete' | 'duplicate' | 'case'; at: number; count: number }
  | { kind: 'truncate'; at: number };

const stringMutation: fc.Arbitrary<StringMutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('insert' as const, 'replace' as const), at: fc.nat(), text: fuzzText(6) }),
  fc.record({ kind: fc.constantFrom('delete' as const, 'duplicate' as const, 'case' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 24 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);
const stringMutations = fc.array(stringMutation, { minLength: 1, maxLength: 4 });

function mutateString(text: string, mutations: StringMutation[]): string {
  for (const m of mutations) {
    const at = m.at % (text.length + 1);
    switch (m.kind) {
      case 'insert': text = text.slice(0, at) + m.text + text.slice(at); break;
      case 'replace': text = text.slice(0, at) + m.text + text.slice(at + m.text.length); break;
      case 'delete': text = text.slice(0, at) + text.slice(at + m.count); break;
      case 'duplicate': text = text.slice(0, at + m.count) + text.slice(at); break;
      case 'case': {
        const part = text.slice(at, at + m.count);
        const flipped = part === part.toUpperCase() ? part.toLowerCase() : part.toUpperCase();
        text = text.slice(0, at) + flipped + text.slice(at + m.count);
        break;
      }
      case 'truncate': text = text.slice(0, at); break;
    }
  }
  return text;
}

type ByteMutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'insert' | 'overwrite'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number };

const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constantFrom('insert' as const, 'overwrite' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);
const byteMutations = fc.array(byteMutation, { minLength: 1, maxLength: 4 });

function mutateBytes(bytes: Uint8Array, mutations: ByteMutation[]): Uint8Array {
  let out: Uint8Array = bytes.slice();
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    switch (m.kind) {
      case 'flip': if (at < out.length) out[at]! ^= 1 << m.bit; break;
      case 'insert': out = concat([out.subarray(0, at), m.bytes, out.subarray(at)]); break;
      case 'overwrite': out = concat([out.subarray(0, at), m.bytes, out.subarray(at + m.bytes.length)]); break;
      case 'delete': out = concat([out.subarray(0, at), out.subarray(at + m.count)]); break;
      case 'truncate': out = out.slice(0, at); break;
    }
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Cut `bytes` at the given points (taken modulo its length): any split of a byte stream. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  return chunks;
}
const cuts = fc.array(fc.nat(), { maxLength: 8 });

/** Remaining-length varint (§2.2.3). */
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    out.push((n % 0x80) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 0x80);
  } while (n > 0);
  return out;
}

// Valid MQTT packets, every type the codec represents.
const mqttText = (maxLength = 16) =>
  fc.string({ unit: fc.oneof(fc.constantFrom('a', 'Z', '0', '$', '-', '/', ' ', 'é', '日', '😀'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), maxLength })
    .filter((s) => !s.includes('\0'));
const topicName = mqttText(24).map((s) => s.replace(/[+#]/g, '_')).filter((s) => s.length > 0);
const topicFilter = fc.tuple(topicName, fc.constantFrom('', '/+', '/#', '/+/x')).map(([t, s]) => t + s);
const messageId = fc.integer({ min: 1, max: 0xffff });
const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({ clientId: mqttText(), username: fc.option(mqttText()), password: fc.option(mqttText()), keepAlive: fc.integer({ min: 0, max: 0xffff }), clean: fc.boolean() })
    .map(({ clientId, username, password, keepAlive, clean }) => {
      const p: Extract<Packet, { type: 'connect' }> = { type: 'connect', clientId, keepAlive, clean: clean || clientId === '' };
      if (username !== null) {
        p.username = username;
        if (password !== null) p.password = password;
      }
      return p;
    }),
  fc.record({ sessionPresent: fc.boolean(), returnCode: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })) })
    .map(({ sessionPresent, returnCode }): Packet => ({ type: 'connack', sessionPresent: sessionPresent && returnCode === 0, returnCode })),
  fc.record({ topic: topicName, payload: fc.uint8Array({ maxLength: 64 }), qos: fc.constantFrom(0 as const, 1 as const), dup: fc.boolean(), retain: fc.boolean(), messageId })
    .map(({ topic, payload, qos, dup, retain, messageId: id }): Packet =>
      qos === 0 ? { type: 'publish', topic, payload, qos, dup: false, retain } : { type: 'publish', topic, payload, qos, dup, retain, messageId: id }),
  messageId.map((id): Packet => ({ type: 'puback', messageId: id })),
  fc.record({ messageId, subscriptions: fc.array(fc.record({ topic: topicFilter, qos: fc.constantFrom(0 as const, 1 as const) }), { minLength: 1, maxLength: 3 }) })
    .map(({ messageId: id, subscriptions }): Packet => ({ type: 'subscribe', messageId: id, subscriptions: subscriptions.map(({ topic, qos }) => ({ topic, qos })) })),
  fc.record({ messageId, granted: fc.array(fc.constantFrom(0, 1, 2, 0x80), { minLength: 1, maxLength: 3 }) })
    .map(({ messageId: id, granted }): Packet => ({ type: 'suback', messageId: id, granted })),
  fc.record({ messageId, topics: fc.array(topicFilter, { minLength: 1, maxLength: 3 }) })
    .map(({ messageId: id, topics }): Packet => ({ type: 'unsubscribe', messageId: id, topics })),
  messageId.map((id): Packet => ({ type: 'unsuback', messageId: id })),
  fc.constantFrom<Packet>({ type: 'pingreq' }, { type: 'pingresp' }, { type: 'disconnect' }),
);

/** A stream of valid packets, then damaged: a corrupted remaining length (possibly huge), and byte-level mutations. */
const damagedStream = fc.record({
  packets: fc.array(packetArb, { minLength: 1, maxLength: 4 }),
  length: fc.option(fc.record({ packet: fc.nat(), bytes: fc.oneof(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 5 }), fc.constant([0xff, 0xff, 0xff, 0x7f])) })),
  mutations: fc.oneof(fc.constant<ByteMutation[]>([]), byteMutations),
}).map(({ packets, length, mutations }) => {
  const encoded = packets.map(encodePacket);
  if (length) {
    const i = length.packet % encoded.length;
    const p = encoded[i]!;
    let end = 1;
    while (p[end]! & 0x80) end++;
    encoded[i] = concat([p.subarray(0, 1), Uint8Array.from(length.bytes), p.subarray(end + 1)]);
  }
  return { packets, bytes: mutateBytes(concat(encoded), mutations), damaged: length !== null || mutations.length > 0 };
});

// ---- the MQTT decoder ----

interface Decoded {
  packets: Packet[];
  /** Size (fixed header included) of each packet, in the order decoded. */
  sizes: number[];
  error?: ProvisioningError;
}

/** The reference: one byte at a time, so every packet before a failure is seen. */
function decodeByteByByte(bytes: Uint8Array, maxPacketSize?: number): Decoded {
  const decoder = new PacketDecoder(maxPacketSize);
  const out: Decoded = { packets: [], sizes: [] };
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    const result = outcome(() => decoder.push(bytes.subarray(i, i + 1)), ['protocol'], 'PacketDecoder.push');
    if (result.error) {
      out.error = result.error;
      break;
    }
    assert.ok(result.value.length <= 1, 'one byte completed more than one packet');
    for (const packet of result.value) {
      out.packets.push(packet);
      out.sizes.push(i + 1 - start);
      start = i + 1;
    }
  }
  return out;
}

/** Any split gives what the reference gives: a prefix of its packets and the same error, or all of them. */
function checkDecoder(bytes: Uint8Array, cutPoints: number[], maxPacketSize?: number): Decoded {
  const reference = decodeByteByByte(bytes, maxPacketSize);
  for (const size of reference.sizes) assert.ok(size <= (maxPacketSize ?? 65_536), `a packet of ${size} bytes passed the limit`);
  assert.ok(reference.packets.length <= bytes.length / 2, 'more packets than the bytes can hold');
  const decoder = new PacketDecoder(maxPacketSize);
  const packets: Packet[] = [];
  let error: ProvisioningError | undefined;
  for (const chunk of split(bytes, cutPoints)) {
    const result = outcome(() => decoder.push(chunk), ['protocol'], 'PacketDecoder.push');
    if (result.error) {
      error = result.error;
      break;
    }
    packets.push(...result.value);
  }
  assert.equal(error?.message, reference.error?.message);
  if (error) {
    assert.deepEqual(packets, reference.packets.slice(0, packets.length));
    // A failed decoder stays failed: the connection must be closed.
    checkError(outcome(() => decoder.push(Uint8Array.of(0xd0, 0)), ['protocol'], 'push after failure').error, ['protocol'], 'push after failure');
  } else {
    assert.deepEqual(packets, reference.packets);
  }
  return reference;
}

const FIRST_BYTES = [0x10, 0x20, 0x30, 0x32, 0x3b, 0x40, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0];

describe('MQTT decoder (PacketDecoder)', () => {
  it('takes arbitrary bytes in any split: packets or a protocol error, the same for every split', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), cuts, (bytes, c) => void checkDecoder(bytes, c)), runs(400));
  });

  it('takes arbitrary bytes behind a valid fixed header (the body parsers get the garbage)', () => {
    const stream = fc.tuple(fc.constantFrom(...FIRST_BYTES), fc.uint8Array({ maxLength: 120 }))
      .map(([first, body]) => Uint8Array.from([first, ...varint(body.length), ...body]));
    fc.assert(fc.property(fc.array(stream, { minLength: 1, maxLength: 3 }), cuts, (s, c) => void checkDecoder(concat(s), c)), runs(400));
  });

  it('decodes valid packets back exactly, and mutated ones (bit flips, truncation, bad or huge lengths) to a protocol error or packets', () => {
    fc.assert(
      fc.property(damagedStream, cuts, ({ packets, bytes, damaged }, c) => {
        const decoded = checkDecoder(bytes, c);
        if (!damaged) assert.deepEqual(decoded, { packets, sizes: packets.map((p) => encodePacket(p).length) });
      }),
      runs(500),
    );
  });

  it('refuses a declared length over maxPacketSize at the last length byte, before any body byte: memory stays bounded', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 1 << 20 }),
        fc.constantFrom(...FIRST_BYTES),
        fc.oneof(fc.integer({ min: 0, max: 268_435_455 }), fc.integer({ min: 0, max: 1 << 21 }), fc.constantFrom(268_435_455, 2_097_152, 16_384)),
        (maxPacketSize, first, declared) => {
          const header = Uint8Array.from([first, ...varint(declared)]);
          const decoder = new PacketDecoder(maxPacketSize);
          const early = outcome(() => decoder.push(header.subarray(0, -1)), ['protocol'], 'header');
          assert.equal(early.error, undefined, 'refused before the length was complete');
          const last = outcome(() => decoder.push(header.subarray(-1)), ['protocol'], 'header');
          if (header.length + declared > maxPacketSize) {
            assert.match(last.error?.message ?? '', new RegExp(`exceeds the limit of ${maxPacketSize} bytes`));
          } else {
            assert.doesNotMatch(last.error?.message ?? '', /exceeds the limit/);
          }
        },
      ),
      runs(400),
    );
  });

  it('never completes a packet larger than a small maxPacketSize, whatever the bytes', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 64 }), fc.uint8Array({ maxLength: 200 }), cuts, (max, bytes, c) => void checkDecoder(bytes, c, max)), runs(300));
  });
});

// ---- the MQTT client fed fuzzed server bytes ----

const endpoint = { host: 'dps.example', port: 8883 };
const serverBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  damagedStream.map((s) => s.bytes),
  // A valid CONNACK first, so the garbage reaches an open session.
  damagedStream.map((s) => concat([Uint8Array.of(0x20, 2, 0, 0), s.bytes])),
);

async function clientUnderFuzz(bytes: Uint8Array, cutPoints: number[], options: { connack: boolean; inFlight: boolean; end: 'drop' | 'reset' | 'disconnect' }) {
  const clock = new FakeClock();
  const network = new ScriptedNetwork();
  const closes: (ProvisioningError | undefined)[] = [];
  const connecting = MqttClient.connect(network.connect, endpoint, clock, {
    clientId: 'fuzz-device',
    username: 'scope/registrations/fuzz-device/api-version=2019-03-31',
    password: 'SharedAccessSignature sr=x&sig=y&se=1',
    onMessage: (topic, payload) => {
      assert.equal(typeof topic, 'string');
      assert.ok(payload instanceof Uint8Array);
    },
    onClose: (error) => void closes.push(error),
  });
  const connected = connecting.then((client) => ({ client }), (error: unknown) => ({ error }));
  await settle();
  const server: ScriptedConnection = network.last;
  if (options.connack) server.send({ type: 'connack', sessionPresent: false, returnCode: 0 });
  await settle();
  // Requests in flight while the garbage arrives; their outcomes are taken at once (no unhandled rejection).
  const inFlight: Promise<{ error?: unknown }>[] = [];
  const early = await Promise.race([connected, Promise.resolve(undefined)]);
  if (options.inFlight && early && 'client' in early) {
    const client = early.client;
    for (const request of [client.subscribe('$dps/registrations/res/#', 1), client.publish('$dps/registrations/PUT/iotdps-register/?$rid=1', Uint8Array.of(123, 125), 1)]) {
      inFlight.push(request.then(() => ({}), (error: unknown) => ({ error })));
    }
  }
  for (const chunk of split(bytes, cutPoints)) {
    if (server.closed) break;
    server.sendBytes(chunk);
  }
  await settle();
  const settled = await Promise.race([connected, Promise.resolve(undefined)]);
  if (options.end === 'disconnect' && settled && 'client' in settled) settled.client.disconnect();
  else server.drop(options.end === 'reset' ? new Error('connection reset') : undefined);
  const result = await connected;
  if ('error' in result) {
    checkError(result.error, ['protocol', 'invalid-input', 'server', 'unauthorized', 'network'], 'MqttClient.connect');
    assert.equal(closes.length, 0, 'onClose after connect() rejected');
  } else {
    assert.equal(result.client.isOpen, false);
    assert.ok(closes.length <= 1, 'onClose called more than once');
    if (options.end !== 'disconnect') assert.equal(closes.length, 1, 'the session ended without onClose');
    for (const error of closes) checkError(error, ['protocol', 'network'], 'onClose');
  }
  for (const request of await Promise.all(inFlight)) {
    if ('error' in request) checkError(request.error, ['protocol', 'network', 'failed'], 'in-flight request');
  }
  assert.equal(server.closed, true, 'the connection was left open');
  assert.equal(server.writesAfterClose, 0, 'the client wrote after the connection closed');
  assert.equal(clock.pendingTimers, 0, 'timers left behind');
}

describe('MQTT client fed fuzzed server bytes (scripted connection, fake clock)', () => {
  it('closes with a typed error, settles every request and leaves no timer', async () => {
    await fc.assert(
      fc.asyncProperty(
        serverBytes,
        cuts,
        fc.record({ connack: fc.boolean(), inFlight: fc.boolean(), end: fc.constantFrom('drop' as const, 'reset' as const, 'disconnect' as const) }),
        (bytes, c, options) => clientUnderFuzz(bytes, c, options),
      ),
      runs(300),
    );
  });
});

// ---- DPS topics and username ----

const RESPONSE_PREFIX = '$dps/registrations/res/';
const topicLike = fc.oneof(
  fuzzText(60),
  fuzzText(40).map((s) => RESPONSE_PREFIX + s),
  fuzzText(40).map((s) => `$dps/registrations/PUT/iotdps-register/${s}`),
  fuzzText(40).map((s) => `$dps/registrations/GET/iotdps-get-operationstatus/${s}`),
);
const statusArb = fc.oneof(fc.integer({ min: 100, max: 599 }), fc.constantFrom(200, 202, 401, 404, 429, 500, 503));
const validResponseTopic = fc.record({ status: statusArb, rid: wellFormedText(30).filter((s) => s.length > 0), retryAfter: fc.option(fc.integer({ min: 0, max: 999_999_999 }), { nil: undefined }) });
const rid = fc.stringMatching(/^[A-Za-z0-9._~-]{1,64}$/);

function checkResponseTopic(topic: string): void {
  const parsed = outcome(() => parseResponseTopic(topic), ['protocol'], 'parseResponseTopic').value;
  if (!parsed) return;
  assert.ok(topic.startsWith(RESPONSE_PREFIX));
  assert.ok(Number.isInteger(parsed.status) && parsed.status >= 100 && parsed.status <= 599);
  if (parsed.rid !== undefined) assert.equal(typeof parsed.rid, 'string');
  if (parsed.retryAfterSeconds !== undefined) assert.ok(Number.isSafeInteger(parsed.retryAfterSeconds) && parsed.retryAfterSeconds >= 0);
}

function checkRequestTopic(topic: string): void {
  const parsed = outcome(() => parseRequestTopic(topic), ['protocol'], 'parseRequestTopic').value;
  if (!parsed) return;
  assert.ok(typeof parsed.rid === 'string' && parsed.rid.length > 0);
  if (parsed.type === 'poll') assert.ok(typeof parsed.operationId === 'string' && parsed.operationId.length > 0);
}

function checkUsername(username: string): void {
  const parsed = outcome(() => parseDpsUsername(username), ['protocol'], 'parseDpsUsername').value;
  if (!parsed) return;
  for (const field of [parsed.idScope, parsed.registrationId]) assert.ok(typeof field === 'string' && field.length > 0 && !field.includes('/'));
  assert.ok(typeof parsed.apiVersion === 'string' && parsed.apiVersion.length > 0 && !parsed.apiVersion.includes('&'));
}

describe('DPS topic and username parsers', () => {
  it('parse arbitrary text to a result, undefined or a protocol error', () => {
    fc.assert(fc.property(topicLike, (topic) => {
      checkResponseTopic(topic);
      checkRequestTopic(topic);
      checkUsername(topic);
    }), runs(500));
  });

  it('read back what the builders write, and take mutations of it', () => {
    fc.assert(
      fc.property(validResponseTopic, rid, wellFormedText(30).filter((s) => s.length > 0), stringMutations, ({ status, rid: r, retryAfter }, requestRid, operationId, mutations) => {
        const response = responseTopic(status, r, retryAfter);
        assert.deepEqual(parseResponseTopic(response), { status, rid: r, ...(retryAfter !== undefined && { retryAfterSeconds: retryAfter }) });
        assert.deepEqual(parseRequestTopic(registerTopic(requestRid)), { type: 'register', rid: requestRid });
        const poll = pollTopic(requestRid, operationId);
        assert.deepEqual(parseRequestTopic(poll), { type: 'poll', rid: requestRid, operationId });
        checkResponseTopic(mutateString(response, mutations));
        checkRequestTopic(mutateString(poll, mutations));
      }),
      runs(500),
    );
  });

  it('read back a username and take mutations of it', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9]{1,16}$/),
        fc.stringMatching(/^[a-z0-9][a-z0-9\-._:]{0,30}[a-z0-9-]$/),
        fc.option(wellFormedText(20), { nil: undefined }),
        stringMutations,
        (idScope, registrationId, clientVersion, mutations) => {
          const username = dpsUsername(idScope, registrationId, clientVersion);
          const parsed = parseDpsUsername(username);
          assert.deepEqual(parsed, { idScope, registrationId, apiVersion: '2019-03-31', ...(clientVersion && { clientVersion }) });
          checkUsername(mutateString(username, mutations));
        },
      ),
      runs(400),
    );
  });
});

// ---- DPS response bodies ----

const REGISTRATION_ID = 'fuzz-device-1';
/** Any JSON value, shaped like a DPS response or not, with fields of any type where DPS puts strings. */
const fieldValue = fc.oneof(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('assigned', 'assigning', 'failed', 'disabled', 'unassigned', '', 'op-1'));
const responseLike = fc.record(
  {
    operationId: fieldValue,
    status: fieldValue,
    errorCode: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 10 }), fc.constant('400209')),
    trackingId: fieldValue,
    message: fieldValue,
    registrationState: fc.oneof(
      fieldValue,
      fc.record({ registrationId: fieldValue, assignedHub: fieldValue, deviceId: fieldValue, status: fieldValue, substatus: fieldValue, errorCode: fieldValue, errorMessage: fieldValue, payload: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: [] }),
    ),
  },
  { requiredKeys: [] },
);
const validBody = fc.constantFrom<unknown>(assigningBody(), assignedBody(REGISTRATION_ID), assignedBody(REGISTRATION_ID, 'op-1', { a: [1, { b: 'c' }] }), errorBody(401002), errorBody(429001), { operationId: '', status: 'disabled' });
/** `json` with its "payload":0 replaced by a value nested `depth` levels deep. */
function deepen(json: string, depth: number, open: '[' | '{"a":'): string {
  return json.replace('"payload":0', `"payload":${open.repeat(depth)}0${(open === '[' ? ']' : '}').repeat(depth)}`);
}
const nesting = fc.tuple(fc.integer({ min: 1, max: 7000 }), fc.constantFrom('[' as const, '{"a":' as const));
/** An assignment whose payload nests up to 7000 levels: still under the 16 KiB body limit. */
const deepAssignedBody = (depth: number, open: '[' | '{"a":') => deepen(JSON.stringify(assignedBody(REGISTRATION_ID, 'op-1', 0)), depth, open);
const deepBody = nesting.map(([depth, open]) => deepAssignedBody(depth, open));
const responseBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.jsonValue().map((v) => utf8Encode(JSON.stringify(v))),
  responseLike.map((v) => utf8Encode(JSON.stringify(v))),
  fc.tuple(validBody, stringMutations).map(([body, m]) => utf8Encode(mutateString(JSON.stringify(body), m))),
  fc.tuple(validBody, byteMutations).map(([body, m]) => mutateBytes(utf8Encode(JSON.stringify(body)), m)),
  deepBody.map(utf8Encode),
);

function checkResponse(status: number, body: Uint8Array, maxBytes?: number): void {
  const response = outcome(() => parseResponseBody(status, body, maxBytes), ['protocol'], 'parseResponseBody').value;
  if (!response) return;
  checkWellFormed(response, status);
  // The provisioner stores what DPS assigned and the CLI prints it: it must serialise.
  const json = outcome(() => JSON.stringify(response), [], 'JSON.stringify(response)').value;
  assert.equal(typeof json, 'string');
}

function checkWellFormed(response: DpsResponse, status: number): void {
  assert.equal(response.status, status);
  if (response.kind === 'error') {
    assert.ok(status < 200 || status > 299);
    if (response.errorCode !== undefined) assert.ok(Number.isSafeInteger(response.errorCode));
    for (const text of [response.trackingId, response.message]) if (text !== undefined) assert.ok(typeof text === 'string' && text.length <= 501);
    if (response.operationId !== undefined) assert.match(response.operationId, /^[\x21-\x7e]{1,256}$/);
    return;
  }
  assert.ok(status >= 200 && status <= 299);
  assert.match(response.operationId, /^[\x21-\x7e]{0,256}$/);
  assert.ok(['unassigned', 'assigning', 'assigned', 'failed', 'disabled'].includes(response.registrationStatus));
  const state = response.registrationState;
  if (!state) return;
  assert.equal(typeof state.registrationId, 'string');
  for (const field of ['assignedHub', 'deviceId', 'substatus', 'createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'etag', 'errorMessage'] as const) {
    if (state[field] !== undefined) assert.equal(typeof state[field], 'string');
  }
  assert.equal(state.assignedHub === undefined, state.deviceId === undefined);
}

describe('DPS response body parser (parseResponseBody)', () => {
  it('reads arbitrary bytes, JSON values and mutated bodies as a well-formed response or a protocol error', () => {
    fc.assert(fc.property(statusArb, responseBytes, (status, body) => checkResponse(status, body)), runs(600));
  });

  it('found: a payload 5000 levels deep was accepted, and serialising it (to store or print it) overflowed the stack', () => {
    checkResponse(200, utf8Encode(deepAssignedBody(5000, '[')));
  });

  it('measures JSON nesting as JSON.parse sees it (brackets inside strings and escapes do not count)', () => {
    const depthOf = (v: unknown): number => (typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
    const tricky = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a'), maxLength: 8 });
    // A random JSON value wrapped in up to 100 arrays and objects, each with a random sibling.
    const wrapper = fc.record({ key: fc.option(tricky), sibling: fc.jsonValue({ maxDepth: 1 }) });
    const value = fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.array(wrapper, { maxLength: 100 })).map(([leaf, wrappers]) =>
      wrappers.reduce<unknown>((inner, { key, sibling }) => (key === null ? [sibling, inner] : { [`${key}~`]: sibling, [key]: inner }), leaf));
    fc.assert(
      fc.property(value, fc.integer({ min: 0, max: 100 }), (v, max) => {
        assert.equal(isNestedDeeper(JSON.stringify(v), max), depthOf(v) > max);
      }),
      runs(300),
    );
  });

  it('refuses a body over the size limit whatever it holds', () => {
    fc.assert(
      fc.property(statusArb, fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), (status, body, limit) => {
        const maxBytes = limit % body.length;
        assert.match(outcome(() => parseResponseBody(status, body, maxBytes), ['protocol'], 'oversized').error?.message ?? '', /over the \d+-byte limit/);
      }),
      runs(200),
    );
  });
});

// ---- SAS tokens ----

const base64Key = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(base64Encode);
const tokenLike = fc.oneof(
  fuzzText(80),
  fuzzText(80).map((s) => `SharedAccessSignature ${s}`),
  fc.array(fc.tuple(fc.constantFrom('sr', 'sig', 'se', 'skn', 'x', ''), fuzzText(20)), { maxLength: 6 })
    .map((fields) => `SharedAccessSignature ${fields.map(([k, v]) => `${k}=${v}`).join('&')}`),
);
const validToken = fc.record({
  resource: wellFormedText(40).filter((s) => s.length > 0),
  key: base64Key,
  expiry: fc.integer({ min: 0, max: 2 ** 40 }),
  keyName: fc.option(wellFormedText(12).filter((s) => s.length > 0), { nil: undefined }),
});

describe('SAS token parser and verifier', () => {
  it('parses arbitrary text to fields or an unauthorized error', () => {
    fc.assert(
      fc.property(tokenLike, base64Key, fc.integer({ min: 0, max: 2 ** 40 }), (token, key, now) => {
        const parsed = outcome(() => parseSasToken(token), ['unauthorized'], 'parseSasToken').value;
        if (parsed) {
          assert.ok(Number.isSafeInteger(parsed.se) && parsed.se >= 0);
          for (const text of [parsed.sr, parsed.resource, parsed.sig]) assert.ok(typeof text === 'string' && text.length > 0);
        }
        const verdict = outcome(() => verifySasToken(token, key, now), [], 'verifySasToken').value!;
        if (verdict.ok) assert.ok(parsed);
      }),
      runs(500),
    );
  });

  it('verifies its own tokens, and a mutated token only if it signs the same resource and expiry', () => {
    fc.assert(
      fc.property(validToken, stringMutations, fc.integer({ min: 0, max: 2 ** 40 }), (options, mutations, now) => {
        const token = buildSasToken(options);
        const original = parseSasToken(token);
        assert.deepEqual(verifySasToken(token, options.key, options.expiry - 1, options.resource), { ok: true, token: original });
        assert.deepEqual(verifySasToken(token, options.key, options.expiry), { ok: false, reason: 'expired' });
        const verdict = outcome(() => verifySasToken(mutateString(token, mutations), options.key, now, options.resource), [], 'verifySasToken').value!;
        if (verdict.ok) {
          assert.equal(verdict.token.sr, original.sr);
          assert.equal(verdict.token.se, original.se);
          assert.deepEqual(base64Decode(verdict.token.sig, 'sig'), base64Decode(original.sig, 'sig'));
          assert.ok(verdict.token.se > now);
        }
      }),
      runs(500),
    );
  });

  it('takes any verification key: a result, or invalid-input for one that is not base64', () => {
    fc.assert(
      fc.property(validToken, fuzzText(30), (options, key) => {
        outcome(() => verifySasToken(buildSasToken(options), key, 0), ['invalid-input'], 'verifySasToken(key)');
      }),
      runs(200),
    );
  });
});

// ---- registration ID templates ----

const placeholderName = fc.constantFrom('serial', 'mac', 'x', 'sn_2', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'length');
const templateUnit = fc.oneof(
  { weight: 3, arbitrary: placeholderName.map((n) => `{${n}}`) },
  { weight: 1, arbitrary: fc.constantFrom('{', '}', '{}', '{1x}', '{a b}') },
  { weight: 4, arbitrary: textUnit },
);
const template = fc.string({ unit: templateUnit, maxLength: 12 });
const identityValue = fc.oneof(
  fuzzText(20),
  fc.uint8Array({ maxLength: 8 }),
  fc.constantFrom('A1:B2:C3:D4:E5:F6', 'a1-b2-c3-d4-e5-f6', 'a1b2c3d4e5f6', 'a1:b2-c3:d4:e5:f6', 'ACME Corp / 7', '-._:', 'x'.repeat(200)),
  fc.constant(undefined),
  // A JavaScript caller (device settings) may hand over anything.
  fc.anything({ maxDepth: 1 }),
);
const identity = fc.dictionary(placeholderName, identityValue, { maxKeys: 4 });

describe('registration ID templates (buildRegistrationId)', () => {
  it('build a valid, lower-case registration ID deterministically, or fail with invalid-input', () => {
    fc.assert(
      fc.property(fc.oneof(template, fuzzText(20)), identity, (t, id) => {
        const built = outcome(() => buildRegistrationId(t, id as HardwareIdentity), ['invalid-input'], 'buildRegistrationId').value;
        if (built === undefined) return;
        assert.equal(validateRegistrationId(built), built);
        assert.match(built, /^[a-z0-9\-._:]{0,127}[a-z0-9-]$/);
        assert.equal(buildRegistrationId(t, id as HardwareIdentity), built);
      }),
      runs(500),
    );
  });
});

// ---- the stored assignment record ----

const validRecord = {
  version: 1,
  assignedHub: 'hub-a.azure-devices.net',
  deviceId: REGISTRATION_ID,
  registrationId: REGISTRATION_ID,
  idScope: '0ne00000001',
  endpoint: 'global.azure-devices-provisioning.net:8883',
  substatus: 'initialAssignment',
  payload: { a: [1, 2, { b: null }] },
  provisionedAt: '2025-01-01T00:00:00.000Z',
};
const recordLike = fc.record(
  Object.fromEntries(Object.keys(validRecord).map((k) => [k, fc.oneof(fc.constant((validRecord as Record<string, unknown>)[k]), fieldValue, fc.constant(1))])),
  { requiredKeys: [] },
);
const recordText = fc.oneof(
  fuzzText(80),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  recordLike.map((v) => JSON.stringify(v)),
  stringMutations.map((m) => mutateString(JSON.stringify(validRecord), m)),
  nesting.map(([depth, open]) => deepen(JSON.stringify({ ...validRecord, payload: 0 }), depth, open)),
);

function checkRecord(text: string): void {
  const assignment = outcome(() => parseAssignment(text), [], 'parseAssignment').value;
  if (!assignment) return;
  for (const field of ['assignedHub', 'deviceId', 'registrationId', 'idScope', 'endpoint', 'provisionedAt'] as const) {
    assert.ok(typeof assignment[field] === 'string' && assignment[field].length > 0, field);
  }
  // The CLI prints it (--json) and the provisioner writes it back: it must serialise, and read back the same.
  const json = outcome(() => JSON.stringify({ version: 1, ...assignment }), [], 'JSON.stringify(assignment)').value!;
  assert.equal(JSON.stringify(parseAssignment(json)), JSON.stringify(assignment));
}

describe('stored assignment parser (parseAssignment)', () => {
  it('reads any text as a complete assignment or as nothing, and never throws', () => {
    fc.assert(fc.property(recordText, checkRecord), runs(500));
  });

  it('found: a stored payload 5000 levels deep was accepted, and printing it (--json) overflowed the stack', () => {
    checkRecord(deepen(JSON.stringify({ ...validRecord, payload: 0 }), 5000, '{"a":'));
  });
});

// ---- the command line ----

// Commands that touch neither the network nor the disk, names an object inherits, and any text.
const commandName = fc.oneof(
  fc.constantFrom('compute-device-key', 'sas-token', 'help', '--help', '-h', 'toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf'),
  fuzzText(12),
);
const flagName = fc.constantFrom('--key', '--key-file', '--registration-id', '--id-scope', '--expiry', '--ttl', '--help', '-h', '--', '-', '--x', '-k');
const argument = fc.oneof(flagName, fuzzText(16), base64Key, flagName.chain((f) => fuzzText(8).map((v) => `${f}=${v}`)));

describe('the command line (main) with arbitrary arguments', () => {
  it('ends with a documented exit status and never throws', async () => {
    const statuses = new Set(Object.values(EXIT_CODES).concat(0));
    await fc.assert(
      fc.asyncProperty(commandName, fc.array(argument, { maxLength: 8 }), async (command, args) => {
        let output = '';
        const io = { stdout: (t: string) => void (output += t), stderr: (t: string) => void (output += t), env: {} };
        const code = await main([command, ...args], io).catch((error: unknown) => assert.fail(`main threw ${describeThrown(error)}`));
        assert.ok(statuses.has(code), `exit status ${String(code)} for ${JSON.stringify([command, ...args])}`);
      }),
      runs(300),
    );
  });

  it('found: a name every object inherits (toString, constructor) ran as a command and returned no exit status', async () => {
    const io = { stdout: () => {}, stderr: () => {}, env: {} };
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) assert.equal(await main([name], io), EXIT_CODES['invalid-input'], name);
  });
});

// ---- the whole flow against a fuzzed DPS ----

type ServerReply =
  | { status: number; retryAfter: number | undefined; body: Uint8Array; ownRid: boolean }
  | { raw: Uint8Array }
  | { drop: true }
  | { silent: true };

const serverReply: fc.Arbitrary<ServerReply> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ status: statusArb, retryAfter: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }), body: fc.oneof(responseBytes, validBody.map((b) => utf8Encode(JSON.stringify(b)))), ownRid: fc.oneof(fc.constant(true), fc.boolean()) }) },
  { weight: 1, arbitrary: serverBytes.map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.constantFrom<ServerReply>({ drop: true }, { silent: true }) },
);
const connackPlan = fc.array(fc.oneof({ weight: 5, arbitrary: fc.constant<number | 'silent'>(0) }, { weight: 1, arbitrary: fc.constantFrom<number | 'silent'>(1, 2, 3, 4, 5, 6, 'silent') }), { maxLength: 4 });

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
async function flowUnderFuzz(connacks: (number | 'silent')[], replies: ServerReply[], granted: number, timeoutMs: number, keepAliveSeconds: number): Promise<void> {
  const clock = new FakeClock();
  const network = fuzzedDps([...connacks], [...replies], granted);
  const start = clock.now();
  let result: { value: unknown } | { error: unknown } | undefined;
  registerDevice(
    { idScope: '0ne00000001', registrationId: REGISTRATION_ID, deviceKey: base64Encode(utf8Encode('fuzz-key')), timeoutMs, keepAliveSeconds, backoff: { minMs: 500, maxMs: 5000, jitterMs: 100 } },
    { connect: network.connect, clock, random: () => 0.5 },
  ).then((value) => (result = { value }), (error: unknown) => (result = { error }));
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
    const kinds: ErrorKind[] = ['invalid-input', 'unauthorized', 'disabled', 'failed', 'throttled', 'server', 'network', 'tls', 'protocol', 'timeout'];
    checkError(result.error, kinds, 'registerDevice');
  } else {
    const value = result.value as { assignedHub: unknown; deviceId: unknown };
    assert.ok(typeof value.assignedHub === 'string' && value.assignedHub.length > 0);
    assert.ok(typeof value.deviceId === 'string' && value.deviceId.length > 0);
  }
  assert.ok(elapsed <= timeoutMs, `the flow ended ${elapsed} ms after it started; its deadline was ${timeoutMs} ms`);
  await settle();
  assert.equal(clock.pendingTimers, 0, 'timers left behind');
  assert.ok(network.connections.every((c) => c.closed), 'a connection was left open');
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
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
/** Text a hostile server or device sends: our fuzz text plus what repaints, forges or reorders a line. */
const hostileText = fc.string({ unit: fc.oneof(textUnit, fc.constantFrom('\x1b[2K', '\x1b]0;t\x07', '\r', '\n', '\x9b', '\x7f', '\u202e', '\u2066', '\u2029')), maxLength: 30 });
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
  fc.record({ status: fc.constantFrom(200, 202), registrationStatus: fc.constantFrom('assigned', 'assigning', 'failed', 'disabled'), state: hostileState })
    .map(({ status, registrationStatus, state }) => ({ status, retryAfter: 1, body: utf8Encode(JSON.stringify({ operationId: 'op-1', status: registrationStatus, registrationState: { ...state, status: registrationStatus } })), ownRid: true })),
  fc.record({ status: fc.constantFrom(400, 401, 404, 429, 500, 503), trackingId: hostileText, message: hostileText })
    .map(({ status, trackingId, message }) => ({ status, retryAfter: 1, body: utf8Encode(JSON.stringify({ errorCode: status * 1000, trackingId, message })), ownRid: true })),
);

/** One provisioning (with a store) against DPS answers from `replies`, and what the CLI prints of it: progress, result or error line. */
async function cliOutputUnderFuzz(replies: ServerReply[]): Promise<{ output: string; stored: string | undefined }> {
  const clock = new FakeClock();
  const network = fuzzedDps([], [...replies], 1);
  const events: ProvisioningEvent[] = [];
  const values = new Map<string, string>();
  const store: Store = { get: async (key) => values.get(key), set: async (key, value) => void values.set(key, value), delete: async (key) => void values.delete(key) };
  let result: { value: ProvisionResult } | { error: unknown } | undefined;
  provisionDevice(
    { idScope: '0ne00000001', registrationId: REGISTRATION_ID, deviceKey: base64Encode(utf8Encode('fuzz-key')), timeoutMs: 20_000, backoff: { minMs: 500, maxMs: 5000, jitterMs: 0 } },
    { connect: network.connect, clock, random: () => 0.5, log: (event) => events.push(event), store },
  ).then((value) => (result = { value }), (error: unknown) => (result = { error }));
  for (let steps = 0; result === undefined; steps++) {
    assert.ok(steps < 10_000, 'the provisioning did not end after 10,000 timer steps');
    await settle();
    if (result === undefined && !(await clock.runNext())) await settle();
  }
  let output = events.map((event) => `${describeEvent(event)}\n`).join('');
  if ('error' in result) reportError(result.error, { stdout: (t) => void (output += t), stderr: (t) => void (output += t), env: {} });
  else output += describeAssignment(result.value.assignment, result.value.fromCache, false) + describeAssignment(result.value.assignment, result.value.fromCache, true);
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
    const newline = { ...answer, body: utf8Encode(JSON.stringify({ ...assignedBody(REGISTRATION_ID), registrationState: { ...state, assignedHub: `${HUB}\ndeviceId: attacker-controlled` } })) };
    const { output, stored } = await cliOutputUnderFuzz([newline, newline, newline, newline]);
    assert.doesNotMatch(output, /^deviceId: attacker-controlled/m);
    assert.equal(stored, undefined);
    const repaint = { status: 400, retryAfter: undefined, ownRid: true, body: utf8Encode(JSON.stringify({ errorCode: 400004, message: '\x1b[2K\rerror (none): all good' })) };
    assert.match((await cliOutputUnderFuzz([repaint])).output, /^error \(failed\): .*\\u001b\[2K\\rerror \(none\): all good \[errorCode 400004\]$/m);
  });

  it('device text in the emulator log never carries a control character', () => {
    const emulatorEvent = fc.oneof(
      fc.record({ type: fc.constant('refused' as const), clientId: hostileText, reason: fc.constantFrom('registration-id' as const, 'fault' as const) }),
      fc.record({ type: fc.constant('connected' as const), registrationId: hostileText }),
      fc.record({ type: fc.constant('fault' as const), registrationId: hostileText, on: fc.constant('register'), action: fc.constant('drop' as const) }),
      fc.record({ type: fc.constant('closed-client' as const), clientId: hostileText, reason: hostileText }),
      fc.record({ type: fc.constant('request' as const), registrationId: hostileText, request: fc.constantFrom('register' as const, 'poll' as const), status: fc.constantFrom(200, 400, 429) }),
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

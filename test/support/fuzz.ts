// Shared by the fuzz tests (test/fuzz-*.test.ts): everything that reads bytes or text from the
// network or the disk is fed arbitrary, mutated and hostile input. The property throughout: a
// well-formed result, or a ProvisioningError of the documented kind with a short message; never
// a TypeError or RangeError, never an unbounded buffer, never a hang (a hang would be an endless
// loop: vitest's timeout catches it; the flow and client properties also count their steps). No
// assertion measures time.
//
// `npm test` runs a few thousand cases. bench/fuzz.js bundles the fuzz test files and runs the
// same properties with FUZZ_RUNS cases each (≥ 100,000), reporting time per case and heap.
// Properties assert with node:assert so that the bench can run them without vitest.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { base64Encode, utf8Encode } from '../../src/bytes.js';
import { type ErrorKind, ProvisioningError } from '../../src/errors.js';
import { encodePacket, type Packet } from '../../src/mqtt/codec.js';
import { assignedBody, assigningBody, errorBody } from './scripted-dps.js';

/** FUZZ_RUNS overrides every property's case count (bench/fuzz.js sets it). */
export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS) || undefined;
export const runs = (numRuns: number) => ({ numRuns: FUZZ_RUNS ?? numRuns });
/** Errors caused by peer input name the fault, not the whole input: their messages stay short. */
export const MAX_MESSAGE_LENGTH = 1000;

// ---- outcomes ----

export function describeThrown(error: unknown): string {
  return error instanceof Error
    ? `${error.constructor.name}: ${error.message}\n${error.stack}`
    : `a thrown ${typeof error}: ${String(error)}`;
}

/** `error` must be a ProvisioningError of one of `kinds`, with a short, non-empty message. */
export function checkError(error: unknown, kinds: readonly ErrorKind[], where: string): ProvisioningError {
  if (!(error instanceof ProvisioningError)) assert.fail(`${where}: ${describeThrown(error)} escaped instead of a ProvisioningError`);
  assert.ok(kinds.includes(error.kind), `${where}: kind '${error.kind}' (expected ${kinds.join(' | ')}): ${error.message}`);
  assert.ok(
    error.message.length > 0 && error.message.length <= MAX_MESSAGE_LENGTH,
    `${where}: message of ${error.message.length} characters`,
  );
  return error;
}

export type Outcome<T> = { value: T; error?: undefined } | { error: ProvisioningError; value?: undefined };

export function outcome<T>(run: () => T, kinds: readonly ErrorKind[], where: string): Outcome<T> {
  try {
    return { value: run() };
  } catch (error) {
    return { error: checkError(error, kinds, where) };
  }
}

// ---- input generators ----

/** Text units that matter to our parsers (separators, escapes, surrogates, case folding), plus any code point. */
export const textUnit = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'a',
      'Z',
      '0',
      '9',
      '-',
      '.',
      '_',
      '~',
      ':',
      '/',
      '?',
      '&',
      '=',
      '%',
      '+',
      '#',
      '$',
      ' ',
      '{',
      '}',
      '"',
      '\\',
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '%2',
      '%zz',
      '%ED%A0%80',
      '%C0%AF',
      '%00',
      '%25',
      '%26',
      '%3D',
      '%2f',
      '\0',
      '\ud800',
      '\udc00',
      'é',
      '😀',
      'İ',
      'K',
      '\u2028',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
export const fuzzText = (maxLength = 40) => fc.string({ unit: textUnit, maxLength });
/** Text without lone surrogates: what a well-behaved peer could send. */
export const wellFormedText = (maxLength = 40) => fuzzText(maxLength).filter(isWellFormed);

export function isWellFormed(text: string): boolean {
  try {
    encodeURIComponent(text); // throws on a lone surrogate
    return true;
  } catch {
    return false;
  }
}

export type StringMutation =
  | { kind: 'insert' | 'replace'; at: number; text: string }
  | { kind: 'delete' | 'duplicate' | 'case'; at: number; count: number }
  | { kind: 'truncate'; at: number };

export const stringMutation: fc.Arbitrary<StringMutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('insert' as const, 'replace' as const), at: fc.nat(), text: fuzzText(6) }),
  fc.record({
    kind: fc.constantFrom('delete' as const, 'duplicate' as const, 'case' as const),
    at: fc.nat(),
    count: fc.integer({ min: 1, max: 24 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);
export const stringMutations = fc.array(stringMutation, { minLength: 1, maxLength: 4 });

export function mutateString(text: string, mutations: StringMutation[]): string {
  for (const m of mutations) {
    const at = m.at % (text.length + 1);
    switch (m.kind) {
      case 'insert':
        text = text.slice(0, at) + m.text + text.slice(at);
        break;
      case 'replace':
        text = text.slice(0, at) + m.text + text.slice(at + m.text.length);
        break;
      case 'delete':
        text = text.slice(0, at) + text.slice(at + m.count);
        break;
      case 'duplicate':
        text = text.slice(0, at + m.count) + text.slice(at);
        break;
      case 'case': {
        const part = text.slice(at, at + m.count);
        const flipped = part === part.toUpperCase() ? part.toLowerCase() : part.toUpperCase();
        text = text.slice(0, at) + flipped + text.slice(at + m.count);
        break;
      }
      case 'truncate':
        text = text.slice(0, at);
        break;
    }
  }
  return text;
}

export type ByteMutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'insert' | 'overwrite'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number };

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    kind: fc.constantFrom('insert' as const, 'overwrite' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);
export const byteMutations = fc.array(byteMutation, { minLength: 1, maxLength: 4 });

export function mutateBytes(bytes: Uint8Array, mutations: ByteMutation[]): Uint8Array {
  let out: Uint8Array = bytes.slice();
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    switch (m.kind) {
      case 'flip':
        if (at < out.length) out[at]! ^= 1 << m.bit;
        break;
      case 'insert':
        out = concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
        break;
      case 'overwrite':
        out = concat([out.subarray(0, at), m.bytes, out.subarray(at + m.bytes.length)]);
        break;
      case 'delete':
        out = concat([out.subarray(0, at), out.subarray(at + m.count)]);
        break;
      case 'truncate':
        out = out.slice(0, at);
        break;
    }
  }
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Cut `bytes` at the given points (taken modulo its length): any split of a byte stream. */
export function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  return chunks;
}
export const cuts = fc.array(fc.nat(), { maxLength: 8 });

/** Remaining-length varint (§2.2.3). */
export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    out.push((n % 0x80) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 0x80);
  } while (n > 0);
  return out;
}

// Valid MQTT packets: every packet our type can express, per MQTT 3.1.1 (the codec's differential
// tests against mqtt-packet, and the fuzzers' damaged streams).
const mqttChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '0', '$', '-', '.', '?', '=', '&', ' ', 'é', '€', '日', '😀') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
);
export const mqttText = (minLength = 0, maxLength = 24) =>
  fc.string({ unit: mqttChar, minLength, maxLength }).filter((s) => !s.includes('\0'));
const topicLevel = mqttText(0, 8).map((s) => s.replace(/[/+#]/g, '_'));
export const topicName = fc
  .array(topicLevel, { minLength: 1, maxLength: 5 })
  .map((l) => l.join('/'))
  .filter((t) => t.length > 0);
export const topicFilter = fc
  .tuple(fc.array(fc.oneof(topicLevel, fc.constant('+')), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels, '#'] : levels).join('/'))
  .filter((t) => t.length > 0);
export const messageId = fc.integer({ min: 1, max: 0xffff });
const mqttQos = fc.constantFrom<0 | 1>(0, 1);
const mqttPayload = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  // Long enough for two- and three-byte remaining lengths, without fast-check drawing every byte.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 100, max: 20_000 }), fc.nat(255))
      .map(([n, seed]) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff)),
  },
);

export const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  fc
    .record({
      clientId: mqttText(0, 30),
      username: fc.option(mqttText(0, 60), { nil: undefined }),
      password: fc.option(fc.string({ unit: mqttChar, maxLength: 80 }), { nil: undefined }),
      keepAlive: fc.integer({ min: 0, max: 0xffff }),
      clean: fc.boolean(),
    })
    .map(({ clientId, username, password, keepAlive, clean }) => {
      const p: Packet = { type: 'connect', clientId, keepAlive, clean: clean || clientId === '' };
      if (username !== undefined) p.username = username;
      if (username !== undefined && password !== undefined) p.password = password;
      return p;
    }),
  fc
    .record({ sessionPresent: fc.boolean(), returnCode: fc.nat(255) })
    .map(({ sessionPresent, returnCode }): Packet => ({ type: 'connack', sessionPresent: sessionPresent && returnCode === 0, returnCode })),
  fc
    .record({ topic: topicName, payload: mqttPayload, qos: mqttQos, dup: fc.boolean(), retain: fc.boolean(), messageId })
    .map(
      ({ messageId: id, ...p }): Packet => (p.qos === 1 ? { type: 'publish', ...p, messageId: id } : { type: 'publish', ...p, dup: false }),
    ),
  messageId.map((id): Packet => ({ type: 'puback', messageId: id })),
  fc
    .record({ messageId, subscriptions: fc.array(fc.record({ topic: topicFilter, qos: mqttQos }), { minLength: 1, maxLength: 4 }) })
    // fc.record's objects have no prototype; node:assert's deep equality tells them from decoded ones.
    .map(
      ({ messageId: id, subscriptions }): Packet => ({
        type: 'subscribe',
        messageId: id,
        subscriptions: subscriptions.map(({ topic, qos }) => ({ topic, qos })),
      }),
    ),
  fc
    .record({ messageId, granted: fc.array(fc.constantFrom(0, 1, 2, 0x80), { minLength: 1, maxLength: 6 }) })
    .map((p): Packet => ({ type: 'suback', ...p })),
  fc
    .record({ messageId, topics: fc.array(topicFilter, { minLength: 1, maxLength: 4 }) })
    .map((p): Packet => ({ type: 'unsubscribe', ...p })),
  messageId.map((id): Packet => ({ type: 'unsuback', messageId: id })),
  fc.constantFrom<Packet>({ type: 'pingreq' }, { type: 'pingresp' }, { type: 'disconnect' }),
);

/** A stream of valid packets, then damaged: a corrupted remaining length (possibly huge), and byte-level mutations. */
export const damagedStream = fc
  .record({
    packets: fc.array(packetArb, { minLength: 1, maxLength: 4 }),
    length: fc.option(
      fc.record({
        packet: fc.nat(),
        bytes: fc.oneof(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 5 }), fc.constant([0xff, 0xff, 0xff, 0x7f])),
      }),
    ),
    mutations: fc.oneof(fc.constant<ByteMutation[]>([]), byteMutations),
  })
  .map(({ packets, length, mutations }) => {
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

// ---- shared by several subjects ----

export const statusArb = fc.oneof(fc.integer({ min: 100, max: 599 }), fc.constantFrom(200, 202, 401, 404, 429, 500, 503));
export const REGISTRATION_ID = 'fuzz-device-1';
/** Any JSON value, shaped like a DPS response or not, with fields of any type where DPS puts strings. */
export const fieldValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom('assigned', 'assigning', 'failed', 'disabled', 'unassigned', '', 'op-1'),
);
export const responseLike = fc.record(
  {
    operationId: fieldValue,
    status: fieldValue,
    errorCode: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 10 }), fc.constant('400209')),
    trackingId: fieldValue,
    message: fieldValue,
    registrationState: fc.oneof(
      fieldValue,
      fc.record(
        {
          registrationId: fieldValue,
          assignedHub: fieldValue,
          deviceId: fieldValue,
          status: fieldValue,
          substatus: fieldValue,
          errorCode: fieldValue,
          errorMessage: fieldValue,
          payload: fc.jsonValue({ maxDepth: 3 }),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: [] },
);
export const validBody = fc.constantFrom<unknown>(
  assigningBody(),
  assignedBody(REGISTRATION_ID),
  assignedBody(REGISTRATION_ID, 'op-1', { a: [1, { b: 'c' }] }),
  errorBody(401002),
  errorBody(429001),
  { operationId: '', status: 'disabled' },
);
/** `json` with its "payload":0 replaced by a value nested `depth` levels deep. */
export function deepen(json: string, depth: number, open: '[' | '{"a":'): string {
  return json.replace('"payload":0', `"payload":${open.repeat(depth)}0${(open === '[' ? ']' : '}').repeat(depth)}`);
}
export const nesting = fc.tuple(fc.integer({ min: 1, max: 7000 }), fc.constantFrom('[' as const, '{"a":' as const));
/** An assignment whose payload nests up to 7000 levels: still under the 16 KiB body limit. */
export const deepAssignedBody = (depth: number, open: '[' | '{"a":') =>
  deepen(JSON.stringify(assignedBody(REGISTRATION_ID, 'op-1', 0)), depth, open);
export const deepBody = nesting.map(([depth, open]) => deepAssignedBody(depth, open));
export const responseBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.jsonValue().map((v) => utf8Encode(JSON.stringify(v))),
  responseLike.map((v) => utf8Encode(JSON.stringify(v))),
  fc.tuple(validBody, stringMutations).map(([body, m]) => utf8Encode(mutateString(JSON.stringify(body), m))),
  fc.tuple(validBody, byteMutations).map(([body, m]) => mutateBytes(utf8Encode(JSON.stringify(body)), m)),
  deepBody.map(utf8Encode),
);

export const serverBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  damagedStream.map((s) => s.bytes),
  // A valid CONNACK first, so the garbage reaches an open session.
  damagedStream.map((s) => concat([Uint8Array.of(0x20, 2, 0, 0), s.bytes])),
);

export const base64Key = fc.uint8Array({ minLength: 1, maxLength: 64 }).map(base64Encode);

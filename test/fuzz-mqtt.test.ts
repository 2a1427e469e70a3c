// Fuzzing the MQTT layer: the packet decoder under any split of any damaged stream, and the
// client session fed arbitrary server bytes. See test/support/fuzz.ts for the property's rules.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import type { ProvisioningError } from '../src/errors.js';
import { MqttClient } from '../src/mqtt/client.js';
import { encodePacket, type Packet, PacketDecoder } from '../src/mqtt/codec.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { checkError, concat, cuts, damagedStream, outcome, runs, serverBytes, split, varint } from './support/fuzz.js';
import { type ScriptedConnection, ScriptedNetwork } from './support/scripted-connection.js';

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
    checkError(
      outcome(() => decoder.push(Uint8Array.of(0xd0, 0)), ['protocol'], 'push after failure').error,
      ['protocol'],
      'push after failure',
    );
  } else {
    assert.deepEqual(packets, reference.packets);
  }
  return reference;
}

const FIRST_BYTES = [0x10, 0x20, 0x30, 0x32, 0x3b, 0x40, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0];

describe('MQTT decoder (PacketDecoder)', () => {
  it('takes arbitrary bytes in any split: packets or a protocol error, the same for every split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), cuts, (bytes, c) => void checkDecoder(bytes, c)),
      runs(400),
    );
  });

  it('takes arbitrary bytes behind a valid fixed header (the body parsers get the garbage)', () => {
    const stream = fc
      .tuple(fc.constantFrom(...FIRST_BYTES), fc.uint8Array({ maxLength: 120 }))
      .map(([first, body]) => Uint8Array.from([first, ...varint(body.length), ...body]));
    fc.assert(
      fc.property(fc.array(stream, { minLength: 1, maxLength: 3 }), cuts, (s, c) => void checkDecoder(concat(s), c)),
      runs(400),
    );
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
        fc.oneof(
          fc.integer({ min: 0, max: 268_435_455 }),
          fc.integer({ min: 0, max: 1 << 21 }),
          fc.constantFrom(268_435_455, 2_097_152, 16_384),
        ),
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
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 64 }),
        fc.uint8Array({ maxLength: 200 }),
        cuts,
        (max, bytes, c) => void checkDecoder(bytes, c, max),
      ),
      runs(300),
    );
  });
});

// ---- the MQTT client fed fuzzed server bytes ----

const endpoint = { host: 'dps.example', port: 8883 };
async function clientUnderFuzz(
  bytes: Uint8Array,
  cutPoints: number[],
  options: { connack: boolean; inFlight: boolean; end: 'drop' | 'reset' | 'disconnect' },
) {
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
  const connected = connecting.then(
    (client) => ({ client }),
    (error: unknown) => ({ error }),
  );
  await settle();
  const server: ScriptedConnection = network.last;
  if (options.connack) server.send({ type: 'connack', sessionPresent: false, returnCode: 0 });
  await settle();
  // Requests in flight while the garbage arrives; their outcomes are taken at once (no unhandled rejection).
  const inFlight: Promise<{ error?: unknown }>[] = [];
  const early = await Promise.race([connected, Promise.resolve(undefined)]);
  if (options.inFlight && early && 'client' in early) {
    const client = early.client;
    for (const request of [
      client.subscribe('$dps/registrations/res/#', 1),
      client.publish('$dps/registrations/PUT/iotdps-register/?$rid=1', Uint8Array.of(123, 125), 1),
    ]) {
      inFlight.push(
        request.then(
          () => ({}),
          (error: unknown) => ({ error }),
        ),
      );
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
        fc.record({
          connack: fc.boolean(),
          inFlight: fc.boolean(),
          end: fc.constantFrom('drop' as const, 'reset' as const, 'disconnect' as const),
        }),
        (bytes, c, options) => clientUnderFuzz(bytes, c, options),
      ),
      runs(300),
    );
  });
});

// The MQTT codec, differentially against mqtt-packet (the parser/generator behind mqtt.js and
// aedes) in both directions, plus one test per rejection the MQTT 3.1.1 spec requires.

import fc from 'fast-check';
import mqtt from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { ProvisioningError } from '../src/errors.js';
import { encodePacket, type Packet, PacketDecoder } from '../src/mqtt/codec.js';
import { concat, packetArb } from './support/fuzz.js';

// ---- mqtt-packet's shapes <-> ours ----

function toReference(p: Packet): mqtt.Packet {
  switch (p.type) {
    case 'connect': {
      const out: mqtt.IConnectPacket = {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: p.clientId,
        keepalive: p.keepAlive,
        clean: p.clean,
      };
      if (p.username !== undefined) out.username = p.username;
      if (p.password !== undefined) out.password = Buffer.from(p.password, 'utf8');
      return out;
    }
    case 'connack':
      return { cmd: 'connack', sessionPresent: p.sessionPresent, returnCode: p.returnCode };
    case 'publish': {
      const out: mqtt.IPublishPacket = {
        cmd: 'publish',
        topic: p.topic,
        payload: Buffer.from(p.payload),
        qos: p.qos,
        dup: p.dup,
        retain: p.retain,
      };
      if (p.qos) out.messageId = p.messageId!;
      return out;
    }
    case 'puback':
      return { cmd: 'puback', messageId: p.messageId };
    case 'subscribe':
      return { cmd: 'subscribe', messageId: p.messageId, subscriptions: p.subscriptions.map((s) => ({ ...s })) };
    case 'suback':
      return { cmd: 'suback', messageId: p.messageId, granted: [...p.granted] };
    case 'unsubscribe':
      return { cmd: 'unsubscribe', messageId: p.messageId, unsubscriptions: [...p.topics] };
    case 'unsuback':
      return { cmd: 'unsuback', messageId: p.messageId, granted: [] }; // granted: MQTT 5 only
    default:
      return { cmd: p.type };
  }
}

function fromReference(r: any): Packet {
  switch (r.cmd) {
    case 'connect': {
      // mqtt-packet accepts wills and MQTT 3.1; we refuse both. A marker that never equals one
      // of our packets keeps the comparison honest instead of throwing inside the parse.
      if (r.protocolId !== 'MQTT' || r.protocolVersion !== 4 || r.will !== undefined)
        return { type: 'unsupported-connect' } as unknown as Packet;
      const out: Packet = { type: 'connect', clientId: r.clientId, keepAlive: r.keepalive, clean: r.clean };
      if (r.username !== undefined) out.username = r.username;
      if (r.password !== undefined) out.password = Buffer.from(r.password).toString('utf8');
      return out;
    }
    case 'connack':
      return { type: 'connack', sessionPresent: r.sessionPresent, returnCode: r.returnCode };
    case 'publish': {
      const out: Packet = { type: 'publish', topic: r.topic, payload: new Uint8Array(r.payload), qos: r.qos, dup: r.dup, retain: r.retain };
      if (r.qos) out.messageId = r.messageId;
      return out;
    }
    case 'subscribe':
      return {
        type: 'subscribe',
        messageId: r.messageId,
        subscriptions: r.subscriptions.map((s: any) => ({ topic: s.topic, qos: s.qos })),
      };
    case 'suback':
      return { type: 'suback', messageId: r.messageId, granted: r.granted };
    case 'unsubscribe':
      return { type: 'unsubscribe', messageId: r.messageId, topics: r.unsubscriptions };
    case 'puback':
    case 'unsuback':
      return { type: r.cmd, messageId: r.messageId };
    default:
      return { type: r.cmd };
  }
}

/** Every packet mqtt-packet parses from `bytes`, and its error if it stopped on one. */
function referenceParse(bytes: Uint8Array): { packets: Packet[]; error?: Error } {
  const packets: Packet[] = [];
  let error: Error | undefined;
  const parser = mqtt.parser();
  parser.on('packet', (p) => packets.push(fromReference(p)));
  parser.on('error', (e) => (error = e));
  parser.parse(Buffer.from(bytes));
  return error ? { packets, error } : { packets };
}

const referenceGenerate = (p: Packet) => new Uint8Array(mqtt.generate(toReference(p)));

function decodeAll(bytes: Uint8Array, maxPacketSize?: number): Packet[] {
  return new PacketDecoder(maxPacketSize).push(bytes);
}

describe('differential against mqtt-packet', () => {
  it('our encoding parses in mqtt-packet to the same packet, byte for byte what mqtt-packet generates', () => {
    fc.assert(
      fc.property(packetArb, (packet) => {
        const ours = encodePacket(packet);
        const parsed = referenceParse(ours);
        expect(parsed.error).toBeUndefined();
        expect(parsed.packets).toEqual([packet]);
        expect(ours).toEqual(referenceGenerate(packet));
      }),
      { numRuns: 1200 },
    );
  });

  it("mqtt-packet's encoding decodes to the same packet, and ours round-trips", () => {
    fc.assert(
      fc.property(packetArb, (packet) => {
        expect(decodeAll(referenceGenerate(packet))).toEqual([packet]);
        expect(decodeAll(encodePacket(packet))).toEqual([packet]);
      }),
      { numRuns: 1200 },
    );
  });

  it('decodes the same sequence however the stream is split (partial and coalesced chunks)', () => {
    fc.assert(
      fc.property(fc.array(packetArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (packets, cuts) => {
        const stream = concat(packets.map(referenceGenerate));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const decoder = new PacketDecoder();
        const out: Packet[] = [];
        let from = 0;
        for (const to of [...points, stream.length]) {
          out.push(...decoder.push(stream.subarray(from, to)));
          from = to;
        }
        expect(out).toEqual(packets);
      }),
      { numRuns: 600 },
    );
  });

  it('is never laxer than mqtt-packet: on corrupted streams, whatever we accept it accepts identically', () => {
    const corrupted = fc
      .tuple(
        fc.array(packetArb, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 }),
      )
      .map(([packets, edits]) => {
        const bytes = [...concat(packets.map(encodePacket))];
        for (const [at, value, op] of edits) {
          const i = at % (bytes.length + 1);
          if (op === 'insert') bytes.splice(i, 0, value);
          else if (i < bytes.length) op === 'set' ? (bytes[i] = value) : bytes.splice(i, 1);
        }
        return Uint8Array.from(bytes);
      });
    fc.assert(
      fc.property(corrupted, (bytes) => {
        // One byte at a time: the packets completed before a rejection are still returned.
        const decoder = new PacketDecoder();
        const ours: Packet[] = [];
        try {
          for (let i = 0; i < bytes.length; i++) ours.push(...decoder.push(bytes.subarray(i, i + 1)));
        } catch (error) {
          expect(error).toBeInstanceOf(ProvisioningError);
          expect((error as ProvisioningError).kind).toBe('protocol');
        }
        expect(referenceParse(bytes).packets.slice(0, ours.length)).toEqual(ours);
      }),
      { numRuns: 1200 },
    );
  });

  it('handles a four-byte remaining length (a 2 MiB publish) like mqtt-packet', () => {
    const packet: Packet = { type: 'publish', topic: 'big', payload: new Uint8Array(2_100_000).fill(7), qos: 0, dup: false, retain: false };
    const bytes = encodePacket(packet);
    // remaining length 2 + 3 + 2_100_000 = 2_100_005 = 37 + 22·128 + 0·128² + 1·128³
    expect(bytes.subarray(1, 5)).toEqual(Uint8Array.of(0x80 | 37, 0x80 | 22, 0x80 | 0, 1));
    const same = (x: Uint8Array, y: Uint8Array) => Buffer.from(x).equals(Buffer.from(y)); // toEqual is slow on MiBs
    expect(same(bytes, referenceGenerate(packet))).toBe(true);
    const [decoded, ...more] = decodeAll(bytes, 3_000_000);
    expect(more).toEqual([]);
    expect({ ...decoded, payload: undefined }).toEqual({ ...packet, payload: undefined });
    expect(decoded?.type === 'publish' && same(decoded.payload, packet.payload)).toBe(true);
    expect(() => decodeAll(bytes)).toThrow(/exceeds the limit of 65536/);
  });
});

// ---- rejections ----

/** A packet with the given first byte and body, its remaining length computed (under 128). */
const frame = (first: number, ...body: number[]) => Uint8Array.of(first, body.length, ...body);
const utf8 = (s: string) => [...Buffer.from(s, 'utf8')];
const mqttString = (s: string | number[]) => {
  const bytes = typeof s === 'string' ? utf8(s) : s;
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
};

function rejects(bytes: Uint8Array, message: RegExp, maxPacketSize?: number): ProvisioningError {
  const decoder = new PacketDecoder(maxPacketSize);
  let error: unknown;
  try {
    decoder.push(bytes);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ProvisioningError);
  expect((error as ProvisioningError).kind).toBe('protocol');
  expect((error as Error).message).toMatch(message);
  // After a rejection the decoder refuses everything, even a valid packet.
  expect(() => decoder.push(frame(0xd0))).toThrow(/failed earlier/);
  return error as ProvisioningError;
}

const connectBody = (name = 'MQTT', level = 4, flags = 0x02, rest: number[] = mqttString('dev')) => [
  ...mqttString(name),
  level,
  flags,
  0,
  60,
  ...rest,
];

describe('PacketDecoder rejects', () => {
  it('a remaining length over the limit as soon as the length is known, before any body byte', () => {
    const decoder = new PacketDecoder(1000);
    expect(() => decoder.push(Uint8Array.of(0x30, 0xe6, 0x07))).toThrow(/PUBLISH packet of 1001 bytes exceeds the limit of 1000/); // 998 + 3
    expect(new PacketDecoder(1000).push(Uint8Array.of(0x30, 0xe5, 0x07))).toEqual([]); // 997 + 3: allowed, waits for the body
    rejects(Uint8Array.of(0x30, 0x80, 0x80, 0x04), /exceeds the limit of 65536/); // 65536 by default
  });

  it('a remaining length of more than four bytes', () => {
    rejects(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff), /more than 4 bytes/, 268_435_460);
    rejects(Uint8Array.of(0xd0, 0x80, 0x80, 0x80, 0x80, 0x00), /more than 4 bytes/);
  });

  it('reserved packet types and QoS 2 (unsupported: DPS never uses it)', () => {
    rejects(frame(0x00), /packet type 0/);
    rejects(frame(0xf0), /packet type 15/);
    for (const first of [0x50, 0x62, 0x70]) rejects(frame(first, 0, 1), /QoS 2 is not supported/);
    rejects(frame(0x34, ...mqttString('t'), 0, 1), /PUBLISH with QoS 2/);
    rejects(frame(0x36, ...mqttString('t'), 0, 1), /both QoS bits/);
    rejects(frame(0x82, 0, 1, ...mqttString('t'), 2), /SUBSCRIBE with QoS 2/);
    // Found by the corrupted-stream property: QoS 3 passed the bits 7-2 check and was accepted.
    rejects(frame(0x82, 0, 1, ...mqttString('t'), 3), /requested QoS 3 is reserved/);
  });

  it('wrong fixed-header flags for every type that has fixed flags, and DUP on QoS 0', () => {
    const valid: Record<number, number[]> = {
      1: connectBody(),
      2: [0, 0],
      4: [0, 1],
      8: [0, 1, ...mqttString('t'), 0],
      9: [0, 1, 0],
      10: [0, 1, ...mqttString('t')],
      11: [0, 1],
      12: [],
      13: [],
      14: [],
    };
    for (const [type, body] of Object.entries(valid).map(([t, b]) => [Number(t), b] as const)) {
      const good = type === 8 || type === 10 ? 2 : 0;
      expect(decodeAll(frame((type << 4) | good, ...body))).toHaveLength(1);
      for (const flags of [0, 1, 2, 4, 8, 15].filter((f) => f !== good)) {
        rejects(frame((type << 4) | flags, ...body), /fixed-header flags must be/);
      }
    }
    rejects(frame(0x38, ...mqttString('t')), /DUP must be 0 for QoS 0/);
  });

  it('a CONNECT with another protocol name or level, reserved or inconsistent flags, or a will', () => {
    rejects(frame(0x10, ...connectBody('MQIsdp', 3)), /protocol name must be "MQTT".*"MQIsdp"/);
    rejects(frame(0x10, ...connectBody('MQTX')), /protocol name/);
    rejects(frame(0x10, ...connectBody('MQTT', 5)), /protocol level 5/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x03)), /reserved connect flag/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x06)), /will message/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x22)), /will QoS and will retain/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x42, [...mqttString('dev'), ...mqttString('pw')])), /password requires a user name/);
  });

  it('invalid UTF-8 (overlong, surrogate, truncated) and U+0000 in strings', () => {
    rejects(frame(0x30, ...mqttString([0xc0, 0xaf]), 1), /PUBLISH.*topic name is not valid UTF-8/);
    rejects(frame(0x30, ...mqttString([0xed, 0xa0, 0x80]), 1), /not valid UTF-8/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x02, mqttString([0x64, 0xe2, 0x82]))), /client identifier is not valid UTF-8/);
    rejects(frame(0x82, 0, 1, ...mqttString([0x61, 0x00]), 0), /topic filter contains U\+0000/);
    rejects(
      frame(0x10, ...connectBody('MQTT', 4, 0xc2, [...mqttString('dev'), ...mqttString('u'), ...mqttString([0xff])])),
      /password is not valid UTF-8/,
    );
  });

  it('wildcards in a PUBLISH topic, an empty topic, and misplaced wildcards in filters', () => {
    rejects(frame(0x30, ...mqttString('a/+/b')), /"a\/\+\/b".*wildcards/);
    rejects(frame(0x30, ...mqttString('a/#')), /wildcards/);
    rejects(frame(0x30, ...mqttString('')), /non-empty/);
    rejects(frame(0x82, 0, 1, ...mqttString('a/#/b'), 0), /# must be the last level/);
    rejects(frame(0xa2, 0, 1, ...mqttString('a+')), /\+ must occupy a whole level/);
  });

  it('fields that run past the end of a complete packet (truncated fields)', () => {
    rejects(frame(0x30, 0, 10, 0x61, 0x62), /PUBLISH.*topic name runs past the end/);
    rejects(frame(0x32, ...mqttString('t'), 0), /PUBLISH.*runs past the end/); // half a message id
    rejects(frame(0x40, 1), /PUBACK.*runs past the end/);
    rejects(frame(0x20, 0), /CONNACK.*runs past the end/);
    rejects(frame(0x90, 0, 1), /SUBACK.*runs past the end/); // no return code
    rejects(frame(0x82, 0, 1, ...mqttString('t')), /SUBSCRIBE.*runs past the end/); // no QoS byte
    rejects(frame(0x82, 0, 1), /SUBSCRIBE.*runs past the end/); // no subscription at all
    rejects(frame(0xa2, 0, 1), /UNSUBSCRIBE.*runs past the end/);
    rejects(frame(0x10, ...connectBody('MQTT', 4, 0x82, [...mqttString('dev'), 0, 5, 0x75])), /CONNECT.*user name runs past the end/);
  });

  it('bytes left over after the last field', () => {
    rejects(frame(0x40, 0, 1, 0), /PUBACK.*1 byte\(s\) left over/);
    rejects(frame(0xb0, 0, 1, 0, 0), /UNSUBACK.*2 byte\(s\) left over/);
    rejects(frame(0x20, 0, 0, 0), /CONNACK.*left over/);
    rejects(frame(0xd0, 0), /PINGRESP.*left over/);
    rejects(frame(0x10, ...connectBody(), 0), /CONNECT.*left over/);
  });

  it('message identifier 0 wherever one is required', () => {
    rejects(frame(0x32, ...mqttString('t'), 0, 0), /PUBLISH.*identifier 0/);
    rejects(frame(0x40, 0, 0), /PUBACK.*identifier 0/);
    rejects(frame(0x82, 0, 0, ...mqttString('t'), 0), /SUBSCRIBE.*identifier 0/);
    rejects(frame(0x90, 0, 0, 0), /SUBACK.*identifier 0/);
    rejects(frame(0xa2, 0, 0, ...mqttString('t')), /UNSUBSCRIBE.*identifier 0/);
    rejects(frame(0xb0, 0, 0), /UNSUBACK.*identifier 0/);
  });

  it('invalid CONNACK flags and SUBACK / SUBSCRIBE codes', () => {
    rejects(frame(0x20, 2, 0), /acknowledge flags/);
    rejects(frame(0x20, 1, 5), /refused connection cannot have session present/);
    rejects(frame(0x90, 0, 1, 3), /invalid return code 3/);
    rejects(frame(0x82, 0, 1, ...mqttString('t'), 4), /requested QoS bits/);
  });
});

describe('encodePacket rejects bad arguments as invalid-input', () => {
  const invalid = (packet: Packet, message: RegExp) => {
    let error: unknown;
    try {
      encodePacket(packet);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as ProvisioningError).kind).toBe('invalid-input');
    expect((error as Error).message).toMatch(message);
    return error as Error;
  };
  const publish = (topic: string, extra: Partial<Extract<Packet, { type: 'publish' }>> = {}): Packet => ({
    type: 'publish',
    topic,
    payload: new Uint8Array(),
    qos: 0,
    dup: false,
    retain: false,
    ...extra,
  });

  it('topics and filters the spec forbids', () => {
    invalid(publish('a/#'), /Cannot publish to "a\/#".*wildcards/);
    invalid(publish(''), /non-empty/);
    invalid(publish('a\0b'), /U\+0000/);
    invalid(publish('x'.repeat(65_536)), /longer than 65535 bytes/);
    invalid({ type: 'subscribe', messageId: 1, subscriptions: [{ topic: '#/a', qos: 0 }] }, /Cannot subscribe to "#\/a"/);
    invalid({ type: 'subscribe', messageId: 1, subscriptions: [] }, /at least one topic filter/);
    invalid({ type: 'unsubscribe', messageId: 1, topics: ['a+'] }, /Cannot unsubscribe from "a\+"/);
  });

  it('message identifiers outside 1..65535, QoS 2, DUP on QoS 0, bad return codes', () => {
    invalid(publish('t', { qos: 1 }), /message identifier from 1 to 65535/);
    invalid(publish('t', { qos: 1, messageId: 0 }), /message identifier/);
    invalid({ type: 'puback', messageId: 65_536 }, /PUBACK needs a message identifier/);
    invalid({ type: 'unsuback', messageId: 1.5 }, /UNSUBACK/);
    invalid(publish('t', { qos: 2 as 1, messageId: 1 }), /QoS 2 is not supported/);
    invalid(publish('t', { dup: true }), /DUP must be false/);
    invalid({ type: 'suback', messageId: 1, granted: [3] }, /return code 3/);
    invalid({ type: 'connack', sessionPresent: true, returnCode: 5 }, /session present/);
  });

  it('a CONNECT with a password but no user name or a bad keep-alive, never quoting the password', () => {
    const password = 'SharedAccessSignature sr=scope&sig=SECRET&se=1&skn=registration';
    const error = invalid({ type: 'connect', clientId: 'dev', password, keepAlive: 60, clean: true }, /password requires a user name/);
    expect(error.message).not.toContain('SECRET');
    invalid({ type: 'connect', clientId: 'dev', keepAlive: 65_536, clean: true }, /keep-alive/);
    invalid({ type: 'connect', clientId: '', keepAlive: 0, clean: false }, /clean session/);
    const long = invalid(
      { type: 'connect', clientId: 'd', username: 'u', password: `${password}${'x'.repeat(65_536)}`, keepAlive: 0, clean: true },
      /password is longer/,
    );
    expect(long.message).not.toContain('SECRET');
  });

  it('an out-of-range maximum packet size', () => {
    expect(() => new PacketDecoder(1)).toThrow(/maximum MQTT packet size/);
    expect(() => new PacketDecoder(Number.NaN)).toThrow(ProvisioningError);
  });
});

// MQTT 3.1.1 (OASIS, 2014) packets: one encoder per packet type, and a decoder that takes the
// byte stream in any split. Only what DPS needs is representable: QoS 0 and 1, no will message.
// Encoding bad arguments is an `invalid-input` error; decoding bad bytes is a `protocol` error.
// Section numbers (§) refer to the MQTT 3.1.1 specification.
import { utf8Decode, utf8Encode } from '../bytes.js';
import { ProvisioningError } from '../errors.js';

export type Packet =
  | { type: 'connect'; clientId: string; username?: string; password?: string; keepAlive: number; clean: boolean }
  | { type: 'connack'; sessionPresent: boolean; returnCode: number }
  | { type: 'publish'; topic: string; payload: Uint8Array; qos: 0 | 1; dup: boolean; retain: boolean; messageId?: number }
  | { type: 'puback'; messageId: number }
  | { type: 'subscribe'; messageId: number; subscriptions: { topic: string; qos: 0 | 1 }[] }
  | { type: 'suback'; messageId: number; granted: number[] } // 0, 1, 2 or 0x80 (failure)
  | { type: 'unsubscribe'; messageId: number; topics: string[] }
  | { type: 'unsuback'; messageId: number }
  | { type: 'pingreq' }
  | { type: 'pingresp' }
  | { type: 'disconnect' };

type Of<T extends Packet['type']> = Extract<Packet, { type: T }>;

/** Default bound on a whole inbound packet (fixed header included); DPS replies are a few KiB. */
export const DEFAULT_MAX_PACKET_SIZE = 65_536;
const MAX_REMAINING_LENGTH = 268_435_455; // what four varint bytes hold (§2.2.3)
const NAMES = [
  'Reserved',
  'CONNECT',
  'CONNACK',
  'PUBLISH',
  'PUBACK',
  'PUBREC',
  'PUBREL',
  'PUBCOMP',
  'SUBSCRIBE',
  'SUBACK',
  'UNSUBSCRIBE',
  'UNSUBACK',
  'PINGREQ',
  'PINGRESP',
  'DISCONNECT',
  'Reserved',
];
const CONNECT = 1,
  CONNACK = 2,
  PUBLISH = 3,
  PUBACK = 4,
  PUBREC = 5,
  PUBREL = 6,
  PUBCOMP = 7;
const SUBSCRIBE = 8,
  SUBACK = 9,
  UNSUBSCRIBE = 10,
  UNSUBACK = 11,
  PINGREQ = 12,
  PINGRESP = 13;

// ---- Encoding ----

export function encodePacket(packet: Packet): Uint8Array {
  switch (packet.type) {
    case 'connect':
      return encodeConnect(packet);
    case 'connack':
      return encodeConnack(packet);
    case 'publish':
      return encodePublish(packet);
    case 'puback':
      return frame(PUBACK << 4, [u16(messageId(packet.messageId, 'PUBACK'))]);
    case 'subscribe':
      return encodeSubscribe(packet);
    case 'suback':
      return encodeSuback(packet);
    case 'unsubscribe':
      return encodeUnsubscribe(packet);
    case 'unsuback':
      return frame(UNSUBACK << 4, [u16(messageId(packet.messageId, 'UNSUBACK'))]);
    case 'pingreq':
      return Uint8Array.of(0xc0, 0);
    case 'pingresp':
      return Uint8Array.of(0xd0, 0);
    case 'disconnect':
      return Uint8Array.of(0xe0, 0);
    default:
      throw invalidInput(`Unknown MQTT packet type ${JSON.stringify((packet as { type: unknown }).type)}`);
  }
}

function encodeConnect(p: Of<'connect'>): Uint8Array {
  if (!isInteger(p.keepAlive, 0, 0xffff)) throw invalidInput('MQTT keep-alive must be an integer from 0 to 65535 seconds');
  if (p.clientId === '' && !p.clean) throw invalidInput('An empty MQTT client identifier requires a clean session (§3.1.3.1)');
  if (p.password !== undefined && p.username === undefined) throw invalidInput('An MQTT password requires a user name (§3.1.2.9)');
  const flags = (p.username !== undefined ? 0x80 : 0) | (p.password !== undefined ? 0x40 : 0) | (p.clean ? 0x02 : 0);
  // Protocol name "MQTT", level 4 (§3.1.2.1-2), connect flags, keep-alive.
  const parts = [Uint8Array.of(0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags), u16(p.keepAlive)];
  parts.push(...str(p.clientId, 'MQTT client identifier'));
  if (p.username !== undefined) parts.push(...str(p.username, 'MQTT user name'));
  if (p.password !== undefined) {
    const password = utf8Encode(p.password); // never quoted in a message: it is a secret
    if (password.length > 0xffff) throw invalidInput('The MQTT password is longer than 65535 bytes');
    parts.push(u16(password.length), password);
  }
  return frame(CONNECT << 4, parts);
}

function encodeConnack(p: Of<'connack'>): Uint8Array {
  if (!isInteger(p.returnCode, 0, 0xff)) throw invalidInput('A CONNACK return code must be a byte');
  if (p.sessionPresent && p.returnCode !== 0) throw invalidInput('A refused CONNACK cannot have session present (§3.2.2.2)');
  return frame(CONNACK << 4, [Uint8Array.of(p.sessionPresent ? 1 : 0, p.returnCode)]);
}

function encodePublish(p: Of<'publish'>): Uint8Array {
  const problem = topicProblem(p.topic, false);
  if (problem) throw invalidInput(`Cannot publish to ${quote(p.topic)}: ${problem}`);
  checkQos(p.qos);
  if (p.qos === 0 && p.dup) throw invalidInput('DUP must be false for a QoS 0 PUBLISH (§3.3.1.1)');
  const parts = str(p.topic, 'MQTT topic name');
  if (p.qos === 1) parts.push(u16(messageId(p.messageId, 'PUBLISH')));
  parts.push(p.payload);
  return frame((PUBLISH << 4) | (p.dup ? 8 : 0) | (p.qos << 1) | (p.retain ? 1 : 0), parts);
}

function encodeSubscribe(p: Of<'subscribe'>): Uint8Array {
  if (p.subscriptions.length === 0) throw invalidInput('A SUBSCRIBE needs at least one topic filter (§3.8.3)');
  const parts = [u16(messageId(p.messageId, 'SUBSCRIBE'))];
  for (const { topic, qos } of p.subscriptions) {
    parts.push(...filter(topic, 'subscribe to'), Uint8Array.of(checkQos(qos)));
  }
  return frame((SUBSCRIBE << 4) | 2, parts);
}

function encodeSuback(p: Of<'suback'>): Uint8Array {
  if (p.granted.length === 0) throw invalidInput('A SUBACK needs at least one return code (§3.9.3)');
  for (const code of p.granted) {
    if (code !== 0 && code !== 1 && code !== 2 && code !== 0x80) throw invalidInput(`Invalid SUBACK return code ${code}`);
  }
  return frame(SUBACK << 4, [u16(messageId(p.messageId, 'SUBACK')), Uint8Array.from(p.granted)]);
}

function encodeUnsubscribe(p: Of<'unsubscribe'>): Uint8Array {
  if (p.topics.length === 0) throw invalidInput('An UNSUBSCRIBE needs at least one topic filter (§3.10.3)');
  const parts = [u16(messageId(p.messageId, 'UNSUBSCRIBE'))];
  for (const topic of p.topics) parts.push(...filter(topic, 'unsubscribe from'));
  return frame((UNSUBSCRIBE << 4) | 2, parts);
}

/** The fixed header (type and flags, then the remaining length as a varint) followed by `parts`. */
function frame(first: number, parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  if (length > MAX_REMAINING_LENGTH) throw invalidInput(`An MQTT packet cannot carry ${length} bytes (at most ${MAX_REMAINING_LENGTH})`);
  const header = [first];
  for (let n = length; ; n = Math.floor(n / 0x80)) {
    header.push(n >= 0x80 ? (n % 0x80) | 0x80 : n);
    if (n < 0x80) break;
  }
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let o = header.length;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff);
}

function str(text: string, what: string): Uint8Array[] {
  const bytes = utf8Encode(text);
  if (bytes.length > 0xffff) throw invalidInput(`The ${what} is longer than 65535 bytes in UTF-8`);
  if (bytes.includes(0)) throw invalidInput(`The ${what} must not contain U+0000 (§1.5.3)`);
  return [u16(bytes.length), bytes];
}

function filter(topic: string, action: string): Uint8Array[] {
  const problem = topicProblem(topic, true);
  if (problem) throw invalidInput(`Cannot ${action} ${quote(topic)}: ${problem}`);
  return str(topic, 'MQTT topic filter');
}

function checkQos(qos: number): 0 | 1 {
  if (qos !== 0 && qos !== 1) throw invalidInput(`MQTT QoS ${qos} is not supported (only 0 and 1)`);
  return qos;
}

function messageId(id: number | undefined, packet: string): number {
  if (!isInteger(id, 1, 0xffff)) throw invalidInput(`A ${packet} needs a message identifier from 1 to 65535`);
  return id;
}

function isInteger(n: unknown, min: number, max: number): n is number {
  return Number.isInteger(n) && (n as number) >= min && (n as number) <= max;
}

/** Why `topic` is not a valid topic name (or, when `isFilter`, topic filter); undefined when it is. */
function topicProblem(topic: string, isFilter: boolean): string | undefined {
  if (typeof topic !== 'string' || topic.length === 0) return 'a topic must be a non-empty string (§4.7.3)';
  if (!isFilter) return /[+#]/.test(topic) ? 'a topic name must not contain the wildcards + or # (§4.7.1)' : undefined;
  const levels = topic.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '# must be the last level on its own (§4.7.1.2)';
    if (level.includes('+') && level !== '+') return '+ must occupy a whole level (§4.7.1.3)';
  }
  return undefined;
}

function quote(topic: string): string {
  const text = JSON.stringify(topic);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function invalidInput(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

// ---- Decoding ----

export class PacketDecoder {
  readonly #maxPacketSize: number;
  #first = -1; // the fixed header's first byte; -1 between packets
  #length = 0; // the remaining length, as far as its varint has arrived
  #lengthBytes = 0;
  #body: Uint8Array | undefined; // allocated once the remaining length is complete and allowed
  #filled = 0;
  #failed = false;

  /** `maxPacketSize` bounds a whole packet, fixed header included; a larger one is refused before its body arrives. */
  constructor(maxPacketSize = DEFAULT_MAX_PACKET_SIZE) {
    if (!isInteger(maxPacketSize, 2, MAX_REMAINING_LENGTH + 5)) {
      throw invalidInput(`The maximum MQTT packet size must be an integer from 2 to ${MAX_REMAINING_LENGTH + 5}`);
    }
    this.#maxPacketSize = maxPacketSize;
  }

  /**
   * Feed bytes; returns every packet completed by them. Throws ProvisioningError('protocol').
   * After a throw the decoder is unusable (the connection must be closed).
   */
  push(chunk: Uint8Array): Packet[] {
    if (this.#failed) throw protocol('The MQTT decoder failed earlier; the connection must be closed');
    const packets: Packet[] = [];
    try {
      for (let i = 0; i < chunk.length; ) {
        if (this.#first < 0) {
          this.#first = checkFixedHeader(chunk[i++]!);
          continue;
        }
        if (this.#body === undefined) {
          const digit = chunk[i++]!;
          this.#length += (digit & 0x7f) * 0x80 ** this.#lengthBytes++;
          if (digit & 0x80) {
            if (this.#lengthBytes === 4) {
              throw protocol('Malformed MQTT packet: the remaining length takes more than 4 bytes (§2.2.3)');
            }
            continue;
          }
          const size = 1 + this.#lengthBytes + this.#length;
          if (size > this.#maxPacketSize) {
            const name = NAMES[this.#first >> 4];
            throw protocol(`MQTT ${name} packet of ${size} bytes exceeds the limit of ${this.#maxPacketSize} bytes`);
          }
          this.#body = new Uint8Array(this.#length);
        } else {
          const n = Math.min(this.#length - this.#filled, chunk.length - i);
          this.#body.set(chunk.subarray(i, i + n), this.#filled);
          this.#filled += n;
          i += n;
        }
        if (this.#filled === this.#length) {
          packets.push(decodeBody(this.#first, this.#body));
          this.#first = -1;
          this.#length = this.#lengthBytes = this.#filled = 0;
          this.#body = undefined;
        }
      }
    } catch (error) {
      this.#failed = true;
      throw error;
    }
    return packets;
  }
}

/** Checks a packet's first byte as soon as it arrives (§2.2): a bad packet is refused before its body. */
function checkFixedHeader(first: number): number {
  const type = first >> 4;
  const flags = first & 0x0f;
  if (type === 0 || type === 15) throw protocol(`Invalid MQTT packet type ${type} (reserved in MQTT 3.1.1)`);
  if (type === PUBREC || type === PUBREL || type === PUBCOMP) {
    throw protocol(`Unsupported MQTT ${NAMES[type]} packet: QoS 2 is not supported (DPS never uses it)`);
  }
  if (type !== PUBLISH) {
    const expected = type === SUBSCRIBE || type === UNSUBSCRIBE ? 2 : 0;
    if (flags !== expected) throw malformed(type, `the fixed-header flags must be ${expected}, not ${flags} (§2.2.2)`);
  } else if ((flags & 6) === 6) throw malformed(type, 'both QoS bits are set (§3.3.1.2)');
  else if ((flags & 6) === 4) throw protocol('Unsupported MQTT PUBLISH with QoS 2 (DPS never uses it)');
  else if (flags === 8 || flags === 9) throw malformed(type, 'DUP must be 0 for QoS 0 (§3.3.1.1)');
  return first;
}

function decodeBody(first: number, body: Uint8Array): Packet {
  const type = first >> 4;
  const r = new Reader(body, type);
  let packet: Packet;
  switch (type) {
    case CONNECT:
      packet = decodeConnect(r);
      break;
    case CONNACK: {
      const flags = r.u8();
      const returnCode = r.u8();
      if (flags & 0xfe) throw malformed(type, 'acknowledge flags bits 7-1 must be 0 (§3.2.2.1)');
      if (flags && returnCode !== 0) throw malformed(type, 'a refused connection cannot have session present (§3.2.2.2)');
      packet = { type: 'connack', sessionPresent: flags === 1, returnCode };
      break;
    }
    case PUBLISH: {
      const topic = r.str('topic name');
      const problem = topicProblem(topic, false);
      if (problem) throw malformed(type, `topic ${quote(topic)}: ${problem}`);
      const [qos, dup, retain] = [((first >> 1) & 1) as 0 | 1, (first & 8) !== 0, (first & 1) !== 0];
      if (qos === 0) return { type: 'publish', topic, payload: r.rest(), qos, dup, retain };
      const messageId = r.id();
      return { type: 'publish', topic, payload: r.rest(), qos, dup, retain, messageId };
    }
    case PUBACK:
      packet = { type: 'puback', messageId: r.id() };
      break;
    case SUBSCRIBE: {
      const messageId = r.id();
      const subscriptions: { topic: string; qos: 0 | 1 }[] = [];
      do {
        const topic = r.filter();
        const qos = r.u8();
        if (qos & 0xfc) throw malformed(type, 'requested QoS bits 7-2 must be 0 (§3.8.3.1)');
        if (qos === 3) throw malformed(type, 'requested QoS 3 is reserved (§3.8.3.1)');
        if (qos === 2) throw protocol('Unsupported MQTT SUBSCRIBE with QoS 2 (DPS never uses it)');
        subscriptions.push({ topic, qos: qos as 0 | 1 });
      } while (r.more());
      packet = { type: 'subscribe', messageId, subscriptions };
      break;
    }
    case SUBACK: {
      const messageId = r.id();
      const granted: number[] = [];
      do {
        const code = r.u8();
        if (code > 2 && code !== 0x80) throw malformed(type, `invalid return code ${code} (§3.9.3)`);
        granted.push(code);
      } while (r.more());
      packet = { type: 'suback', messageId, granted };
      break;
    }
    case UNSUBSCRIBE: {
      const messageId = r.id();
      const topics: string[] = [];
      do topics.push(r.filter());
      while (r.more());
      packet = { type: 'unsubscribe', messageId, topics };
      break;
    }
    case UNSUBACK:
      packet = { type: 'unsuback', messageId: r.id() };
      break;
    case PINGREQ:
      packet = { type: 'pingreq' };
      break;
    case PINGRESP:
      packet = { type: 'pingresp' };
      break;
    default:
      packet = { type: 'disconnect' }; // checkFixedHeader let no other type through
  }
  r.end();
  return packet;
}

function decodeConnect(r: Reader): Packet {
  const name = r.str('protocol name');
  if (name !== 'MQTT') throw malformed(CONNECT, `the protocol name must be "MQTT" (MQTT 3.1.1), not ${quote(name)}`);
  const level = r.u8();
  if (level !== 4) throw protocol(`Unsupported MQTT protocol level ${level} in CONNECT: only 4 (MQTT 3.1.1) is supported`);
  const flags = r.u8();
  if (flags & 0x01) throw malformed(CONNECT, 'the reserved connect flag must be 0 (§3.1.2.3)');
  if (flags & 0x04) throw protocol('Unsupported MQTT CONNECT with a will message');
  if (flags & 0x38) throw malformed(CONNECT, 'will QoS and will retain must be 0 without a will (§3.1.2.6)');
  if ((flags & 0xc0) === 0x40) throw malformed(CONNECT, 'a password requires a user name (§3.1.2.9)');
  const keepAlive = r.u16();
  const packet: Of<'connect'> = { type: 'connect', clientId: r.str('client identifier'), keepAlive, clean: (flags & 2) !== 0 };
  if (flags & 0x80) packet.username = r.str('user name');
  if (flags & 0x40) packet.password = r.str('password', true);
  return packet;
}

/** Reads the fields of one complete packet body; a field running past its end is a protocol error. */
class Reader {
  #pos = 0;
  constructor(
    readonly bytes: Uint8Array,
    readonly type: number,
  ) {}
  u8(): number {
    if (this.#pos >= this.bytes.length) throw malformed(this.type, 'a field runs past the end of the packet (§2.2.3)');
    return this.bytes[this.#pos++]!;
  }
  u16 = (): number => (this.u8() << 8) | this.u8();
  more = (): boolean => this.#pos < this.bytes.length;
  id(): number {
    const id = this.u16();
    if (id === 0) throw malformed(this.type, 'message identifier 0 is not allowed (§2.3.1)');
    return id;
  }
  /** A length-prefixed UTF-8 string. A `binary` field (the password) may contain U+0000. */
  str(what: string, binary = false): string {
    const end = this.u16() + this.#pos;
    if (end > this.bytes.length) throw malformed(this.type, `the ${what} runs past the end of the packet (§2.2.3)`);
    let text: string;
    try {
      text = utf8Decode(this.bytes, this.#pos, end);
    } catch {
      throw malformed(this.type, `the ${what} is not valid UTF-8 (§1.5.3)`);
    }
    this.#pos = end;
    if (!binary && text.includes('\0')) throw malformed(this.type, `the ${what} contains U+0000 (§1.5.3)`);
    return text;
  }
  filter(): string {
    const topic = this.str('topic filter');
    const problem = topicProblem(topic, true);
    if (problem) throw malformed(this.type, `topic filter ${quote(topic)}: ${problem}`);
    return topic;
  }
  rest(): Uint8Array {
    const rest = this.bytes.subarray(this.#pos);
    this.#pos = this.bytes.length;
    return rest;
  }
  end(): void {
    const extra = this.bytes.length - this.#pos;
    if (extra) throw malformed(this.type, `${extra} byte(s) left over after the last field (§2.2.3)`);
  }
}

function malformed(type: number, detail: string): ProvisioningError {
  return protocol(`Malformed MQTT ${NAMES[type]} packet: ${detail}`);
}

function protocol(message: string): ProvisioningError {
  return new ProvisioningError('protocol', message);
}

// MQTT 3.1.1 codec: every packet type encoded, decoded whole, byte by byte and coalesced; bad
// input refused with the same error on every engine.
import { encodePacket, type Packet, PacketDecoder } from '../../../src/mqtt/codec.js';
import { attempt, fromHex, hex } from './util.js';

const te = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i); // ASCII only
  return out;
};

export function samplePackets(): Packet[] {
  return [
    {
      type: 'connect',
      clientId: 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6',
      username: '0ne0012ABCD/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6/api-version=2019-03-31&ClientVersion=moddable-dps%2F0.1.0',
      password: 'SharedAccessSignature sr=0ne0012ABCD%2Fregistrations%2Fsn-007&sig=abc%3D&se=1795395600&skn=registration',
      keepAlive: 240,
      clean: true,
    },
    { type: 'connect', clientId: '', keepAlive: 0, clean: true },
    { type: 'connack', sessionPresent: false, returnCode: 0 },
    { type: 'connack', sessionPresent: false, returnCode: 5 },
    {
      type: 'publish',
      topic: '$dps/registrations/PUT/iotdps-register/?$rid=1',
      payload: te('{"registrationId":"sn-007"}'),
      qos: 1,
      dup: false,
      retain: false,
      messageId: 1,
    },
    {
      type: 'publish',
      topic: '$dps/registrations/res/202/?$rid=1&retry-after=3',
      payload: te('{"operationId":"4.abc","status":"assigning"}'),
      qos: 0,
      dup: false,
      retain: false,
    },
    { type: 'publish', topic: 'a/ü/😀', payload: new Uint8Array(200).fill(7), qos: 1, dup: true, retain: true, messageId: 65535 },
    { type: 'puback', messageId: 1 },
    {
      type: 'subscribe',
      messageId: 2,
      subscriptions: [
        { topic: '$dps/registrations/res/#', qos: 1 },
        { topic: 'a/+/b', qos: 0 },
      ],
    },
    { type: 'suback', messageId: 2, granted: [1, 0x80] },
    { type: 'unsubscribe', messageId: 3, topics: ['$dps/registrations/res/#'] },
    { type: 'unsuback', messageId: 3 },
    { type: 'pingreq' },
    { type: 'pingresp' },
    { type: 'disconnect' },
  ];
}

/** A packet as JSON (payload as hex). */
export function packetJson(packet: Packet): Record<string, unknown> {
  return packet.type === 'publish' ? { ...packet, payload: hex(packet.payload) } : { ...packet };
}

export function codec() {
  const packets = samplePackets();
  const encoded = packets.map((p) => hex(encodePacket(p)));

  const whole = encoded.map((h) => new PacketDecoder().push(fromHex(h)).map(packetJson));

  const stream = fromHex(encoded.join(''));
  const byteByByte: Record<string, unknown>[] = [];
  const bytewise = new PacketDecoder();
  for (let i = 0; i < stream.length; i++) byteByByte.push(...bytewise.push(stream.subarray(i, i + 1)).map(packetJson));
  const coalesced = new PacketDecoder().push(stream).map(packetJson);
  // Uneven splits: 1, 2, 3, ... bytes at a time.
  const uneven: Record<string, unknown>[] = [];
  const unevenDecoder = new PacketDecoder();
  for (let i = 0, n = 1; i < stream.length; i += n, n = (n % 13) + 1)
    uneven.push(...unevenDecoder.push(stream.subarray(i, i + n)).map(packetJson));

  const malformed = [
    '00', // reserved type 0
    'f000', // reserved type 15
    '5000', // PUBREC (QoS 2)
    '2003000000', // CONNACK flags
    '3600', // PUBLISH with both QoS bits
    '30ffffffff01', // remaining length over 4 bytes
    '9003000200', // SUBACK with a bad return code... 0x00 ok, short
    '90030002ff', // SUBACK return code 0xff
    '3005000361c300', // PUBLISH topic "a\xc3" not UTF-8
    '300400012b00', // PUBLISH topic "+"
    '4002000000', // PUBACK with an extra byte
    '40020000', // PUBACK message id 0
    '82050001000123', // SUBSCRIBE topic runs past the end
  ].map((h) => attempt(() => new PacketDecoder().push(fromHex(h)).map(packetJson)));
  const tooBig = attempt(() => new PacketDecoder(64).push(fromHex('308001')).map(packetJson));
  const badEncodes = [
    attempt(() => encodePacket({ type: 'publish', topic: 'a/#', payload: new Uint8Array(0), qos: 0, dup: false, retain: false })),
    attempt(() => encodePacket({ type: 'subscribe', messageId: 0, subscriptions: [{ topic: 'a', qos: 0 }] })),
    attempt(() => encodePacket({ type: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/b#', qos: 0 }] })),
    attempt(() => encodePacket({ type: 'connect', clientId: '', keepAlive: 0, clean: false })),
    attempt(() => encodePacket({ type: 'connect', clientId: 'a\u0000', keepAlive: 0, clean: true })),
    attempt(() =>
      encodePacket({ type: 'publish', topic: 't', payload: new Uint8Array(0), qos: 2 as 1, dup: false, retain: false, messageId: 1 }),
    ),
  ];
  return { encoded, whole, byteByByte, coalesced, uneven, malformed, tooBig, badEncodes };
}

// The core's WebSocket pieces (src/ws/frames.ts) against RFC 6455's own examples and against
// the `ws` package (npm), an independent implementation: its Sender builds the server frames our
// decoder must read in any split, and its Receiver reads the client frames we build.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as wsModule from 'ws';
import {
  acceptFor,
  checkUpgradeResponse,
  closePayload,
  encodeFrame,
  encodeUpgradeRequest,
  FrameDecoder,
  type FrameEvent,
  Opcode,
  parseResponseHead,
} from '../src/ws/frames.js';
import { errorOf } from './support/errors.js';

// ws's frame codec, which its typings leave out.
const { Sender, Receiver } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean }): Buffer[] };
  Receiver: new (options: { isServer: boolean; maxPayload: number }) => import('node:stream').Writable;
};

const bytes = (...values: number[]) => Uint8Array.from(values);
const ascii = (text: string) => Uint8Array.from(Buffer.from(text, 'latin1'));

/** A server frame as `ws` builds it (unmasked). */
function serverFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const parts = Sender.frame(Buffer.from(payload), { fin, opcode, mask: false, readOnly: false, rsv1: false });
  return new Uint8Array(Buffer.concat(parts));
}

function decodeAll(chunks: Uint8Array[]): FrameEvent[] {
  const decoder = new FrameDecoder();
  return chunks.flatMap((chunk) => decoder.feed(chunk));
}

describe('RFC 6455 known answers', () => {
  it('§1.3: the key dGhlIHNhbXBsZSBub25jZQ== is accepted as s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', () => {
    expect(acceptFor('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('§5.7: "Hello" masked with 37 fa 21 3d', () => {
    expect(encodeFrame(Opcode.text, ascii('Hello'), bytes(0x37, 0xfa, 0x21, 0x3d))).toEqual(
      bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58),
    );
  });

  it('§5.7: an unmasked ping, and binary messages of 256 bytes and of 64 KiB (16- and 64-bit lengths)', () => {
    expect(decodeAll([bytes(0x89, 0x05, ...ascii('Hello'))])).toEqual([{ type: 'ping', payload: ascii('Hello') }]);
    const small = new Uint8Array(256).map((_, i) => i);
    const events = decodeAll([bytes(0x82, 0x7e, 0x01, 0x00, ...small)]);
    expect(Buffer.concat(events.map((e) => (e.type === 'data' ? e.bytes : new Uint8Array())))).toEqual(Buffer.from(small));
    const big = new Uint8Array(65536).fill(7);
    const header = bytes(0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0);
    const joined = new Uint8Array(header.length + big.length);
    joined.set(header);
    joined.set(big, header.length);
    const got = decodeAll([joined]);
    expect(got.reduce((n, e) => n + (e.type === 'data' ? e.bytes.length : 0), 0)).toBe(65536);
  });

  it('§5.7: a text message, single or fragmented, is refused: MQTT over WebSockets is binary only', () => {
    expect(errorOf(() => decodeAll([bytes(0x81, 0x05, ...ascii('Hello'))]))).toMatchObject({ kind: 'protocol' });
    expect(errorOf(() => decodeAll([bytes(0x01, 0x03, ...ascii('Hel'))]))).toMatchObject({ kind: 'protocol' });
  });
});

describe('FrameDecoder: what ws sends, in any split', () => {
  const message = fc.record({
    kind: fc.constantFrom('binary', 'ping', 'pong'),
    payload: fc.uint8Array({ maxLength: 300 }),
    fragments: fc.integer({ min: 1, max: 4 }),
  });

  it('binary messages (fragmented or not) come out as their bytes, pings with their payload, in order', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1 }), (messages, cuts) => {
        const frames: Uint8Array[] = [];
        let expectedData: number[] = [];
        const expected: FrameEvent[] = [];
        for (const m of messages) {
          if (m.kind !== 'binary') {
            const payload = m.payload.subarray(0, 125);
            frames.push(serverFrame(m.kind === 'ping' ? Opcode.ping : Opcode.pong, payload));
            expected.push(m.kind === 'ping' ? { type: 'ping', payload } : { type: 'pong' });
            continue;
          }
          const size = Math.ceil(m.payload.length / m.fragments) || 1;
          for (let at = 0, first = true; first || at < m.payload.length; at += size, first = false) {
            const last = at + size >= m.payload.length;
            frames.push(serverFrame(first ? Opcode.binary : Opcode.continuation, m.payload.subarray(at, at + size), last));
          }
          expectedData = [...expectedData, ...m.payload];
        }
        const stream = Buffer.concat(frames);
        const chunks: Uint8Array[] = [];
        for (let at = 0, i = 0; at < stream.length; i++) {
          const size = cuts[i % cuts.length]!;
          chunks.push(new Uint8Array(stream.subarray(at, at + size)));
          at += size;
        }
        const events = decodeAll(chunks);
        const data = events.flatMap((e) => (e.type === 'data' ? [...e.bytes] : []));
        expect(data).toEqual(expectedData);
        expect(events.filter((e) => e.type !== 'data')).toEqual(expected);
      }),
    );
  });

  it('a close frame: its code and reason, 1005 when it has none; nothing after it is read', () => {
    expect(decodeAll([serverFrame(Opcode.close, closePayload(1001, 'going away')), serverFrame(Opcode.binary, bytes(1))])).toEqual([
      { type: 'close', code: 1001, reason: 'going away' },
    ]);
    expect(decodeAll([serverFrame(Opcode.close, new Uint8Array())])).toEqual([{ type: 'close', code: 1005, reason: '' }]);
  });

  it('refuses what a server must not send', () => {
    const refusals: [string, Uint8Array][] = [
      ['a masked frame', bytes(0x82, 0x81, 1, 2, 3, 4, 5)],
      ['reserved bits', bytes(0xc2, 0x00)],
      ['an unknown opcode', bytes(0x83, 0x00)],
      ['a control frame over 125 bytes', bytes(0x89, 0x7e, 0x00, 0x7e)],
      ['a fragmented ping', bytes(0x09, 0x00)],
      ['a continuation with nothing to continue', bytes(0x80, 0x01, 9)],
      ['a message inside another', bytes(0x02, 0x01, 9, 0x82, 0x01, 9)],
      ['a length past 2^53', bytes(0x82, 0x7f, 0x00, 0x20, 0, 0, 0, 0, 0, 0)],
      ['a close frame of one byte', bytes(0x88, 0x01, 3)],
      ['a close reason that is not UTF-8', bytes(0x88, 0x03, 0x03, 0xe8, 0xff)],
    ];
    for (const [what, frame] of refusals) {
      expect(
        errorOf(() => decodeAll([frame])),
        what,
      ).toMatchObject({ kind: 'protocol' });
    }
  });
});

describe('encodeFrame: what ws reads back', () => {
  it('client frames of any size (7-, 16- and 64-bit lengths) and mask unmask to their payload', async () => {
    for (const size of [0, 1, 125, 126, 65535, 65536, 300_000]) {
      const payload = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
      const mask = bytes(0xde, 0xad, 0xbe, 0xef);
      const received = await new Promise<Buffer>((resolve, reject) => {
        const receiver = new Receiver({ isServer: true, maxPayload: 0 });
        receiver.on('message', (data: Buffer) => resolve(data));
        receiver.on('error', reject);
        receiver.write(Buffer.from(encodeFrame(Opcode.binary, payload, mask)));
      });
      expect(new Uint8Array(received), `${size} bytes`).toEqual(payload);
    }
  });
});

describe('the opening handshake', () => {
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const answer = (extra: string, status = '101 Switching Protocols') =>
    ascii(`HTTP/1.1 ${status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extra}\r\n`);

  it('the request: GET with the Upgrade headers, the key, version 13 and the subprotocol; no header injection', () => {
    const text = Buffer.from(
      encodeUpgradeRequest({ host: 'hub.azure-devices.net', path: '/$iothub/websocket', key, protocol: 'mqtt' }),
    ).toString();
    expect(text).toBe(
      'GET /$iothub/websocket HTTP/1.1\r\nHost: hub.azure-devices.net\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`,
    );
    expect(errorOf(() => encodeUpgradeRequest({ host: 'a\r\nX-Evil: 1', path: '/', key, protocol: 'mqtt' }))).toMatchObject({
      kind: 'invalid-input',
    });
  });

  it('the answer is read once whole, with the bytes after it kept; a head over the limit or not HTTP/1.1 is refused', () => {
    const whole = answer(`Sec-WebSocket-Accept: ${acceptFor(key)}\r\nSec-WebSocket-Protocol: mqtt\r\n`);
    for (let cut = 0; cut < whole.length; cut++) expect(parseResponseHead(whole.subarray(0, cut), 8192)).toBeUndefined();
    const withFrame = new Uint8Array([...whole, 0x82, 0x00]);
    const head = parseResponseHead(withFrame, 8192)!;
    expect(head.status).toBe(101);
    expect(head.rest).toEqual(bytes(0x82, 0x00));
    expect(() => checkUpgradeResponse(head, key, 'mqtt', 'wss://x:443')).not.toThrow();
    expect(errorOf(() => parseResponseHead(new Uint8Array(9000).fill(65), 8192))).toMatchObject({ kind: 'protocol' });
    expect(errorOf(() => parseResponseHead(ascii('SSH-2.0-OpenSSH\r\n\r\n'), 8192))).toMatchObject({ kind: 'protocol' });
  });

  it('refuses a wrong accept, a missing subprotocol, extensions; a status other than 101 by its kind', () => {
    const check = (text: Uint8Array) => errorOf(() => checkUpgradeResponse(parseResponseHead(text, 8192)!, key, 'mqtt', 'wss://x:443'));
    expect(check(answer('Sec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: mqtt\r\n'))).toMatchObject({ kind: 'protocol' });
    expect(check(answer(`Sec-WebSocket-Accept: ${acceptFor(key)}\r\n`))).toMatchObject({ kind: 'protocol' });
    expect(
      check(
        answer(
          `Sec-WebSocket-Accept: ${acceptFor(key)}\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions: permessage-deflate\r\n`,
        ),
      ),
    ).toMatchObject({ kind: 'protocol' });
    expect(check(ascii('HTTP/1.1 404 Not Found\r\n\r\n'))).toMatchObject({ kind: 'failed', status: 404 });
    expect(check(ascii('HTTP/1.1 429 Too Many Requests\r\n\r\n'))).toMatchObject({ kind: 'throttled' });
    expect(check(ascii('HTTP/1.1 503 Service Unavailable\r\n\r\n'))).toMatchObject({ kind: 'server' });
  });
});

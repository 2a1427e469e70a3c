// MQTT over WebSockets (src/ws/): RFC 6455's known answers, server frames read whole and byte by
// byte, refusals, and the client's whole opening handshake and traffic over a scripted server.
import { utf8Decode, utf8Encode } from '../../../src/bytes.js';
import type { Connect } from '../../../src/ports.js';
import { webSocketConnect } from '../../../src/ws/client.js';
import { acceptFor, encodeFrame, FrameDecoder, type FrameEvent, Opcode } from '../../../src/ws/frames.js';
import { attempt, attemptAsync, fromHex, hex, seededRandom } from './util.js';

/** Server frames: a binary message in two fragments, a ping "Hello", a pong, a close 1000 "bye". */
const SERVER_STREAM = '0203010203' + '80020405' + '890548656c6c6f' + '8a00' + '880503e8627965';

const describeEvents = (events: FrameEvent[]) =>
  events.map((e) => (e.type === 'data' || e.type === 'ping' ? { type: e.type, hex: hex(e.type === 'data' ? e.bytes : e.payload) } : e));

export function websocket() {
  const bytes = fromHex(SERVER_STREAM);
  const whole = describeEvents(new FrameDecoder().feed(bytes));
  const decoder = new FrameDecoder();
  const byteByByte = describeEvents(Array.from(bytes, (_, i) => decoder.feed(bytes.subarray(i, i + 1))).flat());
  return {
    accept: acceptFor('dGhlIHNhbXBsZSBub25jZQ=='),
    maskedHello: hex(encodeFrame(Opcode.text, utf8Encode('Hello'), fromHex('37fa213d'))),
    long: hex(encodeFrame(Opcode.binary, new Uint8Array(70000), fromHex('01020304')).subarray(0, 14)),
    whole,
    byteByByte,
    refusals: ['8185374a2131', '810548656c6c6f', 'c200', '0900', '8001ff', '827f0020000000000000'].map((frame) =>
      attempt(() => new FrameDecoder().feed(fromHex(frame))),
    ),
  };
}

/** The client over a scripted server: the upgrade answered, a binary frame and a ping sent, an MQTT write framed. */
export async function websocketClient() {
  const written: string[] = [];
  let toClient: ((data: Uint8Array) => void) | undefined;
  const scripted: Connect = async (_endpoint, handlers) => {
    toClient = handlers.onData;
    return {
      write(data) {
        if (data[0] === 0x47 && data[1] === 0x45 && data[2] === 0x54) {
          // "GET": the opening handshake
          const request = utf8Decode(data);
          const key = /Sec-WebSocket-Key: (\S+)/.exec(request)![1]!;
          written.push(request.replace(key, '<key>'));
          const answer = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`;
          Promise.resolve().then(() => toClient!(utf8Encode(answer)));
        } else written.push(hex(data));
      },
      close() {
        written.push('closed');
      },
    };
  };
  const random = seededRandom(6455);
  const received: string[] = [];
  const outcome = await attemptAsync(async () => {
    const connection = await webSocketConnect(scripted, { random, hostName: 'hub.azure-devices.net' })(
      { host: '127.0.0.1', port: 443 },
      { onData: (data) => received.push(hex(data)), onClose: (error) => received.push(`close ${error?.message ?? ''}`) },
    );
    toClient!(fromHex('8203e00000890170'));
    connection.write(fromHex('c000'));
    connection.write(fromHex('e000'));
    await Promise.resolve();
    await Promise.resolve();
    connection.close();
    return true;
  });
  return { outcome, written, received };
}

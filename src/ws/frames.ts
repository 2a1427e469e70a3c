// The WebSocket protocol's pieces for a client (RFC 6455), pure: the opening handshake built and
// its answer checked, client frames built, server frames parsed from any split of the stream.
// client.ts drives them over a Connection. Only what MQTT over WebSockets needs (MQTT 3.1.1 §6):
// binary messages, no extensions; the MQTT bytes need not align with frames either way.
import { sha1 } from '@noble/hashes/legacy.js';
import { base64Encode, utf8Decode, utf8Encode } from '../bytes.js';
import { ProvisioningError } from '../errors.js';
import { printable } from '../text.js';

/** RFC 6455 §1.3: appended to the client's key, hashed, to prove the server read the request. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Opcodes (§5.2). */
export const Opcode = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key (§4.2.2 step 5.4). */
export function acceptFor(key: string): string {
  return base64Encode(sha1(utf8Encode(key + ACCEPT_GUID)));
}

export interface UpgradeRequest {
  /** The Host header: the server's name (and port when not the scheme's). */
  host: string;
  /** The request target, e.g. `/$iothub/websocket`. */
  path: string;
  /** Base64 of 16 random bytes (§4.1). */
  key: string;
  /** The subprotocol asked for (MQTT: `mqtt`). */
  protocol: string;
}

/** The opening handshake's request (§4.1). */
export function encodeUpgradeRequest(request: UpgradeRequest): Uint8Array {
  for (const [name, value] of Object.entries(request)) {
    // No CR, LF or other controls: a header value must not start another header or line.
    if (value === '' || /[\u0000-\u0020\u007f]/.test(value)) {
      throw new ProvisioningError('invalid-input', `The WebSocket ${name} ${JSON.stringify(printable(value))} is not valid in a request`);
    }
  }
  return utf8Encode(
    `GET ${request.path} HTTP/1.1\r\nHost: ${request.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${request.key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${request.protocol}\r\n\r\n`,
  );
}

export interface ResponseHead {
  status: number;
  reason: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Map<string, string>;
  /** Bytes of `bytes` after the head: the first frames, if the server sent them at once. */
  rest: Uint8Array;
}

/**
 * The HTTP response head at the start of `bytes`, once its blank line has arrived; undefined
 * before. A head over `maxBytes` or not HTTP/1.1 is a `protocol` error.
 */
export function parseResponseHead(bytes: Uint8Array, maxBytes: number): ResponseHead | undefined {
  let end = -1;
  for (let i = 3; i < bytes.length && i < maxBytes; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) {
      end = i + 1;
      break;
    }
  }
  if (end < 0) {
    if (bytes.length >= maxBytes) throw protocol(`The WebSocket upgrade answer's header is over ${maxBytes} bytes`);
    return undefined;
  }
  let text: string;
  try {
    text = utf8Decode(bytes, 0, end - 4);
  } catch {
    throw protocol("The WebSocket upgrade answer's header is not text");
  }
  const [statusLine = '', ...lines] = text.split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!status) throw protocol(`The answer to the WebSocket upgrade is not HTTP/1.1: ${JSON.stringify(printable(statusLine.slice(0, 60)))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw protocol(`The WebSocket upgrade answer has a malformed header line: ${JSON.stringify(printable(line.slice(0, 60)))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { status: Number(status[1]), reason: status[2] ?? '', headers, rest: bytes.subarray(end) };
}

/**
 * Throws unless `head` accepts the upgrade asked for with `key` and `protocol` (§4.1, the
 * client's checks 1-6). A status other than 101 says what kind of refusal it is: a 4xx other
 * than 408 and 429 is an endpoint or proxy set up wrong (`failed`: retrying won't fix it).
 */
export function checkUpgradeResponse(head: ResponseHead, key: string, protocol: string, where: string): void {
  if (head.status !== 101) {
    const kind = head.status === 429 ? 'throttled' : head.status >= 500 ? 'server' : head.status === 408 ? 'network' : 'failed';
    throw new ProvisioningError(
      kind,
      `${where} answered the WebSocket upgrade with HTTP ${head.status}${head.reason ? ` ${printable(head.reason.slice(0, 60))}` : ''}, not 101; is this an MQTT over WebSockets endpoint?`,
      { status: head.status },
    );
  }
  const upgrade = head.headers.get('upgrade')?.toLowerCase();
  const connection = (head.headers.get('connection') ?? '').toLowerCase().split(',');
  if (upgrade !== 'websocket' || !connection.some((token) => token.trim() === 'upgrade')) {
    throw protocolAt(where, 'answered 101 without Upgrade: websocket and Connection: Upgrade');
  }
  if (head.headers.get('sec-websocket-accept') !== acceptFor(key)) {
    throw protocolAt(where, 'answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept');
  }
  if (head.headers.has('sec-websocket-extensions')) throw protocolAt(where, 'accepted WebSocket extensions that were not asked for');
  if (head.headers.get('sec-websocket-protocol') !== protocol) {
    throw protocolAt(where, `accepted the WebSocket upgrade without the ${protocol} subprotocol`);
  }
}

/**
 * A client frame (§5.2): FIN set, masked with `mask` (4 bytes, from a random source: §5.3).
 * Payload lengths up to 2^53 - 1 (JavaScript's safe integers) are encoded.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: Uint8Array): Uint8Array {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const frame = new Uint8Array(2 + extra + 4 + length);
  frame[0] = 0x80 | opcode;
  if (extra === 0) frame[1] = 0x80 | length;
  else if (extra === 2) {
    frame[1] = 0x80 | 126;
    frame[2] = length >> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 0x80 | 127;
    const high = Math.floor(length / 0x100000000);
    const low = length >>> 0;
    frame[2] = high >>> 24;
    frame[3] = (high >>> 16) & 0xff;
    frame[4] = (high >>> 8) & 0xff;
    frame[5] = high & 0xff;
    frame[6] = low >>> 24;
    frame[7] = (low >>> 16) & 0xff;
    frame[8] = (low >>> 8) & 0xff;
    frame[9] = low & 0xff;
  }
  const at = 2 + extra;
  frame.set(mask.subarray(0, 4), at);
  for (let i = 0; i < length; i++) frame[at + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** A close frame's payload: the status code, then a UTF-8 reason (§5.5.1). */
export function closePayload(code: number, reason = ''): Uint8Array {
  const text = utf8Encode(reason);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return payload;
}

/** What the server's frames carry, in order. */
export type FrameEvent =
  /** Bytes of a binary message (any part of it: message payloads are passed on as they arrive). */
  | { type: 'data'; bytes: Uint8Array }
  | { type: 'ping'; payload: Uint8Array }
  | { type: 'pong' }
  /** The server closes: its status code (1005 when it gave none, §7.1.5) and reason. */
  | { type: 'close'; code: number; reason: string };

/**
 * Server frames from any split of the stream. Payloads of binary messages are not buffered but
 * passed on as they arrive; control frames (at most 125 bytes, §5.5) are. Throws a `protocol`
 * error for what a server must not send: a masked frame (§5.1), reserved bits without an
 * extension (§5.2), a text message (MQTT is binary), a fragmented or oversized control frame,
 * a continuation with nothing to continue, an unknown opcode, a length past 2^53.
 */
export class FrameDecoder {
  #header = new Uint8Array(14);
  #headerLength = 0;
  /** Payload bytes still to come of the current frame; -1 while reading a header. */
  #remaining = -1;
  #opcode = 0;
  #control: Uint8Array | undefined;
  #controlLength = 0;
  /** A binary message whose last frame (FIN) has not come yet. */
  #inMessage = false;
  #closed = false;

  feed(bytes: Uint8Array): FrameEvent[] {
    const events: FrameEvent[] = [];
    let at = 0;
    while (at < bytes.length && !this.#closed) {
      if (this.#remaining < 0) {
        at = this.#readHeader(bytes, at, events);
        continue;
      }
      const take = Math.min(this.#remaining, bytes.length - at);
      if (this.#control) {
        this.#control.set(bytes.subarray(at, at + take), this.#controlLength);
        this.#controlLength += take;
      } else if (take > 0) {
        events.push({ type: 'data', bytes: bytes.subarray(at, at + take) });
      }
      at += take;
      this.#remaining -= take;
      if (this.#remaining === 0) this.#endFrame(events);
    }
    return events;
  }

  /** Reads header bytes from `bytes` at `at`; returns the new position. */
  #readHeader(bytes: Uint8Array, at: number, events: FrameEvent[]): number {
    const header = this.#header;
    while (at < bytes.length) {
      const needed = this.#headerLength < 2 ? 2 : 2 + extendedLength(header[1]!);
      if (this.#headerLength >= needed) break;
      header[this.#headerLength++] = bytes[at++]!;
    }
    if (this.#headerLength < 2 || this.#headerLength < 2 + extendedLength(header[1]!)) return at;

    const fin = (header[0]! & 0x80) !== 0;
    const opcode = header[0]! & 0x0f;
    if (header[0]! & 0x70) throw protocol('The server set reserved WebSocket frame bits (no extension was agreed)');
    if (header[1]! & 0x80) throw protocol('The server sent a masked WebSocket frame (RFC 6455 §5.1)');
    let length = header[1]! & 0x7f;
    if (length === 126) length = (header[2]! << 8) | header[3]!;
    else if (length === 127) {
      const high = ((header[2]! << 24) | (header[3]! << 16) | (header[4]! << 8) | header[5]!) >>> 0;
      if (high > 0x1fffff) throw protocol('The server sent a WebSocket frame longer than 2^53 bytes');
      length = high * 0x100000000 + (((header[6]! << 24) | (header[7]! << 16) | (header[8]! << 8) | header[9]!) >>> 0);
    }
    this.#headerLength = 0;
    if (opcode >= 8) {
      if (opcode !== Opcode.close && opcode !== Opcode.ping && opcode !== Opcode.pong) {
        throw protocol(`The server sent a WebSocket frame with the unknown opcode ${opcode}`);
      }
      if (!fin || length > 125) throw protocol('The server sent a fragmented or oversized WebSocket control frame');
      this.#control = new Uint8Array(length);
      this.#controlLength = 0;
    } else if (opcode === Opcode.text) {
      throw protocol('The server sent a text WebSocket message; MQTT over WebSockets is binary only');
    } else if (opcode === Opcode.binary) {
      if (this.#inMessage) throw protocol('The server began a WebSocket message inside another');
      this.#control = undefined;
      this.#inMessage = !fin;
    } else if (opcode === Opcode.continuation) {
      if (!this.#inMessage) throw protocol('The server sent a WebSocket continuation frame with no message to continue');
      this.#control = undefined;
      this.#inMessage = !fin;
    } else {
      throw protocol(`The server sent a WebSocket frame with the unknown opcode ${opcode}`);
    }
    this.#opcode = opcode;
    this.#remaining = length;
    if (length === 0) this.#endFrame(events);
    return at;
  }

  #endFrame(events: FrameEvent[]): void {
    this.#remaining = -1;
    const payload = this.#control;
    this.#control = undefined;
    if (!payload) return;
    if (this.#opcode === Opcode.ping) events.push({ type: 'ping', payload });
    else if (this.#opcode === Opcode.pong) events.push({ type: 'pong' });
    else {
      this.#closed = true;
      if (payload.length === 1) throw protocol('The server sent a WebSocket close frame with a 1-byte payload');
      let reason = '';
      try {
        reason = payload.length > 2 ? utf8Decode(payload, 2) : '';
      } catch {
        throw protocol("The server's WebSocket close reason is not UTF-8");
      }
      events.push({ type: 'close', code: payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005, reason });
    }
  }
}

/** Bytes after the first two of a header: the extended length (none, 2 or 8); servers send no mask. */
function extendedLength(second: number): number {
  const length = second & 0x7f;
  return length === 126 ? 2 : length === 127 ? 8 : 0;
}

function protocol(message: string): ProvisioningError {
  return new ProvisioningError('protocol', message);
}

function protocolAt(where: string, what: string): ProvisioningError {
  return protocol(`${where} ${what}`);
}

// An in-memory DPS for the engine comparison: a Connect port whose far end speaks MQTT through
// the core's own codec (CONNACK, SUBACK, PUBACK, PINGRESP) and answers each register or poll
// request with the next reply of a script (the clock is test/support's FakeClock, the store its
// MemoryStore). Uses nothing but ECMAScript, so the same code runs on Node and on a
// sandboxed XS, and records a transcript that must come out identical on both.
import { utf8Decode, utf8Encode } from '../../../src/bytes.js';
import { encodePacket, type Packet, PacketDecoder } from '../../../src/mqtt/codec.js';
import type { Connect, Connection, ConnectionHandlers } from '../../../src/ports.js';
import type { FakeClock } from '../../support/fake-clock.js';
import { errorShape, hex } from './util.js';

export type Reply =
  | { status: number; retryAfter?: number; body: unknown }
  /** Reset the connection instead of answering. */
  | { drop: true }
  /** Send these bytes (hex) instead of a response. */
  | { raw: string };

export interface DpsScript {
  /** CONNACK return code for each connection in turn (default 0). */
  connack?: number[];
  /** Answers to the register and poll requests, in order; past the end, no answer. */
  replies: Reply[];
  /** Deliver responses at QoS 1 (the client must PUBACK); default QoS 0. */
  qos1Responses?: boolean;
  /** Keep no transcript (the footprint bench: measure the device, not the bookkeeping). */
  noTranscript?: boolean;
}

export type TranscriptEntry =
  | { t: number; conn: number; dir: 'device' | 'dps'; packet: Record<string, unknown> }
  | { t: number; conn: number; event: string };

const REQUEST = /^\$dps\/registrations\/(PUT\/iotdps-register|GET\/iotdps-get-operationstatus)\/\?(.*)$/;

export function packetJson(packet: Packet): Record<string, unknown> {
  if (packet.type !== 'publish') return { ...packet };
  let text: string | undefined;
  try {
    text = utf8Decode(packet.payload);
  } catch {
    text = undefined;
  }
  return { ...packet, payload: text ?? hex(packet.payload) };
}

export class ScriptedDps {
  readonly transcript: TranscriptEntry[] = [];
  #replies: Reply[];
  #connections = 0;
  #nextId = 1;

  constructor(
    readonly clock: FakeClock,
    readonly script: DpsScript,
  ) {
    this.#replies = [...script.replies];
  }

  get connectionCount(): number {
    return this.#connections;
  }

  readonly connect: Connect = (endpoint, handlers) => {
    const conn = this.#connections++;
    this.#event(conn, `open ${endpoint.host}:${endpoint.port}`);
    return Promise.resolve().then(() => this.#open(conn, handlers));
  };

  #event(conn: number, event: string): void {
    this.#record({ t: this.clock.elapsed, conn, event });
  }

  #record(entry: TranscriptEntry): void {
    if (!this.script.noTranscript) this.transcript.push(entry);
  }

  #packet(conn: number, dir: 'device' | 'dps', packet: () => Record<string, unknown>): void {
    if (!this.script.noTranscript) this.transcript.push({ t: this.clock.elapsed, conn, dir, packet: packet() });
  }

  #open(conn: number, handlers: ConnectionHandlers): Connection {
    const decoder = new PacketDecoder();
    // `open`: the device may still write. `ended`: the device has heard the close and gets no more
    // bytes. A close by the DPS side still delivers what it sent before; one by the device does not.
    let open = true;
    let ended = false;
    // Server → device bytes go out in order, each packet split in two reads (the client must
    // reassemble), one read per microtask, like a socket.
    let outgoing = Promise.resolve();
    const deliver = (callback: () => void) => {
      try {
        callback();
      } catch (error) {
        this.#event(conn, `the device's handler threw: ${errorShape(error).message}`);
      }
    };
    const send = (packet: Packet | Uint8Array) => {
      const bytes = packet instanceof Uint8Array ? packet : encodePacket(packet);
      this.#packet(conn, 'dps', () => (packet instanceof Uint8Array ? { raw: hex(bytes) } : packetJson(packet)));
      const cut = bytes.length >> 1;
      for (const piece of cut > 0 ? [bytes.subarray(0, cut), bytes.subarray(cut)] : [bytes]) {
        outgoing = outgoing.then(() => {
          if (!ended) deliver(() => handlers.onData(piece.slice()));
        });
      }
    };
    const close = (error?: Error, byDevice = false) => {
      if (!open) return;
      open = false;
      this.#event(conn, byDevice ? 'closed by the device' : error ? `reset: ${error.message}` : 'closed by DPS');
      if (byDevice) ended = true;
      outgoing = outgoing.then(() => {
        ended = true;
        deliver(() => handlers.onClose(error));
      });
    };
    const onPacket = (packet: Packet) => {
      this.#packet(conn, 'device', () => packetJson(packet));
      switch (packet.type) {
        case 'connect':
          send({ type: 'connack', sessionPresent: false, returnCode: this.script.connack?.[conn] ?? 0 });
          if ((this.script.connack?.[conn] ?? 0) !== 0) close();
          return;
        case 'subscribe':
          send({ type: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map((s) => s.qos) });
          return;
        case 'pingreq':
          send({ type: 'pingresp' });
          return;
        case 'disconnect':
          this.#event(conn, 'DISCONNECT received');
          return;
        case 'publish':
          if (packet.qos === 1) send({ type: 'puback', messageId: packet.messageId! });
          this.#answer(packet, send, close);
          return;
        default:
          return;
      }
    };
    return {
      write: (data: Uint8Array) => {
        if (!open) throw new Error('write after close');
        let packets: Packet[];
        try {
          packets = decoder.push(data);
        } catch (error) {
          this.#event(conn, `device sent bad bytes: ${errorShape(error).message}`);
          close(new Error('protocol error'));
          return;
        }
        for (const packet of packets) onPacket(packet);
      },
      close: () => close(undefined, true),
    };
  }

  #answer(packet: Extract<Packet, { type: 'publish' }>, send: (p: Packet | Uint8Array) => void, close: (e?: Error) => void): void {
    const match = REQUEST.exec(packet.topic);
    if (!match) return;
    const params = new Map(
      match[2]!.split('&').map((kv) => [kv.slice(0, kv.indexOf('=')), decodeURIComponent(kv.slice(kv.indexOf('=') + 1))] as const),
    );
    const rid = params.get('$rid') ?? '';
    const reply = this.#replies.shift();
    if (!reply) return;
    if ('drop' in reply) return close(new Error('connection reset by the scripted DPS'));
    if ('raw' in reply) {
      const bytes = new Uint8Array(reply.raw.length / 2);
      for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(reply.raw.slice(2 * i, 2 * i + 2), 16);
      return send(bytes);
    }
    let topic = `$dps/registrations/res/${reply.status}/?$rid=${encodeURIComponent(rid)}`;
    if (reply.retryAfter !== undefined) topic += `&retry-after=${reply.retryAfter}`;
    const payload = utf8Encode(typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body));
    if (this.script.qos1Responses) send({ type: 'publish', topic, payload, qos: 1, dup: false, retain: false, messageId: this.#nextId++ });
    else send({ type: 'publish', topic, payload, qos: 0, dup: false, retain: false });
  }
}

/**
 * Let `promise` run to the end: whenever the job queue is empty (`idle`) and it has not settled,
 * fire the next timer. Fails if it is stuck (nothing pending) or runs away.
 */
export async function runToEnd<T>(promise: Promise<T>, clock: FakeClock, idle: () => Promise<void>): Promise<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let steps = 0; ; steps++) {
    await idle();
    if (settled) return promise;
    if (steps > 10_000) throw new Error('runToEnd: still running after 10000 timers');
    if (!clock.fireNext()) throw new Error('runToEnd: the flow is stuck (no timer pending, nothing settled)');
  }
}

// A scripted DPS on top of ScriptedNetwork's broker: each register or poll request is answered
// by the next entry of a script (status, retry-after, body), so flow tests decide exactly what
// DPS says and when, with a FakeClock and no sockets. ECMAScript only: the XS engine scenarios
// (test/xs) run it too, with `split` deliveries and a transcript that must come out the same on
// Node and XS.

import { utf8Decode, utf8Encode } from '../../src/bytes.js';
import { parseRequestTopic, responseTopic } from '../../src/dps/server.js';
import type { Packet } from '../../src/mqtt/codec.js';
import type { Connect } from '../../src/ports.js';
import { hex } from './hex.js';
import { broker, type ConnectionEvent, type ScriptedConnection, ScriptedNetwork } from './scripted-connection.js';

type Answer = { status: number; retryAfter?: number; rid?: string };

export type Reply =
  | (Answer & { body: unknown })
  /** Send `text` as the body as it is (e.g. JSON cut short). */
  | (Answer & { text: string })
  /** Close the connection instead of answering. */
  | { drop: true }
  /** Answer nothing at all. */
  | { silent: true }
  /** Send these raw bytes instead of a response. */
  | { raw: Uint8Array };

export interface Request {
  type: 'register' | 'poll';
  rid: string;
  operationId?: string;
  body: string;
  connection: number;
}

export interface DpsOptions {
  /**
   * CONNACK return code: one for every connection, or one per connection in turn (then 0). DPS
   * closes a connection it refused, as MQTT 3.1.1 §3.2.2.3 says.
   */
  connack?: number | number[];
  /** Send responses at QoS 1 (the client must PUBACK); default QoS 0. */
  qos1Responses?: boolean;
  /** Deliver as a socket does: a promise job later, each packet in two reads (NetworkOptions.split). */
  split?: boolean;
  /** Keep a transcript of every packet both ways and every open and close, timed by this clock. */
  clock?: { readonly elapsed: number };
}

export type TranscriptEntry =
  | { t: number; conn: number; dir: 'device' | 'dps'; packet: Record<string, unknown> }
  | { t: number; conn: number; event: string };

export const HUB = 'hub-a.azure-devices.net';

export const assigningBody = (operationId = 'op-1') => ({ operationId, status: 'assigning' });
export const assignedBody = (registrationId: string, operationId = 'op-1', payload?: unknown) => ({
  operationId,
  status: 'assigned',
  registrationState: {
    registrationId,
    createdDateTimeUtc: '2025-01-01T00:00:01.000Z',
    assignedHub: HUB,
    deviceId: registrationId,
    status: 'assigned',
    substatus: 'initialAssignment',
    lastUpdatedDateTimeUtc: '2025-01-01T00:00:01.500Z',
    etag: 'IjA0MDA3ZjA0LTAwMDAtMDMwMC0wMDAwLTVmZjc4YmRhMDAwMCI=',
    ...(payload !== undefined && { payload }),
  },
});
export const errorBody = (errorCode: number, message = 'error') => ({
  errorCode,
  trackingId: 'a5a0f5d1-6b2c-4d7e-9f3a-1b2c3d4e5f60',
  message,
  timestampUtc: '2025-01-01T00:00:00.000Z',
});

/** A packet as plain JSON for a transcript: a PUBLISH payload as its text, or hex when it is not UTF-8. */
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

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A DPS whose answers come from `script`, in order; requests beyond the script get no answer. */
export class ScriptedDps {
  readonly requests: Request[] = [];
  /** With `clock`: what went each way and when. */
  readonly transcript: TranscriptEntry[] = [];
  readonly network: ScriptedNetwork;
  readonly #script: Reply[];
  readonly #options: DpsOptions;
  #nextId = 1;

  constructor(script: Reply[], options: DpsOptions = {}) {
    this.#script = [...script];
    this.#options = options;
    const answer = broker({ onPublish: (packet, connection) => this.#onPublish(packet, connection) });
    this.network = new ScriptedNetwork({
      respond: (packet, connection) => {
        if (packet.type === 'connect') return this.#connack(connection);
        if (packet.type === 'disconnect') this.#event(connection.attempt, 'DISCONNECT received');
        answer(packet, connection);
      },
      ...(options.split && { split: true }),
      onEvent: (connection, event) => this.#onEvent(connection, event),
    });
  }

  /** The Connect port. */
  readonly connect: Connect = (endpoint, handlers) => {
    this.#event(this.network.attempts.length, `open ${endpoint.host}:${endpoint.port}`);
    return this.network.connect(endpoint, handlers);
  };

  /** Answers still unused. */
  get remaining(): number {
    return this.#script.length;
  }

  #connack(connection: ScriptedConnection): void {
    const { connack = 0 } = this.#options;
    const returnCode = typeof connack === 'number' ? connack : (connack[connection.attempt] ?? 0);
    connection.send({ type: 'connack', sessionPresent: false, returnCode });
    if (returnCode !== 0) connection.drop();
  }

  #event(conn: number, event: string): void {
    if (this.#options.clock) this.transcript.push({ t: this.#options.clock.elapsed, conn, event });
  }

  #onEvent(connection: ScriptedConnection, event: ConnectionEvent): void {
    const clock = this.#options.clock;
    if (!clock) return;
    const conn = connection.attempt;
    switch (event.type) {
      case 'packet':
        this.transcript.push({ t: clock.elapsed, conn, dir: event.from === 'client' ? 'device' : 'dps', packet: packetJson(event.packet) });
        return;
      case 'bytes':
        this.transcript.push({ t: clock.elapsed, conn, dir: 'dps', packet: { raw: hex(event.bytes) } });
        return;
      case 'closed':
        if (event.by === 'client') return this.#event(conn, 'closed by the device');
        return this.#event(conn, event.error ? `reset: ${event.error.message}` : 'closed by DPS');
      case 'bad bytes':
        return this.#event(conn, `device sent bad bytes: ${messageOf(event.error)}`);
      case 'handler threw':
        return this.#event(conn, `the device's handler threw: ${messageOf(event.error)}`);
    }
  }

  #onPublish(packet: Packet, connection: ScriptedConnection): void {
    if (packet.type !== 'publish') return;
    const request = parseRequestTopic(packet.topic);
    if (!request) return;
    this.requests.push({
      type: request.type,
      rid: request.rid,
      ...(request.type === 'poll' && { operationId: request.operationId }),
      body: utf8Decode(packet.payload),
      connection: this.network.connections.indexOf(connection),
    });
    const reply = this.#script.shift();
    if (!reply || 'silent' in reply) return;
    if ('drop' in reply) return connection.drop(new Error('connection reset by the scripted DPS'));
    if ('raw' in reply) return connection.sendBytes(reply.raw);
    const topic = responseTopic(reply.status, reply.rid ?? request.rid, reply.retryAfter);
    const payload = utf8Encode('text' in reply ? reply.text : JSON.stringify(reply.body));
    if (this.#options.qos1Responses) {
      connection.send({ type: 'publish', topic, payload, qos: 1, dup: false, retain: false, messageId: this.#nextId++ });
    } else connection.send({ type: 'publish', topic, payload, qos: 0, dup: false, retain: false });
  }
}

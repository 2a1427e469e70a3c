// A scripted DPS on top of ScriptedNetwork's broker: each register or poll request is answered
// by the next entry of a script (status, retry-after, body), so flow tests decide exactly what
// DPS says and when, with a FakeClock and no sockets.

import { parseRequestTopic, responseTopic } from '../../src/dps/server.js';
import { encodePacket, type Packet } from '../../src/mqtt/codec.js';
import { broker, type ScriptedConnection, ScriptedNetwork } from './scripted-connection.js';

export type Reply =
  | { status: number; retryAfter?: number; body: unknown; rid?: string }
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

/** A DPS whose answers come from `script`, in order; requests beyond the script get no answer. */
export class ScriptedDps {
  readonly requests: Request[] = [];
  readonly network: ScriptedNetwork;
  readonly #script: Reply[];
  readonly #connack: number;

  constructor(script: Reply[], options: { connack?: number } = {}) {
    this.#script = [...script];
    this.#connack = options.connack ?? 0;
    this.network = new ScriptedNetwork({
      respond: broker({ connack: this.#connack, onPublish: (packet, connection) => this.#onPublish(packet, connection) }),
    });
  }

  get connect() {
    return this.network.connect;
  }

  /** Answers still unused. */
  get remaining(): number {
    return this.#script.length;
  }

  #onPublish(packet: Packet, connection: ScriptedConnection): void {
    if (packet.type !== 'publish') return;
    const request = parseRequestTopic(packet.topic);
    if (!request) return;
    this.requests.push({
      type: request.type,
      rid: request.rid,
      ...(request.type === 'poll' && { operationId: request.operationId }),
      body: new TextDecoder().decode(packet.payload),
      connection: this.network.connections.indexOf(connection),
    });
    const reply = this.#script.shift();
    if (!reply || 'silent' in reply) return;
    if ('drop' in reply) return connection.drop(new Error('connection reset by the scripted DPS'));
    if ('raw' in reply) return connection.sendBytes(reply.raw);
    const topic = responseTopic(reply.status, reply.rid ?? request.rid, reply.retryAfter);
    connection.sendBytes(
      encodePacket({
        type: 'publish',
        topic,
        payload: new TextEncoder().encode(JSON.stringify(reply.body)),
        qos: 0,
        dup: false,
        retain: false,
      }),
    );
  }
}

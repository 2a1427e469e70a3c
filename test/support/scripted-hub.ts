// A scripted IoT Hub on top of ScriptedNetwork: it answers CONNECT (CONNACK from a plan),
// SUBSCRIBE, twin GET and reported PATCH as Microsoft's MQTT doc describes, records telemetry and
// method answers, and lets a test push desired updates, method calls and C2D messages, or answer
// a twin request its own way. No sockets; time from a FakeClock.
import { utf8Decode, utf8Encode } from '../../src/bytes.js';
import type { Packet } from '../../src/mqtt/codec.js';
import { type ScriptedConnection, ScriptedNetwork } from './scripted-connection.js';

export const HUB = 'hub-a.azure-devices.net';

/** How to answer one twin request (GET or PATCH), instead of the default. */
export type TwinReply = { status: number; body?: string; version?: number; rid?: string } | { silent: true } | { drop: true };

export interface TwinRequest {
  method: 'GET' | 'PATCH';
  rid: string;
  body: string;
  connection: number;
}

type Publish = Extract<Packet, { type: 'publish' }>;

export class ScriptedHub {
  readonly network: ScriptedNetwork;
  /** The twin the hub keeps; GET answers it, PATCH merges into reported and bumps its $version. */
  twin: { desired: Record<string, unknown> & { $version: number }; reported: Record<string, unknown> & { $version: number } } = {
    desired: { telemetryInterval: 10, $version: 1 },
    reported: { $version: 1 },
  };
  readonly twinRequests: TwinRequest[] = [];
  readonly telemetry: { topic: string; body: string }[] = [];
  readonly methodAnswers: { topic: string; body: string }[] = [];
  /** CONNACK return codes for the next connections, in order (then 0). */
  readonly connacks: number[] = [];
  /** Answers for the next twin requests, in order (then the default). */
  readonly twinReplies: TwinReply[] = [];
  /** When false, CONNECT gets no CONNACK until the test calls connack(). */
  autoConnack = true;
  /** When true, SUBSCRIBE gets no SUBACK until the test calls releaseSubacks(). */
  holdSubacks = false;
  /** When false, telemetry gets no PUBACK. */
  ackTelemetry = true;
  readonly #heldSubacks: { packet: Extract<Packet, { type: 'subscribe' }>; connection: ScriptedConnection }[] = [];
  /** What a connection sent behind CONNECT before its CONNACK: handled once accepted, as a broker does (MQTT 3.1.1 §3.1.4). */
  readonly #early = new Map<ScriptedConnection, Packet[] | 'accepted' | 'refused'>();

  constructor() {
    this.network = new ScriptedNetwork({ respond: (packet, connection) => this.#respond(packet, connection) });
  }

  get connect() {
    return this.network.connect;
  }

  get last(): ScriptedConnection {
    return this.network.last;
  }

  connack(returnCode = 0, connection = this.last): void {
    const early = this.#early.get(connection);
    this.#early.set(connection, returnCode === 0 ? 'accepted' : 'refused');
    connection.send({ type: 'connack', sessionPresent: false, returnCode });
    if (returnCode === 0 && Array.isArray(early)) for (const packet of early) this.#respond(packet, connection);
  }

  releaseSubacks(): void {
    for (const { packet, connection } of this.#heldSubacks.splice(0)) this.#suback(packet, connection);
  }

  /** The hub publishes a desired-properties update (QoS 0, as IoT Hub does to a QoS 0 or 1 subscription). */
  sendDesired(
    patch: Record<string, unknown>,
    version: number,
    options: { topicVersion?: number | null; connection?: ScriptedConnection } = {},
  ): void {
    const topicVersion = options.topicVersion === undefined ? version : options.topicVersion;
    const topic = `$iothub/twin/PATCH/properties/desired/${topicVersion === null ? '' : `?$version=${topicVersion}`}`;
    this.publish(topic, JSON.stringify({ ...patch, $version: version }), options.connection);
  }

  /** The hub calls a direct method; resolves with the device's answer. */
  callMethod(name: string, payload: string, rid = '1'): Promise<{ status: number; rid: string; body: string }> {
    const from = this.methodAnswers.length;
    this.publish(`$iothub/methods/POST/${name}/?$rid=${rid}`, payload);
    return this.#methodAnswer(from);
  }

  /** The hub sends a PUBLISH on any topic (QoS 1 unless told). */
  publish(topic: string, body: string | Uint8Array, connection = this.last, qos: 0 | 1 = 1): void {
    const payload = typeof body === 'string' ? utf8Encode(body) : body;
    const packet: Publish = { type: 'publish', topic, payload, qos, dup: false, retain: false, ...(qos === 1 && { messageId: 7 }) };
    connection.send(packet);
  }

  #methodAnswer(from: number): Promise<{ status: number; rid: string; body: string }> {
    return new Promise((resolve) => {
      const check = () => {
        const answer = this.methodAnswers[from];
        if (!answer) return void setImmediate(check);
        const match = /^\$iothub\/methods\/res\/(\d+)\/\?\$rid=(.+)$/.exec(answer.topic)!;
        resolve({ status: Number(match[1]), rid: match[2]!, body: answer.body });
      };
      check();
    });
  }

  #respond(packet: Packet, connection: ScriptedConnection): void {
    if (packet.type !== 'connect') {
      const early = this.#early.get(connection);
      if (early === 'refused') return; // never processed
      if (early !== 'accepted') {
        this.#early.set(connection, [...(early ?? []), packet]);
        return;
      }
    }
    switch (packet.type) {
      case 'connect':
        if (this.autoConnack) this.connack(this.connacks.shift() ?? 0, connection);
        return;
      case 'subscribe':
        if (this.holdSubacks) return void this.#heldSubacks.push({ packet, connection });
        return this.#suback(packet, connection);
      case 'pingreq':
        return connection.send({ type: 'pingresp' });
      case 'publish': {
        const telemetry = /^devices\/[^/]+\/messages\/events\//.test(packet.topic);
        if (packet.qos === 1 && (this.ackTelemetry || !telemetry)) connection.send({ type: 'puback', messageId: packet.messageId! });
        return this.#onPublish(packet, connection);
      }
      default:
        return undefined;
    }
  }

  #suback(packet: Extract<Packet, { type: 'subscribe' }>, connection: ScriptedConnection): void {
    if (!connection.closed)
      connection.send({ type: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map((s) => s.qos) });
  }

  #onPublish(packet: Publish, connection: ScriptedConnection): void {
    const body = utf8Decode(packet.payload);
    if (packet.topic.startsWith('$iothub/methods/res/')) return void this.methodAnswers.push({ topic: packet.topic, body });
    if (/^devices\/[^/]+\/messages\/events\//.test(packet.topic)) return void this.telemetry.push({ topic: packet.topic, body });
    const twin = /^\$iothub\/twin\/(GET|PATCH\/properties\/reported)\/\?\$rid=(.+)$/.exec(packet.topic);
    if (!twin) return;
    const method = twin[1] === 'GET' ? 'GET' : 'PATCH';
    const rid = twin[2]!;
    this.twinRequests.push({ method, rid, body, connection: this.network.connections.indexOf(connection) });
    const reply = this.twinReplies.shift();
    if (reply && 'silent' in reply) return;
    if (reply && 'drop' in reply) return connection.drop(new Error('connection reset by the scripted hub'));
    if (reply) {
      const version = reply.version === undefined ? '' : `&$version=${reply.version}`;
      return this.publish(`$iothub/twin/res/${reply.status}/?$rid=${reply.rid ?? rid}${version}`, reply.body ?? '', connection, 0);
    }
    if (method === 'GET') return this.publish(`$iothub/twin/res/200/?$rid=${rid}`, JSON.stringify(this.twin), connection, 0);
    const version = this.twin.reported.$version + 1;
    this.twin.reported = { ...this.twin.reported, ...(JSON.parse(body) as Record<string, unknown>), $version: version };
    this.publish(`$iothub/twin/res/204/?$rid=${rid}&$version=${version}`, '', connection, 0);
  }
}

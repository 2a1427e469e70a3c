// An in-memory Connect / Connection (src/ports.ts) whose server end a test scripts: no sockets.
//
//   const network = new ScriptedNetwork({ respond: broker() });   // or answer by hand
//   const client = await MqttClient.connect(network.connect, endpoint, clock, options);
//   const server = network.last;                                  // the server end
//   server.sent                                                   // packets the client sent
//   server.send({ type: 'publish', ... }); server.drop(new Error('reset'));

import { encodePacket, type Packet, PacketDecoder } from '../../src/mqtt/codec.js';
import type { Connect, Connection, ConnectionHandlers, Endpoint } from '../../src/ports.js';

/** Answers one packet the client sent; called after the write returns (a microtask later), like a real peer. */
export type Responder = (packet: Packet, connection: ScriptedConnection) => void;

/** The server end of one connection. Implements Connection for the client's side. */
export class ScriptedConnection implements Connection {
  /** Every chunk the client wrote, as written. */
  readonly written: Uint8Array[] = [];
  /** Every packet the client sent, decoded, in order. */
  readonly sent: Packet[] = [];
  /** Bytes written after the connection closed (a real socket would drop them). */
  writesAfterClose = 0;
  /** Who ended the connection: the client (close()), the server (drop()), or nobody yet. */
  closedBy: 'client' | 'server' | undefined;
  readonly #handlers: ConnectionHandlers;
  readonly #decoder = new PacketDecoder(268_435_460);
  readonly #respond: Responder | undefined;
  #waiters: { type: Packet['type'] | undefined; from: number; resolve(packet: Packet): void }[] = [];

  constructor(
    readonly endpoint: Endpoint,
    handlers: ConnectionHandlers,
    respond?: Responder,
  ) {
    this.#handlers = handlers;
    this.#respond = respond;
  }

  get closed(): boolean {
    return this.closedBy !== undefined;
  }

  // ---- the client's side (Connection) ----

  write(data: Uint8Array): void {
    if (this.closed) {
      this.writesAfterClose++;
      return;
    }
    this.written.push(data.slice());
    for (const packet of this.#decoder.push(data)) {
      this.sent.push(packet);
      this.#wake();
      const respond = this.#respond;
      // A promise job rather than queueMicrotask, which XS lacks: these helpers run there too.
      if (respond) void Promise.resolve().then(() => !this.closed && respond(packet, this));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closedBy = 'client';
    this.#handlers.onClose();
  }

  // ---- the server's side (the test) ----

  /** Delivers packets to the client now (synchronously), each encoded by the codec. */
  send(...packets: Packet[]): void {
    for (const packet of packets) this.sendBytes(encodePacket(packet));
  }

  /** Delivers raw bytes to the client now. */
  sendBytes(bytes: Uint8Array): void {
    if (this.closed) throw new Error('ScriptedConnection: cannot send on a closed connection');
    this.#handlers.onData(bytes);
  }

  /** The server ends the connection; `error` makes it an abrupt loss (e.g. a TCP reset). */
  drop(error?: Error): void {
    if (this.closed) return;
    this.closedBy = 'server';
    this.#handlers.onClose(error);
  }

  /** Packets of one type the client sent. */
  sentOf<T extends Packet['type']>(type: T): Extract<Packet, { type: T }>[] {
    return this.sent.filter((p): p is Extract<Packet, { type: T }> => p.type === type);
  }

  /** The first packet (of `type`, if given) the client sends from now on, or has sent since index `from`. */
  nextSent<T extends Packet['type']>(type?: T, from = this.sent.length): Promise<Extract<Packet, { type: T }>> {
    return new Promise((resolve) => {
      this.#waiters.push({ type, from, resolve: resolve as (packet: Packet) => void });
      this.#wake();
    });
  }

  #wake(): void {
    this.#waiters = this.#waiters.filter((waiter) => {
      const packet = this.sent.slice(waiter.from).find((p) => waiter.type === undefined || p.type === waiter.type);
      if (packet) waiter.resolve(packet);
      return !packet;
    });
  }
}

/** A connection attempt the test holds open (TLS "in progress") until it accepts or fails it. */
export interface HeldConnect {
  endpoint: Endpoint;
  accept(): ScriptedConnection;
  fail(error: Error): void;
}

/** Stands in for the network: `connect` is the Connect port. Each attempt accepts unless told otherwise. */
export class ScriptedNetwork {
  readonly connections: ScriptedConnection[] = [];
  readonly held: HeldConnect[] = [];
  readonly attempts: Endpoint[] = [];
  #plan: ({ kind: 'fail'; error: Error } | { kind: 'hold' })[] = [];
  readonly #respond: Responder | undefined;

  constructor(options: { respond?: Responder } = {}) {
    this.#respond = options.respond;
  }

  /** The Connect port. */
  readonly connect: Connect = (endpoint, handlers) => {
    this.attempts.push(endpoint);
    const step = this.#plan.shift();
    const open = () => {
      const connection = new ScriptedConnection(endpoint, handlers, this.#respond);
      this.connections.push(connection);
      return connection;
    };
    if (step?.kind === 'fail') return Promise.reject(step.error);
    if (step?.kind !== 'hold') return Promise.resolve().then(open);
    return new Promise<Connection>((resolve, reject) => {
      this.held.push({
        endpoint,
        accept: () => {
          const c = open();
          resolve(c);
          return c;
        },
        fail: reject,
      });
    });
  };

  /** The next attempt rejects with `error` (e.g. a ProvisioningError of kind 'tls'). */
  failNext(error: Error): this {
    this.#plan.push({ kind: 'fail', error });
    return this;
  }

  /** The next attempt stays pending until the test calls accept() or fail() on `held`. */
  holdNext(): this {
    this.#plan.push({ kind: 'hold' });
    return this;
  }

  /** The most recent connection. */
  get last(): ScriptedConnection {
    const connection = this.connections.at(-1);
    if (!connection) throw new Error('ScriptedNetwork: no connection was opened');
    return connection;
  }
}

/**
 * A minimal well-behaved MQTT broker: CONNACK `connack` (default 0) to CONNECT, SUBACK with the
 * requested QoS (or `granted`), PUBACK to QoS 1 PUBLISH, PINGRESP to PINGREQ. `onPublish` sees
 * each PUBLISH after its PUBACK went out: answer there (e.g. as DPS would) with connection.send().
 */
export function broker(options: { connack?: number; granted?: number; onPublish?: Responder } = {}): Responder {
  return (packet, connection) => {
    switch (packet.type) {
      case 'connect':
        return connection.send({ type: 'connack', sessionPresent: false, returnCode: options.connack ?? 0 });
      case 'subscribe': {
        const granted = packet.subscriptions.map((s) => options.granted ?? s.qos);
        return connection.send({ type: 'suback', messageId: packet.messageId, granted });
      }
      case 'publish':
        if (packet.qos === 1) connection.send({ type: 'puback', messageId: packet.messageId! });
        return options.onPublish?.(packet, connection);
      case 'pingreq':
        return connection.send({ type: 'pingresp' });
      default:
        return undefined;
    }
  };
}

// An in-memory Connect / Connection (src/ports.ts) whose server end a test scripts: no sockets.
// ECMAScript only (no timers, no TextEncoder), so the XS engine scenarios (test/xs) run it too.
//
//   const network = new ScriptedNetwork({ respond: broker() });   // or answer by hand
//   const client = await MqttClient.connect(network.connect, endpoint, clock, options);
//   const server = network.last;                                  // the server end
//   server.sent                                                   // packets the client sent
//   server.send({ type: 'publish', ... }); server.drop(new Error('reset'));

import { encodePacket, type Packet, PacketDecoder } from '../../src/mqtt/codec.js';
import type { Connect, Connection, ConnectionHandlers, Endpoint } from '../../src/ports.js';

/** Answers one packet the client sent: a microtask after the write returns, like a real peer (at once when `split`). */
export type Responder = (packet: Packet, connection: ScriptedConnection) => void;

/** What happened to a connection that only the connection sees (for a transcript). */
export type ConnectionEvent =
  /** A packet the client wrote (decoded), or one the server sent. */
  | { type: 'packet'; from: 'client' | 'server'; packet: Packet }
  /** Bytes the server sent with sendBytes. */
  | { type: 'bytes'; bytes: Uint8Array }
  | { type: 'closed'; by: 'client' | 'server'; error?: Error }
  /** The client wrote bytes that are no MQTT; the server resets the connection. */
  | { type: 'bad bytes'; error: unknown }
  /** A client handler threw while a `split` connection delivered to it. */
  | { type: 'handler threw'; error: unknown };

export interface NetworkOptions {
  respond?: Responder;
  /**
   * Deliver as a socket does: what the server sends reaches the client a promise job later, in
   * order, each chunk split in two reads (the client must reassemble), and the server's close only
   * after what it sent before; the responder runs at once, since nothing reaches the client
   * synchronously anyway. Default: the server's sends and closes reach the client at once, whole.
   */
  split?: boolean;
  onEvent?: (connection: ScriptedConnection, event: ConnectionEvent) => void;
}

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
  readonly #options: NetworkOptions;
  #waiters: { type: Packet['type'] | undefined; from: number; resolve(packet: Packet): void }[] = [];
  /** `split`: deliveries still on their way, in order. */
  #outgoing = Promise.resolve();
  /** `split`: the client has closed or heard the close, and gets no more bytes. */
  #ended = false;

  constructor(
    readonly endpoint: Endpoint,
    handlers: ConnectionHandlers,
    options: NetworkOptions = {},
    /** Which of the network's connection attempts opened it, from 0. */
    readonly attempt = 0,
  ) {
    this.#handlers = handlers;
    this.#options = options;
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
    let packets: Packet[];
    try {
      packets = this.#decoder.push(data);
    } catch (error) {
      this.#options.onEvent?.(this, { type: 'bad bytes', error });
      this.drop(new Error('protocol error'));
      return;
    }
    const respond = this.#options.respond;
    for (const packet of packets) {
      this.sent.push(packet);
      this.#options.onEvent?.(this, { type: 'packet', from: 'client', packet });
      this.#wake();
      if (!respond) continue;
      if (this.#options.split) {
        if (!this.closed) respond(packet, this);
      }
      // A promise job rather than queueMicrotask, which XS lacks.
      else void Promise.resolve().then(() => !this.closed && respond(packet, this));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closedBy = 'client';
    this.#options.onEvent?.(this, { type: 'closed', by: 'client' });
    if (!this.#options.split) return this.#handlers.onClose();
    this.#ended = true;
    this.#later(() => this.#handlers.onClose());
  }

  // ---- the server's side (the test) ----

  /** Delivers packets to the client now (synchronously; `split`: queued), each encoded by the codec. */
  send(...packets: Packet[]): void {
    for (const packet of packets) {
      this.#options.onEvent?.(this, { type: 'packet', from: 'server', packet });
      this.#deliver(encodePacket(packet));
    }
  }

  /** Delivers raw bytes to the client now (`split`: queued, in two reads). */
  sendBytes(bytes: Uint8Array): void {
    this.#options.onEvent?.(this, { type: 'bytes', bytes });
    this.#deliver(bytes);
  }

  #deliver(bytes: Uint8Array): void {
    if (this.closed) throw new Error('ScriptedConnection: cannot send on a closed connection');
    if (!this.#options.split) return this.#handlers.onData(bytes);
    const cut = bytes.length >> 1;
    for (const piece of cut > 0 ? [bytes.subarray(0, cut), bytes.subarray(cut)] : [bytes]) {
      this.#later(() => !this.#ended && this.#handlers.onData(piece.slice()));
    }
  }

  /** The server ends the connection; `error` makes it an abrupt loss (e.g. a TCP reset). */
  drop(error?: Error): void {
    if (this.closed) return;
    this.closedBy = 'server';
    this.#options.onEvent?.(this, { type: 'closed', by: 'server', ...(error && { error }) });
    if (!this.#options.split) return this.#handlers.onClose(error);
    this.#later(() => {
      this.#ended = true;
      this.#handlers.onClose(error);
    });
  }

  /** `split`: runs `step` after every delivery queued before it; what a client handler throws becomes an event. */
  #later(step: () => void): void {
    this.#outgoing = this.#outgoing.then(() => {
      try {
        step();
      } catch (error) {
        this.#options.onEvent?.(this, { type: 'handler threw', error });
      }
    });
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
  readonly #options: NetworkOptions;

  constructor(options: NetworkOptions = {}) {
    this.#options = options;
  }

  /** The Connect port. */
  readonly connect: Connect = (endpoint, handlers) => {
    const attempt = this.attempts.push(endpoint) - 1;
    const step = this.#plan.shift();
    const open = () => {
      const connection = new ScriptedConnection(endpoint, handlers, this.#options, attempt);
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

// An MQTT 3.1.1 client session over the Connection port: CONNECT (clean session), SUBSCRIBE,
// PUBLISH at QoS 0 and 1, keep-alive and DISCONNECT; no reconnecting (the caller decides that).
// Every failure is a ProvisioningError; the password (a SAS token) never appears in one.
import { type ErrorKind, isProvisioningError, ProvisioningError } from '../errors.js';
import type { Clock, Connect, Connection, Endpoint } from '../ports.js';
import { DEFAULT_MAX_PACKET_SIZE, encodePacket, type Packet, PacketDecoder } from './codec.js';

export interface MqttClientOptions {
  clientId: string;
  username?: string;
  password?: string; // a secret (SAS token): never in a message, log or error
  keepAliveSeconds?: number; // default 60; 0 disables
  maxPacketSize?: number; // inbound limit, default 65536
  connectTimeoutMs?: number; // time allowed for TLS + CONNACK, default 30000
  onMessage(topic: string, payload: Uint8Array): void;
  /**
   * Called once CONNECT is written, before CONNACK. SUBSCRIBEs and PUBLISHes made here leave right
   * behind CONNECT (MQTT 3.1.1 §3.1.4 lets a client send before CONNACK; the server processes them
   * only if it accepts the connection), which saves a round trip; if the server refuses, they
   * reject with the refusal, as connect() does.
   */
  onConnectSent?(client: MqttClient): void;
  /**
   * The connection ended without disconnect() being called (error describes why); called at
   * most once, and only after connect() resolved (before that, connect() rejects instead).
   */
  onClose(error: ProvisioningError | undefined): void;
}

export const DEFAULT_KEEP_ALIVE_SECONDS = 60;
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

type TimerName = 'connect' | 'sendIdle' | 'receiveIdle';

interface InFlight {
  awaits: 'suback' | 'puback';
  topic: string;
  qos: 0 | 1;
  resolve(granted: number): void;
  reject(error: ProvisioningError): void;
}

export class MqttClient {
  readonly #endpoint: Endpoint;
  readonly #clock: Clock;
  readonly #clientId: string;
  readonly #keepAliveMs: number;
  readonly #onMessage: MqttClientOptions['onMessage'];
  readonly #onClose: MqttClientOptions['onClose'];
  readonly #onConnectSent: MqttClientOptions['onConnectSent'];
  readonly #decoder: PacketDecoder;
  readonly #inFlight = new Map<number, InFlight>();
  #state: 'connecting' | 'open' | 'closed' = 'connecting';
  #connection: Connection | undefined;
  #connected: { resolve(): void; reject(error: ProvisioningError): void } | undefined;
  /** Why the session closed; a function until first needed (see disconnect()). */
  #closeError: ProvisioningError | (() => ProvisioningError) | undefined;
  #nextId = 1;
  #pingOutstanding = false;
  /** Cancel functions of the armed timers: all are cancelled on close. */
  #timers: { [name in TimerName]?: () => void } = {};

  private constructor(endpoint: Endpoint, clock: Clock, options: MqttClientOptions) {
    this.#endpoint = endpoint;
    this.#clock = clock;
    this.#clientId = options.clientId;
    this.#keepAliveMs = (options.keepAliveSeconds ?? DEFAULT_KEEP_ALIVE_SECONDS) * 1000;
    this.#onMessage = options.onMessage;
    this.#onClose = options.onClose;
    this.#onConnectSent = options.onConnectSent;
    this.#decoder = new PacketDecoder(options.maxPacketSize ?? DEFAULT_MAX_PACKET_SIZE);
  }

  /**
   * Opens the connection via `connect`, sends CONNECT (clean session), resolves after CONNACK 0.
   * Rejects with a ProvisioningError: CONNACK 1 → protocol, 2 → invalid-input, 3 → server,
   * 4 and 5 → unauthorized, others → protocol; no CONNACK within connectTimeoutMs → network.
   */
  static connect(connect: Connect, endpoint: Endpoint, clock: Clock, options: MqttClientOptions): Promise<MqttClient> {
    try {
      const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
      if (!(timeoutMs > 0 && timeoutMs <= 2_147_483_647)) {
        throw new ProvisioningError('invalid-input', 'The MQTT connect timeout must be a positive number of ms');
      }
      // Encoding CONNECT first finds bad options (keep-alive, over-long strings) before any traffic.
      const hello = encodePacket({
        type: 'connect',
        clientId: options.clientId,
        keepAlive: options.keepAliveSeconds ?? DEFAULT_KEEP_ALIVE_SECONDS,
        clean: true,
        ...(options.username !== undefined && { username: options.username }),
        ...(options.password !== undefined && { password: options.password }),
      });
      return new MqttClient(endpoint, clock, options).#open(connect, hello, timeoutMs);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /** Resolves with the granted QoS when SUBACK arrives; rejects (kind 'failed') when the server refuses the subscription. */
  subscribe(topic: string, qos: 0 | 1): Promise<number> {
    const subscribe = (messageId: number): Packet => ({ type: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
    return this.#request('suback', topic, qos, subscribe);
  }

  /** QoS 0 resolves once written; QoS 1 resolves on PUBACK. */
  async publish(topic: string, payload: Uint8Array, qos: 0 | 1): Promise<void> {
    if (qos === 1) {
      const publish = (messageId: number): Packet => ({ type: 'publish', topic, payload, qos, dup: false, retain: false, messageId });
      await this.#request('puback', topic, qos, publish);
      return;
    }
    if (!this.#canSend()) throw this.#notOpen(`publish to ${JSON.stringify(topic)}`);
    this.#write(encodePacket({ type: 'publish', topic, payload, qos, dup: false, retain: false })); // checks qos at run time
    if (!this.#canSend()) throw this.#notOpen(`publish to ${JSON.stringify(topic)}`); // the write closed it
  }

  /** Sends DISCONNECT and closes; pending operations reject with kind 'network'. onClose is not called. Idempotent. */
  disconnect(): void {
    if (this.#state === 'closed') return;
    const farewell = this.#state === 'open' ? encodePacket({ type: 'disconnect' }) : undefined;
    // The error is made only when a pending operation or a later call needs it: capturing an
    // Error's stack costs ~20 µs, a tenth of a whole provisioning's CPU in the core.
    this.#shutdown(() => new ProvisioningError('network', 'The MQTT connection was closed by disconnect()'), farewell);
  }

  #open(connect: Connect, hello: Uint8Array, timeoutMs: number): Promise<MqttClient> {
    const where = `${this.#endpoint.host}:${this.#endpoint.port}`;
    return new Promise<MqttClient>((resolve, reject) => {
      this.#connected = { resolve: () => resolve(this), reject };
      this.#arm('connect', timeoutMs, () => {
        const message = this.#connection
          ? `The server at ${where} did not answer CONNECT within ${timeoutMs / 1000} s`
          : `Could not open a connection to ${where} within ${timeoutMs / 1000} s`;
        this.#fail(new ProvisioningError('network', message));
      });
      let opening: Promise<Connection>;
      try {
        opening = connect(this.#endpoint, { onData: (data) => this.#onData(data), onClose: (error) => this.#onConnectionClose(error) });
      } catch (error) {
        opening = Promise.reject(error);
      }
      opening.then(
        (connection) => {
          if (this.#state === 'closed') return connection.close(); // timed out or failed meanwhile
          this.#connection = connection;
          this.#write(hello);
          if (this.#state !== 'connecting' || !this.#onConnectSent) return;
          try {
            this.#onConnectSent(this);
          } catch (error) {
            const reason = error instanceof Error ? error.message : String(error);
            this.#fail(new ProvisioningError('invalid-input', `Sending behind CONNECT failed: ${reason}`, { cause: error }));
          }
        },
        (error: unknown) => {
          const message = `Could not connect to ${where}: ${error instanceof Error ? error.message : String(error)}`;
          this.#fail(isProvisioningError(error) ? error : new ProvisioningError('network', message, { cause: error }));
        },
      );
    });
  }

  #request(awaits: InFlight['awaits'], topic: string, qos: 0 | 1, packet: (messageId: number) => Packet): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const what = awaits === 'suback' ? `subscribe to ${JSON.stringify(topic)}` : `publish to ${JSON.stringify(topic)}`;
      if (!this.#canSend()) return reject(this.#notOpen(what));
      const messageId = this.#allocateId();
      if (messageId === undefined) {
        return reject(new ProvisioningError('invalid-input', `Cannot ${what}: 65535 MQTT operations are in flight`));
      }
      const bytes = encodePacket(packet(messageId)); // throws invalid-input for a bad topic: rejects, nothing sent
      this.#inFlight.set(messageId, { awaits, topic, qos, resolve, reject });
      this.#write(bytes);
    });
  }

  /** Message ids cycle 1..65535, skipping ids still in flight. */
  #allocateId(): number | undefined {
    for (let tries = 0; tries < 0xffff; tries++) {
      const id = this.#nextId;
      this.#nextId = id === 0xffff ? 1 : id + 1;
      if (!this.#inFlight.has(id)) return id;
    }
    return undefined;
  }

  #write(bytes: Uint8Array): void {
    try {
      this.#connection!.write(bytes);
    } catch (error) {
      const reason = error instanceof Error ? `: ${error.message}` : '';
      return this.#fail(new ProvisioningError('network', `Writing to the MQTT connection failed${reason}`, { cause: error }));
    }
    this.#arm('sendIdle', this.#keepAliveMs, () => this.#ping());
  }

  #onData(data: Uint8Array): void {
    if (this.#state === 'closed') return;
    let packets: Packet[];
    try {
      packets = this.#decoder.push(data);
    } catch (error) {
      return this.#fail(isProvisioningError(error) ? error : new ProvisioningError('protocol', String(error)));
    }
    for (const packet of packets) {
      if (this.#isClosed()) break; // a packet or a callback ended the session
      this.#pingOutstanding = false;
      this.#arm('receiveIdle', this.#keepAliveMs, () => this.#ping());
      this.#handle(packet);
    }
  }

  #handle(packet: Packet): void {
    if (this.#state === 'connecting') {
      if (packet.type !== 'connack' || !this.#connection) {
        return this.#fail(unexpected(`${packet.type.toUpperCase()} before CONNACK`));
      }
      this.#timers.connect?.();
      this.#timers.connect = undefined;
      if (packet.returnCode !== 0) return this.#fail(connackError(packet.returnCode, this.#clientId));
      if (packet.sessionPresent) return this.#fail(unexpected('CONNACK with session present for a clean session'));
      this.#state = 'open';
      this.#arm('sendIdle', this.#keepAliveMs, () => this.#ping());
      this.#arm('receiveIdle', this.#keepAliveMs, () => this.#ping());
      const connected = this.#connected;
      this.#connected = undefined;
      return connected?.resolve();
    }
    switch (packet.type) {
      case 'suback': {
        const request = this.#take(packet.messageId, 'suback');
        if (!request) return;
        const [granted = 0, ...more] = packet.granted;
        const broken = more.length
          ? `SUBACK with ${packet.granted.length} return codes for one topic filter`
          : granted !== 0x80 && granted > request.qos
            ? `SUBACK granting QoS ${granted} for a QoS ${request.qos} request`
            : undefined;
        if (broken) {
          const error = unexpected(broken);
          request.reject(error);
          return this.#fail(error);
        }
        if (granted !== 0x80) return request.resolve(granted);
        return request.reject(new ProvisioningError('failed', `The server refused the subscription to ${JSON.stringify(request.topic)}`));
      }
      case 'puback':
        return this.#take(packet.messageId, 'puback')?.resolve(1);
      case 'publish':
        if (packet.qos === 1) this.#write(encodePacket({ type: 'puback', messageId: packet.messageId! }));
        if (this.#state === 'open') this.#deliver(packet.topic, packet.payload);
        return;
      case 'pingresp':
        return;
      case 'unsuback': // this client never unsubscribes
        return void this.#take(packet.messageId, 'unsuback');
      case 'connack':
        return this.#fail(unexpected('second CONNACK'));
      default:
        return this.#fail(unexpected(`${packet.type.toUpperCase()}, which only a client sends`));
    }
  }

  /**
   * Hands a message to onMessage. An exception there ends the session (onClose reports it): it
   * never escapes into the host's socket callback, where it would be lost or abort the device.
   */
  #deliver(topic: string, payload: Uint8Array): void {
    try {
      this.#onMessage(topic, payload);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      this.#fail(new ProvisioningError('protocol', `Handling the message on ${JSON.stringify(topic)} failed: ${reason}`, { cause: error }));
    }
  }

  /** The request a SUBACK / PUBACK answers; none is a protocol error that closes the session. */
  #take(messageId: number, answer: string): InFlight | undefined {
    const request = this.#inFlight.get(messageId);
    if (request?.awaits !== answer) {
      this.#fail(unexpected(`${answer.toUpperCase()} for message id ${messageId}, which matches no request in flight`));
      return undefined;
    }
    this.#inFlight.delete(messageId);
    return request;
  }

  /** (Re)starts a timer. Keep-alive timers run only while open, and only when keep-alive is on. */
  #arm(name: TimerName, ms: number, callback: () => void): void {
    if (name !== 'connect' && (this.#state !== 'open' || ms === 0)) return;
    this.#timers[name]?.();
    this.#timers[name] = this.#clock.setTimer(() => {
      this.#timers[name] = undefined;
      callback();
    }, ms);
  }

  // Keep-alive (§3.1.2.10): PINGREQ after keepAlive of not sending, or of not receiving; after a
  // PINGREQ the server has keepAlive to send anything at all, or the session ends as silent.
  #ping(): void {
    if (this.#state !== 'open' || this.#pingOutstanding) return;
    this.#pingOutstanding = true;
    this.#write(encodePacket({ type: 'pingreq' }));
    this.#arm('receiveIdle', this.#keepAliveMs, () => {
      const seconds = this.#keepAliveMs / 1000;
      this.#fail(new ProvisioningError('network', `The server went silent: nothing arrived within ${seconds} s of a PINGREQ`));
    });
  }

  #onConnectionClose(error?: Error): void {
    if (this.#state === 'closed') return;
    const where = `${this.#endpoint.host}:${this.#endpoint.port}`;
    const when = this.#state === 'connecting' ? ' before answering CONNECT' : '';
    const message = error
      ? `The connection to ${where} was lost${when}: ${error.message}`
      : `The server at ${where} closed the connection${when}`;
    this.#fail(new ProvisioningError('network', message, error ? { cause: error } : {}));
  }

  /** Ends the session for `error`; onClose fires if the session had been open. */
  #fail(error: ProvisioningError): void {
    if (this.#state === 'closed') return;
    const wasOpen = this.#state === 'open';
    this.#shutdown(error);
    if (wasOpen) this.#onClose(error);
  }

  #shutdown(reason: ProvisioningError | (() => ProvisioningError), farewell?: Uint8Array): void {
    this.#state = 'closed'; // first: a close that re-enters through onClose is ignored
    this.#closeError = reason;
    for (const cancel of Object.values(this.#timers)) cancel?.();
    this.#timers = {};
    try {
      if (farewell) this.#connection?.write(farewell);
    } catch {
      // Closing anyway.
    }
    this.#connection?.close();
    const connected = this.#connected;
    this.#connected = undefined;
    if (connected) connected.reject(this.#closeReason()!);
    if (this.#inFlight.size === 0) return;
    const error = this.#closeReason()!;
    const inFlight = [...this.#inFlight.values()];
    this.#inFlight.clear();
    for (const request of inFlight) request.reject(error);
  }

  #closeReason(): ProvisioningError | undefined {
    if (typeof this.#closeError === 'function') this.#closeError = this.#closeError();
    return this.#closeError;
  }

  /** Open, or connecting with CONNECT already written (requests may follow it before CONNACK). */
  #canSend(): boolean {
    return this.#state === 'open' || (this.#state === 'connecting' && this.#connection !== undefined);
  }

  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #notOpen(what: string): ProvisioningError {
    const closeError = this.#closeReason();
    const reason = closeError ? `: ${closeError.message}` : '';
    return new ProvisioningError('network', `Cannot ${what}: the MQTT connection is closed${reason}`, { cause: closeError });
  }
}

function unexpected(what: string): ProvisioningError {
  return new ProvisioningError('protocol', `The MQTT server sent an unexpected ${what}`);
}

/** CONNACK return codes (§3.2.2.3) as error kinds. */
function connackError(code: number, clientId: string): ProvisioningError {
  // The advice a person can act on depends on the service (DPS, IoT Hub): its driver adds it.
  const fail = (kind: ErrorKind, message: string) => new ProvisioningError(kind, message, { status: code });
  switch (code) {
    case 1:
      return fail('protocol', 'The server refused MQTT 3.1.1 (CONNACK 1: unacceptable protocol version)');
    case 2:
      return fail(
        'invalid-input',
        `The server rejected the client identifier ${JSON.stringify(clientId)} (CONNACK 2: identifier rejected)`,
      );
    case 3:
      return fail('server', 'The server is unavailable (CONNACK 3: server unavailable); try again later');
    case 4:
      return fail('unauthorized', 'The server refused the credentials (CONNACK 4: bad user name or password)');
    case 5:
      return fail('unauthorized', 'The server refused the connection (CONNACK 5: not authorized)');
    default:
      return fail('protocol', `The server answered CONNECT with an unknown CONNACK return code ${code}`);
  }
}

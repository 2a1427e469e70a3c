// The server side of one MQTT 3.1.1 connection, without a broker: for an endpoint that answers
// requests (DPS) rather than routing messages between clients. It parses and bounds what arrives,
// keeps the protocol's order and timers, writes what the endpoint sends, and hands the endpoint
// the CONNECT, SUBSCRIBE, UNSUBSCRIBE and PUBLISH packets; the endpoint decides what they mean.
//
//   bytes ── PacketSizeScanner (over maxPacketBytes: closed before buffering) ── mqtt-packet parser
//     CONNECT first (within connectTimeoutMs; MQTT 3.1.1 only, else CONNACK 1), once; reading
//       pauses until the endpoint answers it: accept() sends CONNACK 0, refuse(code) CONNACK
//       code and closes
//     after CONNACK 0: SUBSCRIBE, UNSUBSCRIBE, PUBLISH → the endpoint; PINGREQ → PINGRESP;
//       PUBACK ignored (responses at QoS 1 are not resent); DISCONNECT closes; any other packet,
//       or nothing for 1.5 × keep-alive, closes (§3.1.2.10, §4.8)
//   send() ── the packets written in one turn of the event loop leave as one write (one TLS
//     record), flushed in its check phase
import type { Duplex } from 'node:stream';
import {
  generate,
  type IConnectPacket,
  type IPublishPacket,
  type ISubscribePacket,
  type IUnsubscribePacket,
  parser as mqttParser,
  type Packet,
} from 'mqtt-packet';
import { PacketSizeScanner } from './packet-limit.js';

export interface MqttSessionHandlers {
  /** The CONNECT: answer it with accept() or refuse(), now or later (or never: the connection stays open). */
  connect(packet: IConnectPacket): void;
  subscribe(packet: ISubscribePacket): void;
  /** After the session has sent UNSUBACK. */
  unsubscribe(packet: IUnsubscribePacket): void;
  /** A PUBLISH at QoS 0 or 1 (QoS 2 closes the connection); a QoS 1 one has had its PUBACK. */
  publish(packet: IPublishPacket): void;
  /** Why the connection ended badly: a protocol breach, a timeout, a socket error (not a clean close). */
  error(reason: string): void;
  /** The connection is gone, however it ended. */
  closed(): void;
}

export interface MqttSessionOptions {
  maxPacketBytes: number;
  /** From the first byte to a complete CONNECT. */
  connectTimeoutMs: number;
}

/** How long a connection we close waits for the peer to close its side. */
const LINGER_MS = 2000;

export class MqttSession {
  readonly #stream: Duplex;
  readonly #handlers: MqttSessionHandlers;
  readonly #scanner: PacketSizeScanner;
  readonly #parser = mqttParser({ protocolVersion: 4 });
  /** 'new' until CONNECT, 'connecting' until accepted, then 'open'; 'closed' once it ends. */
  #state: 'new' | 'connecting' | 'open' | 'closed' = 'new';
  /** Packets parsed from the same chunk as the CONNECT, held until it is answered. */
  #held: Packet[] = [];
  #timer: NodeJS.Timeout | undefined;
  #keepAliveMs = 0;
  #out: Buffer[] = [];
  #then: (() => void)[] = [];
  #flushScheduled = false;
  #nextMessageId = 0;

  constructor(stream: Duplex, handlers: MqttSessionHandlers, options: MqttSessionOptions) {
    this.#stream = stream;
    this.#handlers = handlers;
    this.#scanner = new PacketSizeScanner(options.maxPacketBytes);
    this.#parser.on('packet', (packet: Packet) => this.#packet(packet));
    this.#parser.on('error', (error: Error) => this.#fail(`malformed MQTT: ${error.message}`));
    this.#timer = setTimeout(() => this.#fail('no CONNECT in time'), options.connectTimeoutMs);
    stream.on('data', (chunk: Buffer) => {
      if (this.#state === 'closed') return;
      const problem = this.#scanner.feed(chunk);
      if (problem) return this.#fail(`MQTT packet refused: ${problem}`);
      if (this.#state === 'open') this.#timer?.refresh();
      this.#parser.parse(chunk);
    });
    stream.on('error', (error: Error) => this.#fail(error.message));
    stream.on('end', () => this.destroy());
    stream.on('close', () => this.#closed());
    stream.resume(); // a stream handed on paused (websocket.ts reads the CONNECT first)
  }

  /** Closed, or closing. */
  get closed(): boolean {
    return this.#state === 'closed' || this.#stream.destroyed;
  }

  /** CONNACK 0: the session is open; what arrived meanwhile is read now. */
  accept(): void {
    if (this.#state !== 'connecting') return;
    this.#state = 'open';
    this.send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
    this.#startKeepAlive();
    const held = this.#held;
    this.#held = [];
    for (const packet of held) if (this.#state === 'open') this.#packet(packet);
    if (this.#state === 'open') this.#stream.resume();
  }

  /** CONNACK with a refusing return code (1 to 5), then close. */
  refuse(returnCode: number): void {
    if (this.#state !== 'connecting') return;
    this.send({ cmd: 'connack', returnCode, sessionPresent: false });
    this.hangUp();
  }

  /** A message ID for a QoS 1 PUBLISH of ours (1 to 65535, §2.3.1). */
  messageId(): number {
    this.#nextMessageId = (this.#nextMessageId % 0xffff) + 1;
    return this.#nextMessageId;
  }

  /** Queue a packet; `then` runs once it has been written (or dropped with the connection). */
  send(packet: Packet, then?: () => void): void {
    if (this.closed) {
      then?.();
      return;
    }
    this.#out.push(generate(packet));
    if (then) this.#then.push(then);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** Close after what was sent has gone out; read nothing more meanwhile. */
  hangUp(): void {
    if (this.closed) return;
    this.#flush();
    this.#state = 'closed';
    this.#clearTimer();
    this.#stream.pause();
    this.#stream.end();
    const linger = setTimeout(() => this.#stream.destroy(), LINGER_MS); // a peer that never closes its side
    this.#stream.once('close', () => clearTimeout(linger));
  }

  /** Write these bytes as they are (a fault), in order with what was sent. */
  sendRaw(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#out.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    this.#flush();
  }

  /** Close now, without waiting for anything to go out. */
  destroy(): void {
    this.#stream.destroy();
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const out = this.#out;
    const then = this.#then;
    if (out.length === 0) return;
    this.#out = [];
    this.#then = [];
    if (this.#stream.destroyed || this.#stream.writableEnded) {
      for (const run of then) run();
      return;
    }
    this.#stream.write(out.length === 1 ? out[0]! : Buffer.concat(out), () => {
      for (const run of then) run();
    });
  };

  #packet(packet: Packet): void {
    if (this.#state === 'closed') return;
    if (this.#state === 'connecting') {
      this.#held.push(packet);
      return;
    }
    if (this.#state === 'new') {
      if (packet.cmd !== 'connect') return this.#fail(`${packet.cmd} before CONNECT`);
      this.#state = 'connecting';
      this.#clearTimer();
      this.#keepAliveMs = (packet.keepalive ?? 0) * 1500;
      if (packet.protocolVersion !== 4) {
        this.send({ cmd: 'connack', returnCode: 1, sessionPresent: false }); // unacceptable protocol level
        this.hangUp();
        return;
      }
      this.#stream.pause();
      this.#handlers.connect(packet);
      return;
    }
    switch (packet.cmd) {
      case 'publish':
        if (packet.qos === 2) return this.#fail('QoS 2 is not supported'); // as IoT Hub: the connection is closed
        if (packet.qos === 1) this.send({ cmd: 'puback', messageId: packet.messageId! });
        return this.#handlers.publish(packet);
      case 'subscribe':
        return this.#handlers.subscribe(packet);
      case 'unsubscribe':
        this.send({ cmd: 'unsuback', messageId: packet.messageId!, granted: [] }); // MQTT 3.1.1: no return codes
        return this.#handlers.unsubscribe(packet);
      case 'pingreq':
        return this.send({ cmd: 'pingresp' });
      case 'puback':
        return;
      case 'disconnect':
        return this.hangUp();
      default:
        return this.#fail(`unexpected ${packet.cmd}`);
    }
  }

  /** Keep-alive (§3.1.2.10): the connection closes after 1.5 × keep-alive with nothing heard (each chunk re-arms it). */
  #startKeepAlive(): void {
    if (this.#keepAliveMs > 0) this.#timer = setTimeout(() => this.#fail('keep-alive timeout'), this.#keepAliveMs);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fail(reason: string): void {
    if (this.#state === 'closed' && this.#stream.destroyed) return;
    this.#state = 'closed';
    this.#clearTimer();
    this.#handlers.error(reason);
    this.#stream.destroy();
  }

  #closed(): void {
    this.#state = 'closed';
    this.#clearTimer();
    this.#held = [];
    const then = this.#then;
    this.#out = [];
    this.#then = [];
    for (const run of then) run();
    this.#handlers.closed();
  }
}

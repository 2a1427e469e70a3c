// The floor: what any client must spend on loopback against this server. Measured directly:
//   - a TLS handshake (tls.connect to secureConnect, trusting only the emulator's CA);
//   - an MQTT round trip (PINGREQ → PINGRESP on an authenticated connection);
//   - an "ideal" client: raw node:tls, every packet encoded before the clock starts, responses
//     found by byte framing and a regular expression, nothing else. It sends what our core
//     sends (CONNECT; SUBSCRIBE + register PUBLISH pipelined; poll PUBLISH after retry-after),
//     so its time is the protocol's floor on this server, the server's own work included.
import { isIP } from 'node:net';
import tls from 'node:tls';
import { dpsUsername, pollTopic, RESPONSE_SUBSCRIBE_TOPIC, registerTopic } from '../src/dps/topics.js';
import { deriveDeviceKey } from '../src/identity.js';
import { encodePacket } from '../src/mqtt/codec.js';
import { dpsRegistrationSasToken } from '../src/sas.js';
import { BENCH_GROUP_KEY, BENCH_ID_SCOPE, type Target } from './common.js';

export function minimalContext(target: Target, maxVersion?: 'TLSv1.2'): tls.SecureContext {
  return tls.createSecureContext({ ca: target.caPem, ...(maxVersion && { maxVersion }) });
}

/** Addressed as ours is: SNI with a host name, none with an IP address (then the certificate's IP is checked). */
function open(target: Target, context: tls.SecureContext, session?: Buffer): tls.TLSSocket {
  const servername = isIP(target.host) === 0 ? target.host : undefined;
  const socket = tls.connect({
    host: target.host,
    port: target.port,
    secureContext: context,
    ...(servername && { servername }),
    ...(session && { session }),
  });
  socket.setNoDelay(true);
  return socket;
}

/** ms from tls.connect to secureConnect; the socket is then destroyed. */
export function handshake(target: Target, context: tls.SecureContext): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = open(target, context);
    socket.once('secureConnect', () => {
      resolve(performance.now() - started);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** Splits a byte stream into MQTT packets (fixed header + remaining length). */
class Framer {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const packets: Buffer[] = [];
    for (;;) {
      let length = 0;
      let multiplier = 1;
      let i = 1;
      for (; ; i++) {
        if (i >= this.#buffer.length) return packets;
        length += (this.#buffer[i]! & 0x7f) * multiplier;
        multiplier *= 128;
        if (!(this.#buffer[i]! & 0x80)) break;
      }
      const end = i + 1 + length;
      if (this.#buffer.length < end) return packets;
      packets.push(this.#buffer.subarray(0, end));
      this.#buffer = this.#buffer.subarray(end);
    }
  }
}

function connectPacket(registrationId: string): Uint8Array {
  const key = deriveDeviceKey(BENCH_GROUP_KEY, registrationId);
  const password = dpsRegistrationSasToken(BENCH_ID_SCOPE, registrationId, key, Math.floor(Date.now() / 1000) + 3600);
  return encodePacket({
    type: 'connect',
    clientId: registrationId,
    keepAlive: 60,
    clean: true,
    username: dpsUsername(BENCH_ID_SCOPE, registrationId),
    password,
  });
}

/** `count` PINGREQ → PINGRESP round trips, one at a time, on an authenticated connection (ms each). */
export function mqttRoundTrips(target: Target, context: tls.SecureContext, registrationId: string, count: number): Promise<number[]> {
  const hello = connectPacket(registrationId);
  return new Promise((resolve, reject) => {
    const socket = open(target, context);
    const framer = new Framer();
    const samples: number[] = [];
    let sent = 0;
    const ping = (): void => {
      sent = performance.now();
      socket.write(Uint8Array.of(0xc0, 0));
    };
    socket.once('secureConnect', () => socket.write(hello));
    socket.on('data', (chunk: Buffer) => {
      for (const packet of framer.push(chunk)) {
        const type = packet[0]! >> 4;
        if (type === 2 && packet[3] !== 0) return reject(new Error(`CONNACK ${packet[3]}`));
        if (type === 13) samples.push(performance.now() - sent);
        if (type !== 2 && type !== 13) continue;
        if (samples.length < count) ping();
        else {
          socket.destroy();
          resolve(samples);
        }
      }
    });
    socket.once('error', reject);
  });
}

export interface IdealTimes {
  /** From tls.connect to the assigned response. */
  totalMs: number;
  handshakeMs: number;
  /** CONNECT → CONNACK, SUBSCRIBE + register → 202, each poll → its response. */
  connectMs: number;
  registerMs: number;
  pollMs: number[];
  waitedMs: number;
}

/** One provisioning by the ideal client. `session` resumes TLS; `onSession` receives new tickets. */
export function idealProvision(
  target: Target,
  context: tls.SecureContext,
  registrationId: string,
  options: { session?: Buffer; onSession?: (ticket: Buffer) => void } = {},
): Promise<IdealTimes> {
  const hello = connectPacket(registrationId);
  const subscribe = encodePacket({ type: 'subscribe', messageId: 1, subscriptions: [{ topic: RESPONSE_SUBSCRIBE_TOPIC, qos: 1 }] });
  const body = Buffer.from(JSON.stringify({ registrationId }));
  const register = encodePacket({
    type: 'publish',
    topic: registerTopic('1'),
    payload: body,
    qos: 1,
    dup: false,
    retain: false,
    messageId: 2,
  });
  const request = Buffer.concat([subscribe, register]);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const times: IdealTimes = { totalMs: 0, handshakeMs: 0, connectMs: 0, registerMs: 0, pollMs: [], waitedMs: 0 };
    let mark = started;
    let messageId = 2;
    const lap = (): number => {
      const now = performance.now();
      const ms = now - mark;
      mark = now;
      return ms;
    };
    const socket = open(target, context, options.session);
    if (options.onSession) socket.on('session', options.onSession);
    const framer = new Framer();
    socket.once('secureConnect', () => {
      times.handshakeMs = lap();
      socket.write(hello);
    });
    socket.on('data', (chunk: Buffer) => {
      for (const packet of framer.push(chunk)) {
        const type = packet[0]! >> 4;
        if (type === 2) {
          if (packet[3] !== 0) return reject(new Error(`CONNACK ${packet[3]}`));
          times.connectMs = lap();
          socket.write(request);
        } else if (type === 3) {
          const text = packet.toString('latin1');
          const status = /res\/(\d+)\//.exec(text)?.[1];
          const elapsed = lap();
          if (messageId === 2) times.registerMs = elapsed;
          else times.pollMs.push(elapsed);
          if (status === '200' && text.includes('"status":"assigned"')) {
            times.totalMs = performance.now() - started;
            socket.end(Uint8Array.of(0xe0, 0));
            return resolve(times);
          }
          const operationId = /"operationId":"([^"]+)"/.exec(text)?.[1];
          if (status !== '202' || !operationId) return reject(new Error(`unexpected response: ${text.slice(0, 200)}`));
          const waitMs = Number(/retry-after=(\d+)/.exec(text)?.[1] ?? 3) * 1000;
          const poll = encodePacket({
            type: 'publish',
            topic: pollTopic(String(++messageId), operationId),
            payload: new Uint8Array(0),
            qos: 1,
            dup: false,
            retain: false,
            messageId,
          });
          setTimeout(() => {
            times.waitedMs += lap();
            socket.write(poll);
          }, waitMs);
        }
      }
    });
    socket.once('error', reject);
  });
}

// MQTT over secure WebSockets, as DPS and IoT Hub serve it on 443 beside HTTPS:
// `wss://<host>/$iothub/websocket` with the subprotocol `mqtt` (Microsoft's device SDKs' MqttWs
// transports; MQTT 3.1.1 §6). Here it shares the port of DPS's HTTPS device API, which on Azure
// is the same 443.
//
//   HTTPS server ── 'upgrade' ── path /$iothub/websocket? subprotocol mqtt? ── 101 (ws)
//     └─ the first MQTT packet (CONNECT) is read to choose the service: a DPS username
//        (<idScope>/registrations/<id>/...) goes to the DPS endpoint, any other (<hub>/<device>/...)
//        to the hub endpoint, which checks the hub name and the TLS server name as on its own
//        port; the bytes read are handed on untouched, and the MQTT endpoints take it from there.
//
// Refusals: another path 404; no `mqtt` among the offered subprotocols 400; a frame larger than
// `maxFrameBytes` closes with 1009 (ws); a first packet that is not a CONNECT, or none within
// `connectTimeoutMs`, closes the connection. Nothing here keeps state beyond one connection.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { WEBSOCKET_PATH } from '../src/ws/client.js';
import { type PeerCertificates, peerCertificates } from './x509.js';

/** An MQTT endpoint's entry for a stream that did not come through its own TLS port (with its TLS client certificates). */
export type AcceptStream = (stream: Duplex, servername: string | false, peer?: PeerCertificates) => void;

export interface WebSocketRouterOptions {
  /** The DPS endpoint (device-endpoint.ts). */
  dps: AcceptStream;
  /** The hubs' endpoint (iothub-endpoint.ts). */
  hub: AcceptStream;
  /** Largest WebSocket message; default 320 KiB (the hub's 257 KiB packet limit and more). */
  maxFrameBytes?: number;
  /** From the upgrade to a complete CONNECT packet; default 10 s. */
  connectTimeoutMs?: number;
}

/** Largest CONNECT read while choosing the service (client ID, will, username, password: well under this). */
const MAX_CONNECT_BYTES = 16 * 1024;

/** The server's 'upgrade' listener. */
export function webSocketRouter(options: WebSocketRouterOptions): (request: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const server = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxFrameBytes ?? 320 * 1024,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
  });
  return (request, socket, head) => {
    socket.on('error', () => {}); // a client gone mid-upgrade
    const path = (request.url ?? '').split('?')[0];
    if (path !== WEBSOCKET_PATH) return refuse(socket, 404, 'Not Found', `MQTT over WebSockets is served on ${WEBSOCKET_PATH}`);
    const offered = String(request.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    if (!offered.includes('mqtt')) return refuse(socket, 400, 'Bad Request', "the WebSocket subprotocol must be 'mqtt'");
    const servername = (socket as TLSSocket).servername || false;
    const peer = typeof (socket as TLSSocket).getPeerX509Certificate === 'function' ? peerCertificates(socket as TLSSocket) : undefined;
    server.handleUpgrade(request, socket, head, (ws) => {
      // MQTT over WebSockets is binary only (MQTT 3.1.1 §6): a text frame ends the connection.
      ws.on('message', (_data, isBinary) => {
        if (!isBinary) ws.close(1003, 'MQTT needs binary frames');
      });
      const stream = createWebSocketStream(ws);
      stream.on('error', () => {}); // the MQTT endpoint reports what matters
      routeByConnect(stream, connectTimeoutMs, (username) => {
        const service = username !== undefined && /^[^/]+\/registrations\//.test(username) ? options.dps : options.hub;
        service(stream, servername, peer);
      });
    });
  };
}

function refuse(socket: Duplex, status: number, reason: string, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  (socket as Socket).destroySoon?.();
}

/**
 * Read until the first MQTT packet is complete, then put it back and call `then` with its
 * username (undefined when it has none). Anything but a CONNECT, or nothing in time, closes.
 */
function routeByConnect(stream: Duplex, timeoutMs: number, then: (username: string | undefined) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => stream.destroy(), timeoutMs);
  const done = (): void => {
    clearTimeout(timer);
    stream.off('data', onData);
    stream.off('close', onClose);
  };
  const onClose = (): void => clearTimeout(timer);
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const result = connectUsername(buffered);
    if (result === 'incomplete') {
      if (buffered.length > MAX_CONNECT_BYTES) {
        done();
        stream.destroy();
      }
      return;
    }
    done();
    if (result === 'invalid') {
      stream.destroy();
      return;
    }
    stream.pause();
    stream.unshift(buffered);
    then(result.username);
  };
  stream.on('data', onData);
  stream.on('close', onClose);
}

/** The username of the MQTT CONNECT packet at the start of `bytes` (MQTT 3.1.1 §3.1). */
export function connectUsername(bytes: Uint8Array): { username: string | undefined } | 'incomplete' | 'invalid' {
  if (bytes.length === 0) return 'incomplete';
  if (bytes[0] !== 0x10) return 'invalid';
  let length = 0;
  let at = 1;
  for (let shift = 0; ; shift += 7) {
    if (at >= bytes.length) return 'incomplete';
    if (shift > 21) return 'invalid';
    const byte = bytes[at++]!;
    length += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
  }
  if (length > MAX_CONNECT_BYTES) return 'invalid';
  const end = at + length;
  if (bytes.length < end) return 'incomplete';
  const field = (): Uint8Array | undefined => {
    if (at + 2 > end) return undefined;
    const size = (bytes[at]! << 8) | bytes[at + 1]!;
    if (at + 2 + size > end) return undefined;
    const value = bytes.subarray(at + 2, at + 2 + size);
    at += 2 + size;
    return value;
  };
  if (field() === undefined) return 'invalid'; // protocol name
  if (at + 4 > end) return 'invalid'; // level, flags, keep-alive
  const flags = bytes[at + 1]!;
  at += 4;
  if (field() === undefined) return 'invalid'; // client identifier
  if (flags & 0x04 && (field() === undefined || field() === undefined)) return 'invalid'; // will topic, will message
  if ((flags & 0x80) === 0) return { username: undefined };
  const username = field();
  if (username === undefined) return 'invalid';
  return { username: Buffer.from(username).toString('utf8') };
}

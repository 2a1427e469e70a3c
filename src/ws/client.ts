// MQTT over secure WebSockets as a Connect port over another one (the host's TLS): what DPS and
// IoT Hub accept on 443 where 8883 is blocked, on every engine the core runs on.
//
//   connect(endpoint) ─ TLS ─▶ GET /$iothub/websocket, Upgrade, Sec-WebSocket-Protocol: mqtt
//        ◀─ 101, Sec-WebSocket-Accept checked ─ the Connection is handed out
//   write(bytes)   the writes of one turn leave as one masked binary frame
//   onData(bytes)  payloads of the server's binary frames, as they arrive; pings answered
//   close()        a close frame (1000), then the TLS connection closes
//
// The client waits for the 101 before sending MQTT (RFC 6455 §4.1): one round trip more than
// plain MQTT. The MQTT client's connect deadline covers the upgrade (its timer runs from before
// connect() is called).
//
// Why not the Moddable SDK's websocket module: it reads a frame as if all of it had arrived
// (a frame split across TLS records is misread), has no 64-bit lengths or continuation frames,
// checks neither Sec-WebSocket-Accept nor the subprotocol, masks with zeros, and sends at most
// 64 KiB a message, where IoT Hub takes 256 KiB. And the core must run on Node and xsnap too.
import { base64Encode } from '../bytes.js';
import { ProvisioningError } from '../errors.js';
import type { Connect, Connection, ConnectionHandlers, Endpoint, Random } from '../ports.js';
import {
  checkUpgradeResponse,
  closePayload,
  encodeFrame,
  encodeUpgradeRequest,
  FrameDecoder,
  Opcode,
  parseResponseHead,
} from './frames.js';

/** The path DPS and IoT Hub serve MQTT over WebSockets on (Microsoft's device SDKs). */
export const WEBSOCKET_PATH = '/$iothub/websocket';
/** DPS's and IoT Hub's port for MQTT over WebSockets (and HTTPS). */
export const WEBSOCKET_PORT = 443;
/** Largest HTTP response head taken from the server. */
const MAX_HEAD_BYTES = 8192;

export interface WebSocketOptions {
  /** Nonces: the handshake key and each frame's mask (RFC 6455 §5.3: unpredictable). */
  random: Random;
  /** The Host header's name, when not the endpoint's host (a development override that connects to an address). */
  hostName?: string;
  path?: string;
}

/** `connect` (TLS) carrying MQTT over WebSockets. */
export function webSocketConnect(connect: Connect, options: WebSocketOptions): Connect {
  return (endpoint, handlers) => open(connect, endpoint, handlers, options);
}

function open(connect: Connect, endpoint: Endpoint, handlers: ConnectionHandlers, options: WebSocketOptions): Promise<Connection> {
  const random = options.random;
  const bytes = (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
    return out;
  };
  const key = base64Encode(bytes(16));
  const name = options.hostName ?? (endpoint.host.includes(':') && !endpoint.host.startsWith('[') ? `[${endpoint.host}]` : endpoint.host);
  const where = `wss://${name}:${endpoint.port}`;
  const request = encodeUpgradeRequest({
    host: endpoint.port === WEBSOCKET_PORT ? name : `${name}:${endpoint.port}`,
    path: options.path ?? WEBSOCKET_PATH,
    key,
    protocol: 'mqtt',
  });

  return new Promise<Connection>((resolve, reject) => {
    let state: 'upgrading' | 'open' | 'closing' | 'closed' = 'upgrading';
    let head = new Uint8Array(0);
    let tls: Connection | undefined;
    const decoder = new FrameDecoder();
    let pending: Uint8Array[] = [];

    const send = (opcode: number, payload: Uint8Array): void => tls?.write(encodeFrame(opcode, payload, bytes(4)));
    const end = (error?: Error): void => {
      if (state === 'closed') return;
      const was = state;
      state = 'closed';
      pending = [];
      tls?.close();
      if (was === 'upgrading')
        reject(error ?? new ProvisioningError('network', `${where} closed the connection during the WebSocket upgrade`));
      else handlers.onClose(was === 'closing' ? undefined : error);
    };
    const frames = (data: Uint8Array): void => {
      for (const event of decoder.feed(data)) {
        if (state !== 'open' && state !== 'closing') return;
        if (event.type === 'data') handlers.onData(event.bytes);
        else if (event.type === 'ping') send(Opcode.pong, event.payload);
        else if (event.type === 'close') {
          // Echo the close (§5.5.1), then end: an orderly close is no error, as a TCP FIN is not.
          if (state === 'open') send(Opcode.close, closePayload(event.code === 1005 ? 1000 : event.code));
          const orderly = event.code === 1000 || event.code === 1001 || event.code === 1005;
          end(
            orderly
              ? undefined
              : new ProvisioningError(
                  'network',
                  `${where} closed the WebSocket (${event.code}${event.reason ? `: ${event.reason.slice(0, 80)}` : ''})`,
                ),
          );
          return;
        }
      }
    };
    const onData = (data: Uint8Array): void => {
      try {
        if (state === 'upgrading') {
          const joined = new Uint8Array(head.length + data.length);
          joined.set(head);
          joined.set(data, head.length);
          const response = parseResponseHead(joined, MAX_HEAD_BYTES);
          if (!response) {
            head = joined;
            return;
          }
          checkUpgradeResponse(response, key, 'mqtt', where);
          state = 'open';
          head = new Uint8Array(0);
          resolve(connection);
          if (response.rest.length > 0) frames(response.rest);
          return;
        }
        if (state === 'open' || state === 'closing') frames(data);
      } catch (error) {
        end(error instanceof ProvisioningError ? error : new ProvisioningError('protocol', String(error), { cause: error }));
      }
    };

    const flush = (): void => {
      const chunks = pending;
      pending = [];
      if (state !== 'open' || chunks.length === 0) return;
      let payload = chunks[0]!;
      if (chunks.length > 1) {
        payload = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
        let at = 0;
        for (const chunk of chunks) {
          payload.set(chunk, at);
          at += chunk.length;
        }
      }
      send(Opcode.binary, payload);
    };
    const connection: Connection = {
      write(data) {
        if (state !== 'open' || data.length === 0) return;
        if (pending.length === 0) Promise.resolve().then(flush);
        pending.push(data);
      },
      close() {
        if (state !== 'open') return;
        flush();
        state = 'closing';
        send(Opcode.close, closePayload(1000));
        end();
      },
    };

    let opening: Promise<Connection>;
    try {
      opening = connect(endpoint, { onData, onClose: (error) => end(error) });
    } catch (error) {
      opening = Promise.reject(error);
    }
    opening.then(
      (opened) => {
        if (state === 'closed') return opened.close();
        tls = opened;
        opened.write(request);
      },
      (error: unknown) => {
        if (state !== 'upgrading') return;
        state = 'closed';
        reject(error);
      },
    );
  });
}

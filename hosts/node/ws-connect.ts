// The Node host's Connect port for MQTT over secure WebSockets: the core's WebSocket client
// (src/ws/, the firmware's own) over this host's TLS (tls-connect.ts: the same trust, SNI,
// error mapping, session resumption and, from HTTPS_PROXY, a CONNECT tunnel). The client is
// loaded at the first connection, not with every CLI command that might use it (~10 ms of
// start-up); the TLS options are checked at once, as for plain MQTT.

import type { Connect } from '../../src/ports.js';
import { nodeRandom } from './clock.js';
import { createTlsConnect, type TlsConnectOptions } from './tls-connect.js';

/** HTTPS's port, where DPS and IoT Hub serve MQTT over WebSockets (src/ws/client.ts WEBSOCKET_PORT; a test holds them equal). */
export const WEBSOCKET_PORT = 443;

/** `servername` also becomes the Host header, so a development override that connects to 127.0.0.1 still names the hub. */
export function createWebSocketConnect(options: TlsConnectOptions = {}): Connect {
  const tls = createTlsConnect(options);
  let connect: Promise<Connect> | undefined;
  return async (endpoint, handlers) => {
    connect ??= import('../../src/ws/client.js').then(({ webSocketConnect }) =>
      webSocketConnect(tls, { random: nodeRandom, ...(options.servername !== undefined && { hostName: options.servername }) }),
    );
    return (await connect)(endpoint, handlers);
  };
}

// The Node host's Connect port for MQTT over secure WebSockets: the core's WebSocket client
// (src/ws/, the firmware's own) over this host's TLS (tls-connect.ts: the same trust, SNI,
// error mapping, session resumption and, from HTTPS_PROXY, a CONNECT tunnel).

import type { Connect } from '../../src/ports.js';
import { webSocketConnect } from '../../src/ws/client.js';
import { nodeRandom } from './clock.js';
import { createTlsConnect, type TlsConnectOptions } from './tls-connect.js';

export { WEBSOCKET_PORT } from '../../src/ws/client.js';

/** `servername` also becomes the Host header, so a development override that connects to 127.0.0.1 still names the hub. */
export function createWebSocketConnect(options: TlsConnectOptions = {}): Connect {
  return webSocketConnect(createTlsConnect(options), {
    random: nodeRandom,
    ...(options.servername !== undefined && { hostName: options.servername }),
  });
}

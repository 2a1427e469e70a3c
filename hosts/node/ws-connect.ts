// The Node host's Connect port over MQTT over secure WebSockets: what DPS and IoT Hub accept on
// port 443 where a firewall blocks 8883 (Microsoft's device SDKs: `wss://<host>:443/$iothub/websocket`,
// subprotocol `mqtt`; MQTT 3.1.1 §6). The core sees the same byte stream as over plain TLS.
//
//   TCP ─(HTTPS_PROXY: HTTP CONNECT)─ TLS (verified as tls-connect.ts does) ─ GET /$iothub/websocket
//   Upgrade: websocket, Sec-WebSocket-Protocol: mqtt ─ 101 ─ binary frames carrying MQTT bytes
//
// - Trust, SNI and the host-name check are tls-connect.ts's (the same secure context and error
//   mapping). `servername` also becomes the Host header, so a development override that connects
//   to 127.0.0.1 still names the hub, as the TLS port's SNI does.
// - A proxy, when given (`proxyFor`, from HTTPS_PROXY/NO_PROXY: proxy.ts), is asked for a tunnel
//   with HTTP CONNECT (https-proxy-agent); TLS runs end to end through it, so the proxy sees
//   neither the credentials nor the traffic.
// - The writes of one turn (CONNECT, SUBSCRIBEs, the first PUBLISH) leave as one binary frame:
//   MQTT packets need not align with frames (MQTT 3.1.1 §6: the receiver must not assume it).
// - A text frame is a protocol violation (MQTT over WebSockets is binary only): the connection
//   ends with a `protocol` error. Frames larger than `maxFrameBytes` end it too (ws's maxPayload).
// - onClose is called at most once, and only for a connection that was handed out.
import type { Agent } from 'node:http';
import net from 'node:net';
import { HttpsProxyAgent } from 'https-proxy-agent';
import WebSocket from 'ws';
import { ProvisioningError } from '../../src/errors.js';
import type { Connect, Connection, ConnectionHandlers, Endpoint } from '../../src/ports.js';
import { printable } from '../../src/text.js';
import {
  checkPemCertificates,
  DEFAULT_CONNECT_TIMEOUT_MS,
  describeSocketError,
  formatHostPort,
  mapConnectError,
  stripBrackets,
  type TlsConnectOptions,
  trustContext,
} from './tls-connect.js';

/** The path DPS and IoT Hub serve MQTT over WebSockets on. */
export const WEBSOCKET_PATH = '/$iothub/websocket';
/** DPS's and IoT Hub's port for MQTT over WebSockets (and HTTPS). */
export const WEBSOCKET_PORT = 443;

export interface WebSocketConnectOptions extends Omit<TlsConnectOptions, 'resumeSessions'> {
  /** The proxy URL (http://host:port) to tunnel through for a wss:// URL, or undefined for none. */
  proxyFor?: (url: string) => string | undefined;
  /** Largest WebSocket message accepted from the server; default 1 MiB (IoT Hub's largest packet is 256 KiB + headers). */
  maxFrameBytes?: number;
}

const CLOSE_GRACE_MS = 2_000;

export function createWebSocketConnect(options: WebSocketConnectOptions = {}): Connect {
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ProvisioningError('invalid-input', 'connectTimeoutMs must be a positive number of milliseconds');
  }
  const minVersion = options.minVersion ?? 'TLSv1.2';
  if (minVersion !== 'TLSv1.2' && minVersion !== 'TLSv1.3') {
    throw new ProvisioningError('invalid-input', "minVersion must be 'TLSv1.2' or 'TLSv1.3'");
  }
  const servername = options.servername;
  if (servername !== undefined && (servername === '' || net.isIP(servername) !== 0)) {
    throw new ProvisioningError('invalid-input', 'servername must be a DNS name, not empty or an IP address');
  }
  const maxFrameBytes = options.maxFrameBytes ?? 1024 * 1024;
  const secureContext = trustContext(minVersion, options.ca === undefined ? [] : checkPemCertificates(options.ca));
  const agents = new Map<string, Agent>();
  const agentFor = (proxy: string): Agent => {
    let agent = agents.get(proxy);
    if (!agent) {
      let url: URL;
      try {
        url = new URL(proxy);
      } catch {
        throw new ProvisioningError('invalid-input', `the proxy ${printable(proxy)} is not a URL (http://host:port)`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new ProvisioningError('invalid-input', `the proxy ${printable(url.origin)} must be an http:// or https:// URL`);
      }
      agent = new HttpsProxyAgent(url) as Agent;
      agents.set(proxy, agent);
    }
    return agent;
  };

  return (endpoint, handlers) => {
    const host = stripBrackets(endpoint.host);
    const where = `wss://${formatHostPort(host, endpoint.port)}`;
    if (host === '' || !Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
      return Promise.reject(new ProvisioningError('invalid-input', `not a valid endpoint: ${formatHostPort(host, endpoint.port)}`));
    }
    const url = `wss://${formatHostPort(host, endpoint.port)}${WEBSOCKET_PATH}`;
    const name = servername ?? (net.isIP(host) === 0 ? host : undefined);
    let agent: Agent | undefined;
    try {
      const proxy = options.proxyFor?.(url);
      agent = proxy ? agentFor(proxy) : undefined;
    } catch (error) {
      return Promise.reject(error);
    }
    return open(url, where, endpoint, handlers, {
      secureContext,
      name,
      timeoutMs,
      maxFrameBytes,
      agent,
    });
  };
}

interface OpenSettings {
  secureContext: ReturnType<typeof trustContext>;
  /** SNI, certificate name and Host header; undefined for an IP literal. */
  name: string | undefined;
  timeoutMs: number;
  maxFrameBytes: number;
  agent: Agent | undefined;
}

function open(url: string, where: string, endpoint: Endpoint, handlers: ConnectionHandlers, settings: OpenSettings): Promise<Connection> {
  return new Promise<Connection>((resolve, reject) => {
    let settled = false;
    // ws hands its options to https.request and tls.connect, which take a secureContext (ws's types omit it).
    const socket = new WebSocket(url, 'mqtt', {
      ...({ secureContext: settings.secureContext } as WebSocket.ClientOptions),
      rejectUnauthorized: true,
      ...(settings.name !== undefined && {
        servername: settings.name,
        headers: { host: endpoint.port === 443 ? settings.name : `${settings.name}:${endpoint.port}` },
      }),
      ...(settings.agent && { agent: settings.agent }),
      handshakeTimeout: settings.timeoutMs,
      perMessageDeflate: false,
      maxPayload: settings.maxFrameBytes,
      followRedirects: false,
    });
    const fail = (error: ProvisioningError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {}); // terminate() may still report; nobody listens any more
      socket.terminate();
      reject(error);
    };
    // ws's handshakeTimeout covers the upgrade request; this covers the proxy's CONNECT as well.
    const timer = setTimeout(() => {
      fail(
        new ProvisioningError('network', `timed out after ${settings.timeoutMs} ms connecting to ${where} (TCP, TLS or WebSocket upgrade)`),
      );
    }, settings.timeoutMs);
    socket.on('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      response.resume();
      const proxied = settings.agent !== undefined && status === 407;
      fail(
        new ProvisioningError(
          // A 4xx other than 408 and 429 is an endpoint or proxy set up wrong: retrying won't fix it.
          status === 429 ? 'throttled' : status >= 500 ? 'server' : status === 408 ? 'network' : 'failed',
          proxied
            ? `the proxy refused to open a tunnel to ${where} (HTTP 407: proxy authentication required; put the credentials in the proxy URL)`
            : `${where} answered the WebSocket upgrade with HTTP ${status}${response.statusMessage ? ` ${printable(response.statusMessage).slice(0, 80)}` : ''}, not 101; is this an MQTT over WebSockets endpoint (${WEBSOCKET_PATH})?`,
        ),
      );
    });
    socket.on('error', (err: Error) => {
      fail(upgradeError(err, where, settings.name ?? endpoint.host));
    });
    socket.on('close', () => {
      fail(new ProvisioningError('network', `${where} closed the connection during the WebSocket upgrade`));
    });
    socket.once('open', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners();
      if (socket.protocol !== 'mqtt') {
        socket.on('error', () => {});
        socket.terminate();
        reject(new ProvisioningError('protocol', `${where} accepted the WebSocket upgrade without the mqtt subprotocol`));
        return;
      }
      resolve(wrap(socket, handlers, where));
    });
  });
}

/** ws reports a refused handshake with plain messages; TLS and socket errors keep their codes. */
function upgradeError(err: Error, where: string, name: string): ProvisioningError {
  if (typeof (err as { code?: unknown }).code === 'string') return mapConnectError(err, where, name);
  if (/Opening handshake has timed out/.test(err.message)) {
    return new ProvisioningError('network', `${where} did not complete the WebSocket upgrade in time`, { cause: err });
  }
  return new ProvisioningError('protocol', `the WebSocket upgrade with ${where} failed: ${printable(err.message)}`, { cause: err });
}

function wrap(socket: WebSocket, handlers: ConnectionHandlers, where: string): Connection {
  let closed = false;
  let closing = false;
  let failure: Error | undefined;
  let pending: Uint8Array[] = [];

  const end = (): void => {
    if (closed) return;
    closed = true;
    handlers.onClose(closing ? undefined : failure);
  };
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (closed || closing) return;
    if (!isBinary) {
      failure ??= new ProvisioningError('protocol', `${where} sent a text WebSocket frame; MQTT over WebSockets is binary only`);
      socket.terminate();
      return;
    }
    handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  });
  socket.on('error', (err: Error) => {
    // 'close' always follows 'error'; report there, once.
    failure ??= new ProvisioningError('network', `connection to ${where} failed: ${describeSocketError(err)}`, { cause: err });
  });
  socket.on('close', end);

  const flush = (): void => {
    const chunks = pending;
    pending = [];
    if (closed || closing || socket.readyState !== WebSocket.OPEN) return;
    if (chunks.length === 1) {
      socket.send(chunks[0]!, { binary: true });
      return;
    }
    socket.send(Buffer.concat(chunks), { binary: true });
  };

  return {
    write(data: Uint8Array): void {
      if (closed || closing || socket.readyState !== WebSocket.OPEN) return;
      if (pending.length === 0) process.nextTick(flush);
      pending.push(data);
    },
    close(): void {
      if (closing || closed) return;
      flush();
      closing = true;
      const grace = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
      grace.unref();
      socket.once('close', () => clearTimeout(grace));
      socket.close(1000);
    },
  };
}

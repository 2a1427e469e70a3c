// The Node host's Connect port: a TLS client socket (node:tls) that always verifies the server.
//
// - Trust: Node's bundled roots; `ca` ADDS private anchors (e.g. the local emulator's CA) to
//   them. There is deliberately no way to switch verification off.
//   Note: with `ca`, certificates from NODE_EXTRA_CA_CERTS are not included (Node adds them to
//   its shared store only, not to the copy a context with extra anchors gets); pass them
//   through `ca` as well.
// - SNI and hostname check: `servername` if given, otherwise the host unless it is an IP
//   literal (then no SNI is sent and the certificate must carry that IP address).
// - Data reaches the core as plain Uint8Array views of the received chunks (zero copy, never
//   reused by Node). Not a Buffer: Buffer#slice is a view where Uint8Array#slice copies, and the
//   core is written for engines without Buffer.
// - onClose is called at most once, and only for a connection that was handed out: a failed
//   connect rejects the promise instead.

import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { ProvisioningError } from '../../src/errors.js';
import type { Connect, Connection, ConnectionHandlers, Endpoint } from '../../src/ports.js';

export interface TlsConnectOptions {
  /** Extra PEM trust anchors, added to Node's root certificates (not replacing them). */
  ca?: string | string[];
  /** Name for SNI and the certificate check, instead of the endpoint's host. */
  servername?: string;
  /** Give up when TCP + TLS handshake take longer than this. Default 30 000 ms. */
  connectTimeoutMs?: number;
  /**
   * The device's X.509 identity for TLS client authentication (DPS and IoT Hub X.509 attestation):
   * PEM `cert` (the device certificate first, then any intermediates up to, not including, the
   * root) and its PEM private `key`. A secret: never in a message or an error.
   */
  clientCertificate?: ClientCertificate;
  /** Lowest TLS version offered. Default and minimum 'TLSv1.2'. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /**
   * Offer the newest session ticket the server issued on an earlier (verified) connection to the
   * same host, port and name, so the handshake skips the certificate work on both ends. For many
   * devices from one process (fleet mode); a device is one connection at a time. Default false.
   */
  resumeSessions?: boolean;
  /**
   * The HTTP proxy (http://[user:pass@]host:port) to reach `https://<host>:<port>/` through, or
   * undefined to connect directly: a CONNECT tunnel, with TLS end to end inside it, so the proxy
   * sees neither credentials nor traffic (proxy.ts reads HTTPS_PROXY and NO_PROXY).
   */
  proxyFor?: (url: string) => string | undefined;
}

export interface ClientCertificate {
  cert: string;
  key: string;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

/** Grace given to a closing socket to flush and send close_notify before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;

const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
]);
const EXPIRED_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const HOSTNAME_CODES = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);
/** A TLS record that failed its integrity check: bytes damaged on the way, not a trust problem. */
const DAMAGED_CODES = new Set(['ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC']);

const CA_HINT = 'If the server uses a private CA (for example the local DPS emulator), pass its certificate with --ca <pem>.';

export function createTlsConnect(options: TlsConnectOptions = {}): Connect {
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
  const extra = options.ca === undefined ? [] : checkPemCertificates(options.ca);
  // One context for every connection.
  const secureContext = trustContext(minVersion, extra, options.clientCertificate);

  const sessions = options.resumeSessions ? new Map<string, Buffer>() : undefined;
  const proxyFor = options.proxyFor;
  return (endpoint, handlers) => open(endpoint, handlers, { secureContext, servername, timeoutMs, sessions, proxyFor });
}

/**
 * Node's bundled roots plus `extra`. Added to the native context, as Node itself applies `ca`,
 * the roots come from the store Node parsed once per process: a cold connect with its handshake
 * takes ~14 ms instead of ~40 ms spent re-parsing ~140 root PEMs (bench/README.md). Should a
 * Node lack that method, the documented option does the same, slower.
 */
function trustContext(minVersion: 'TLSv1.2' | 'TLSv1.3', extra: string[], client?: ClientCertificate): tls.SecureContext {
  const identity = client === undefined ? {} : checkClientCertificate(client);
  const context = createContext({ minVersion, ...identity });
  if (extra.length === 0) return context;
  const native = (context as { context?: { addCACert?: (pem: string) => void } }).context;
  if (typeof native?.addCACert !== 'function') {
    return createContext({ minVersion, ...identity, ca: [...tls.rootCertificates, ...extra] });
  }
  for (const pem of extra) native.addCACert(pem);
  return context;
}

/** The client certificate chain and key, checked: certificates that parse, a private key that belongs to the first. */
function checkClientCertificate(client: ClientCertificate): { cert: string; key: string } {
  const certificates = pemCertificates(client.cert, 'the device certificate (--cert)');
  const leaf = certificates[0]!.x509;
  let key: KeyObject;
  try {
    key = createPrivateKey(client.key);
  } catch {
    // Not chained as a cause: the error of a key parser may quote what it read.
    throw new ProvisioningError('invalid-input', 'the device key (--cert-key) is not a PEM private key (or is encrypted)');
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new ProvisioningError('invalid-input', 'the device key (--cert-key) does not belong to the device certificate (--cert)');
  }
  return { cert: certificates.map((c) => c.block).join('\n'), key: client.key };
}

/** tls.createSecureContext, its errors (which never quote a key) as invalid input. */
function createContext(options: tls.SecureContextOptions): tls.SecureContext {
  try {
    return tls.createSecureContext(options);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ProvisioningError('invalid-input', `the TLS settings were refused${typeof code === 'string' ? ` (${code})` : ''}`);
  }
}

interface OpenSettings {
  secureContext: tls.SecureContext;
  servername: string | undefined;
  timeoutMs: number;
  /** Session tickets by host, port and server name, when resuming. */
  sessions: Map<string, Buffer> | undefined;
  proxyFor: ((url: string) => string | undefined) | undefined;
}

function open(
  endpoint: Endpoint,
  handlers: ConnectionHandlers,
  settings: OpenSettings,
  offerSession = true,
  through?: net.Socket,
): Promise<Connection> {
  const host = stripBrackets(endpoint.host);
  const port = endpoint.port;
  const where = formatHostPort(host, port);
  if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    return Promise.reject(new ProvisioningError('invalid-input', `not a valid endpoint: ${where}`));
  }
  const servername = settings.servername ?? (net.isIP(host) === 0 ? host : undefined);

  const sessionKey = `${host}|${port}|${servername ?? ''}`;
  const session = offerSession ? settings.sessions?.get(sessionKey) : undefined;

  // Through a proxy: the tunnel first, then TLS inside it (a fresh handshake retried below tunnels again).
  let proxy: URL | undefined;
  try {
    proxy = through ? undefined : proxyUrl(settings.proxyFor?.(`https://${where}/`));
  } catch (error) {
    return Promise.reject(error);
  }
  if (proxy) {
    const started = Date.now();
    return tunnel(proxy, host, port, settings.timeoutMs).then((socket) => {
      const left = { ...settings, timeoutMs: Math.max(1, settings.timeoutMs - (Date.now() - started)) };
      return open(endpoint, handlers, left, offerSession, socket);
    });
  }

  return new Promise<Connection>((resolve, reject) => {
    let settled = false;
    const socket = tls.connect({
      ...(through ? { socket: through } : { host, port }),
      secureContext: settings.secureContext,
      rejectUnauthorized: true,
      ...(servername !== undefined ? { servername } : {}),
      ...(session !== undefined ? { session } : {}),
    });
    socket.setNoDelay(true);
    const sessions = settings.sessions;
    if (sessions) socket.on('session', (ticket: Buffer) => sessions.set(sessionKey, ticket));

    const fail = (error: ProvisioningError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('secureConnect', onSecureConnect);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => {
      fail(new ProvisioningError('network', `timed out after ${settings.timeoutMs} ms connecting to ${where} (TCP or TLS handshake)`));
    }, settings.timeoutMs);
    // A resumed handshake that fails (the server forgot the ticket, or refuses it) is tried once
    // afresh, whose outcome, a connection or its mapped error, is the answer.
    const retryFresh = (): boolean => {
      if (session === undefined || settled) return false;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('secureConnect', onSecureConnect);
      socket.destroy();
      settings.sessions?.delete(sessionKey);
      open(endpoint, handlers, settings, false).then(resolve, reject);
      return true;
    };
    const onEarlyError = (err: Error): void => {
      if (!retryFresh()) fail(mapConnectError(err, where, servername ?? host));
    };
    const onEarlyClose = (): void => {
      if (!retryFresh()) fail(new ProvisioningError('network', `${where} closed the connection during the TLS handshake`));
    };
    socket.on('error', onEarlyError);
    socket.on('close', onEarlyClose);

    function onSecureConnect(): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('error', onEarlyError);
      socket.removeListener('close', onEarlyClose);
      resolve(wrap(socket, handlers, where));
    }
    socket.once('secureConnect', onSecureConnect);
  });
}

function wrap(socket: tls.TLSSocket, handlers: ConnectionHandlers, where: string): Connection {
  let closed = false;
  let closing = false;
  let corked = false;
  let failure: Error | undefined;

  socket.on('data', (chunk: Buffer) => {
    if (closed) return;
    handlers.onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  socket.on('error', (err: Error) => {
    // 'close' always follows 'error'; report there, once.
    failure ??= new ProvisioningError('network', `connection to ${where} failed: ${describeSocketError(err)}`, { cause: err });
  });
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    handlers.onClose(closing ? undefined : failure);
  });

  return {
    write(data: Uint8Array): void {
      if (closed || closing || socket.destroyed || !socket.writable) return;
      // Packets written in one go (the pipelined SUBSCRIBE and register PUBLISH) leave in one TLS record.
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          socket.uncork();
        });
      }
      socket.write(data);
    },
    close(): void {
      if (closing || closed) return;
      closing = true;
      const grace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
      grace.unref();
      socket.once('close', () => clearTimeout(grace));
      socket.end(() => socket.destroy());
    },
  };
}

function mapConnectError(err: Error, where: string, name: string): ProvisioningError {
  const code = (err as { code?: unknown }).code;
  const c = typeof code === 'string' ? code : '';
  if (UNTRUSTED_CODES.has(c)) {
    return new ProvisioningError('tls', `the server certificate of ${where} is not trusted (${c}). ${CA_HINT}`, { cause: err });
  }
  if (HOSTNAME_CODES.has(c)) {
    return new ProvisioningError(
      'tls',
      `the server certificate of ${where} does not match the host name ${name} (${c}): ${err.message}. ` +
        'Connect with the name the certificate was issued for, or set the TLS server name.',
      { cause: err },
    );
  }
  if (EXPIRED_CODES.has(c)) {
    return new ProvisioningError(
      'tls',
      `the server certificate of ${where} has expired or is not yet valid (${c}); check this machine's clock. ${CA_HINT}`,
      { cause: err },
    );
  }
  if (DAMAGED_CODES.has(c)) {
    return new ProvisioningError('network', `the TLS handshake with ${where} received damaged data (${c}); another attempt may succeed`, {
      cause: err,
    });
  }
  if (c.startsWith('ERR_SSL_') || c === 'EPROTO' || c.startsWith('ERR_TLS_')) {
    return new ProvisioningError('tls', `TLS handshake with ${where} failed (${c}): ${err.message}`, { cause: err });
  }
  return new ProvisioningError('network', `cannot connect to ${where}: ${describeSocketError(err)}`, { cause: err });
}

function describeSocketError(err: Error): string {
  const code = (err as { code?: unknown }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (ECONNREFUSED); is the server running and the port right?';
    case 'ENOTFOUND':
      return 'host name not found (ENOTFOUND)';
    case 'EAI_AGAIN':
      return 'host name lookup failed temporarily (EAI_AGAIN)';
    case 'ETIMEDOUT':
      return 'timed out (ETIMEDOUT)';
    case 'ECONNRESET':
      return 'connection reset by the peer (ECONNRESET)';
    case 'EHOSTUNREACH':
      return 'host unreachable (EHOSTUNREACH)';
    case 'ENETUNREACH':
      return 'network unreachable (ENETUNREACH)';
    case 'EPIPE':
      return 'connection closed by the peer (EPIPE)';
    default:
      return typeof code === 'string' ? `${err.message} (${code})` : err.message;
  }
}

function proxyUrl(text: string | undefined): URL | undefined {
  if (!text) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ProvisioningError('invalid-input', `the proxy ${JSON.stringify(text.slice(0, 80))} is not a URL (http://host:port)`);
  }
  if (url.protocol !== 'http:') throw new ProvisioningError('invalid-input', `the proxy ${url.origin} must be an http:// URL`);
  return url;
}

/** A TCP connection to host:port through `proxy` (HTTP CONNECT, RFC 9110 §9.3.6). */
function tunnel(proxy: URL, host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  const target = formatHostPort(host, port);
  const via = `the proxy ${proxy.host}`;
  return new Promise<net.Socket>((resolve, reject) => {
    const credentials = proxy.username ? `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}` : undefined;
    const request = http.request({
      host: stripBrackets(proxy.hostname),
      port: proxy.port === '' ? 80 : Number(proxy.port),
      method: 'CONNECT',
      path: target,
      headers: { host: target, ...(credentials && { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` }) },
      timeout: timeoutMs,
    });
    request.on('connect', (response: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      const status = response.statusCode ?? 0;
      if (status === 200 && head.length === 0) {
        socket.setTimeout(0);
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(
        new ProvisioningError(
          status >= 500 ? 'network' : 'failed',
          status === 407
            ? `${via} refused to open a tunnel to ${target} (HTTP 407: proxy authentication required; put the credentials in the proxy URL)`
            : `${via} refused to open a tunnel to ${target} (HTTP ${status}${response.statusMessage ? ` ${response.statusMessage.slice(0, 60)}` : ''})`,
          { status },
        ),
      );
    });
    request.on('timeout', () => {
      request.destroy();
      reject(new ProvisioningError('network', `timed out after ${timeoutMs} ms opening a tunnel to ${target} through ${via}`));
    });
    request.on('error', (error: Error) => reject(mapConnectError(error, `${via} (for ${target})`, proxy.hostname)));
    request.end();
  });
}

/** Each PEM input must hold at least one certificate, and every certificate must parse. */
function checkPemCertificates(ca: string | string[]): string[] {
  const inputs = Array.isArray(ca) ? ca : [ca];
  return inputs.flatMap((pem, index) =>
    pemCertificates(pem, `the CA certificate (--ca) #${index + 1}`).map((certificate) => `${certificate.block}\n`),
  );
}

/** The PEM certificate blocks of `text`, each parsed; at least one, or an invalid-input error naming `what`. */
function pemCertificates(text: unknown, what: string): { block: string; x509: X509Certificate }[] {
  const found = typeof text === 'string' ? text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) : null;
  if (found === null) {
    throw new ProvisioningError('invalid-input', `${what} contains no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  return found.map((block) => {
    try {
      return { block, x509: new X509Certificate(block) };
    } catch (cause) {
      throw new ProvisioningError('invalid-input', `${what} holds a PEM block that is not a valid certificate`, { cause });
    }
  });
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function formatHostPort(host: string, port: number): string {
  return net.isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

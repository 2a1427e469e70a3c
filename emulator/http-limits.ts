// The bounds every HTTPS server of the emulator keeps (the service API, DPS's HTTPS device API), so
// a slow or hostile client cannot hold a connection or a slot for long (Node's defaults alone kept
// a request trickling one byte a second open for a minute and more, and reset an oversized one):
//   - the TLS handshake, the headers and the whole request each have a deadline;
//   - a connection idle between requests is closed;
//   - at most `maxConnections` are open at once: a connection beyond that is closed as it comes;
//   - a request Node cannot take (a timeout, headers or a URL over 16 KiB, bytes that are not
//     HTTP) gets its answer in DPS's error shape (408, 431, 400) before the connection closes,
//     and what the client still sends is read and dropped for a moment, so it reads the answer
//     instead of a reset; unless an answer has already begun on the connection: it is not
//     followed by a second one.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Duplex } from 'node:stream';
import { errorBody, genericErrorCode } from './dps-errors.js';

export interface HttpLimits {
  /** TLS handshake deadline. */
  handshakeTimeoutMs: number;
  /** From the first byte of a request (or the connection) to the end of its headers. */
  headersTimeoutMs: number;
  /** From the first byte of a request to the end of its body. */
  requestTimeoutMs: number;
  /** A connection with no request in progress is closed after this long. */
  keepAliveTimeoutMs: number;
  /** Open connections at most. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 512,
};

/** Largest request head (request line, URL and headers) Node parses: its default. */
export const MAX_HEADER_BYTES = 16 * 1024;

/** The limits given, over the defaults; checked. */
export function httpLimits(given: Partial<HttpLimits> = {}): HttpLimits {
  const limits = { ...DEFAULT_HTTP_LIMITS, ...given };
  if (!(limits.headersTimeoutMs > 0 && limits.requestTimeoutMs >= limits.headersTimeoutMs)) {
    throw new TypeError('headersTimeoutMs must be positive and at most requestTimeoutMs');
  }
  for (const [name, value] of Object.entries(limits)) {
    if (!(Number.isInteger(value) && value > 0)) throw new TypeError(`${name} must be a positive whole number`);
  }
  return limits;
}

/** The https.createServer options that carry the limits. */
export function serverOptions(limits: HttpLimits) {
  return {
    handshakeTimeout: limits.handshakeTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: MAX_HEADER_BYTES,
    // Node checks both timeouts on this period (default 30 s): a small timeout needs a short one.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/**
 * Applies what createServer's options cannot carry (the connection cap), and answers requests Node
 * could not parse or that timed out, unless a response has already begun on the connection (say a
 * 401 answered before the body, which then trickles past the request timeout); then the
 * connection is just closed.
 */
export function applyLimits(server: Server, limits: HttpLimits, options: { now?: () => number } = {}): void {
  server.maxConnections = limits.maxConnections;
  const now = options.now ?? Date.now;
  /** The response in progress on each connection, kept past its end while its request is still arriving. */
  const inFlight = new WeakMap<Duplex, ServerResponse>();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    inFlight.set(req.socket, res);
    res.once('finish', () => {
      if (req.complete) inFlight.delete(req.socket);
    });
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const started = inFlight.get(socket)?.headersSent ?? false;
    if (!socket.writable || started) {
      socket.destroy();
      return;
    }
    const [status, reason, message] =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'The request did not arrive in time']
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large', `The request line and headers exceed ${MAX_HEADER_BYTES} bytes`]
          : [400, 'Bad Request', 'The request is not valid HTTP/1.1'];
    const body = JSON.stringify(errorBody(genericErrorCode(status), message, new Date(now())));
    // What the client still sends is dropped: closing with unread bytes would reset the
    // connection, and the client would never read its answer.
    socket.on('data', () => {});
    socket.resume();
    socket.once('end', () => socket.destroy());
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => socket.destroy(), 2000).unref(); // a peer that never reads, or never stops sending
  });
}

// TLS for fleet mode: the Node host's Connect (tls-connect.ts, same trust rules: Node's roots
// plus `ca`, verification always on) with two changes for many devices from one process:
// - session resumption (unless `resume` is false): the first handshake is a full one; every
//   later connection offers the newest session ticket the server issued, so the server skips
//   its certificate signature and the client its chain verification and certificate decoding.
//   A resumed session is one the server issued on a verified connection.
// - packets written in one tick (the pipelined SUBSCRIBE and register PUBLISH) leave in one TLS
//   record: writes are corked until the next tick.
// Failures read as tls-connect.ts's: a connection that fails before the handshake completes is
// tried once more through createTlsConnect, whose answer (its mapped ProvisioningError, or a
// connection) is the result. A timeout is not retried. Figures: bench/README.md.
import net from 'node:net';
import tls from 'node:tls';
import { ProvisioningError } from '../../src/errors.js';
import type { Connect, Connection, ConnectionHandlers } from '../../src/ports.js';
import { createTlsConnect, DEFAULT_CONNECT_TIMEOUT_MS, type TlsConnectOptions } from './tls-connect.js';

const CLOSE_GRACE_MS = 2_000;

export interface FleetTlsOptions extends TlsConnectOptions {
  /** Resume TLS sessions across connections (default true). */
  resume?: boolean;
}

export function createFleetTlsConnect(options: FleetTlsOptions = {}): Connect {
  const resume = options.resume ?? true;
  const standard = createTlsConnect(options); // also validates the options and the PEM
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const ca = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
  const secureContext = tls.createSecureContext({
    minVersion: options.minVersion ?? 'TLSv1.2',
    ...(ca.length > 0 ? { ca: [...tls.rootCertificates, ...ca] } : {}),
  });
  /** The newest ticket per host, port and server name. */
  const sessions = new Map<string, Buffer>();

  return (endpoint, handlers) => {
    const host = endpoint.host.startsWith('[') && endpoint.host.endsWith(']') ? endpoint.host.slice(1, -1) : endpoint.host;
    const servername = options.servername ?? (net.isIP(host) === 0 ? host : undefined);
    const key = `${host}|${endpoint.port}|${servername ?? ''}`;
    return new Promise<Connection>((resolve, reject) => {
      const session = resume ? sessions.get(key) : undefined;
      const socket = tls.connect({
        host,
        port: endpoint.port,
        secureContext,
        rejectUnauthorized: true,
        ...(servername !== undefined ? { servername } : {}),
        ...(session !== undefined ? { session } : {}),
      });
      socket.setNoDelay(true);
      if (resume) socket.on('session', (ticket: Buffer) => sessions.set(key, ticket));
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        socket.removeListener('error', onEarlyFailure);
        socket.removeListener('close', onEarlyFailure);
        return true;
      };
      const timer = setTimeout(() => {
        if (!settle()) return;
        socket.destroy();
        reject(new ProvisioningError('network', `timed out after ${timeoutMs} ms connecting to ${host}:${endpoint.port} (TCP or TLS handshake)`));
      }, timeoutMs);
      const onEarlyFailure = (): void => {
        if (!settle()) return;
        socket.destroy();
        sessions.delete(key);
        standard(endpoint, handlers).then(resolve, reject);
      };
      socket.on('error', onEarlyFailure);
      socket.on('close', onEarlyFailure);
      socket.once('secureConnect', () => {
        if (settle()) resolve(wrap(socket, handlers, `${host}:${endpoint.port}`));
      });
    });
  };
}

/** The connection over an established socket, with tls-connect.ts's semantics. */
function wrap(socket: tls.TLSSocket, handlers: ConnectionHandlers, where: string): Connection {
  let closed = false;
  let closing = false;
  let corked = false;
  let failure: Error | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (!closed) handlers.onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  socket.on('error', (err: Error) => {
    failure ??= new ProvisioningError('network', `connection to ${where} failed: ${err.message}`, { cause: err });
  });
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    handlers.onClose(closing ? undefined : failure);
  });
  return {
    write(data: Uint8Array): void {
      if (closed || closing || socket.destroyed || !socket.writable) return;
      // Packets written in one go (SUBSCRIBE and the register PUBLISH) leave in one TLS record.
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

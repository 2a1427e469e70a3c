// The address an emulator endpoint listens on, as its options and the emulator command give it,
// and listening on it: the same for every server of the emulator.
import type { AddressInfo, Server, Socket } from 'node:net';

/** Whether `host` is a wildcard address (every interface: 0.0.0.0, ::, or none given), which no client can dial. */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost): reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

export interface Listening {
  /** The port listened on: the one asked for, or the one picked for 0. */
  port: number;
  /** Stop listening and end every connection; resolves once the server has closed (every call: the same promise). */
  close(): Promise<void>;
}

/**
 * Listen with `server` (TCP, TLS or HTTPS) on host:port; an error (the port in use, say) rejects.
 * Every TCP connection is kept from its first byte, TLS handshake included, so close() ends them
 * all rather than waiting for the clients to leave.
 */
export async function listen(server: Server, port: number, host: string): Promise<Listening> {
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      });
      return closing;
    },
  };
}

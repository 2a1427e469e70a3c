import { generateKeyPairSync } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import forge from 'node-forge';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { ProvisioningError } from '../src/errors.js';
import type { Connection, ConnectionHandlers } from '../src/ports.js';
import { until } from './support/until.js';

// ---- certificates, made fresh for this run --------------------------------------------------

interface KeyPair {
  privatePem: string;
  publicPem: string;
}

function rsaKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privatePem: privateKey, publicPem: publicKey };
}

let serial = 1;
function certificate(options: {
  subject: string;
  keys: KeyPair;
  issuer?: { name: string; keys: KeyPair };
  ca?: boolean;
  altNames?: Array<{ type: 2; value: string } | { type: 7; ip: string }>;
  notBefore?: Date;
  notAfter?: Date;
}): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(options.keys.publicPem);
  cert.serialNumber = (serial++).toString(16).padStart(2, '0');
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - 60 * 60 * 1000);
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + 24 * 60 * 60 * 1000);
  cert.setSubject([{ name: 'commonName', value: options.subject }]);
  cert.setIssuer([{ name: 'commonName', value: options.issuer?.name ?? options.subject }]);
  const extensions: object[] = options.ca
    ? [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ]
    : [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: options.altNames ?? [] },
      ];
  cert.setExtensions(extensions);
  const signer = options.issuer?.keys ?? options.keys;
  cert.sign(forge.pki.privateKeyFromPem(signer.privatePem), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

const caKeys = rsaKeyPair();
const serverKeys = rsaKeyPair();
const caPem = certificate({ subject: 'moddable-dps test CA', keys: caKeys, ca: true });
const issuer = { name: 'moddable-dps test CA', keys: caKeys };
const loopbackNames = [
  { type: 2 as const, value: 'localhost' },
  { type: 7 as const, ip: '127.0.0.1' },
  { type: 7 as const, ip: '::1' },
];
const serverPem = certificate({ subject: 'localhost', keys: serverKeys, issuer, altNames: loopbackNames });
const expiredPem = certificate({
  subject: 'localhost',
  keys: serverKeys,
  issuer,
  altNames: loopbackNames,
  notBefore: new Date(Date.now() - 10 * 24 * 60 * 60 * 1000),
  notAfter: new Date(Date.now() - 24 * 60 * 60 * 1000),
});

// ---- servers ---------------------------------------------------------------------------------

interface TestServer {
  port: number;
  sockets: Array<net.Socket>;
  received: Buffer[];
  nextSocket(): Promise<net.Socket>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

function track(server: net.Server, host = '127.0.0.1'): Promise<TestServer> {
  const sockets: net.Socket[] = [];
  const received: Buffer[] = [];
  const waiting: Array<(s: net.Socket) => void> = [];
  const event = server instanceof tls.Server ? 'secureConnection' : 'connection';
  server.on(event, (socket: net.Socket) => {
    sockets.push(socket);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => {});
    waiting.shift()?.(socket);
  });
  // Only the TLS sockets are tracked for a TLS server: destroying the raw socket under a live
  // server TLSSocket crashes Node 20 (SIGSEGV in ssl3_send_alert).
  return new Promise((resolve) => {
    server.listen(0, host, () => {
      const ts: TestServer = {
        port: (server.address() as net.AddressInfo).port,
        sockets,
        received,
        nextSocket: () => new Promise((r) => waiting.push(r)),
        close: () =>
          new Promise((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      };
      servers.push(ts);
      resolve(ts);
    });
  });
}

function tlsServer(cert = serverPem, host = '127.0.0.1'): Promise<TestServer> {
  const server = tls.createServer({ key: serverKeys.privatePem, cert: cert + caPem });
  server.on('tlsClientError', () => {});
  return track(server, host);
}

/** A plain TCP relay in front of `target`: lets a test reset the client's TCP connection. */
function relay(target: TestServer): Promise<TestServer> {
  return track(
    net.createServer((client) => {
      const upstream = net.connect(target.port, '127.0.0.1');
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    }),
  );
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

// ---- client helpers --------------------------------------------------------------------------

interface Recorder extends ConnectionHandlers {
  chunks: Uint8Array[];
  closes: Array<Error | undefined>;
  closed: Promise<Error | undefined>;
}

function recorder(): Recorder {
  let signal: (e: Error | undefined) => void = () => {};
  const closed = new Promise<Error | undefined>((r) => (signal = r));
  const rec: Recorder = {
    chunks: [],
    closes: [],
    closed,
    onData: (d) => rec.chunks.push(d),
    onClose: (e) => {
      rec.closes.push(e);
      signal(e);
    },
  };
  return rec;
}

async function rejection(promise: Promise<Connection>): Promise<ProvisioningError> {
  let conn: Connection;
  try {
    conn = await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProvisioningError);
    return error as ProvisioningError;
  }
  conn.close();
  throw new Error('expected a rejection, but the connection opened');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const open: Connection[] = [];
afterAll(() => {
  for (const c of open) c.close();
});

// ---- tests -----------------------------------------------------------------------------------

describe('createTlsConnect', () => {
  beforeAll(() => {
    expect(caPem).toContain('BEGIN CERTIFICATE');
  });

  it('connects to a server whose CA was passed with ca, and carries bytes both ways', async () => {
    const server = await tlsServer();
    const rec = recorder();
    const accepted = server.nextSocket();
    const conn = await createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, rec);
    open.push(conn);
    const serverSide = await accepted;

    conn.write(new Uint8Array([1, 2, 3, 250]));
    await until(() => Buffer.concat(server.received).length === 4);
    expect([...Buffer.concat(server.received)]).toEqual([1, 2, 3, 250]);

    serverSide.write(Buffer.from('pong'));
    await until(() => rec.chunks.reduce((n, c) => n + c.length, 0) === 4);
    const got = rec.chunks[0]!;
    expect(Buffer.concat(rec.chunks).toString()).toBe('pong');
    // A plain Uint8Array, not a Buffer: slice() copies as it does on XS.
    expect(got).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(got)).toBe(false);
    expect(rec.closes).toEqual([]);
  });

  it('verifies a host name given as servername (SNI) against the certificate', async () => {
    const server = await tlsServer();
    const accepted = server.nextSocket();
    const conn = await createTlsConnect({ ca: caPem, servername: 'localhost' })({ host: '127.0.0.1', port: server.port }, recorder());
    open.push(conn);
    expect(((await accepted) as tls.TLSSocket).servername).toBe('localhost');
  });

  it('sends no SNI when the host is an IP literal, and still checks the IP against the certificate', async () => {
    const server = await tlsServer();
    const accepted = server.nextSocket();
    const conn = await createTlsConnect({ ca: [caPem] })({ host: '127.0.0.1', port: server.port }, recorder());
    open.push(conn);
    expect(((await accepted) as tls.TLSSocket).servername).toBeFalsy();
  });

  it('connects to an IPv6 literal, bracketed or not', async (ctx) => {
    let server: TestServer;
    try {
      server = await tlsServer(serverPem, '::1');
    } catch {
      return ctx.skip('this machine has no IPv6 loopback');
    }
    const connect = createTlsConnect({ ca: caPem });
    const a = await connect({ host: '::1', port: server.port }, recorder());
    const b = await connect({ host: '[::1]', port: server.port }, recorder());
    open.push(a, b);
    await until(() => server.sockets.length >= 2);
  });

  it('refuses a server whose CA is not trusted: kind tls, says so, suggests --ca', async () => {
    const server = await tlsServer();
    const rec = recorder();
    const error = await rejection(createTlsConnect()({ host: '127.0.0.1', port: server.port }, rec));
    expect(error.kind).toBe('tls');
    expect(error.message).toMatch(/not trusted/);
    expect(error.message).toContain('--ca');
    expect(error.message).toContain(`127.0.0.1:${server.port}`);
    expect(rec.closes).toEqual([]); // a failed connect rejects; onClose is for open connections
  });

  it('trusts only the given CA in addition to the roots: another CA does not help', async () => {
    const otherCa = certificate({ subject: 'someone else', keys: rsaKeyPair(), ca: true });
    const server = await tlsServer();
    const error = await rejection(createTlsConnect({ ca: otherCa })({ host: '127.0.0.1', port: server.port }, recorder()));
    expect(error.kind).toBe('tls');
  });

  it("adds ca to Node's root store rather than replacing it", async () => {
    // The bundled roots cannot be exercised offline (no public root's key here): what can be
    // seen is that the context starts from Node's own root store (no ca option) and then trusts ca.
    const server = await tlsServer();
    const spy = vi.spyOn(tls, 'createSecureContext');
    try {
      const connect = createTlsConnect({ ca: caPem });
      expect(spy.mock.calls).toHaveLength(1);
      expect(spy.mock.calls[0]?.[0]).toEqual({ minVersion: 'TLSv1.2' });
      (await connect({ host: '127.0.0.1', port: server.port }, recorder())).close();
    } finally {
      spy.mockRestore();
    }
  });

  it('falls back to the documented ca option on a Node without the native addCACert', async () => {
    const server = await tlsServer(); // before the spy: the server makes a context of its own
    const spy = vi.spyOn(tls, 'createSecureContext').mockImplementationOnce(() => ({ context: {} }) as unknown as tls.SecureContext);
    try {
      const connection = await createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, recorder());
      connection.close();
      const fallback = spy.mock.calls[1]?.[0]?.ca as string[];
      expect(fallback).toHaveLength(tls.rootCertificates.length + 1);
      expect(fallback.at(-1)!.trim()).toBe(caPem.trim());
    } finally {
      spy.mockRestore();
    }
  });

  it('refuses a certificate for another host name: kind tls, hostname mismatch', async () => {
    const server = await tlsServer();
    const error = await rejection(
      createTlsConnect({ ca: caPem, servername: 'dps.example.net' })({ host: '127.0.0.1', port: server.port }, recorder()),
    );
    expect(error.kind).toBe('tls');
    expect(error.message).toMatch(/does not match the host name dps\.example\.net/);
    expect((error as { cause?: { code?: string } }).cause?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('refuses an expired server certificate: kind tls, says expired', async () => {
    const server = await tlsServer(expiredPem);
    const error = await rejection(createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, recorder()));
    expect(error.kind).toBe('tls');
    expect(error.message).toMatch(/expired/);
  });

  it('reports a refused connection as kind network with host:port', async () => {
    const port = await closedPort();
    const error = await rejection(createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port }, recorder()));
    expect(error.kind).toBe('network');
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('times out as kind network when the server accepts TCP but never speaks TLS', async () => {
    const server = await track(net.createServer(() => {}));
    const started = Date.now();
    const error = await rejection(
      createTlsConnect({ ca: caPem, connectTimeoutMs: 150 })({ host: '127.0.0.1', port: server.port }, recorder()),
    );
    expect(error.kind).toBe('network');
    expect(error.message).toMatch(/timed out after 150 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
    // The abandoned socket is gone: the server sees it close.
    await until(() => server.sockets.every((s) => s.destroyed || s.readableEnded));
  });

  it('reports a server that answers with something other than TLS as kind tls', async () => {
    const server = await track(net.createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    const error = await rejection(createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, recorder()));
    expect(error.kind).toBe('tls');
  });

  it('calls onClose exactly once, without an error, when the server closes in order', async () => {
    const server = await tlsServer();
    const rec = recorder();
    const accepted = server.nextSocket();
    const conn = await createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, rec);
    (await accepted).end();
    expect(await rec.closed).toBeUndefined();
    conn.close();
    conn.write(new Uint8Array([1])); // no-op, no throw
    await sleep(50);
    expect(rec.closes).toEqual([undefined]);
  });

  it('calls onClose once with a network error when the server resets the connection', async () => {
    const target = await tlsServer();
    const front = await relay(target);
    const rec = recorder();
    const accepted = front.nextSocket();
    const conn = await createTlsConnect({ ca: caPem, servername: 'localhost' })({ host: '127.0.0.1', port: front.port }, rec);
    const frontSide = await accepted;
    // Let the relay go quiet first (TLS 1.3 session tickets follow the handshake): a socket
    // reset while it still has bytes in flight may reach the client as a plain FIN.
    conn.write(new Uint8Array([1]));
    await until(() => target.received.length > 0);
    await sleep(50);
    frontSide.resetAndDestroy(); // TCP RST to the client
    const error = await rec.closed;
    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as ProvisioningError).kind).toBe('network');
    expect(error!.message).toContain(`127.0.0.1:${front.port}`);
    expect(error!.message).toContain('ECONNRESET');
    await sleep(50);
    expect(rec.closes.length).toBe(1);
  });

  it('close() is idempotent: the server sees the end, onClose fires once, later writes are ignored', async () => {
    const server = await tlsServer();
    const rec = recorder();
    const accepted = server.nextSocket();
    const conn = await createTlsConnect({ ca: caPem })({ host: '127.0.0.1', port: server.port }, rec);
    const serverSide = await accepted;
    const serverEnded = new Promise<void>((r) => serverSide.once('end', () => r()));
    conn.close();
    conn.close();
    conn.write(new Uint8Array([9, 9]));
    await serverEnded;
    expect(await rec.closed).toBeUndefined();
    conn.close();
    await sleep(50);
    expect(rec.closes).toEqual([undefined]);
    expect(server.received.length).toBe(0);
  });

  it('rejects a ca that is not a PEM certificate before connecting', () => {
    expect(() => createTlsConnect({ ca: 'not a certificate' })).toThrow(ProvisioningError);
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    try {
      createTlsConnect({ ca: [caPem, broken] });
      throw new Error('expected a throw');
    } catch (error) {
      expect((error as ProvisioningError).kind).toBe('invalid-input');
      expect((error as ProvisioningError).message).toContain('(--ca) #2');
    }
  });

  it('rejects bad options and endpoints as invalid-input', async () => {
    expect(() => createTlsConnect({ connectTimeoutMs: 0 })).toThrow(/connectTimeoutMs/);
    expect(() => createTlsConnect({ servername: '10.0.0.1' })).toThrow(/servername/);
    const error = await rejection(createTlsConnect()({ host: '127.0.0.1', port: 70000 }, recorder()));
    expect(error.kind).toBe('invalid-input');
  });
});

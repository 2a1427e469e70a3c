// The emulator's TLS identity and lifecycle: the CA is generated once and reused across restarts,
// the server certificate is renewed when the names or the expiry require it, a client that does
// not trust the CA is refused, and close() leaves nothing running.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateCertificates } from '../emulator/certificates.js';
import { startEmulator } from '../emulator/index.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'dps-emulator-lifecycle-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('certificates', () => {
  it('creates an RSA-2048 CA and a server certificate for localhost, 127.0.0.1 and ::1, then loads them unchanged', async () => {
    const dir = join(root, 'stable');
    const first = await loadOrCreateCertificates({ stateDir: dir });
    expect(first.created).toEqual({ ca: true, server: true });
    const ca = new X509Certificate(first.caPem);
    const server = new X509Certificate(first.serverCertPem);
    expect(ca.ca).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails).toMatchObject({ modulusLength: 2048 });
    expect(server.publicKey.asymmetricKeyType).toBe('rsa');
    expect(server.checkIssued(ca) && server.verify(ca.publicKey)).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkIP('::1')).toBeDefined();
    expect(await readFile(first.caPath, 'utf8')).toBe(first.caPem);
    expect((await stat(join(dir, 'ca-key.pem'))).mode & 0o077).toBe(0); // private keys are not world-readable

    const second = await loadOrCreateCertificates({ stateDir: dir });
    expect(second.created).toEqual({ ca: false, server: false });
    expect(second.caPem).toBe(first.caPem);
    expect(second.serverCertPem).toBe(first.serverCertPem);
  });

  it('renews only the server certificate for a new host name, or when it expires within 30 days', async () => {
    const dir = join(root, 'renew');
    const first = await loadOrCreateCertificates({ stateDir: dir });
    const named = await loadOrCreateCertificates({ stateDir: dir, hostNames: ['dps.lan', '192.168.1.20'] });
    expect(named.created).toEqual({ ca: false, server: true });
    expect(named.caPem).toBe(first.caPem);
    const server = new X509Certificate(named.serverCertPem);
    expect(server.checkHost('dps.lan')).toBe('dps.lan');
    expect(server.checkIP('192.168.1.20')).toBe('192.168.1.20');
    expect((await loadOrCreateCertificates({ stateDir: dir, hostNames: ['dps.lan'] })).created.server).toBe(false);

    const inTwoYears = () => new Date(Date.now() + 800 * 24 * 3600 * 1000); // server certs last 825 days
    const later = await loadOrCreateCertificates({ stateDir: dir, now: inTwoYears });
    expect(later.created).toEqual({ ca: false, server: true });
    expect(later.caPem).toBe(first.caPem);
  });

  it('starts afresh from a damaged state directory', async () => {
    const dir = join(root, 'damaged');
    const first = await loadOrCreateCertificates({ stateDir: dir });
    await writeFile(join(dir, 'ca-key.pem'), 'not a key');
    const second = await loadOrCreateCertificates({ stateDir: dir });
    expect(second.created).toEqual({ ca: true, server: true });
    expect(second.caPem).not.toBe(first.caPem);
  });

  it('gives the CA a self-referencing authority key identifier and serves leaf + CA (Moddable TLS needs both)', async () => {
    const dir = join(root, 'chain');
    const { caPem } = await loadOrCreateCertificates({ stateDir: dir });
    const ca = forge.pki.certificateFromPem(caPem);
    // Parsed back, forge keeps the extension's DER: SEQUENCE { [0] keyIdentifier }, ending in the key id.
    const aki = ca.getExtension('authorityKeyIdentifier') as { value?: string } | undefined;
    const keyId = ca.generateSubjectKeyIdentifier().getBytes();
    expect(aki?.value?.endsWith(keyId)).toBe(true);

    const dps = await startEmulator({ idScope: '0ne00000001', stateDir: dir });
    try {
      const chain = await new Promise<string[]>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: dps.endpoint.port, ca: caPem, servername: 'localhost' }, () => {
          const names: string[] = [];
          for (let c = socket.getPeerCertificate(true); c && !names.includes(c.fingerprint256); c = c.issuerCertificate)
            names.push(c.fingerprint256);
          socket.destroy();
          resolve(names);
        });
        socket.on('error', reject);
      });
      expect(chain).toHaveLength(2);
      expect(chain[1]).toBe(new X509Certificate(caPem).fingerprint256);
    } finally {
      await dps.close();
    }
  });

  it('replaces a CA made by an older emulator without an authority key identifier', async () => {
    const dir = join(root, 'old-ca');
    await loadOrCreateCertificates({ stateDir: dir });
    const key = forge.pki.privateKeyFromPem(await readFile(join(dir, 'ca-key.pem'), 'utf8'));
    const old = forge.pki.certificateFromPem(await readFile(join(dir, 'ca.pem'), 'utf8'));
    old.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'subjectKeyIdentifier' }]);
    old.sign(key, forge.md.sha256.create());
    await writeFile(join(dir, 'ca.pem'), forge.pki.certificateToPem(old));
    const again = await loadOrCreateCertificates({ stateDir: dir });
    expect(again.created).toEqual({ ca: true, server: true });
  });
});

describe('lifecycle', () => {
  it('keeps its CA across restarts, refuses clients that do not trust it, and closes without leftovers', async () => {
    const stateDir = join(root, 'restart');
    const resources = () => process.getActiveResourcesInfo().filter((r) => /TCP|TLS|Timeout|Immediate/.test(r)).length;
    const baseline = resources();

    const one = await startEmulator({ idScope: '0ne00000001', stateDir });
    const untrusted = await new Promise<Error>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: one.endpoint.port }, () => resolve(new Error('handshake succeeded')));
      socket.on('error', resolve);
    });
    expect(untrusted.message).toMatch(/self[- ]signed|unable to verify|certificate/i);
    const trusted = await new Promise<boolean>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: one.endpoint.port, ca: one.caPem }, () => {
        resolve(socket.authorized);
        socket.destroy();
      });
      socket.on('error', reject);
    });
    expect(trusted).toBe(true);
    await one.close();

    const two = await startEmulator({ idScope: '0ne00000001', stateDir });
    expect(two.caPem).toBe(one.caPem);
    expect(two.caPath).toBe(join(stateDir, 'ca.pem'));
    // A client stuck before the TLS handshake must not hold close() up (the handshake timeout is 10 s).
    const silent = createConnection({ host: '127.0.0.1', port: two.endpoint.port });
    silent.on('error', () => {});
    await new Promise((resolve) => silent.once('connect', resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = Date.now();
    await two.close();
    expect(Date.now() - started).toBeLessThan(2000);
    silent.destroy();
    await two.close(); // idempotent

    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(resources()).toBeLessThanOrEqual(baseline);
  });
});

// The emulator's TLS identity: a certificate authority and a server certificate it signs, kept
// in a state directory so that a device, once told to trust the CA, keeps trusting it across
// restarts. RSA-2048 because Moddable's TLS on the ESP32 must handle it; keys and signatures come
// from node:crypto (fast), certificates are built with node-forge. The building blocks (a key
// pair, a new certificate, a CA certificate, the signature) serve the CLI's certificate issuing as well.
//
// Files in the state directory:
//   ca.pem          the CA certificate: the file to hand to clients (`--ca <path>`)
//   ca-key.pem      the CA's private key (mode 0600)
//   server.pem      the server certificate (leaf only; clients trust the CA)
//   server-key.pem  the server's private key (mode 0600)
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { makeStateDirectory, stateFileError } from './state-dir.js';

const { pki } = forge;

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';
export const SERVER_CERT_FILE = 'server.pem';
export const SERVER_KEY_FILE = 'server-key.pem';

/** Always in the server certificate, whatever else is configured. */
export const DEFAULT_HOST_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_LIFETIME_DAYS = 3650;
const SERVER_LIFETIME_DAYS = 825;
/** A certificate that expires sooner than this is replaced at start. */
const RENEW_BEFORE_DAYS = 30;

export interface CertificateOptions {
  /** Where the CA and server files live; created when missing. */
  stateDir: string;
  /** Host names and IP addresses the server certificate must cover, besides the defaults. */
  hostNames?: readonly string[];
  /** For tests: the current time. */
  now?: () => Date;
}

export interface EmulatorCertificates {
  caPem: string;
  /** Absolute or stateDir-relative path of the CA certificate, for `--ca`. */
  caPath: string;
  serverCertPem: string;
  serverKeyPem: string;
  /** The names the server certificate covers (DNS names and IP addresses). */
  hostNames: string[];
  /** What this call had to create: false means loaded from the state directory. */
  created: { ca: boolean; server: boolean };
  /**
   * Another certificate for the server's key, signed by the CA, covering `hostNames` only: for an
   * emulated IoT hub's own host name, served when a device names that hub in SNI. Not stored.
   */
  issueServerCertificate(hostNames: readonly string[]): string;
}

/**
 * Load the CA and server certificate from `stateDir`, creating what is missing: the CA when it
 * is absent, unreadable, made without an authority key identifier (by an older emulator) or
 * about to expire (then the server certificate too); the server
 * certificate when it is absent, not signed by the CA, expiring soon, or does not cover every
 * configured host name.
 */
export async function loadOrCreateCertificates(options: CertificateOptions): Promise<EmulatorCertificates> {
  const now = options.now ?? (() => new Date());
  const hostNames = uniqueNames([...DEFAULT_HOST_NAMES, ...(options.hostNames ?? [])]);
  const dir = options.stateDir;
  await makeStateDirectory(dir);
  const caPath = join(dir, CA_CERT_FILE);

  let ca = await loadPair(join(dir, CA_CERT_FILE), join(dir, CA_KEY_FILE));
  const createCa = !ca?.cert.cAValid || !ca.cert.getExtension('authorityKeyIdentifier') || expiresSoon(ca.cert, now());
  if (createCa) {
    ca = createCertificateAuthority(now());
    await writeAtomically(join(dir, CA_KEY_FILE), ca.keyPem, 0o600);
    await writeAtomically(caPath, ca.certPem, 0o644);
  }
  const authority = ca!;

  let server = createCa ? undefined : await loadPair(join(dir, SERVER_CERT_FILE), join(dir, SERVER_KEY_FILE));
  const createServer =
    !server || expiresSoon(server.cert, now()) || !signedBy(server.cert, authority.cert) || !covers(server.cert, hostNames);
  if (createServer) {
    server = createServerCertificate(authority, hostNames, now());
    await writeAtomically(join(dir, SERVER_KEY_FILE), server.keyPem, 0o600);
    await writeAtomically(join(dir, SERVER_CERT_FILE), server.certPem, 0o644);
  }
  const serverPublicKey = server!.cert.publicKey as forge.pki.rsa.PublicKey;
  return {
    caPem: authority.certPem,
    caPath,
    serverCertPem: server!.certPem,
    serverKeyPem: server!.keyPem,
    hostNames: subjectAltNames(server!.cert),
    created: { ca: createCa, server: createServer },
    issueServerCertificate: (names) =>
      pki.certificateToPem(signServerCertificate(authority, serverPublicKey, uniqueNames([...names]), now())),
  };
}

interface Pair {
  cert: forge.pki.Certificate & { cAValid?: boolean };
  certPem: string;
  key: KeyObject;
  keyPem: string;
}

async function loadPair(certPath: string, keyPath: string): Promise<Pair | undefined> {
  try {
    const [certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    const cert = pki.certificateFromPem(certPem) as Pair['cert'];
    const key = createPrivateKey(keyPem);
    if (!new X509Certificate(certPem).checkPrivateKey(key)) return undefined; // the key must belong to the certificate
    const basic = cert.getExtension('basicConstraints') as { cA?: boolean } | undefined;
    cert.cAValid = basic?.cA === true;
    return { cert, certPem, key, keyPem };
  } catch {
    return undefined; // missing or unreadable: create afresh
  }
}

/**
 * An RSA 2048 key pair: the public key as forge puts it in a certificate, the private key as
 * node:crypto signs with it and as PEM (PKCS#8).
 */
export interface KeyPair {
  publicKey: forge.pki.rsa.PublicKey;
  privateKey: KeyObject;
  keyPem: string;
}

export function rsaKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicKey: pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()) as forge.pki.rsa.PublicKey,
    privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** A certificate for `publicKey`, valid as given, to be named, extended and signed. */
export function newCertificate(publicKey: forge.pki.rsa.PublicKey, validity: Validity): forge.pki.Certificate {
  const cert = pki.createCertificate();
  cert.publicKey = publicKey;
  // A positive 128-bit serial number (the high bit cleared), as RFC 5280 asks.
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = validity.notBefore;
  cert.validity.notAfter = validity.notAfter;
  return cert;
}

/**
 * A CA certificate for `pair`, named `subject`: self-signed (a root), or signed by `issuer` (an
 * intermediate). `pathLenConstraint` 0: no intermediate below it.
 */
export function createCaCertificate(
  pair: KeyPair,
  subject: forge.pki.CertificateField[],
  validity: Validity,
  options: { issuer?: { cert: forge.pki.Certificate; key: KeyObject }; pathLenConstraint?: number } = {},
): forge.pki.Certificate {
  const { issuer, pathLenConstraint } = options;
  const cert = newCertificate(pair.publicKey, validity);
  cert.setSubject(subject);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, ...(pathLenConstraint !== undefined && { pathLenConstraint }), critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    // A root's refers to itself, as public roots' do: Moddable's TLS (SDK 8.2.3) throws on a CA without it.
    { name: 'authorityKeyIdentifier', keyIdentifier: (issuer?.cert ?? cert).generateSubjectKeyIdentifier().getBytes() },
  ]);
  signCertificate(cert, issuer?.key ?? pair.privateKey);
  return cert;
}

/**
 * Signs `cert` with `key` (SHA-256 with RSA): forge encodes the TBSCertificate, node:crypto signs
 * it (forge's RSA in JavaScript takes about 20 ms a signature, node:crypto well under one).
 */
export function signCertificate(cert: forge.pki.Certificate, key: KeyObject): void {
  cert.signatureOid = cert.siginfo.algorithmOid = pki.oids.sha256WithRSAEncryption!;
  // Kept on the certificate, as forge's own sign does: certificateToPem encodes this one.
  cert.tbsCertificate = (pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  cert.signature = sign('sha256', Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary'), key).toString('binary');
}

function createCertificateAuthority(now: Date): Pair {
  const pair = rsaKeyPair();
  const subject = [
    { name: 'commonName', value: `moddable-dps emulator CA ${now.toISOString().slice(0, 10)}` },
    { name: 'organizationName', value: 'moddable-dps local emulator' },
  ];
  const cert: Pair['cert'] = createCaCertificate(pair, subject, validity(now, CA_LIFETIME_DAYS), { pathLenConstraint: 0 });
  cert.cAValid = true;
  return { cert, certPem: pki.certificateToPem(cert), key: pair.privateKey, keyPem: pair.keyPem };
}

function createServerCertificate(ca: Pair, hostNames: string[], now: Date): Pair {
  const { publicKey, privateKey, keyPem } = rsaKeyPair();
  const cert = signServerCertificate(ca, publicKey, hostNames, now);
  return { cert, certPem: pki.certificateToPem(cert), key: privateKey, keyPem };
}

function signServerCertificate(ca: Pair, publicKey: forge.pki.rsa.PublicKey, hostNames: string[], now: Date): Pair['cert'] {
  const cert = newCertificate(publicKey, validity(now, SERVER_LIFETIME_DAYS));
  cert.setSubject([{ name: 'commonName', value: hostNames[0] ?? 'localhost' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: hostNames.map((name) => (isIP(name) ? { type: 7, ip: name } : { type: 2, value: name })),
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  signCertificate(cert, ca.key);
  return cert;
}

/** From an hour ago (a device whose clock lags a little still accepts it) for `days`. */
function validity(now: Date, days: number): Validity {
  return { notBefore: new Date(now.getTime() - 60 * 60 * 1000), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

function expiresSoon(cert: forge.pki.Certificate, now: Date): boolean {
  return cert.validity.notAfter.getTime() - now.getTime() < RENEW_BEFORE_DAYS * DAY_MS;
}

function signedBy(cert: forge.pki.Certificate, ca: forge.pki.Certificate): boolean {
  try {
    return ca.verify(cert);
  } catch {
    return false;
  }
}

function subjectAltNames(cert: forge.pki.Certificate): string[] {
  const san = cert.getExtension('subjectAltName') as { altNames?: Array<{ type: number; value?: string; ip?: string }> } | undefined;
  const names: string[] = [];
  for (const alt of san?.altNames ?? []) {
    if (alt.type === 2 && alt.value) names.push(alt.value.toLowerCase());
    if (alt.type === 7 && alt.ip) names.push(normaliseIp(alt.ip));
  }
  return names;
}

function covers(cert: forge.pki.Certificate, hostNames: string[]): boolean {
  const present = new Set(subjectAltNames(cert));
  return hostNames.every((name) => present.has(name));
}

function uniqueNames(names: string[]): string[] {
  const out: string[] = [];
  for (const raw of names) {
    const name = isIP(raw) ? normaliseIp(raw) : raw.trim().toLowerCase();
    if (name.length > 0 && !out.includes(name)) out.push(name);
  }
  return out;
}

/** One spelling per address, so that '::1' and '0:0:0:0:0:0:0:1' compare equal. */
function normaliseIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip.toLowerCase();
  }
}

async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, text, { mode });
    await rename(temp, path);
  } catch (error) {
    throw stateFileError(path, error);
  }
}

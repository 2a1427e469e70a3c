// X.509 for the emulator: certificates as the service API takes them (PEM, or base64 DER as a
// .cer), the info DPS reports for them (X509CertificateInfo of azure-iot-provisioning-service),
// a TLS client's certificates, and the checks DPS and IoT Hub make of them:
//   - the device certificate's CN is the registration ID (DPS) or the device ID (IoT Hub);
//   - every certificate used is valid now (notBefore <= now <= notAfter);
//   - individual enrollment / self-signed identity: the device certificate's thumbprint (SHA-1 or
//     SHA-256) is one of those enrolled;
//   - enrollment group / CA identity: a chain from the device certificate through the certificates
//     the device sent reaches a signing certificate (root or intermediate), each link's signature
//     verified and each issuer a CA.
// Only public material is handled here: TLS has already checked that the client holds the key
// (its CertificateVerify).
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { invalidConfiguration } from './dps-errors.js';
import type { X509CertificateInfo } from './model-types.js';

export type { X509CertificateInfo };

/** The certificates a TLS client presented: its own first, then the rest of the chain it sent. */
export interface PeerCertificates {
  leaf: X509Certificate;
  chain: X509Certificate[];
}

/** Why a certificate was refused; for the emulator's log (the device sees CONNACK 5 or a 401). */
export type CertificateFailure =
  | 'cert-cn-mismatch'
  | 'cert-expired'
  | 'cert-not-yet-valid'
  | 'cert-unknown'
  | 'cert-untrusted-ca'
  | 'cert-ca-not-verified';

/** One certificate from PEM text or base64 DER; refused (400, naming `what`) otherwise. */
export function parseCertificate(text: unknown, what: string): X509Certificate {
  if (typeof text !== 'string' || text.trim() === '') throw invalidConfiguration(`${what}: the certificate is missing`);
  const pem = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (pem && pem.length > 1) throw invalidConfiguration(`${what}: give one certificate, not a chain of ${pem.length}`);
  try {
    if (pem) return new X509Certificate(pem[0]!);
    const der = text.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(der)) throw new Error('not base64');
    return new X509Certificate(Buffer.from(der, 'base64'));
  } catch {
    throw invalidConfiguration(`${what}: not a certificate (PEM, or base64 DER)`);
  }
}

/** How many parsed trusted certificates are kept (the oldest goes first). */
const TRUSTED_CACHE_SIZE = 256;
const trustedCertificates = new Map<string, X509Certificate>();

/**
 * A certificate the model holds (a group's signing certificate, a CA certificate: checked when it
 * was stored), parsed once rather than at every connection. Kept by its text, so a changed
 * certificate is parsed afresh; at most TRUSTED_CACHE_SIZE are kept.
 */
export function trustedCertificate(text: string, what: string): X509Certificate {
  let parsed = trustedCertificates.get(text);
  if (!parsed) {
    parsed = parseCertificate(text, what);
    if (trustedCertificates.size >= TRUSTED_CACHE_SIZE) trustedCertificates.delete(trustedCertificates.keys().next().value!);
    trustedCertificates.set(text, parsed);
  }
  return parsed;
}

/** The certificate as PEM, one block. */
export function toPem(certificate: X509Certificate): string {
  return certificate.toString();
}

export function certificateInfo(certificate: X509Certificate): X509CertificateInfo {
  return {
    subjectName: distinguishedName(certificate.subject),
    sha1Thumbprint: thumbprint(certificate.fingerprint),
    sha256Thumbprint: thumbprint(certificate.fingerprint256),
    issuerName: distinguishedName(certificate.issuer),
    notBeforeUtc: new Date(certificate.validFrom).toISOString(),
    notAfterUtc: new Date(certificate.validTo).toISOString(),
    serialNumber: certificate.serialNumber.toUpperCase(),
    version: 3,
  };
}

/** 'AB:CD:...' → 'ABCD...', as DPS and IoT Hub write thumbprints. */
export function thumbprint(fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toUpperCase();
}

/** Node's 'CN=x\nO=y' as 'CN=x, O=y'. */
function distinguishedName(text: string): string {
  return text.split('\n').filter(Boolean).join(', ');
}

/** The certificate's subject common name (the last CN when there are several), or undefined. */
export function commonName(certificate: X509Certificate): string | undefined {
  let cn: string | undefined;
  for (const line of certificate.subject.split('\n')) if (line.startsWith('CN=')) cn = line.slice(3);
  return cn;
}

/** Whether `thumbprintText` (SHA-1 or SHA-256, any case, colons allowed) names `certificate`. */
export function hasThumbprint(certificate: X509Certificate, thumbprintText: string | undefined): boolean {
  if (!thumbprintText) return false;
  const wanted = thumbprint(thumbprintText);
  return wanted === thumbprint(certificate.fingerprint) || wanted === thumbprint(certificate.fingerprint256);
}

/** The certificates a TLS client sent, or undefined when it sent none. */
export function peerCertificates(socket: TLSSocket): PeerCertificates | undefined {
  let leaf: X509Certificate | undefined;
  try {
    leaf = socket.getPeerX509Certificate();
  } catch {
    return undefined;
  }
  if (!leaf) return undefined;
  const chain: X509Certificate[] = [];
  // Each certificate links to its issuer among those the client sent (getPeerCertificate(true)
  // does not link them on a server); the last has none, or itself.
  const seen = new Set<string>([leaf.fingerprint256]);
  for (let next = leaf.issuerCertificate; next && chain.length < 10; next = next.issuerCertificate) {
    if (seen.has(next.fingerprint256)) break;
    seen.add(next.fingerprint256);
    chain.push(next);
  }
  return { leaf, chain };
}

/** A certificate is usable at `nowMs`, or why not. */
export function validity(certificate: X509Certificate, nowMs: number): CertificateFailure | undefined {
  if (nowMs < Date.parse(certificate.validFrom)) return 'cert-not-yet-valid';
  if (nowMs > Date.parse(certificate.validTo)) return 'cert-expired';
  return undefined;
}

/** The device certificate names `id` as its CN (DPS and IoT Hub IDs are compared case-insensitively). */
export function namesId(certificate: X509Certificate, id: string): boolean {
  return commonName(certificate)?.toLowerCase() === id.toLowerCase();
}

/**
 * Whether a chain from `peer.leaf` through the certificates the device sent reaches one of
 * `anchors` (signing certificates: a root or an intermediate), each link's signature verified,
 * each issuer a CA and valid at `nowMs`. The device certificate itself is checked by the caller.
 */
export function chainsTo(peer: PeerCertificates, anchors: readonly X509Certificate[], nowMs: number): CertificateFailure | undefined {
  if (anchors.length === 0) return 'cert-untrusted-ca';
  let current = peer.leaf;
  const pool = [...peer.chain];
  let outcome: CertificateFailure = 'cert-untrusted-ca';
  for (let depth = 0; depth < 10; depth++) {
    const anchor = anchors.find((a) => signs(a, current));
    if (anchor) {
      const why = validity(anchor, nowMs);
      if (why === undefined) return undefined;
      outcome = why;
    }
    const index = pool.findIndex((c) => signs(c, current));
    if (index === -1) return outcome;
    const [issuer] = pool.splice(index, 1) as [X509Certificate];
    const why = validity(issuer, nowMs);
    if (why) return why;
    // The device sent the anchor itself (a chain up to the root): reached.
    if (anchors.some((a) => a.fingerprint256 === issuer.fingerprint256)) return undefined;
    current = issuer;
  }
  return outcome;
}

/** `issuer` issued `subject`: a CA whose name is the subject's issuer and whose key verifies the signature. */
export function signs(issuer: X509Certificate, subject: X509Certificate): boolean {
  if (!issuer.ca || issuer.fingerprint256 === subject.fingerprint256) return false;
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

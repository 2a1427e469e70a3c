// Issuing X.509 certificates for devices (factory --issue-certs, fleet --ca-cert) and CAs (tests,
// development), with the building blocks the emulator makes its own CA with. Keys are RSA 2048:
// Moddable's TLS signs its CertificateVerify with RSA keys only, and node-forge puts only RSA keys
// in certificates. Reading a certificate uses node:crypto's X509Certificate.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import {
  createCaCertificate,
  type KeyPair,
  newCertificate,
  rsaKeyPair,
  signCertificate,
  type Validity,
} from '../../emulator/certificates.js';
import { ProvisioningError } from '../../src/errors.js';

const { pki } = forge;
const DAY_MS = 86_400_000;

/** A CA that signs: its certificate (PEM) and its private key (PEM, a secret). */
export interface SigningCa {
  cert: string;
  key: string;
}

/** A CA read and checked once (loadSigningCa), to issue many certificates. */
export interface IssuingCa {
  cert: forge.pki.Certificate;
  key: KeyObject;
  /** What a device sends after its own certificate: the CA's when it is an intermediate, nothing for a root. */
  chain: string;
}

/** A certificate and its private key, as PEM. `cert` holds the chain the device sends (its own first). */
export interface IssuedCertificate {
  cert: string;
  key: string;
}

export interface ValidityOptions {
  /** Default: now. */
  notBefore?: Date;
  /** Default: a year after notBefore (CAs: ten years). */
  notAfter?: Date;
}

/** A CA certificate: self-signed (a root) or signed by `issuer` (an intermediate). */
export function createCa(commonName: string, options: ValidityOptions & { issuer?: SigningCa } = {}): SigningCa {
  const pair = rsaKeyPair();
  const issuer = options.issuer ? loadSigningCa(options.issuer.cert, options.issuer.key) : undefined;
  const cert = createCaCertificate(pair, [{ name: 'commonName', value: commonName }], validity(options, 3650), { issuer });
  return { cert: pki.certificateToPem(cert), key: pair.keyPem };
}

/**
 * A device certificate with `commonName` (the registration ID) as CN, for TLS client
 * authentication, signed by `ca`. `cert` is the chain the device presents: the device certificate,
 * then the CA's when the CA is an intermediate (DPS needs the chain up to the enrolled CA).
 * `ca`: loaded once to issue many (fleet, factory). `keyPair`: reuse one (fleet); default a fresh
 * RSA 2048 pair.
 */
export function issueDeviceCertificate(
  ca: SigningCa | IssuingCa,
  commonName: string,
  options: ValidityOptions & { keyPair?: KeyPair } = {},
): IssuedCertificate {
  const issuer = 'chain' in ca ? ca : loadSigningCa(ca.cert, ca.key);
  const pair = options.keyPair ?? rsaKeyPair();
  const cert = deviceCertificate(pair, commonName, validity(options, 365), issuer);
  return { cert: `${pki.certificateToPem(cert)}${issuer.chain}`, key: pair.keyPem };
}

/** A self-signed device certificate (an individual enrollment needs no CA). */
export function selfSignedDeviceCertificate(commonName: string, options: ValidityOptions = {}): IssuedCertificate {
  const pair = rsaKeyPair();
  const cert = deviceCertificate(pair, commonName, validity(options, 365));
  return { cert: pki.certificateToPem(cert), key: pair.keyPem };
}

/** A device certificate for TLS client authentication, CN `commonName`: signed by `issuer`, else self-signed. */
function deviceCertificate(pair: KeyPair, commonName: string, validity: Validity, issuer?: IssuingCa): forge.pki.Certificate {
  const cert = newCertificate(pair.publicKey, validity);
  const subject = [{ name: 'commonName', value: commonName }];
  cert.setSubject(subject);
  cert.setIssuer(issuer ? issuer.cert.subject.attributes : subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    ...(issuer
      ? [
          { name: 'subjectKeyIdentifier' },
          { name: 'authorityKeyIdentifier', keyIdentifier: issuer.cert.generateSubjectKeyIdentifier().getBytes() },
        ]
      : []),
  ]);
  signCertificate(cert, issuer?.key ?? pair.privateKey);
  return cert;
}

/**
 * The CA's certificate and key, checked: a CA certificate, an RSA key (node-forge reads only RSA
 * certificates) that belongs to it. Errors never quote the key.
 */
export function loadSigningCa(certPem: string, keyPem: string): IssuingCa {
  const pem = firstCertificate(certPem);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch {
    throw new ProvisioningError('invalid-input', 'the CA certificate (--ca-cert) is not a valid PEM certificate');
  }
  if (!x509.ca)
    throw new ProvisioningError('invalid-input', 'the CA certificate (--ca-cert) is not a CA certificate (basicConstraints CA:TRUE)');
  let keyObject: ReturnType<typeof createPrivateKey>;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch {
    throw new ProvisioningError('invalid-input', 'the CA key (--ca-key) is not a PEM private key (or is encrypted)');
  }
  if (!x509.checkPrivateKey(keyObject)) {
    throw new ProvisioningError('invalid-input', 'the CA key (--ca-key) does not belong to the CA certificate (--ca-cert)');
  }
  if (keyObject.asymmetricKeyType !== 'rsa') {
    throw new ProvisioningError('invalid-input', 'the CA key (--ca-key) must be an RSA key to issue certificates here');
  }
  const cert = pki.certificateFromPem(pem);
  return { cert, key: keyObject, chain: cert.isIssuer(cert) ? '' : pem };
}

function firstCertificate(text: string): string {
  const block = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/);
  if (!block) throw new ProvisioningError('invalid-input', 'the CA certificate (--ca-cert) holds no PEM certificate');
  return `${block[0]}\n`;
}

/** The given validity; by default from a minute ago for `defaultDays`. */
function validity(options: ValidityOptions, defaultDays: number): Validity {
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  return { notBefore, notAfter: options.notAfter ?? new Date(notBefore.getTime() + defaultDays * DAY_MS) };
}

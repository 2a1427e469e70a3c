// Trust anchors as a device receives them (PEM text from a build or a factory, DER bytes from
// storage), checked before they reach the TLS stack: one certificate is one DER SEQUENCE whose
// encoded length is the whole of it (X.690 8.1.3: definite lengths, short form below 128 bytes,
// else 1-3 length octets here, which covers any certificate a device keeps). Signatures and
// dates are the TLS stack's to check.
import { base64Decode } from './bytes.js';
import { ProvisioningError } from './errors.js';

/** PEM text holding 1..max certificates (anything around the blocks is ignored, as PEM tools do). */
export function certificatesFromPem(text: string, source: string, max: number): Uint8Array[] {
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) throw invalid(`${source} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  if (blocks.length > max) throw invalid(`${source} holds ${blocks.length} certificates; at most ${max} are trusted`);
  return blocks.map((block, i) => {
    const what = blocks.length === 1 ? source : `${source} #${i + 1}`;
    return checkDerCertificate(base64Decode(block[1]!.replace(/\s+/g, ''), what), what);
  });
}

/** `bytes` when they are one DER-encoded SEQUENCE exactly, else an invalid-input error naming `source`. */
export function checkDerCertificate(bytes: Uint8Array, source: string): Uint8Array {
  if (!isWholeDerSequence(bytes)) throw invalid(`${source} is not a DER certificate (${bytes.length} bytes)`);
  return bytes;
}

/** One DER SEQUENCE whose encoded length is all of `bytes` (certificates and PKCS#8 keys both are). */
function isWholeDerSequence(bytes: Uint8Array): boolean {
  const first = bytes[1] ?? 0;
  const lengthBytes = first < 0x80 ? 0 : first & 0x7f;
  let length = first < 0x80 ? first : 0;
  for (let i = 0; i < lengthBytes; i++) length = length * 256 + (bytes[2 + i] ?? 0);
  return bytes[0] === 0x30 && lengthBytes <= 3 && bytes.length >= 4 && 2 + lengthBytes + length === bytes.length;
}

/**
 * A device's private key from PEM: one PKCS#8 block (`-----BEGIN PRIVATE KEY-----`), the form
 * Moddable's TLS reads (ssl_cert.js: PKCS8.parse), as DER. Other forms are refused with the
 * conversion to make; no message quotes any of the key.
 */
export function privateKeyFromPem(text: string, source: string): Uint8Array {
  const other = /-----BEGIN (RSA|EC|ENCRYPTED) PRIVATE KEY-----/.exec(text);
  if (other) {
    const form = other[1] === 'ENCRYPTED' ? 'an encrypted PKCS#8 key' : `a PKCS#1 ${other[1]} key`;
    throw invalid(`${source} holds ${form}; the device needs an unencrypted PKCS#8 key (openssl pkcs8 -topk8 -nocrypt)`);
  }
  const blocks = [...text.matchAll(/-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+?)-----END PRIVATE KEY-----/g)];
  if (blocks.length !== 1) throw invalid(`${source} must hold one PEM private key (-----BEGIN PRIVATE KEY-----), not ${blocks.length}`);
  let der: Uint8Array;
  try {
    der = base64Decode(blocks[0]![1]!.replace(/\s+/g, ''), source);
  } catch {
    throw invalid(`${source} is not valid PEM`);
  }
  if (!isWholeDerSequence(der)) throw invalid(`${source} is not a DER private key`);
  return der;
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

// The firmware's trust anchors: the two roots built into the firmware are the ones Microsoft asks
// Azure IoT devices to trust (checked against the fingerprints their owners publish), and the
// PEM/DER checks anchors from a build or the factory go through (src/certificates.ts).
//
// Published values:
// - Serial numbers and SHA-1 thumbprints: Microsoft, "Azure Certificate Authority details",
//   https://learn.microsoft.com/azure/security/fundamentals/azure-ca-details (Root Certificate Authorities).
// - SHA-256, DigiCert Global Root G2: https://www.digicert.com/kb/digicert-root-certificates.htm
// - SHA-256, Microsoft RSA Root Certificate Authority 2017: Microsoft PKI repository,
//   https://www.microsoft.com/pkiops/docs/repository.htm
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { certificatesFromPem, checkDerCertificate, privateKeyFromPem } from '../src/certificates.js';
import { isProvisioningError } from '../src/errors.js';

const CERTS = join(import.meta.dirname, '..', 'hosts', 'moddable', 'certs');
const ROOTS = [
  {
    file: 'DigiCertGlobalRootG2.der',
    subject: 'CN=DigiCert Global Root G2',
    serial: '033AF1E6A711A9A0BB2864B11D09FAE5',
    sha1: 'DF3C24F9BFD666761B268073FE06D1CC8D4F82A4',
    sha256: 'CB3CCBB76031E5E0138F8DD39A23F9DE47FFC35E43C1144CEA27D46A5AB1CB5F',
  },
  {
    file: 'MicrosoftRSARootCA2017.der',
    subject: 'CN=Microsoft RSA Root Certificate Authority 2017',
    serial: '1ED397095FD8B4B347701EAABE7F45B3',
    sha1: '73A5E64A3BFF8316FF0EDCCC618A906E4EAE4D74',
    sha256: 'C741F70F4B2A8D88BF2E71C14122EF53EF10EBA0CFA5E64CFA20F418853073E0',
  },
];

const der = (file: string) => new Uint8Array(readFileSync(join(CERTS, file)));
const pem = (bytes: Uint8Array) => new X509Certificate(bytes).toString();
const hash = (algorithm: string, bytes: Uint8Array) => createHash(algorithm).update(bytes).digest('hex').toUpperCase();

function invalid(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(isProvisioningError(error) && error.kind).toBe('invalid-input');
    return (error as Error).message;
  }
  throw new Error('no error');
}

describe('the built-in trust anchors', () => {
  it.each(ROOTS)('$file is $subject, with the serial number and fingerprints its owners publish', (root) => {
    const bytes = der(root.file);
    const certificate = new X509Certificate(bytes);
    expect(certificate.subject.split('\n')).toContain(root.subject);
    expect(certificate.issuer).toBe(certificate.subject); // a root
    expect(certificate.serialNumber).toBe(root.serial);
    expect(hash('sha1', bytes)).toBe(root.sha1);
    expect(hash('sha256', bytes)).toBe(root.sha256);
    expect(checkDerCertificate(bytes, root.file)).toBe(bytes);
  });

  it('are both built into the firmware, and nothing else is', () => {
    const manifest = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'manifest.json'), 'utf8')) as {
      data: Record<string, string[]>;
    };
    expect(manifest.data['*']!.map((path) => `${path.split('/').pop()}.der`)).toEqual(ROOTS.map((root) => root.file));
  });
});

describe('anchors as PEM text or DER bytes', () => {
  const [g2, microsoft] = ROOTS.map((root) => der(root.file)) as [Uint8Array, Uint8Array];

  it('reads every certificate of a PEM bundle, in order, byte for byte, whatever surrounds them', () => {
    const bundle = `# the Azure roots\n${pem(g2)}\nsome text\r\n${pem(microsoft).replace(/\n/g, '\r\n')}`;
    expect(certificatesFromPem(bundle, 'bundle', 4)).toEqual([g2, microsoft]);
    expect(certificatesFromPem(pem(g2), 'one', 1)).toEqual([g2]);
  });

  it('refuses text without a certificate, too many certificates, bad base64 and a block that is not one DER certificate, naming the source', () => {
    expect(invalid(() => certificatesFromPem('not a certificate', 'Preference "dps"/"ca"', 4))).toBe(
      'Preference "dps"/"ca" holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
    );
    expect(invalid(() => certificatesFromPem(pem(g2).repeat(3), 'the bundle', 2))).toBe(
      'the bundle holds 3 certificates; at most 2 are trusted',
    );
    expect(invalid(() => certificatesFromPem('-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----', 'x', 4))).toMatch(/^x/);
    const truncated = `-----BEGIN CERTIFICATE-----\n${Buffer.from(g2.subarray(0, 500)).toString('base64')}\n-----END CERTIFICATE-----`;
    expect(invalid(() => certificatesFromPem(`${pem(microsoft)}${truncated}`, 'ca', 4))).toBe('ca #2 is not a DER certificate (500 bytes)');
  });

  it('takes DER bytes that are exactly one SEQUENCE with a definite length, and nothing else', () => {
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['a byte short', g2.subarray(0, g2.length - 1)],
      ['a byte over', new Uint8Array([...g2, 0])],
      ['not a SEQUENCE', new Uint8Array([0x31, ...g2.subarray(1)])],
      ['indefinite length', new Uint8Array([0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00])],
      ['four length octets', new Uint8Array([0x30, 0x84, 0, 0, 0, 2, 5, 0])],
      ['short form, too short', new Uint8Array([0x30, 0x05, 0x02, 0x01])],
    ];
    for (const [name, bytes] of cases)
      expect(
        invalid(() => checkDerCertificate(bytes, name)),
        name,
      ).toBe(`${name} is not a DER certificate (${bytes.length} bytes)`);
    const small = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]);
    expect(checkDerCertificate(small, 'small')).toBe(small);
  });
});

describe("a device's private key as PEM (X.509 attestation on Moddable)", () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const failure = (run: () => unknown) => {
    try {
      run();
    } catch (error) {
      if (isProvisioningError(error)) return error;
    }
    throw new Error('no ProvisioningError');
  };

  it('takes one unencrypted PKCS#8 block and gives its DER, as Node exports it', () => {
    const der = privateKeyFromPem(`leading text\n${pkcs8}\ntrailing`, 'Preference "dps"/"certKey"');
    expect(Buffer.from(der)).toEqual(privateKey.export({ type: 'pkcs8', format: 'der' }));
  });

  it('refuses PKCS#1, EC, encrypted, none or two keys, naming the source and the conversion, never the key', () => {
    const pkcs1 = privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    const encrypted = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }) as string;
    const cases: [string, RegExp][] = [
      [pkcs1, /holds a PKCS#1 RSA key; the device needs an unencrypted PKCS#8 key \(openssl pkcs8 -topk8 -nocrypt\)/],
      [encrypted, /holds an encrypted PKCS#8 key/],
      ['no key here', /must hold one PEM private key .* not 0/],
      [`${pkcs8}${pkcs8}`, /not 2/],
      ['-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----', /is not a DER private key/],
    ];
    const body = pkcs8.split('\n')[1]!;
    for (const [text, message] of cases) {
      const error = failure(() => privateKeyFromPem(text, 'config certificateKey'));
      expect(error.kind).toBe('invalid-input');
      expect(error.message).toMatch(message);
      expect(error.message).toContain('config certificateKey');
      expect(error.message).not.toContain(body.slice(0, 16));
    }
  });
});

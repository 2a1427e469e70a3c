// The instance's CA certificates (DPS's Certificates, `az iot dps certificate`): what an enrollment
// group's x509.caReferences name. DPS trusts one only once it is verified, by proof of possession:
//   1. upload the CA certificate (unverified), or upload it with isVerified: true (development);
//   2. generate a verification code;
//   3. sign a certificate whose CN is that code with the CA's key and upload it: verified.
// Names are case-insensitive; etags guard changes as elsewhere in the model.
import { randomBytes } from 'node:crypto';
import { invalidConfiguration, notFound } from './dps-errors.js';
import type { CaCertificate } from './model-types.js';
import { checkEtag, newEtag } from './validation.js';
import { commonName, parseCertificate, signs, toPem, validity } from './x509.js';

export class CaCertificateStore {
  #certificates = new Map<string, CaCertificate>();
  readonly #changed: () => void;
  readonly #now: () => Date;

  constructor(changed: () => void = () => {}, now: () => Date = () => new Date()) {
    this.#changed = changed;
    this.#now = now;
  }

  list(): CaCertificate[] {
    return [...this.#certificates.values()].map((c) => ({ ...c }));
  }

  get(name: string): CaCertificate | undefined {
    const certificate = this.#certificates.get(String(name).toLowerCase());
    return certificate && { ...certificate };
  }

  /** Upload (or replace) a CA certificate; replacing it unverifies it unless `isVerified` says otherwise. */
  put(name: unknown, certificate: unknown, isVerified: unknown = false, ifMatch?: string): CaCertificate {
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw invalidConfiguration('A certificate name is 1 to 64 letters, digits, -, . or _');
    }
    if (isVerified !== undefined && isVerified !== null && typeof isVerified !== 'boolean') {
      throw invalidConfiguration(`The certificate ${name}: isVerified must be true or false`);
    }
    const parsed = parseCertificate(certificate, `The certificate ${name}`);
    if (!parsed.ca) throw invalidConfiguration(`The certificate ${name} is not a CA certificate (basicConstraints CA:TRUE)`);
    const previous = this.#certificates.get(name.toLowerCase());
    checkEtag(previous?.etag, ifMatch, `certificate ${name}`);
    const now = this.#now().toISOString();
    const stored: CaCertificate = {
      name: previous?.name ?? name,
      certificate: toPem(parsed),
      isVerified: isVerified === true,
      etag: newEtag(),
      created: previous?.created ?? now,
      updated: now,
    };
    this.#certificates.set(name.toLowerCase(), stored);
    this.#changed();
    return { ...stored };
  }

  delete(name: string, ifMatch?: string): void {
    const current = this.#require(name);
    checkEtag(current.etag, ifMatch, `certificate ${name}`);
    this.#certificates.delete(current.name.toLowerCase());
    this.#changed();
  }

  /** Step 2 of proof of possession: a fresh code, kept until a proof is verified. */
  generateVerificationCode(name: string, ifMatch?: string): CaCertificate {
    const current = this.#require(name);
    checkEtag(current.etag, ifMatch, `certificate ${name}`);
    const next = {
      ...current,
      verificationCode: randomBytes(24).toString('hex').toUpperCase(),
      etag: newEtag(),
      updated: this.#now().toISOString(),
    };
    this.#certificates.set(current.name.toLowerCase(), next);
    this.#changed();
    return { ...next };
  }

  /** Step 3: a certificate with the code as CN, signed by the CA's key, valid now. */
  verify(name: string, proof: unknown, ifMatch?: string): CaCertificate {
    const current = this.#require(name);
    checkEtag(current.etag, ifMatch, `certificate ${name}`);
    if (!current.verificationCode) {
      throw invalidConfiguration(`The certificate ${current.name} has no verification code: generate one first`);
    }
    const leaf = parseCertificate(proof, `The verification certificate for ${current.name}`);
    const ca = parseCertificate(current.certificate, current.name);
    if (commonName(leaf) !== current.verificationCode) {
      throw invalidConfiguration(`The verification certificate's CN is not the verification code of ${current.name}`);
    }
    if (!signs(ca, leaf)) throw invalidConfiguration(`The verification certificate is not signed by the key of ${current.name}`);
    const now = this.#now();
    if (validity(leaf, now.getTime())) throw invalidConfiguration('The verification certificate is expired or not yet valid');
    const { verificationCode: _used, ...rest } = current;
    const next: CaCertificate = { ...rest, isVerified: true, etag: newEtag(), updated: now.toISOString() };
    this.#certificates.set(current.name.toLowerCase(), next);
    this.#changed();
    return { ...next };
  }

  /** Replace everything (a snapshot's certificates); no change is notified. */
  restore(certificates: readonly CaCertificate[]): void {
    this.#certificates = new Map(certificates.map((c) => [c.name.toLowerCase(), { ...c }]));
  }

  #require(name: string): CaCertificate {
    const certificate = this.#certificates.get(String(name).toLowerCase());
    if (!certificate) throw notFound(`The certificate ${name} does not exist`);
    return certificate;
  }
}

// Shared access signature (SAS) tokens, the device's side: building them (checking them, for the
// emulator and the tests, is ./sas-verify.ts). One format serves DPS device registration, IoT Hub
// and the DPS service API:
//   SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded base64 HMAC>&se=<expiry>[&skn=<key name>]
// The signature is HMAC-SHA256(base64-decoded key, <sr exactly as sent> + "\n" + <se>).
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { base64Decode, base64Encode, utf8Encode } from './bytes.js';
import { ProvisioningError } from './errors.js';
import { validateIdScope, validateRegistrationId } from './identity.js';

export interface SasTokenOptions {
  /** The resource, not yet URL-encoded, e.g. '0ne0012ABCD/registrations/my-device'. */
  resource: string;
  /** The signing key, base64. A secret. */
  key: string;
  /** Expiry in Unix seconds (a whole number). */
  expiry: number;
  /** The policy or key name (skn); DPS device tokens use 'registration'. */
  keyName?: string;
}

export const PREFIX = 'SharedAccessSignature ';
/** Longer tokens are refused unparsed; real ones are a few hundred characters. */
export const MAX_SAS_TOKEN_LENGTH = 4096;

/** Build a SAS token. Throws `invalid-input` for an empty resource, a key that is not base64, or a bad expiry. */
export function buildSasToken(options: SasTokenOptions): string {
  return signToken(options, 'The signing key');
}

/** The MQTT password for DPS symmetric-key attestation: resource '<idScope>/registrations/<registrationId>', skn=registration. */
export function dpsRegistrationSasToken(idScope: string, registrationId: string, deviceKey: string, expiry: number): string {
  validateIdScope(idScope);
  validateRegistrationId(registrationId);
  return signToken(
    { resource: `${idScope}/registrations/${registrationId}`, key: deviceKey, expiry, keyName: 'registration' },
    'The device key',
  );
}

function signToken(options: SasTokenOptions, keyLabel: string): string {
  const { resource, key, expiry, keyName } = options;
  if (typeof resource !== 'string' || resource.length === 0) throw invalid('The SAS resource is empty');
  if (!Number.isSafeInteger(expiry) || expiry < 0) {
    throw invalid('The SAS expiry must be a whole, non-negative number of Unix seconds');
  }
  if (keyName !== undefined && (typeof keyName !== 'string' || keyName.length === 0)) {
    throw invalid('The SAS key name, when given, must not be empty');
  }
  const sr = encode(resource, 'The SAS resource');
  const signature = base64Encode(sign(decodeKey(key, keyLabel), sr, String(expiry)));
  let token = `${PREFIX}sr=${sr}&sig=${encodeURIComponent(signature)}&se=${expiry}`;
  if (keyName !== undefined) token += `&skn=${encode(keyName, 'The SAS key name')}`;
  return token;
}

export function sign(key: Uint8Array, sr: string, se: string): Uint8Array {
  return hmac(sha256, key, utf8Encode(`${sr}\n${se}`));
}

export function decodeKey(key: string, label: string): Uint8Array {
  if (typeof key !== 'string' || key.length === 0) throw invalid(`${label} is empty`);
  const bytes = base64Decode(key, label);
  if (bytes.length === 0) throw invalid(`${label} is empty`);
  return bytes;
}

function encode(text: string, label: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    throw invalid(`${label} contains an unpaired surrogate (not valid Unicode)`);
  }
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

// Who the device is to DPS: the registration ID (checked, or built from hardware facts) and,
// for an enrollment group, the device key derived from the group key.
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { base64Decode, base64Encode, utf8Encode } from './bytes.js';
import { ProvisioningError } from './errors.js';

export const MAX_REGISTRATION_ID_LENGTH = 128;

// The DPS rule, from Azure's docs (MicrosoftDocs/azure-docs,
// articles/iot-dps/how-to-legacy-device-symm-key.md, "Choose a unique registration ID";
// https://learn.microsoft.com/azure/iot-dps/how-to-legacy-device-symm-key):
//   "The registration ID is a case-insensitive string (up to 128 characters long) of
//    alphanumeric characters plus the special characters: '-', '.', '_', ':'. The last
//    character must be alphanumeric or dash ('-')."
// We also require lower case: DPS compares IDs case-insensitively, but a group-derived device
// key is an HMAC over the exact bytes, so the device must present the ID in one canonical form.
const ALLOWED = /^[a-z0-9\-._:]$/;
const LAST_ALLOWED = /^[a-z0-9-]$/;

/** Returns `id` when it is a valid lower-case DPS registration ID; otherwise throws `invalid-input` naming the rule broken. */
export function validateRegistrationId(id: string): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw invalid('The registration ID is empty');
  }
  if (id.length > MAX_REGISTRATION_ID_LENGTH) {
    throw invalid(`The registration ID is ${id.length} characters long; DPS allows at most ${MAX_REGISTRATION_ID_LENGTH}`);
  }
  for (let i = 0; i < id.length; i++) {
    const c = id[i]!;
    if (ALLOWED.test(c)) continue;
    const shown = describe(String.fromCodePoint(id.codePointAt(i)!));
    const where = `at position ${i + 1}`;
    if (c >= 'A' && c <= 'Z') {
      throw invalid(`The registration ID must be lower case: ${shown} ${where} (use '${c.toLowerCase()}')`);
    }
    throw invalid(`The registration ID contains ${shown} ${where}; allowed are a-z, 0-9 and the characters - . _ :`);
  }
  const last = id[id.length - 1]!;
  if (!LAST_ALLOWED.test(last)) {
    throw invalid(`The registration ID must end with a letter, a digit or '-', not ${describe(last)}`);
  }
  return id;
}

// The IoT Hub rule, from Azure's docs (MicrosoftDocs/azure-docs,
// articles/iot-hub/iot-hub-devguide-identity-registry.md, "Device identity properties";
// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry):
//   "A case-sensitive string (up to 128 characters long) of ASCII 7-bit alphanumeric characters
//    plus certain special characters: - . % _ * ? ! ( ) , : = @ $ '. The special characters:
//    + # are not supported."
const DEVICE_ID = /^[A-Za-z0-9\-.%_*?!(),:=@$']+$/;
const MAX_DEVICE_ID_LENGTH = 128;

/** Whether `id` is a device ID IoT Hub allows (what DPS assigns, and what a stored record holds). */
export function isDeviceId(id: unknown): id is string {
  return typeof id === 'string' && id.length <= MAX_DEVICE_ID_LENGTH && DEVICE_ID.test(id);
}

/** A device's hardware facts, the values a registration ID template may name. */
export interface HardwareIdentity {
  serial?: string;
  mac?: string | Uint8Array;
  [name: string]: string | Uint8Array | undefined;
}

const PLACEHOLDER_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const WELL_KNOWN = ['serial', 'mac'];
const MAC_PLAIN = /^[0-9A-Fa-f]{12}$/;
const MAC_SEPARATED = /^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}$/;

/**
 * Fill `template` (e.g. '{serial}-{mac}') from `identity` and normalise the result to a valid
 * registration ID:
 *  - `{mac}` becomes 12 lower-case hex digits ('A1:B2:C3:D4:E5:F6', 'a1-b2-c3-d4-e5-f6',
 *    'a1b2c3d4e5f6' or 6 bytes; anything else is rejected); any other Uint8Array value becomes
 *    lower-case hex; strings are used as they are;
 *  - then the whole text is lower-cased, every character outside a-z 0-9 - . _ : becomes '-',
 *    every run of '-' collapses to one '-' (so 'ACME Corp / 7' gives 'acme-corp-7'), and
 *    leading and trailing '-', '.', '_', ':' are trimmed;
 *  - finally the result is validated (length, non-empty).
 * Deterministic: the same template and identity always give the same ID.
 */
export function buildRegistrationId(template: string, identity: HardwareIdentity): string {
  if (typeof template !== 'string' || template.length === 0) {
    throw invalid('The registration ID template is empty');
  }
  let filled = '';
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c === '}') {
      throw invalid(`The registration ID template has a '}' without a matching '{' at position ${i + 1}`);
    }
    if (c !== '{') {
      filled += c;
      i++;
      continue;
    }
    const close = template.indexOf('}', i + 1);
    const nextOpen = template.indexOf('{', i + 1);
    if (close === -1 || (nextOpen !== -1 && nextOpen < close)) {
      throw invalid(`The registration ID template has a '{' without a matching '}' at position ${i + 1}`);
    }
    const name = template.slice(i + 1, close);
    if (!PLACEHOLDER_NAME.test(name)) {
      throw invalid(`The registration ID template has an invalid placeholder {${name}}: use a name such as {serial} or {mac}`);
    }
    filled += placeholderValue(name, identity);
    i = close + 1;
  }
  const normalised = normalise(filled);
  if (normalised.length === 0) {
    throw invalid('The registration ID template produced an empty ID (no letters or digits)');
  }
  if (normalised.length > MAX_REGISTRATION_ID_LENGTH) {
    throw invalid(
      `The registration ID built from the template is ${normalised.length} characters long; DPS allows at most ${MAX_REGISTRATION_ID_LENGTH}`,
    );
  }
  return validateRegistrationId(normalised);
}

function placeholderValue(name: string, identity: HardwareIdentity): string {
  const known = WELL_KNOWN.includes(name) || Object.hasOwn(identity, name);
  if (!known) {
    const names = Object.keys(identity).filter((key) => identity[key] !== undefined);
    const offer = names.length ? `; the identity has ${names.map((n) => `{${n}}`).join(', ')}` : '';
    throw invalid(`The registration ID template names an unknown placeholder {${name}}${offer}`);
  }
  const value = Object.hasOwn(identity, name) ? identity[name] : undefined;
  if (value === undefined || value === null || value.length === 0) {
    throw invalid(`The registration ID template needs {${name}}, but the device identity has no value for it`);
  }
  if (name === 'mac') return macHex(value);
  if (value instanceof Uint8Array) return hex(value);
  if (typeof value === 'string') return value;
  throw invalid(`The identity value for {${name}} must be a string or bytes`);
}

function macHex(value: string | Uint8Array): string {
  if (value instanceof Uint8Array) {
    if (value.length !== 6) throw invalid(`The MAC address must be 6 bytes, not ${value.length}`);
    return hex(value);
  }
  if (typeof value === 'string' && (MAC_PLAIN.test(value) || MAC_SEPARATED.test(value))) {
    return value.replace(/[:-]/g, '').toLowerCase();
  }
  throw invalid("The MAC address must be 12 hex digits, e.g. 'a1b2c3d4e5f6', 'A1:B2:C3:D4:E5:F6' or 'a1-b2-c3-d4-e5-f6'");
}

function normalise(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9\-._:]/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-._:]+/, '')
    .replace(/[-._:]+$/, '');
}

/**
 * The device key for an enrollment group:
 * base64(HMAC-SHA256(base64-decode(groupKey), UTF-8(registrationId))), as Azure's docs derive it
 * (articles/iot-dps/how-to-legacy-device-symm-key.md, "Derive a device key").
 */
export function deriveDeviceKey(groupKey: string, registrationId: string): string {
  validateRegistrationId(registrationId);
  if (typeof groupKey !== 'string' || groupKey.length === 0) throw invalid('The group key is empty');
  const key = base64Decode(groupKey, 'The group key');
  if (key.length === 0) throw invalid('The group key is empty');
  return base64Encode(hmac(sha256, key, utf8Encode(registrationId)));
}

/** The ID scope of a DPS instance (e.g. '0ne0012ABCD'): non-empty ASCII letters and digits. */
export function validateIdScope(idScope: string): string {
  if (typeof idScope !== 'string' || !/^[A-Za-z0-9]+$/.test(idScope)) {
    throw invalid('The ID scope must be a non-empty alphanumeric string (e.g. 0ne0012ABCD)');
  }
  return idScope;
}

function hex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += (b < 16 ? '0' : '') + b.toString(16);
  return out;
}

function describe(c: string): string {
  const code = c.codePointAt(0)!;
  const u = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return code > 0x20 && code < 0x7f ? `'${c}'` : u;
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

// Checking SAS tokens: the service's side (the local emulator's device endpoints and service API,
// and the tests). The firmware does not include this module.
import { base64Decode } from './bytes.js';
import { ProvisioningError } from './errors.js';
import { decodeKey, MAX_SAS_TOKEN_LENGTH, PREFIX, sign } from './sas.js';

export interface ParsedSasToken {
  /** The sr field as sent (still URL-encoded): the signed text. */
  sr: string;
  /** The resource, URL-decoded. */
  resource: string;
  /** The signature, URL-decoded (base64). */
  sig: string;
  /** Expiry, Unix seconds. */
  se: number;
  /** The key name, URL-decoded, when present. */
  skn?: string;
}

/**
 * Parse 'SharedAccessSignature sr=..&sig=..&se=..[&skn=..]' with the fields in any order
 * (unknown fields are ignored; a repeated field is malformed). Throws `unauthorized` for a
 * malformed token; the message names the fault, never the token's content.
 */
export function parseSasToken(token: string): ParsedSasToken {
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) {
    throw malformed("it does not start with 'SharedAccessSignature '");
  }
  if (token.length > MAX_SAS_TOKEN_LENGTH) throw malformed(`it is longer than ${MAX_SAS_TOKEN_LENGTH} characters`);
  const fields = new Map<string, string>();
  for (const part of token.slice(PREFIX.length).split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw malformed("a field is not of the form 'name=value'");
    const name = part.slice(0, eq);
    if (fields.has(name)) throw malformed(`the field '${safeName(name)}' appears twice`);
    fields.set(name, part.slice(eq + 1));
  }
  const sr = required(fields, 'sr');
  const sig = decode(required(fields, 'sig'), 'sig');
  const seText = required(fields, 'se');
  if (!/^\d{1,15}$/.test(seText)) throw malformed("the expiry 'se' is not a whole number of seconds");
  const parsed: ParsedSasToken = { sr, resource: decode(sr, 'sr'), sig, se: Number(seText) };
  const skn = fields.get('skn');
  if (skn !== undefined) parsed.skn = decode(skn, 'skn');
  return parsed;
}

/**
 * Why a token was refused: 'malformed' (cannot be parsed), 'resource' (signed for another
 * resource than `expectedResource`), 'signature' (not signed with `key`), 'expired' (se <= now).
 * Checked in that order, so 'expired' is only reported for an authentic token.
 */
export type SasVerification =
  | { ok: true; token: ParsedSasToken }
  | { ok: false; reason: 'malformed' | 'resource' | 'signature' | 'expired' };

/**
 * Verify a token against `key` (base64) at `nowSeconds`. The signature is recomputed over the sr
 * text exactly as sent (azure-sdk-for-c sends '%2f', the Node SDK a raw '/': both verify) and
 * compared in constant time. `expectedResource` is compared with the decoded resource, ignoring
 * ASCII case (DPS registration IDs and host names are case-insensitive).
 * A `key` that is not base64 is the verifier's configuration error: it throws `invalid-input`.
 */
export function verifySasToken(
  token: string,
  key: string,
  nowSeconds: number,
  expectedResource?: string,
  /** HMAC-SHA256 of the UTF-8 message; default the core's (pure JavaScript). A host may pass its own, faster one. */
  hmacSha256?: (key: Uint8Array, message: string) => Uint8Array,
): SasVerification {
  const secret = decodeKey(key, 'The verification key');
  let parsed: ParsedSasToken;
  let given: Uint8Array;
  try {
    parsed = parseSasToken(token);
    given = base64Decode(parsed.sig, 'The signature');
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (expectedResource !== undefined && asciiLower(parsed.resource) !== asciiLower(expectedResource)) {
    return { ok: false, reason: 'resource' };
  }
  const expected = hmacSha256 ? hmacSha256(secret, `${parsed.sr}\n${String(parsed.se)}`) : sign(secret, parsed.sr, String(parsed.se));
  if (!constantTimeEqual(given, expected)) return { ok: false, reason: 'signature' };
  if (!(parsed.se > nowSeconds)) return { ok: false, reason: 'expired' };
  return { ok: true, token: parsed };
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function decode(text: string, field: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw malformed(`the field '${field}' is not valid URL encoding`);
  }
}

function required(fields: Map<string, string>, name: string): string {
  const value = fields.get(name);
  if (value === undefined || value.length === 0) throw malformed(`the field '${name}' is missing`);
  return value;
}

function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function safeName(name: string): string {
  return /^[A-Za-z]{1,16}$/.test(name) ? name : '?';
}

function malformed(why: string): ProvisioningError {
  return new ProvisioningError('unauthorized', `The SAS token is malformed: ${why}`);
}

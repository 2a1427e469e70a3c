// UTF-8 and base64 without TextEncoder, atob or Buffer (XS on a device has none of them).
import { ProvisioningError } from './errors.js';

/** UTF-8 encode. Lone surrogates become U+FFFD, as TextEncoder does. */
export function utf8Encode(text: string): Uint8Array {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) length += 1;
    else if (c < 0x800) length += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1))) {
      length += 4;
      i++;
    } else length += 3;
  }
  const out = new Uint8Array(length);
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[o++] = c;
    } else if (c < 0x800) {
      out[o++] = 0xc0 | (c >> 6);
      out[o++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLow(text.charCodeAt(i + 1))) {
      c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00);
      out[o++] = 0xf0 | (c >> 18);
      out[o++] = 0x80 | ((c >> 12) & 0x3f);
      out[o++] = 0x80 | ((c >> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
      out[o++] = 0xe0 | (c >> 12);
      out[o++] = 0x80 | ((c >> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    }
  }
  return out;
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * Strict UTF-8 decode: overlong forms, surrogates, code points past U+10FFFF and truncated
 * sequences are a `protocol` error (MQTT 3.1.1 §1.5.3 forbids them in strings).
 */
export function utf8Decode(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let out = '';
  let chunk: number[] = [];
  for (let i = start; i < end; ) {
    const b = bytes[i]!;
    let cp: number;
    let need: number;
    let min: number;
    if (b < 0x80) {
      cp = b;
      need = 0;
      min = 0;
    } else if (b >= 0xc2 && b <= 0xdf) {
      cp = b & 0x1f;
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      cp = b & 0x0f;
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      cp = b & 0x07;
      need = 3;
      min = 0x10000;
    } else {
      throw invalidUtf8();
    }
    if (i + need >= end) throw invalidUtf8();
    for (let k = 1; k <= need; k++) {
      const next = bytes[i + k]!;
      if ((next & 0xc0) !== 0x80) throw invalidUtf8();
      cp = (cp << 6) | (next & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw invalidUtf8();
    i += need + 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else {
      chunk.push(cp);
    }
    // XS puts every argument of apply() on its VM stack (256 slots by default on a device) and
    // aborts, uncatchably, when it overflows: keep the chunks small.
    if (chunk.length >= 64) {
      out += String.fromCharCode.apply(null, chunk);
      chunk = [];
    }
  }
  return out + String.fromCharCode.apply(null, chunk);
}

function invalidUtf8(): ProvisioningError {
  return new ProvisioningError('protocol', 'Invalid UTF-8 in a string from the server');
}

// Base64 (RFC 4648 §4, with padding). Moddable's XS has Uint8Array.fromBase64 and toBase64
// (TC39 "Uint8Array to/from base64"), Node 20 and xsnap's XS do not: the native ones when
// present, else the small codec below. Both are strict: padding required, no whitespace, no
// other alphabet, and the unused bits of the last character must be zero (one encoding per
// byte string, as a key's must be).

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

interface NativeBase64 {
  fromBase64?: (text: string, options: { lastChunkHandling: 'strict' }) => Uint8Array;
}
const native = Uint8Array as unknown as NativeBase64;
const nativeToBase64 = (Uint8Array.prototype as unknown as { toBase64?: () => string }).toBase64;

export function base64Encode(bytes: Uint8Array): string {
  if (nativeToBase64) return nativeToBase64.call(bytes);
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  if (i + 1 === bytes.length) {
    const n = bytes[i]! << 16;
    out += `${ALPHABET[n >> 18]!}${ALPHABET[(n >> 12) & 63]!}==`;
  } else if (i + 2 === bytes.length) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += `${ALPHABET[n >> 18]!}${ALPHABET[(n >> 12) & 63]!}${ALPHABET[(n >> 6) & 63]!}=`;
  }
  return out;
}

/** Strict base64 decode; `what` names the value in the error (never its content: it may be a key). */
export function base64Decode(text: string, what: string): Uint8Array {
  const bytes = typeof text !== 'string' || text.length % 4 !== 0 ? undefined : native.fromBase64 ? decodeNative(text) : decode(text);
  if (!bytes) throw new ProvisioningError('invalid-input', `${what} is not valid base64`);
  return bytes;
}

function decodeNative(text: string): Uint8Array | undefined {
  if (/[^A-Za-z0-9+/=]/.test(text)) return undefined; // fromBase64 skips ASCII whitespace
  try {
    return native.fromBase64!(text, { lastChunkHandling: 'strict' });
  } catch {
    return undefined;
  }
}

/** text.length is a multiple of 4. */
function decode(text: string): Uint8Array | undefined {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - padding);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const a = value(text, i);
    const b = value(text, i + 1);
    const c = last && padding === 2 ? 0 : value(text, i + 2);
    const d = last && padding >= 1 ? 0 : value(text, i + 3);
    if ((a | b | c | d) < 0) return undefined;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
    // The bits the padding hides must be zero.
    if (last && ((padding === 2 && (n & 0xffff) !== 0) || (padding === 1 && (n & 0xff) !== 0))) return undefined;
  }
  return out;
}

/** The 6-bit value of the character at i, or -1 (also for '=' where a character belongs). */
function value(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c >= 65 && c <= 90) return c - 65;
  if (c >= 97 && c <= 122) return c - 71;
  if (c >= 48 && c <= 57) return c + 4;
  if (c === 43) return 62;
  if (c === 47) return 63;
  return -1;
}

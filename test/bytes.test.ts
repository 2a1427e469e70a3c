import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64Decode, base64Encode, utf8Decode, utf8Encode } from '../src/bytes.js';
import { ProvisioningError } from '../src/errors.js';

describe('utf8', () => {
  it('encodes exactly like TextEncoder for any string, lone surrogates included', () => {
    const reference = new TextEncoder();
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        expect(utf8Encode(s)).toEqual(reference.encode(s));
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes what it encodes for well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(utf8Decode(utf8Encode(s))).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees with a fatal TextDecoder on arbitrary bytes: same text, or both reject', () => {
    const reference = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (bytes) => {
        let expected: string | undefined;
        try {
          expected = reference.decode(bytes);
        } catch {
          expected = undefined;
        }
        if (expected === undefined) expect(() => utf8Decode(bytes)).toThrow(ProvisioningError);
        else expect(utf8Decode(bytes)).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('rejects overlong, surrogate and truncated sequences', () => {
    for (const bad of [
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf4, 0x90, 0x80, 0x80],
    ]) {
      expect(() => utf8Decode(new Uint8Array(bad))).toThrow(/Invalid UTF-8/);
    }
  });
});

describe('base64Decode', () => {
  it('names the value but never echoes it', () => {
    const err = (() => {
      try {
        base64Decode('not*base64', 'The group key');
      } catch (e) {
        return e as ProvisioningError;
      }
    })();
    expect(err?.kind).toBe('invalid-input');
    expect(err?.message).toBe('The group key is not valid base64');
  });
});

describe('base64 (the codec the device runs where the engine has no Uint8Array.fromBase64)', () => {
  // RFC 4648 §10, "Test Vectors".
  const RFC4648: [string, string][] = [
    ['', ''],
    ['f', 'Zg=='],
    ['fo', 'Zm8='],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg=='],
    ['fooba', 'Zm9vYmE='],
    ['foobar', 'Zm9vYmFy'],
  ];

  it.each(RFC4648)('encodes and decodes the RFC 4648 vector %j', (text, encoded) => {
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    expect(base64Encode(bytes)).toBe(encoded);
    expect(base64Decode(encoded, 'x')).toEqual(bytes);
  });

  it("matches Node's Buffer both ways for any bytes, the whole alphabet included", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const theirs = Buffer.from(bytes).toString('base64');
        expect(base64Encode(bytes)).toBe(theirs);
        expect(base64Decode(theirs, 'x')).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
    expect(base64Decode('+/+/', 'x')).toEqual(Uint8Array.from(Buffer.from('+/+/', 'base64')));
  });

  it.each([
    ['missing padding', 'Zg'],
    ['missing padding (one)', 'Zm8'],
    ['whitespace', 'Zm9v Yg=='],
    ['a line break', 'Zm9v\nYmFy'],
    ['the URL-safe alphabet', 'a-_b'],
    ['padding in the middle', 'Zg==Zm9v'],
    ['too much padding', 'Z==='],
    ['only padding', '===='],
    ['non-zero bits under the padding (two)', 'Zh=='],
    ['non-zero bits under the padding (one)', 'Zm9='],
    ['a character outside the alphabet', 'Zm9*'],
    ['a non-ASCII character', 'Zm9é'],
  ])('refuses %s, which Buffer would take', (_what, text) => {
    expect(() => base64Decode(text, 'The key')).toThrow('The key is not valid base64');
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { base64Decode, utf8Decode, utf8Encode } from '../src/bytes.js';
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
    for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]) {
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

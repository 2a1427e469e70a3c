import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { printable } from '../src/text.js';

/** Every character printable() must escape, as a test-side list (not the module's regex). */
const UNPRINTABLE: number[] = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i),
  0x061c,
  0x200e,
  0x200f,
  0x2028,
  0x2029,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
];
const unprintable = new Set(UNPRINTABLE.map((c) => String.fromCharCode(c)));

describe('printable', () => {
  it('shows the attacks of issue 16 as visible escapes', () => {
    expect(printable('\x1b[31mevil.azure-devices.net')).toBe('\\u001b[31mevil.azure-devices.net');
    expect(printable('hub.net\ndeviceId: attacker-controlled')).toBe('hub.net\\ndeviceId: attacker-controlled');
    expect(printable('boom\rerror (none): all good')).toBe('boom\\rerror (none): all good');
    expect(printable('a\tb\0c\x7f\x9b')).toBe('a\\tb\\u0000c\\u007f\\u009b');
    expect(printable('invoice\u202egnp.exe \u2028 \u2066x\u2069')).toBe('invoice\\u202egnp.exe \\u2028 \\u2066x\\u2069');
  });

  it('leaves every other character alone, backslashes and non-ASCII included', () => {
    for (const text of ['contoso.azure-devices.net', "dev-1.%_*?!(),:=@$'", 'C:\\path \\n', 'é😀İ → ok', '\u00a0\u00ff\u200d\u2030']) {
      expect(printable(text)).toBe(text);
    }
  });

  it('escapes exactly the listed characters, is idempotent, and its escapes decode as JSON to the input', () => {
    const unit = fc.oneof(
      fc.constantFrom(...unprintable),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => c !== '\\'),
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 30 }), (text) => {
        const shown = printable(text);
        expect([...shown].filter((c) => unprintable.has(c))).toEqual([]);
        expect(printable(shown)).toBe(shown);
        // Without backslashes in the input, every backslash in the output starts an escape.
        expect(JSON.parse(`"${shown.replace(/"/g, '\\"')}"`)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });
});

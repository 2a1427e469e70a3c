// Fuzzing SAS tokens: the parser and the verifier with arbitrary and mutated tokens.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { base64Decode } from '../src/bytes.js';
import { buildSasToken } from '../src/sas.js';
import { parseSasToken, verifySasToken } from '../src/sas-verify.js';
import { base64Key, fuzzText, mutateString, outcome, runs, stringMutations, wellFormedText } from './support/fuzz.js';

// ---- SAS tokens ----

const tokenLike = fc.oneof(
  fuzzText(80),
  fuzzText(80).map((s) => `SharedAccessSignature ${s}`),
  fc
    .array(fc.tuple(fc.constantFrom('sr', 'sig', 'se', 'skn', 'x', ''), fuzzText(20)), { maxLength: 6 })
    .map((fields) => `SharedAccessSignature ${fields.map(([k, v]) => `${k}=${v}`).join('&')}`),
);
const validToken = fc.record({
  resource: wellFormedText(40).filter((s) => s.length > 0),
  key: base64Key,
  expiry: fc.integer({ min: 0, max: 2 ** 40 }),
  keyName: fc.option(
    wellFormedText(12).filter((s) => s.length > 0),
    { nil: undefined },
  ),
});

describe('SAS token parser and verifier', () => {
  it('parses arbitrary text to fields or an unauthorized error', () => {
    fc.assert(
      fc.property(tokenLike, base64Key, fc.integer({ min: 0, max: 2 ** 40 }), (token, key, now) => {
        const parsed = outcome(() => parseSasToken(token), ['unauthorized'], 'parseSasToken').value;
        if (parsed) {
          assert.ok(Number.isSafeInteger(parsed.se) && parsed.se >= 0);
          for (const text of [parsed.sr, parsed.resource, parsed.sig]) assert.ok(typeof text === 'string' && text.length > 0);
        }
        const verdict = outcome(() => verifySasToken(token, key, now), [], 'verifySasToken').value!;
        if (verdict.ok) assert.ok(parsed);
      }),
      runs(500),
    );
  });

  it('verifies its own tokens, and a mutated token only if it signs the same resource and expiry', () => {
    fc.assert(
      fc.property(validToken, stringMutations, fc.integer({ min: 0, max: 2 ** 40 }), (options, mutations, now) => {
        const token = buildSasToken(options);
        const original = parseSasToken(token);
        assert.deepEqual(verifySasToken(token, options.key, options.expiry - 1, options.resource), { ok: true, token: original });
        assert.deepEqual(verifySasToken(token, options.key, options.expiry), { ok: false, reason: 'expired' });
        const verdict = outcome(
          () => verifySasToken(mutateString(token, mutations), options.key, now, options.resource),
          [],
          'verifySasToken',
        ).value!;
        if (verdict.ok) {
          assert.equal(verdict.token.sr, original.sr);
          assert.equal(verdict.token.se, original.se);
          assert.deepEqual(base64Decode(verdict.token.sig, 'sig'), base64Decode(original.sig, 'sig'));
          assert.ok(verdict.token.se > now);
        }
      }),
      runs(500),
    );
  });

  it('takes any verification key: a result, or invalid-input for one that is not base64', () => {
    fc.assert(
      fc.property(validToken, fuzzText(30), (options, key) => {
        outcome(() => verifySasToken(buildSasToken(options), key, 0), ['invalid-input'], 'verifySasToken(key)');
      }),
      runs(200),
    );
  });
});

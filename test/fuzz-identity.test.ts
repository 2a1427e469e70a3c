// Fuzzing identity: registration ID templates and the stored assignment record.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { buildRegistrationId, type HardwareIdentity, validateRegistrationId } from '../src/identity.js';
import { parseAssignment } from '../src/provisioner.js';
import {
  deepen,
  fieldValue,
  fuzzText,
  mutateString,
  nesting,
  outcome,
  REGISTRATION_ID,
  runs,
  stringMutations,
  textUnit,
} from './support/fuzz.js';

// ---- registration ID templates ----

const placeholderName = fc.constantFrom('serial', 'mac', 'x', 'sn_2', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'length');
const templateUnit = fc.oneof(
  { weight: 3, arbitrary: placeholderName.map((n) => `{${n}}`) },
  { weight: 1, arbitrary: fc.constantFrom('{', '}', '{}', '{1x}', '{a b}') },
  { weight: 4, arbitrary: textUnit },
);
const template = fc.string({ unit: templateUnit, maxLength: 12 });
const identityValue = fc.oneof(
  fuzzText(20),
  fc.uint8Array({ maxLength: 8 }),
  fc.constantFrom('A1:B2:C3:D4:E5:F6', 'a1-b2-c3-d4-e5-f6', 'a1b2c3d4e5f6', 'a1:b2-c3:d4:e5:f6', 'ACME Corp / 7', '-._:', 'x'.repeat(200)),
  fc.constant(undefined),
  // A JavaScript caller (device settings) may hand over anything.
  fc.anything({ maxDepth: 1 }),
);
const identity = fc.dictionary(placeholderName, identityValue, { maxKeys: 4 });

describe('registration ID templates (buildRegistrationId)', () => {
  it('build a valid, lower-case registration ID deterministically, or fail with invalid-input', () => {
    fc.assert(
      fc.property(fc.oneof(template, fuzzText(20)), identity, (t, id) => {
        const built = outcome(() => buildRegistrationId(t, id as HardwareIdentity), ['invalid-input'], 'buildRegistrationId').value;
        if (built === undefined) return;
        assert.equal(validateRegistrationId(built), built);
        assert.match(built, /^[a-z0-9\-._:]{0,127}[a-z0-9-]$/);
        assert.equal(buildRegistrationId(t, id as HardwareIdentity), built);
      }),
      runs(500),
    );
  });
});

// ---- the stored assignment record ----

const validRecord = {
  version: 1,
  assignedHub: 'hub-a.azure-devices.net',
  deviceId: REGISTRATION_ID,
  registrationId: REGISTRATION_ID,
  idScope: '0ne00000001',
  endpoint: 'global.azure-devices-provisioning.net:8883',
  substatus: 'initialAssignment',
  payload: { a: [1, 2, { b: null }] },
  provisionedAt: '2025-01-01T00:00:00.000Z',
};
const recordLike = fc.record(
  Object.fromEntries(
    Object.keys(validRecord).map((k) => [
      k,
      fc.oneof(fc.constant((validRecord as Record<string, unknown>)[k]), fieldValue, fc.constant(1)),
    ]),
  ),
  { requiredKeys: [] },
);
const recordText = fc.oneof(
  fuzzText(80),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  recordLike.map((v) => JSON.stringify(v)),
  stringMutations.map((m) => mutateString(JSON.stringify(validRecord), m)),
  nesting.map(([depth, open]) => deepen(JSON.stringify({ ...validRecord, payload: 0 }), depth, open)),
);

function checkRecord(text: string): void {
  const assignment = outcome(() => parseAssignment(text), [], 'parseAssignment').value;
  if (!assignment) return;
  for (const field of ['assignedHub', 'deviceId', 'registrationId', 'idScope', 'endpoint', 'provisionedAt'] as const) {
    assert.ok(typeof assignment[field] === 'string' && assignment[field].length > 0, field);
  }
  // The CLI prints it (--json) and the provisioner writes it back: it must serialise, and read back the same.
  const json = outcome(() => JSON.stringify({ version: 1, ...assignment }), [], 'JSON.stringify(assignment)').value!;
  assert.equal(JSON.stringify(parseAssignment(json)), JSON.stringify(assignment));
}

describe('stored assignment parser (parseAssignment)', () => {
  it('reads any text as a complete assignment or as nothing, and never throws', () => {
    fc.assert(fc.property(recordText, checkRecord), runs(500));
  });

  it('found: a stored payload 5000 levels deep was accepted, and printing it (--json) overflowed the stack', () => {
    checkRecord(deepen(JSON.stringify({ ...validRecord, payload: 0 }), 5000, '{"a":'));
  });
});

import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProvisioningError } from '../src/errors.js';
import {
  buildRegistrationId,
  deriveDeviceKey,
  type HardwareIdentity,
  MAX_REGISTRATION_ID_LENGTH,
  validateIdScope,
  validateRegistrationId,
} from '../src/identity.js';
import { errorOf } from './support/errors.js';

const invalidInput = (fn: () => unknown) => errorOf(fn, 'invalid-input');

// Independent reference: Microsoft's Node sample derives group device keys like this
// (Azure/azure-iot-sdk-node, provisioning/device/samples/register_symkeygroup.js,
// computeDerivedSymmetricKey), with Node's own crypto rather than @noble/hashes.
function referenceDerive(groupKey: string, registrationId: string): string {
  return createHmac('SHA256', Buffer.from(groupKey, 'base64')).update(registrationId, 'utf8').digest('base64');
}

// Lower-case DPS registration IDs per the Azure docs rule (see src/identity.ts).
const registrationIdArb = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-._:'.split('')), maxLength: 127 }),
    fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'.split('')),
  )
  .map(([body, last]) => body + last);

describe('validateRegistrationId', () => {
  it('accepts the Azure docs example and IDs using every allowed character', () => {
    // MicrosoftDocs/azure-docs, articles/iot-dps/how-to-legacy-device-symm-key.md
    expect(validateRegistrationId('sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6')).toBe('sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6');
    expect(validateRegistrationId('a.b_c:d-e')).toBe('a.b_c:d-e');
    expect(validateRegistrationId('ends-with-dash-')).toBe('ends-with-dash-');
    expect(validateRegistrationId('.leading-dot')).toBe('.leading-dot');
    expect(validateRegistrationId('7')).toBe('7');
  });

  it('accepts exactly 128 characters and rejects 129', () => {
    expect(validateRegistrationId('a'.repeat(MAX_REGISTRATION_ID_LENGTH))).toHaveLength(128);
    expect(invalidInput(() => validateRegistrationId('a'.repeat(129))).message).toMatch(/129 characters.*at most 128/);
  });

  it('rejects an empty ID', () => {
    expect(invalidInput(() => validateRegistrationId('')).message).toMatch(/empty/);
  });

  it('rejects upper case, naming the character and its position', () => {
    const error = invalidInput(() => validateRegistrationId('abC-1'));
    expect(error.message).toMatch(/lower case/);
    expect(error.message).toContain("'C' at position 3");
  });

  it.each([
    ['a b', 'U+0020', 2],
    ['a/b', "'/'", 2],
    ['a#', "'#'", 2],
    ['é', 'U+00E9', 1],
    ['a\u0000', 'U+0000', 2],
    ['x😀', 'U+1F600', 2],
  ])('rejects %j, naming the character and position', (id, shown, position) => {
    const error = invalidInput(() => validateRegistrationId(id));
    expect(error.message).toContain(shown);
    expect(error.message).toContain(`position ${position}`);
  });

  it.each(['abc.', 'abc_', 'abc:'])('rejects %j: the last character must be alphanumeric or a dash', (id) => {
    expect(invalidInput(() => validateRegistrationId(id)).message).toMatch(/must end with/);
  });

  it('accepts every ID built from the allowed alphabet', () => {
    fc.assert(
      fc.property(registrationIdArb, (id) => validateRegistrationId(id) === id),
      { numRuns: 500 },
    );
  });
});

describe('validateIdScope', () => {
  it('accepts an ID scope and rejects empty or non-alphanumeric ones', () => {
    expect(validateIdScope('0neFEEDC0DE')).toBe('0neFEEDC0DE');
    invalidInput(() => validateIdScope(''));
    invalidInput(() => validateIdScope('0ne/x'));
  });
});

describe('buildRegistrationId', () => {
  const identity: HardwareIdentity = { serial: 'SN-007-888-ABC', mac: 'A1:B2:C3:D4:E5:F6' };

  it('fills placeholders, lower-cases and renders the MAC as 12 hex digits', () => {
    expect(buildRegistrationId('{serial}-mac-{mac}', identity)).toBe('sn-007-888-abc-mac-a1b2c3d4e5f6');
    expect(buildRegistrationId('dev-{mac}', identity)).toBe('dev-a1b2c3d4e5f6');
  });

  it.each([
    ['A1:B2:C3:D4:E5:F6'],
    ['a1-b2-c3-d4-e5-f6'],
    ['a1b2c3d4e5f6'],
    ['A1B2C3D4E5F6'],
    [Uint8Array.of(0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6)],
  ])('accepts the MAC form %s', (mac) => {
    expect(buildRegistrationId('{mac}', { mac })).toBe('a1b2c3d4e5f6');
  });

  it.each([
    ['a1:b2-c3:d4:e5:f6'],
    ['a1:b2:c3:d4:e5'],
    ['a1b2.c3d4.e5f6'],
    ['g1b2c3d4e5f6'],
    [' a1b2c3d4e5f6'],
    ['a1:b2:c3:d4:e5:f6:07'],
    [Uint8Array.of(1, 2, 3, 4, 5)],
    [new Uint8Array(8)],
  ])('rejects the MAC %s', (mac) => {
    expect(invalidInput(() => buildRegistrationId('{mac}', { mac })).message).toMatch(/MAC address/);
  });

  it('keeps leading zero bytes of a MAC', () => {
    expect(buildRegistrationId('{mac}', { mac: Uint8Array.of(0, 1, 2, 0x0a, 0x10, 0xff) })).toBe('0001020a10ff');
  });

  it('renders other byte values as lower-case hex and takes any named string', () => {
    expect(buildRegistrationId('{board}-{chip}', { board: 'Rev B', chip: Uint8Array.of(0xde, 0xad) })).toBe('rev-b-dead');
  });

  it('replaces disallowed characters with "-", collapses runs of "-", trims separators', () => {
    expect(buildRegistrationId('{serial}', { serial: 'ACME Corp / Line 7' })).toBe('acme-corp-line-7');
    expect(buildRegistrationId('--{serial}--', { serial: 'x' })).toBe('x');
    expect(buildRegistrationId('{serial}', { serial: '._:a--b__c::d..' })).toBe('a-b__c::d');
    expect(buildRegistrationId('{serial}', { serial: 'Grüße' })).toBe('gr-e');
  });

  it('names a placeholder whose value is missing or empty', () => {
    expect(invalidInput(() => buildRegistrationId('{serial}-{mac}', { serial: 'x' })).message).toContain('{mac}');
    expect(invalidInput(() => buildRegistrationId('{serial}', {})).message).toContain('{serial}');
    expect(invalidInput(() => buildRegistrationId('{serial}', { serial: '' })).message).toContain('{serial}');
    expect(invalidInput(() => buildRegistrationId('{imei}', { imei: undefined })).message).toContain('{imei}');
  });

  it('rejects an unknown placeholder, listing the ones the identity has', () => {
    const error = invalidInput(() => buildRegistrationId('{sreial}', { serial: 'x' }));
    expect(error.message).toContain('unknown placeholder {sreial}');
    expect(error.message).toContain('{serial}');
  });

  it.each([['{serial'], ['serial}'], ['{{serial}}'], ['{se{rial}'], ['}{'], ['{}'], ['{ serial }'], ['{a-b}']])(
    'rejects the malformed template %j',
    (template) => {
      invalidInput(() => buildRegistrationId(template, { serial: 'x', 'a-b': 'y' }));
    },
  );

  it('rejects an empty template, an empty result, and a result over 128 characters', () => {
    invalidInput(() => buildRegistrationId('', identity));
    expect(invalidInput(() => buildRegistrationId('{serial}', { serial: '///' })).message).toMatch(/empty/);
    expect(invalidInput(() => buildRegistrationId('{serial}', { serial: 'a'.repeat(129) })).message).toMatch(/at most 128/);
    expect(buildRegistrationId('{serial}', { serial: 'a'.repeat(128) })).toHaveLength(128);
  });

  it('any template and identity: invalid-input, or a valid ID that is the same every time', () => {
    const value = fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 8 }), fc.constant(undefined));
    const identityArb = fc.record({ serial: value, mac: value, board: value }, { requiredKeys: [] }) as fc.Arbitrary<HardwareIdentity>;
    const piece = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom('{serial}', '{mac}', '{board}', '{other}', '{', '}', '-', ':', ' '),
    );
    const templateArb = fc.array(piece, { maxLength: 6 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(templateArb, identityArb, (template, id) => {
        let first: string;
        try {
          first = buildRegistrationId(template, id);
        } catch (error) {
          expect(error).toBeInstanceOf(ProvisioningError);
          expect((error as ProvisioningError).kind).toBe('invalid-input');
          return;
        }
        expect(validateRegistrationId(first)).toBe(first);
        expect(buildRegistrationId(template, { ...id })).toBe(first);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('deriveDeviceKey', () => {
  it('reproduces the published Azure docs vector', () => {
    // MicrosoftDocs/azure-docs, articles/iot-dps/how-to-legacy-device-symm-key.md ("Derive a device key"),
    // https://learn.microsoft.com/azure/iot-dps/how-to-legacy-device-symm-key
    expect(
      deriveDeviceKey(
        '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==',
        'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6',
      ),
    ).toBe('Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=');
  });

  it("agrees with Microsoft's Node derivation for random group keys and registration IDs", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 80 }), registrationIdArb, (keyBytes, registrationId) => {
        const groupKey = Buffer.from(keyBytes).toString('base64');
        expect(deriveDeviceKey(groupKey, registrationId)).toBe(referenceDerive(groupKey, registrationId));
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects a group key that is not base64, without echoing it', () => {
    const groupKey = 'not base64 at all!';
    const error = invalidInput(() => deriveDeviceKey(groupKey, 'dev-1'));
    expect(error.message).toBe('The group key is not valid base64');
    expect(error.message).not.toContain(groupKey);
  });

  it('rejects an empty group key and validates the registration ID first', () => {
    expect(invalidInput(() => deriveDeviceKey('', 'dev-1')).message).toMatch(/group key is empty/);
    const key = Buffer.from('0123456789abcdef').toString('base64');
    expect(invalidInput(() => deriveDeviceKey(key, 'Dev-1')).message).toMatch(/lower case/);
    expect(invalidInput(() => deriveDeviceKey('!!', '')).message).toMatch(/registration ID is empty/);
  });
});

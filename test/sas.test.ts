import { createHmac } from 'node:crypto';
import { SharedAccessSignature } from 'azure-iot-common';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveDeviceKey } from '../src/identity.js';
import { buildSasToken, dpsRegistrationSasToken } from '../src/sas.js';
import { parseSasToken, verifySasToken } from '../src/sas-verify.js';
import { errorOf } from './support/errors.js';

const KEY = Buffer.from('a 32-byte test key for SAS tests').toString('base64');

// Independent reference signature with Node's crypto: base64(HMAC-SHA256(key, sr + "\n" + se)).
function referenceSig(key: string, sr: string, se: number): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64');
}

function fieldsOf(token: string): Map<string, string> {
  expect(token.startsWith('SharedAccessSignature ')).toBe(true);
  return new Map(
    token
      .slice('SharedAccessSignature '.length)
      .split('&')
      .map((kv) => kv.split('=', 2) as [string, string]),
  );
}

function wellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

const registrationIdArb = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-._:'.split('')), maxLength: 60 }),
    fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'.split('')),
  )
  .map(([body, last]) => body + last);
const idScopeArb = fc.string({ unit: fc.constantFrom(...'0123456789ABCDEFabcdefneNE'.split('')), minLength: 1, maxLength: 11 });
const keyArb = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'));
const expiryArb = fc.integer({ min: 1, max: 4_102_444_800 });

describe('buildSasToken', () => {
  it('has the documented shape, signing exactly the sr text sent', () => {
    const token = buildSasToken({
      resource: 'myhub.azure-devices.net/devices/dev 1',
      key: KEY,
      expiry: 1_700_000_000,
      keyName: 'iothubowner',
    });
    const fields = fieldsOf(token);
    expect([...fields.keys()]).toEqual(['sr', 'sig', 'se', 'skn']);
    expect(fields.get('sr')).toBe('myhub.azure-devices.net%2Fdevices%2Fdev%201');
    expect(fields.get('se')).toBe('1700000000');
    expect(fields.get('skn')).toBe('iothubowner');
    expect(decodeURIComponent(fields.get('sig')!)).toBe(referenceSig(KEY, fields.get('sr')!, 1_700_000_000));
  });

  it('omits skn when no key name is given', () => {
    expect([...fieldsOf(buildSasToken({ resource: 'r', key: KEY, expiry: 5 })).keys()]).toEqual(['sr', 'sig', 'se']);
  });

  it('agrees with azure-iot-common SharedAccessSignature.create for random inputs', () => {
    // Azure/azure-iot-sdk-node common/core/src/shared_access_signature.ts (node_modules/azure-iot-common):
    // create(resourceUri, keyName, key, expiry) signs resourceUri + '\n' + expiry and sends resourceUri
    // as given, so we hand it the URL-encoded resource our token carries.
    const resourceArb = fc.string({ minLength: 1, maxLength: 80 }).filter(wellFormed);
    fc.assert(
      fc.property(
        resourceArb,
        keyArb,
        expiryArb,
        fc.option(fc.constantFrom('registration', 'iothubowner', 'provisioningserviceowner'), { nil: undefined }),
        (resource, key, expiry, keyName) => {
          const ours = fieldsOf(buildSasToken({ resource, key, expiry, ...(keyName && { keyName }) }));
          const theirs = fieldsOf(SharedAccessSignature.create(encodeURIComponent(resource), keyName as string, key, expiry).toString());
          expect(ours.get('sr')).toBe(theirs.get('sr'));
          expect(ours.get('sig')).toBe(theirs.get('sig'));
          expect(ours.get('se')).toBe(theirs.get('se'));
          expect(ours.get('skn')).toBe(theirs.get('skn'));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('rejects bad input with invalid-input and never echoes the key', () => {
    const badKey = 'secret-but-not-base64';
    const e1 = errorOf(() => buildSasToken({ resource: 'r', key: badKey, expiry: 1 }));
    expect(e1.kind).toBe('invalid-input');
    expect(e1.message).not.toContain(badKey);
    expect(errorOf(() => buildSasToken({ resource: '', key: KEY, expiry: 1 })).kind).toBe('invalid-input');
    expect(errorOf(() => buildSasToken({ resource: 'r', key: '', expiry: 1 })).kind).toBe('invalid-input');
    for (const expiry of [1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(errorOf(() => buildSasToken({ resource: 'r', key: KEY, expiry })).message).toMatch(/expiry/);
    }
    expect(errorOf(() => buildSasToken({ resource: 'r', key: KEY, expiry: 1, keyName: '' })).kind).toBe('invalid-input');
    expect(errorOf(() => buildSasToken({ resource: 'r\ud800', key: KEY, expiry: 1 })).kind).toBe('invalid-input');
  });
});

describe('dpsRegistrationSasToken', () => {
  it("matches azure-sdk-for-c's password layout (sr, sig, se, skn) for its test resource", () => {
    // Azure/azure-sdk-for-c sdk/tests/iot/provisioning/test_az_iot_provisioning_client_sas.c:
    // resource "0neFEEDC0DE%2fregistrations%2fmyRegistrationId", string to sign
    // "<sr>\n1578941692", password "SharedAccessSignature sr=<sr>&sig=<enc sig>&se=1578941692&skn=<name>".
    // That SDK writes '%2f', we write '%2F' (encodeURIComponent); both decode to the same resource
    // and each is signed as sent.
    const token = dpsRegistrationSasToken('0neFEEDC0DE', 'myregistrationid', KEY, 1578941692);
    const fields = fieldsOf(token);
    expect([...fields.keys()]).toEqual(['sr', 'sig', 'se', 'skn']);
    expect(fields.get('sr')!.toLowerCase()).toBe('0nefeedc0de%2fregistrations%2fmyregistrationid');
    expect(decodeURIComponent(fields.get('sr')!)).toBe('0neFEEDC0DE/registrations/myregistrationid');
    expect(fields.get('se')).toBe('1578941692');
    expect(fields.get('skn')).toBe('registration');
    expect(decodeURIComponent(fields.get('sig')!)).toBe(referenceSig(KEY, fields.get('sr')!, 1578941692));
  });

  it("verifies as the Node SDK's token does, for random scopes, IDs and keys", () => {
    fc.assert(
      fc.property(idScopeArb, registrationIdArb, keyArb, expiryArb, (idScope, registrationId, key, expiry) => {
        const ours = parseSasToken(dpsRegistrationSasToken(idScope, registrationId, key, expiry));
        expect(ours.resource).toBe(`${idScope}/registrations/${registrationId}`);
        expect(ours.skn).toBe('registration');
        expect(ours.sig).toBe(referenceSig(key, ours.sr, expiry));
      }),
      { numRuns: 500 },
    );
  });

  it('validates the ID scope, registration ID and device key', () => {
    expect(errorOf(() => dpsRegistrationSasToken('', 'dev', KEY, 1)).kind).toBe('invalid-input');
    expect(errorOf(() => dpsRegistrationSasToken('0ne/1', 'dev', KEY, 1)).kind).toBe('invalid-input');
    expect(errorOf(() => dpsRegistrationSasToken('0ne1', 'Dev', KEY, 1)).kind).toBe('invalid-input');
    expect(errorOf(() => dpsRegistrationSasToken('0ne1', 'dev', 'x', 1)).message).toBe('The device key is not valid base64');
  });
});

describe('parseSasToken', () => {
  it("parses azure-sdk-for-c's example password", () => {
    // Azure/azure-sdk-for-c sdk/tests/iot/provisioning/test_az_iot_provisioning_client_sas.c
    const parsed = parseSasToken(
      'SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=cS1eHM%2FlDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ&se=1578941692&skn=iothubowner',
    );
    expect(parsed).toEqual({
      sr: '0neFEEDC0DE%2fregistrations%2fmyRegistrationId',
      resource: '0neFEEDC0DE/registrations/myRegistrationId',
      sig: 'cS1eHM/lDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ',
      se: 1578941692,
      skn: 'iothubowner',
    });
  });

  it('takes the fields in any order and ignores unknown ones', () => {
    // The Azure docs list them as sig, se, skn, sr (learn.microsoft.com/azure/iot-dps/concepts-symmetric-key-attestation).
    const parsed = parseSasToken('SharedAccessSignature sig=abc%3D&se=10&skn=registration&sr=s%2Fr&x=1');
    expect(parsed).toEqual({ sr: 's%2Fr', resource: 's/r', sig: 'abc=', se: 10, skn: 'registration' });
  });

  it.each([
    ['', /start with/],
    ['sr=a&sig=b&se=1', /start with/],
    ['SharedAccessSignature  sr=a&sig=b&se=1', /malformed/],
    ['SharedAccessSignature sr=a&sig=b', /'se' is missing/],
    ['SharedAccessSignature sig=b&se=1', /'sr' is missing/],
    ['SharedAccessSignature sr=a&se=1', /'sig' is missing/],
    ['SharedAccessSignature sr=&sig=b&se=1', /'sr' is missing/],
    ['SharedAccessSignature sr=a&sig=b&se=1&se=2', /appears twice/],
    ['SharedAccessSignature sr=a&sig=b&se=1.5', /whole number/],
    ['SharedAccessSignature sr=a&sig=b&se=-1', /whole number/],
    ['SharedAccessSignature sr=a&sig=b&se=1e9', /whole number/],
    ['SharedAccessSignature sr=%E0%A4%A&sig=b&se=1', /'sr' is not valid URL encoding/],
    ['SharedAccessSignature sr=a&sig=%ZZ&se=1', /'sig' is not valid URL encoding/],
    ['SharedAccessSignature sr=a&sig=b&se=1&', /name=value/],
    [`SharedAccessSignature sr=${'a'.repeat(5000)}&sig=b&se=1`, /longer than/],
  ])('rejects %j as unauthorized', (token, why) => {
    const error = errorOf(() => parseSasToken(token));
    expect(error.kind).toBe('unauthorized');
    expect(error.message).toMatch(why);
  });

  it("never puts the token's content in the message", () => {
    const error = errorOf(() => parseSasToken('SharedAccessSignature sr=topsecret&sig=%ZZsecretsig&se=1'));
    expect(error.message).not.toMatch(/secret/);
  });
});

describe('verifySasToken', () => {
  const now = 1_700_000_000;

  it("accepts a token made by Microsoft's Node SymmetricKeySecurityClient (raw sr)", async () => {
    // node_modules/azure-iot-security-symmetric-key/dist/symmetric_key.js: createSharedAccessSignature(idScope)
    // -> SharedAccessSignature.create(idScope + '/registrations/' + registrationId, 'registration', key, anHourFromNow()).
    const groupKey = Buffer.from('group key bytes, sixty-four of them: 0123456789abcdef0123456789').toString('base64');
    const deviceKey = deriveDeviceKey(groupKey, 'sn-007-888-abc-mac-a1b2c3d4e5f6');
    const client = new SymmetricKeySecurityClient('sn-007-888-abc-mac-a1b2c3d4e5f6', deviceKey);
    const sas = await client.createSharedAccessSignature('0ne00000A0A');
    const token = String(sas);
    expect(token).toContain('sr=0ne00000A0A/registrations/sn-007'); // raw, unencoded sr
    const nowSeconds = Math.floor(Date.now() / 1000);
    const result = verifySasToken(token, deviceKey, nowSeconds, '0ne00000A0A/registrations/sn-007-888-abc-mac-a1b2c3d4e5f6');
    expect(result.ok).toBe(true);
    expect(verifySasToken(token, KEY, nowSeconds)).toEqual({ ok: false, reason: 'signature' });
    expect(verifySasToken(token, deviceKey, nowSeconds + 7200)).toEqual({ ok: false, reason: 'expired' });
  });

  it('accepts our own tokens and a %2f-encoded sr (azure-sdk-for-c style) signed as sent', () => {
    const token = dpsRegistrationSasToken('0neFEEDC0DE', 'my-device', KEY, now + 60);
    const result = verifySasToken(token, KEY, now, '0neFEEDC0DE/registrations/my-device');
    expect(result).toEqual({ ok: true, token: parseSasToken(token) });
    const sr = '0neFEEDC0DE%2fregistrations%2fmy-device';
    const sdkForC = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(referenceSig(KEY, sr, now + 60))}&se=${now + 60}&skn=registration`;
    expect(verifySasToken(sdkForC, KEY, now, '0neFEEDC0DE/registrations/my-device').ok).toBe(true);
  });

  it('compares the expected resource ignoring ASCII case only', () => {
    const token = buildSasToken({ resource: 'MyHub.azure-devices.net', key: KEY, expiry: now + 60 });
    expect(verifySasToken(token, KEY, now, 'myhub.AZURE-devices.net').ok).toBe(true);
    expect(verifySasToken(token, KEY, now, 'otherhub.azure-devices.net')).toEqual({ ok: false, reason: 'resource' });
  });

  it('refuses a tampered, expired or malformed token with the reason', () => {
    const token = buildSasToken({ resource: 'r', key: KEY, expiry: now + 60 });
    expect(verifySasToken(token, KEY, now + 60)).toEqual({ ok: false, reason: 'expired' });
    expect(verifySasToken(token, KEY, now + 59).ok).toBe(true);
    expect(verifySasToken(token.replace(`se=${now + 60}`, `se=${now + 61}`), KEY, now)).toEqual({ ok: false, reason: 'signature' });
    expect(verifySasToken(token.replace('sr=r', 'sr=s'), KEY, now)).toEqual({ ok: false, reason: 'signature' });
    const other = Buffer.from('another key').toString('base64');
    expect(verifySasToken(token, other, now)).toEqual({ ok: false, reason: 'signature' });
    expect(verifySasToken('garbage', KEY, now)).toEqual({ ok: false, reason: 'malformed' });
    expect(verifySasToken('SharedAccessSignature sr=r&sig=not%20base64&se=1', KEY, 0)).toEqual({ ok: false, reason: 'malformed' });
    // a wrong signature on an expired token is reported as 'signature', not 'expired'
    expect(verifySasToken(token.replace(`se=${now + 60}`, 'se=1'), KEY, now)).toEqual({ ok: false, reason: 'signature' });
  });

  it("gives the same verdicts with a host's HMAC (node:crypto) as with the core's", () => {
    let calls = 0;
    const nodeHmac = (key: Uint8Array, message: string) => {
      calls++;
      return createHmac('sha256', key).update(message, 'utf8').digest();
    };
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 60 }).filter(wellFormed),
        keyArb,
        keyArb,
        expiryArb,
        (resource, key, otherKey, expiry) => {
          const token = buildSasToken({ resource, key, expiry, keyName: 'k' });
          for (const [k, at] of [
            [key, expiry - 1],
            [key, expiry],
            [otherKey, expiry - 1],
          ] as const) {
            expect(verifySasToken(token, k, at, resource, nodeHmac)).toEqual(verifySasToken(token, k, at, resource));
          }
          // The host's HMAC is the one used, and it accepts the right key.
          expect(verifySasToken(token, key, expiry - 1, resource, nodeHmac).ok).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
    expect(calls).toBeGreaterThan(0);
  });

  it("treats a verification key that is not base64 as the verifier's input error", () => {
    expect(errorOf(() => verifySasToken('x', '%%', 0)).kind).toBe('invalid-input');
  });

  it('round-trips: a token verifies with its key until it expires, and never with another key', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 60 }).filter(wellFormed),
        keyArb,
        keyArb,
        expiryArb,
        (resource, key, otherKey, expiry) => {
          const token = buildSasToken({ resource, key, expiry, keyName: 'k' });
          expect(verifySasToken(token, key, expiry - 1, resource).ok).toBe(true);
          expect(verifySasToken(token, key, expiry, resource)).toEqual({ ok: false, reason: 'expired' });
          if (Buffer.from(otherKey, 'base64').equals(Buffer.from(key, 'base64'))) return;
          expect(verifySasToken(token, otherKey, expiry - 1, resource)).toEqual({ ok: false, reason: 'signature' });
        },
      ),
      { numRuns: 300 },
    );
  });
});

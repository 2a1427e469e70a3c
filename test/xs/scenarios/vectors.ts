// Known-answer vectors and round trips of the core's pure functions: identity, SAS, UTF-8, base64.
import { base64Decode, base64Encode, utf8Decode, utf8Encode } from '../../../src/bytes.js';
import { isHostName } from '../../../src/dps/messages.js';
import { buildRegistrationId, deriveDeviceKey, isDeviceId, validateIdScope, validateRegistrationId } from '../../../src/identity.js';
import { buildSasToken, dpsRegistrationSasToken } from '../../../src/sas.js';
import { parseSasToken, verifySasToken } from '../../../src/sas-verify.js';
import { printable } from '../../../src/text.js';
import { attempt, fromHex, hex } from './util.js';

/** Azure's published derivation vector (MicrosoftDocs/azure-docs, articles/iot-dps/how-to-legacy-device-symm-key.md). */
export const PUBLISHED = {
  groupKey: '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==',
  registrationId: 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6',
  deviceKey: 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=',
};

export const ID_SCOPE = '0ne0012ABCD';
/** 2026-11-23T00:00:00Z + 1 h, in Unix seconds. */
export const EXPIRY = 1_795_395_600;

/** Strings to encode: every UTF-8 length, lone surrogates (become U+FFFD, as TextEncoder does). */
export const UTF8_STRINGS = [
  '',
  'sn-007-888-abc',
  'é',
  'ü€',
  '😀',
  'Grüße, 世界 😀 $dps/registrations/res/#',
  '\ud800',
  '\udc00',
  'a\ud83d',
  '\ud83d\ud83d\ude00',
  'x\u0000y',
  '\u07ff\u0800\uffff',
];

/** Byte sequences that strict UTF-8 decoding must refuse. */
export const UTF8_INVALID = ['c080', 'c1bf', 'eda080', 'f4908080', 'e282', 'ff', '80', 'f0', 'e0808f', 'f8888080'];

export function keyDerivation() {
  const published = deriveDeviceKey(PUBLISHED.groupKey, PUBLISHED.registrationId);
  const more = ['a', 'device-1', '7', 'a.b_c:d-e', 'x'.repeat(128)].map((id) => deriveDeviceKey(PUBLISHED.groupKey, id));
  const errors = [
    attempt(() => deriveDeviceKey('not base64!', 'device-1')),
    attempt(() => deriveDeviceKey('', 'device-1')),
    attempt(() => deriveDeviceKey(PUBLISHED.groupKey, 'Device-1')),
  ];
  return { published, more, errors };
}

export function sasTokens() {
  const deviceKey = deriveDeviceKey(PUBLISHED.groupKey, PUBLISHED.registrationId);
  const dps = dpsRegistrationSasToken(ID_SCOPE, PUBLISHED.registrationId, deviceKey, EXPIRY);
  const hub = buildSasToken({ resource: 'my-hub.azure-devices.net/devices/dev 1/ü', key: deviceKey, expiry: EXPIRY });
  const named = buildSasToken({ resource: 'my-hub.azure-devices.net', key: PUBLISHED.groupKey, expiry: 0, keyName: 'iothubowner' });
  const parsed = parseSasToken(dps);
  const verify = {
    ok: verifySasToken(dps, deviceKey, EXPIRY - 1, `${ID_SCOPE}/registrations/${PUBLISHED.registrationId}`).ok,
    expired: verifySasToken(dps, deviceKey, EXPIRY),
    wrongKey: verifySasToken(dps, PUBLISHED.groupKey, EXPIRY - 1),
    wrongResource: verifySasToken(dps, deviceKey, EXPIRY - 1, `${ID_SCOPE}/registrations/other`),
    malformed: verifySasToken('SharedAccessSignature sr=a', deviceKey, 0),
  };
  const errors = [
    attempt(() => buildSasToken({ resource: '', key: deviceKey, expiry: 1 })),
    attempt(() => buildSasToken({ resource: 'r', key: deviceKey, expiry: 1.5 })),
    attempt(() => buildSasToken({ resource: 'r\ud800', key: deviceKey, expiry: 1 })),
    attempt(() => dpsRegistrationSasToken('0ne-bad', PUBLISHED.registrationId, deviceKey, 1)),
    attempt(() => parseSasToken('SharedAccessSignature sr=a&sr=b&sig=x&se=1')),
    attempt(() => parseSasToken('SharedAccessSignature sr=a&sig=%E0%A4%A&se=1')),
  ];
  return { deviceKey, dps, hub, named, parsed, verify, errors };
}

export function utf8RoundTrips() {
  const encoded = UTF8_STRINGS.map((text) => {
    const bytes = utf8Encode(text);
    return { hex: hex(bytes), back: attempt(() => utf8Decode(bytes)) };
  });
  const invalid = UTF8_INVALID.map((h) => attempt(() => utf8Decode(fromHex(h))));
  // A slice of a larger buffer, as the MQTT decoder reads strings.
  const framed = fromHex(`00${hex(utf8Encode('Grüße'))}00`);
  const slice = utf8Decode(framed, 1, framed.length - 1);
  return { encoded, invalid, slice };
}

/** Decoding a string of `length` ASCII bytes (long ones are where the engines' stacks differ). */
export function utf8Long(length: number) {
  const bytes = new Uint8Array(length).fill(0x61);
  const text = utf8Decode(bytes);
  return { length: text.length, ok: text === 'a'.repeat(length) };
}

export function base64RoundTrips() {
  const samples = ['', '00', '0001', '000102', 'fffefd', hex(utf8Encode('DPS 😀'))];
  const encoded = samples.map((h) => base64Encode(fromHex(h)));
  const decoded = encoded.map((text) => hex(base64Decode(text, 'sample')));
  const invalid = ['a', 'abc', 'ab=c', 'a b=', '****', 'YQ==YQ=='].map((text) => attempt(() => hex(base64Decode(text, 'The key'))));
  return { encoded, decoded, invalid };
}

export function registrationIds() {
  const identity = { serial: 'SN-007-888-ABC', mac: 'A1:B2:C3:D4:E5:F6' };
  const templates: [string, Record<string, string | Uint8Array | undefined>][] = [
    ['{serial}-{mac}', identity],
    ['{mac}', { mac: 'a1-b2-c3-d4-e5-f6' }],
    ['{mac}', { mac: new Uint8Array([0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6]) }],
    ['ACME Corp / {serial}', identity],
    ['{line}.{serial}', { ...identity, line: 'Line_7' }],
    ['{serial}', { serial: 'Grüße  über' }],
    ['{mac}', { mac: 'a1b2c3d4e5' }],
    ['{serial}-{missing}', identity],
    ['{serial', identity],
    ['--', identity],
    ['{serial}', { serial: 'x'.repeat(200) }],
    // Case mapping beyond ASCII is the engine's Unicode tables: İ lower-cases to i + U+0307.
    ['{serial}', { serial: 'İSTANBUL-ẞ-ΣΑΣ-Ǆ' }],
  ];
  const built = templates.map(([template, id]) => attempt(() => buildRegistrationId(template, id)));
  const validated = ['sn-007', 'Upper', 'ends.', 'has space', 'ü', 'a'.repeat(129), '', 'ok:1'].map((id) =>
    attempt(() => validateRegistrationId(id)),
  );
  const scopes = ['0ne0012ABCD', '0ne-12', ''].map((s) => attempt(() => validateIdScope(s)));
  return { built, validated, scopes };
}

/** Everything above that every engine must agree on (the long-string decode is separate). */
/**
 * What the core accepts from DPS, and how it prints server text. Regular expressions are where XS
 * and V8 have differed (xsnap's XS does not enforce a bounded quantifier inside an optional
 * group), so the validators meet their edges here on both engines.
 */
export function serverText() {
  const label = (n: number) => 'a'.repeat(n);
  const hosts = [
    'my-hub.azure-devices.net',
    'a',
    '127.0.0.1',
    `${label(63)}.net`,
    `${label(64)}.net`,
    'a-.net',
    '-a.net',
    'a..net',
    'evil/../../etc/passwd',
    ' ',
    'hub\n.net',
    'hub.net:8883',
    `${label(63)}.${label(63)}.${label(63)}.${label(61)}`,
    `${label(63)}.${label(63)}.${label(63)}.${label(62)}`,
    'hub.azure-devices.net.',
    '',
  ];
  const deviceIds = ['device-1', "a-.%_*?!(),:=@$'", 'x'.repeat(128), 'x'.repeat(129), 'a b', 'a+b', 'a#b', 'ü', '', 'a\u001bb'];
  const texts = [
    'plain',
    'a\u001b[31mred',
    'line\nforged',
    'carriage\rreturn',
    '\u0000\u007f\u0085\u009b',
    'rtl\u202eevil',
    'sep\u2028\u2029',
    'tab\there',
    'ü€😀',
  ];
  return {
    hosts: hosts.map((h) => [h, isHostName(h)]),
    deviceIds: deviceIds.map((id) => [id, isDeviceId(id)]),
    printable: texts.map((t) => [t, printable(t)]),
  };
}

export function all() {
  return {
    serverText: serverText(),
    keyDerivation: keyDerivation(),
    sasTokens: sasTokens(),
    utf8: utf8RoundTrips(),
    utf8Long: [100, 200, 1000].map(utf8Long),
    base64: base64RoundTrips(),
    registrationIds: registrationIds(),
  };
}

export const utf8Long3000 = () => utf8Long(3000);
export const utf8Long5000 = () => utf8Long(5000);

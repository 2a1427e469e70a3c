import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_BODY_BYTES, isHostName, isRegistrationStatus, parseResponseBody, registerRequestBody } from '../src/dps/messages.js';
import { ProvisioningError } from '../src/errors.js';
import { errorOf } from './support/errors.js';

// Sources:
//  [C]  Azure/azure-sdk-for-c sdk/tests/iot/provisioning/test_az_iot_provisioning_client_parser.c
//       (response bodies) and .../test_az_iot_provisioning_client_register_get_request_payload.c
//       (request bodies); parser rules in sdk/src/azure/iot/az_iot_provisioning_client.c.
//  [P]  /work/shared/dps-protocol.md ("Response bodies").
//  [T]  https://learn.microsoft.com/azure/iot-dps/how-to-troubleshoot-dps ("Common error codes":
//       400, 401, 404, 412, 429, 500 and their meanings).
const TEST_REGISTRATION_ID = 'myRegistrationId'; // [C]
const TEST_HUB_HOSTNAME = 'contoso.azure-devices.net'; // [C]
const TEST_DEVICE_ID = 'my-device-id1'; // [C]
const TEST_OPERATION_ID = '4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d'; // [C]
const TEST_ETAG = 'IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI='; // [C]
const TEST_JSON_PAYLOAD = '{"hello":"world","o1":{"v1":123, "o2": {"v2":321}}, "arr":[1,2,3,4,5,6],"num":123}'; // [C]

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (body: Uint8Array) => new TextDecoder().decode(body);

const protocolError = (fn: () => unknown) => errorOf(fn, 'protocol');

const assignedState = (extra = '') =>
  '{"x509":{},' +
  `"registrationId":"${TEST_REGISTRATION_ID}",` +
  '"createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z",' +
  `"assignedHub":"${TEST_HUB_HOSTNAME}",` +
  `"deviceId":"${TEST_DEVICE_ID}",` +
  '"status":"assigned",' +
  '"substatus":"initialAssignment",' +
  '"lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z",' +
  `"etag":"${TEST_ETAG}"${extra}}`;

describe('registerRequestBody', () => {
  it("is byte-for-byte azure-sdk-for-c's body without a payload", () => {
    // [C] expected_payload = "{\"registrationId\":\"" TEST_REGISTRATION_ID "\"}" (lower-cased: our rule)
    expect(text(registerRequestBody('myregistrationid'))).toBe('{"registrationId":"myregistrationid"}');
  });

  it("carries the payload as JSON, equal in value to azure-sdk-for-c's custom payload", () => {
    // [C] TEST_CUSTOM_PAYLOAD "{\"testData\":1, \"testData2\":{\"a\":\"b\"}}" appended as "payload"
    const custom = JSON.parse('{"testData":1, "testData2":{"a":"b"}}');
    const body = text(registerRequestBody('myregistrationid', custom));
    expect(body.startsWith('{"registrationId":"myregistrationid","payload":')).toBe(true);
    expect(JSON.parse(body)).toEqual({ registrationId: 'myregistrationid', payload: { testData: 1, testData2: { a: 'b' } } });
  });

  it('keeps falsy payloads (null, 0, false, "") and omits only undefined', () => {
    for (const payload of [null, 0, false, '', []]) {
      expect(JSON.parse(text(registerRequestBody('dev', payload)))).toEqual({ registrationId: 'dev', payload });
    }
    expect(JSON.parse(text(registerRequestBody('dev', undefined)))).toEqual({ registrationId: 'dev' });
  });

  it('encodes any JSON payload as UTF-8 that parses back to the same value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (payload) => {
        const body = registerRequestBody('dev-1', payload);
        expect(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))).toEqual({
          registrationId: 'dev-1',
          payload: JSON.parse(JSON.stringify(payload)),
        });
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a bad registration ID or a payload JSON cannot carry', () => {
    expect(() => registerRequestBody('Dev')).toThrow(ProvisioningError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const payload of [cyclic, 10n, () => 1, Symbol('x')]) {
      const error = (() => {
        try {
          registerRequestBody('dev', payload);
        } catch (e) {
          return e as ProvisioningError;
        }
        throw new Error('expected a throw');
      })();
      expect(error.kind).toBe('invalid-input');
      expect(error.message).toMatch(/payload/);
    }
  });
});

describe('registerRequestBody: nesting', () => {
  const nested = (levels: number): unknown => {
    let value: unknown = 1;
    for (let i = 0; i < levels; i++) value = i % 2 ? [value] : { a: value };
    return value;
  };

  it('takes a payload nested 63 levels (the body then nests 64)', () => {
    expect(JSON.parse(text(registerRequestBody('dev', nested(63)))).payload).toEqual(nested(63));
  });

  it('names the depth limit for a payload nested deeper, however deep (5,000 levels overflowed JSON.stringify)', () => {
    for (const levels of [64, 5000, 200_000]) {
      expect(() => registerRequestBody('dev', nested(levels))).toThrow(
        expect.objectContaining({ kind: 'invalid-input', message: expect.stringMatching(/deeper than 63 levels/) }),
      );
    }
  });

  it('still calls a cycle a cycle, and takes an object shared by several parents', () => {
    const cyclic: Record<string, unknown> = { a: {} };
    (cyclic.a as Record<string, unknown>).back = cyclic;
    expect(() => registerRequestBody('dev', cyclic)).toThrow(/a cycle/);
    const shared = { leaf: nested(10) };
    const body = JSON.parse(text(registerRequestBody('dev', { x: shared, y: [shared, { z: shared }] })));
    expect(body.payload.y[1].z).toEqual(shared);
    // Shared (11 levels), first met near the top and then 52 levels down: 1 + 52 + 11 levels, refused;
    // 51 levels down, 63 levels: taken.
    let wrapped: unknown = shared;
    for (let i = 0; i < 52; i++) wrapped = [wrapped];
    expect(() => registerRequestBody('dev', [wrapped, shared])).toThrow(/deeper than 63/);
    expect(() => registerRequestBody('dev', [(wrapped as unknown[])[0], shared])).not.toThrow();
  });
});

describe('parseResponseBody: operation bodies (2xx)', () => {
  it('202 assigning ([C] assigning_state, [P])', () => {
    const body = `{"operationId":"${TEST_OPERATION_ID}","status":"assigning"}`;
    expect(parseResponseBody(202, bytes(body))).toEqual({
      kind: 'operation',
      status: 202,
      operationId: TEST_OPERATION_ID,
      registrationStatus: 'assigning',
    });
  });

  it('202 assigning with a partial registrationState ([C] assigning2_state)', () => {
    const body = `{"operationId":"${TEST_OPERATION_ID}","status":"assigning","registrationState":{"registrationId":"${TEST_REGISTRATION_ID}","status":"assigning"}}`;
    expect(parseResponseBody(202, bytes(body))).toEqual({
      kind: 'operation',
      status: 202,
      operationId: TEST_OPERATION_ID,
      registrationStatus: 'assigning',
      registrationState: { registrationId: TEST_REGISTRATION_ID, status: 'assigning' },
    });
  });

  it('200 assigned, unknown fields such as x509 ignored ([C] assigned_state)', () => {
    const body = `{"operationId":"${TEST_OPERATION_ID}","status":"assigned","registrationState":${assignedState()}}`;
    expect(parseResponseBody(200, bytes(body))).toEqual({
      kind: 'operation',
      status: 200,
      operationId: TEST_OPERATION_ID,
      registrationStatus: 'assigned',
      registrationState: {
        registrationId: TEST_REGISTRATION_ID,
        createdDateTimeUtc: '2020-04-10T03:11:13.0276997Z',
        assignedHub: TEST_HUB_HOSTNAME,
        deviceId: TEST_DEVICE_ID,
        status: 'assigned',
        substatus: 'initialAssignment',
        lastUpdatedDateTimeUtc: '2020-04-10T03:11:13.2096201Z',
        etag: TEST_ETAG,
      },
    });
  });

  it('200 assigned with a custom payload ([C] json_custom_payload, json_custom_payload_empty)', () => {
    const body = `{"operationId":"${TEST_OPERATION_ID}","status":"assigned","registrationState":${assignedState(`,"payload":${TEST_JSON_PAYLOAD}`)}}`;
    const parsed = parseResponseBody(200, bytes(body));
    expect(parsed.kind === 'operation' && parsed.registrationState?.payload).toEqual(JSON.parse(TEST_JSON_PAYLOAD));
    const empty = parseResponseBody(
      200,
      bytes(`{"operationId":"op","status":"assigned","registrationState":${assignedState(',"payload":{}')}}`),
    );
    expect(empty.kind === 'operation' && empty.registrationState?.payload).toEqual({});
  });

  it('a null payload is no payload ([C] json_custom_payload_null)', () => {
    const body = `{"operationId":"${TEST_OPERATION_ID}","status":"assigned","registrationState":${assignedState(',"payload": null ')}}`;
    const parsed = parseResponseBody(200, bytes(body));
    expect(parsed.kind).toBe('operation');
    expect(parsed.kind === 'operation' && 'payload' in parsed.registrationState!).toBe(false);
  });

  it('200 failed with registrationState.errorCode 400207 ([C] allocation_error_state)', () => {
    const body =
      `{"operationId":"${TEST_OPERATION_ID}","status":"failed","registrationState":{` +
      `"registrationId":"${TEST_REGISTRATION_ID}","createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z","status":"failed",` +
      '"errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400",' +
      `"lastUpdatedDateTimeUtc":"2020-04-10T05:24:22.4718526Z","etag":"${TEST_ETAG}"}}`;
    expect(parseResponseBody(200, bytes(body))).toEqual({
      kind: 'operation',
      status: 200,
      operationId: TEST_OPERATION_ID,
      registrationStatus: 'failed',
      registrationState: {
        registrationId: TEST_REGISTRATION_ID,
        createdDateTimeUtc: '2020-04-10T03:11:13.0276997Z',
        status: 'failed',
        errorCode: 400207,
        errorMessage: 'Custom allocation failed with status code: 400',
        lastUpdatedDateTimeUtc: '2020-04-10T05:24:22.4718526Z',
        etag: TEST_ETAG,
      },
    });
  });

  it('200 disabled with an empty operationId ([C] disabled_state)', () => {
    const body = `{"operationId":"","status":"disabled","registrationState":{"registrationId":"${TEST_REGISTRATION_ID}","status":"disabled"}}`;
    expect(parseResponseBody(200, bytes(body))).toEqual({
      kind: 'operation',
      status: 200,
      operationId: '',
      registrationStatus: 'disabled',
      registrationState: { registrationId: TEST_REGISTRATION_ID, status: 'disabled' },
    });
  });

  it('every documented status is known, anything else is not ([C] operation_status_translate)', () => {
    for (const status of ['unassigned', 'assigning', 'assigned', 'failed', 'disabled']) {
      expect(isRegistrationStatus(status)).toBe(true);
      const parsed = parseResponseBody(202, bytes(`{"operationId":"${TEST_OPERATION_ID}","status":"${status}"}`));
      expect(parsed.kind === 'operation' && parsed.registrationStatus).toBe(status);
    }
    for (const status of ['unknown status123!@#', 'Assigned', '', 'registering']) expect(isRegistrationStatus(status)).toBe(false);
  });

  it.each([
    ['123', /not a JSON object/], // [C] invalid_json_payload
    ['[]', /not a JSON object/],
    ['null', /not a JSON object/],
    ['', /not valid JSON/],
    ['{"operationId":"op","status":"assigning"', /not valid JSON/], // [C] invalid_result_json (truncated)
    [`{"status":"failed","registrationState":{"registrationId":"x","status":"failed"}}`, /without an operationId/], // [C] operationid_not_found
    [
      `{"operationId":"${TEST_OPERATION_ID}","registrationState":{"registrationId":"x","status":"failed"}}`,
      /without a registration status/,
    ], // [C] operation_status_not_found
    [`{"operationId":"${TEST_OPERATION_ID}","status":"unknown status123!@#"}`, /unknown registration status/], // [C] translate
    ['{"trackingId":"8ad0463c","message":"Invalid certificate."}', /registration status/], // [C] error_code_not_found, on a 200
    [`{"operationId":"${TEST_OPERATION_ID}","status":"failed","registrationState":123}`, /not an object/], // [C] invalid_operation_status
    ['{"operationId":5,"status":"assigning"}', /without an operationId/],
    ['{"operationId":"","status":"assigning"}', /unusable operationId/],
    ['{"operationId":"has space","status":"assigning"}', /unusable operationId/],
    [`{"operationId":"${'x'.repeat(257)}","status":"assigning"}`, /unusable operationId/],
    [
      `{"operationId":"op","status":"assigned","registrationState":${assignedState().replace(`"deviceId":"${TEST_DEVICE_ID}",`, '')}}`,
      /hub without a device ID/,
    ], // [C] device_not_found
    [
      `{"operationId":"op","status":"assigned","registrationState":${assignedState().replace(`"assignedHub":"${TEST_HUB_HOSTNAME}",`, '')}}`,
      /hub without a device ID/,
    ], // [C] hub_not_found
    ['{"operationId":"op","status":"assigned","registrationState":{"status":"assigned"}}', /invalid registrationId/],
    ['{"operationId":"op","status":"assigned","registrationState":{"registrationId":"x","status":"done"}}', /invalid status/],
    ['{"operationId":"op","status":"failed","registrationState":{"registrationId":"x","errorCode":"400207"}}', /invalid errorCode/],
    ['{"operationId":"op","status":"failed","registrationState":{"registrationId":"x","errorMessage":7}}', /invalid errorMessage/],
    [
      '{"operationId":"op","status":"assigned","registrationState":{"registrationId":"x","assignedHub":1,"deviceId":"d"}}',
      /invalid assignedHub/,
    ],
  ])('rejects the 2xx body %s', (body, why) => {
    expect(protocolError(() => parseResponseBody(200, bytes(body))).message).toMatch(why);
  });

  it('rejects invalid UTF-8 in a 2xx body', () => {
    const body = Uint8Array.of(...bytes('{"operationId":"'), 0xc0, 0xaf, ...bytes('","status":"assigning"}'));
    expect(protocolError(() => parseResponseBody(202, body)).message).toMatch(/UTF-8/);
  });

  it('keeps errorCode and trackingId on the protocol error when a 2xx body carries them', () => {
    const error = protocolError(() => parseResponseBody(200, bytes('{"errorCode":400207,"trackingId":"t-1"}')));
    expect(error.errorCode).toBe(400207);
    expect(error.trackingId).toBe('t-1');
    expect(error.status).toBe(200);
  });
});

describe('parseResponseBody: error bodies (non-2xx)', () => {
  it('401 ([C] invalid_certificate_error)', () => {
    const body =
      '{"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}';
    expect(parseResponseBody(401, bytes(body))).toEqual({
      kind: 'error',
      status: 401,
      errorCode: 401002,
      trackingId: '8ad0463c-6427-4479-9dfa-3e8bb7003e9b',
      message: 'Invalid certificate.',
    });
  });

  // Shaped after [P] ({"errorCode","trackingId","message","timestampUtc"}, the code's first three
  // digits being the status) with the statuses [T] lists; a poll error may carry the operationId.
  it.each([
    [
      404,
      '{"errorCode":404201,"trackingId":"t-404","message":"Operation not found.","timestampUtc":"2024-01-01T00:00:00Z","operationId":"4.abc"}',
      { errorCode: 404201, trackingId: 't-404', message: 'Operation not found.', operationId: '4.abc' },
    ],
    [
      429,
      '{"errorCode":429001,"trackingId":"t-429","message":"Operations are being throttled.","timestampUtc":"2024-01-01T00:00:00Z"}',
      { errorCode: 429001, trackingId: 't-429', message: 'Operations are being throttled.' },
    ],
    [
      500,
      '{"errorCode":500000,"trackingId":"t-500","message":"Internal server error."}',
      { errorCode: 500000, trackingId: 't-500', message: 'Internal server error.' },
    ],
    [400, '{"errorCode":"400004","message":"Bad request."}', { errorCode: 400004, message: 'Bad request.' }],
  ])('%i error body', (status, body, fields) => {
    expect(parseResponseBody(status, bytes(body))).toEqual({ kind: 'error', status, ...fields });
  });

  it('an error without an operationId has none', () => {
    const parsed = parseResponseBody(429, bytes('{"errorCode":429001,"message":"throttled"}'));
    expect(parsed.kind === 'error' && 'operationId' in parsed).toBe(false);
  });

  it.each([
    [''],
    ['Internal Server Error'],
    ['<html><body>502 Bad Gateway</body></html>'],
    ['[1,2]'],
    ['"text"'],
    ['null'],
    ['{"errorCode":'],
  ])('a non-JSON or non-object error body %j still yields kind error with the status', (body) => {
    expect(parseResponseBody(503, bytes(body))).toEqual({ kind: 'error', status: 503 });
  });

  it('tolerates invalid UTF-8 and ill-typed fields in an error body', () => {
    expect(parseResponseBody(500, Uint8Array.of(0xff, 0xfe))).toEqual({ kind: 'error', status: 500 });
    expect(parseResponseBody(401, bytes('{"errorCode":"x","trackingId":5,"message":{},"operationId":""}'))).toEqual({
      kind: 'error',
      status: 401,
    });
  });

  it('clips a very long server message', () => {
    const parsed = parseResponseBody(400, bytes(JSON.stringify({ message: 'm'.repeat(5000) })));
    expect(parsed.kind === 'error' && parsed.message!.length).toBeLessThanOrEqual(501);
  });
});

// Issue 16: a hostile or compromised endpoint must not get a hub or device ID stored and printed
// that is not one, nor a control character into our error messages.
describe('parseResponseBody: what DPS assigns is checked', () => {
  const assigned = (fields: Record<string, unknown>) =>
    bytes(
      JSON.stringify({
        operationId: 'op',
        status: 'assigned',
        registrationState: { registrationId: 'dev-1', assignedHub: TEST_HUB_HOSTNAME, deviceId: 'dev-1', ...fields },
      }),
    );
  const label63 = 'a'.repeat(63);
  const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

  it('takes a DNS host name as the hub, and any device ID IoT Hub allows', () => {
    expect(name253).toHaveLength(253);
    for (const hub of [TEST_HUB_HOSTNAME, 'localhost', 'HUB-1.Example.COM', '127.0.0.1', 'x', name253, `${label63}.net`]) {
      expect(isHostName(hub)).toBe(true);
      const parsed = parseResponseBody(200, assigned({ assignedHub: hub }));
      expect(parsed.kind === 'operation' && parsed.registrationState?.assignedHub).toBe(hub);
    }
    // IoT Hub's rule (identity registry docs): up to 128 of ASCII alphanumerics and - . % _ * ? ! ( ) , : = @ $ '
    for (const deviceId of ["Dev-1.%_*?!(),:=@$'", 'D'.repeat(128), 'x']) {
      const parsed = parseResponseBody(200, assigned({ deviceId }));
      expect(parsed.kind === 'operation' && parsed.registrationState?.deviceId).toBe(deviceId);
    }
  });

  it.each([
    ['terminal escape codes', '\x1b[31mevil.azure-devices.net\x1b[0m'],
    ['a newline forging a deviceId line', 'hub.azure-devices.net\ndeviceId: attacker-controlled'],
    ['a path', 'evil/../../etc/passwd'],
    ['a single space', ' '],
    ['10 KB of text', 'a'.repeat(10 * 1024)],
    ['an empty name', ''],
    ['a port', 'hub.azure-devices.net:8883'],
    ['a trailing dot', 'hub.azure-devices.net.'],
    ['an empty label', 'hub..azure-devices.net'],
    ['a label starting with a hyphen', '-hub.azure-devices.net'],
    ['a label ending with a hyphen', 'hub-.azure-devices.net'],
    ['a 64-character label', `${'a'.repeat(64)}.net`],
    ['254 characters', `${name253}b`],
    ['an underscore', 'my_hub.azure-devices.net'],
    ['non-ASCII letters', 'hüb.azure-devices.net'],
    ['a scheme', 'https://hub.azure-devices.net'],
  ])('refuses an assignedHub with %s, as protocol', (_, hub) => {
    expect(isHostName(hub)).toBe(false);
    expect(protocolError(() => parseResponseBody(200, assigned({ assignedHub: hub }))).message).toBe(
      'DPS sent an assignedHub that is not a DNS host name',
    );
  });

  it.each([
    ['terminal escape codes', '\x1b]0;pwned\x07dev-1'],
    ['a newline', 'dev-1\nassignedHub: evil'],
    ['a space', 'dev 1'],
    ['a plus (an MQTT wildcard)', 'dev+1'],
    ['a hash (an MQTT wildcard)', 'dev#1'],
    ['a slash', 'dev/1'],
    ['non-ASCII letters', 'dév-1'],
    ['129 characters', 'd'.repeat(129)],
    ['nothing', ''],
  ])('refuses a deviceId with %s, as protocol', (_, deviceId) => {
    expect(protocolError(() => parseResponseBody(200, assigned({ deviceId }))).message).toMatch(
      /^DPS sent a deviceId that IoT Hub does not allow/,
    );
  });

  it('escapes control characters in the texts it passes on (message, trackingId, errorMessage)', () => {
    const repaint = '\x1b[2K\rerror (none): all good';
    const error = parseResponseBody(400, bytes(JSON.stringify({ errorCode: 400004, trackingId: `t-1\r${repaint}`, message: repaint })));
    expect(error).toEqual({
      kind: 'error',
      status: 400,
      errorCode: 400004,
      trackingId: 't-1\\r\\u001b[2K\\rerror (none): all good',
      message: '\\u001b[2K\\rerror (none): all good',
    });
    const failed = parseResponseBody(
      200,
      bytes(
        JSON.stringify({
          operationId: 'op',
          status: 'failed',
          registrationState: { registrationId: 'dev-1', errorMessage: `bad\u202e\n${repaint}` },
        }),
      ),
    );
    expect(failed.kind === 'operation' && failed.registrationState?.errorMessage).toBe('bad\\u202e\\n\\u001b[2K\\rerror (none): all good');
  });

  it('escapes before it clips: an escaped message stays within the limit', () => {
    const parsed = parseResponseBody(400, bytes(JSON.stringify({ message: '\x1b'.repeat(1000) })));
    expect(parsed.kind === 'error' && parsed.message).toBe(`${'\\u001b'.repeat(83)}\\u…`);
  });
});

describe('parseResponseBody: size bound', () => {
  it('refuses a body over the limit for any status, and accepts one at the limit', () => {
    const padded = (size: number) => {
      const head = `{"operationId":"op","status":"assigning","pad":"`;
      return bytes(`${head + 'x'.repeat(size - head.length - 2)}"}`);
    };
    expect(padded(DEFAULT_MAX_BODY_BYTES)).toHaveLength(16 * 1024);
    expect(parseResponseBody(202, padded(DEFAULT_MAX_BODY_BYTES)).kind).toBe('operation');
    expect(protocolError(() => parseResponseBody(202, padded(DEFAULT_MAX_BODY_BYTES + 1))).message).toMatch(/16384-byte limit/);
    protocolError(() => parseResponseBody(500, new Uint8Array(DEFAULT_MAX_BODY_BYTES + 1)));
    protocolError(() => parseResponseBody(202, padded(200), 199));
    expect(parseResponseBody(202, padded(200), 200).kind).toBe('operation');
  });

  it('never throws anything but a protocol error, for any bytes and status', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 599 }), fc.uint8Array({ maxLength: 64 }), (status, body) => {
        try {
          const parsed = parseResponseBody(status, body);
          expect(parsed.status).toBe(status);
          expect(parsed.kind).toBe(status >= 200 && status < 300 ? 'operation' : 'error');
        } catch (error) {
          expect(error).toBeInstanceOf(ProvisioningError);
          expect((error as ProvisioningError).kind).toBe('protocol');
          expect(status >= 200 && status < 300).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

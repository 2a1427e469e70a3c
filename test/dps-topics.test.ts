import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDpsUsername, parseRequestTopic, responseTopic } from '../src/dps/server.js';
import { DPS_API_VERSION, dpsUsername, parseResponseTopic, pollTopic, RESPONSE_SUBSCRIBE_TOPIC, registerTopic } from '../src/dps/topics.js';
import { ProvisioningError } from '../src/errors.js';
import { errorOf } from './support/errors.js';

// Sources:
//  [C]  Azure/azure-sdk-for-c sdk/tests/iot/provisioning/test_az_iot_provisioning_client.c
//       (username, register and operation-status topics), .../test_az_iot_provisioning_client_parser.c
//       (response topics), sdk/inc/azure/iot/az_iot_provisioning_client.h
//       (AZ_IOT_PROVISIONING_SERVICE_VERSION "2019-03-31", subscribe topic).
//  [N]  Azure/azure-iot-sdk-node provisioning/transport/mqtt (node_modules/azure-iot-provisioning-device-mqtt/dist/mqtt.js).
//  [P]  /work/shared/dps-protocol.md.
const TEST_ID_SCOPE = '0neFEEDC0DE'; // [C]
const TEST_OPERATION_ID = '4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d'; // [C]

describe('username', () => {
  it('has the azure-sdk-for-c shape and api-version', () => {
    expect(DPS_API_VERSION).toBe('2019-03-31'); // [C] AZ_IOT_PROVISIONING_SERVICE_VERSION
    // [C] expected_username = TEST_ID_SCOPE "/registrations/" TEST_REGISTRATION_ID "/api-version=" VERSION;
    // their ID is 'myRegistrationId', which our lower-case rule refuses, so its lower-case twin here.
    expect(dpsUsername(TEST_ID_SCOPE, 'myregistrationid')).toBe('0neFEEDC0DE/registrations/myregistrationid/api-version=2019-03-31');
    expect(() => dpsUsername(TEST_ID_SCOPE, 'myRegistrationId')).toThrow(ProvisioningError);
  });

  it('URL-encodes the client version as the Node SDK does', () => {
    // [N] mqtt.js: username = idScope + '/registrations/' + registrationId + '/api-version=' + apiVersion
    //     + '&ClientVersion=' + encodeURIComponent(userAgent). ([C] appends its user agent unencoded:
    //     'c/1.2.3'; ours reads 'c%2F1.2.3', which a server URL-decodes to the same text.)
    expect(dpsUsername(TEST_ID_SCOPE, 'dev', 'azure-iot-provisioning-device/1.9.1')).toBe(
      '0neFEEDC0DE/registrations/dev/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1',
    );
    expect(dpsUsername(TEST_ID_SCOPE, 'dev', 'moddable-dps/0.1 (esp32; xs)')).toBe(
      '0neFEEDC0DE/registrations/dev/api-version=2019-03-31&ClientVersion=moddable-dps%2F0.1%20(esp32%3B%20xs)',
    );
    expect(dpsUsername(TEST_ID_SCOPE, 'dev', '')).toBe('0neFEEDC0DE/registrations/dev/api-version=2019-03-31');
  });

  it('rejects a bad ID scope, registration ID or client version as invalid-input', () => {
    expect(errorOf(() => dpsUsername('', 'dev')).kind).toBe('invalid-input');
    expect(errorOf(() => dpsUsername('0ne/x', 'dev')).kind).toBe('invalid-input');
    expect(errorOf(() => dpsUsername(TEST_ID_SCOPE, 'a b')).kind).toBe('invalid-input');
    expect(errorOf(() => dpsUsername(TEST_ID_SCOPE, 'dev', '\ud800')).kind).toBe('invalid-input');
  });

  it('parses the usernames of azure-sdk-for-c, the Node SDK and ours (server side)', () => {
    expect(parseDpsUsername('0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31&ClientVersion=c/1.2.3')).toEqual({
      idScope: '0neFEEDC0DE',
      registrationId: 'myRegistrationId',
      apiVersion: '2019-03-31',
      clientVersion: 'c/1.2.3',
    });
    const ours = dpsUsername(TEST_ID_SCOPE, 'dev-1', 'x/1 (y)');
    expect(parseDpsUsername(ours)).toEqual({
      idScope: TEST_ID_SCOPE,
      registrationId: 'dev-1',
      apiVersion: DPS_API_VERSION,
      clientVersion: 'x/1 (y)',
    });
    expect(parseDpsUsername('0ne1/registrations/dev/api-version=2019-03-31')).toEqual({
      idScope: '0ne1',
      registrationId: 'dev',
      apiVersion: '2019-03-31',
    });
    for (const stray of [
      '',
      'dev',
      '0ne1/registrations/dev',
      '0ne1/registrations//api-version=1',
      '0ne1/registrations/dev/api-version=',
      'hub.azure-devices.net/dev/?api-version=2021-04-12',
    ]) {
      expect(parseDpsUsername(stray)).toBeUndefined();
    }
    expect(errorOf(() => parseDpsUsername('0ne1/registrations/dev/api-version=1&ClientVersion=%E0')).kind).toBe('protocol');
  });
});

describe('request topics (device side)', () => {
  it('builds the azure-sdk-for-c register and operation-status topics', () => {
    expect(RESPONSE_SUBSCRIBE_TOPIC).toBe('$dps/registrations/res/#'); // [C] AZ_IOT_PROVISIONING_CLIENT_REGISTER_SUBSCRIBE_TOPIC, [N] responseTopic
    expect(registerTopic('1')).toBe('$dps/registrations/PUT/iotdps-register/?$rid=1'); // [C]
    expect(pollTopic('1', TEST_OPERATION_ID)).toBe(
      '$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d',
    ); // [C]
  });

  it("takes the Node SDK's UUID request ids", () => {
    // [N] uses uuid.v4() per request: '$dps/registrations/PUT/iotdps-register/?$rid=' + rid
    const rid = 'a3c9f3e2-5d0b-4b55-8a5f-0cb2f9a1b7e4';
    expect(registerTopic(rid)).toBe(`$dps/registrations/PUT/iotdps-register/?$rid=${rid}`);
  });

  it('URL-encodes an operation ID so it cannot break the query or the MQTT topic', () => {
    const topic = pollTopic('7', 'a&b#c+d/e f');
    expect(topic).toBe('$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=a%26b%23c%2Bd%2Fe%20f');
    expect(topic).not.toMatch(/[#+\s]/);
    expect(parseRequestTopic(topic)).toEqual({ type: 'poll', rid: '7', operationId: 'a&b#c+d/e f' });
  });

  it.each([[''], ['a&b'], ['a b'], ['#'], ['x'.repeat(65)], ['é']])('refuses the request id %j', (rid) => {
    expect(errorOf(() => registerTopic(rid)).kind).toBe('invalid-input');
    expect(errorOf(() => pollTopic(rid, 'op')).kind).toBe('invalid-input');
  });

  it('refuses an empty or ill-formed operation ID', () => {
    expect(errorOf(() => pollTopic('1', '')).kind).toBe('invalid-input');
    expect(errorOf(() => pollTopic('1', '\udc00')).kind).toBe('invalid-input');
  });
});

describe('parseResponseTopic', () => {
  it.each([
    // [C] parser tests
    ['$dps/registrations/res/202/?$rid=1&retry-after=3', { status: 202, rid: '1', retryAfterSeconds: 3 }],
    ['$dps/registrations/res/202/?retry-after=120&$rid=1', { status: 202, rid: '1', retryAfterSeconds: 120 }],
    ['$dps/registrations/res/200/?$rid=1', { status: 200, rid: '1' }],
    ['$dps/registrations/res/401/?$rid=1', { status: 401, rid: '1' }],
    // [P] throttling and server errors
    ['$dps/registrations/res/429/?$rid=abc&retry-after=5', { status: 429, rid: 'abc', retryAfterSeconds: 5 }],
    ['$dps/registrations/res/500/?$rid=x.1', { status: 500, rid: 'x.1' }],
    // unknown parameters ignored, empty segments skipped, values URL-decoded
    ['$dps/registrations/res/202/?foo=bar&$rid=a%26b&&retry-after=0&flag', { status: 202, rid: 'a&b', retryAfterSeconds: 0 }],
    // no query at all ([C] logs '$dps/registrations/res/202'): a status without $rid
    ['$dps/registrations/res/202', { status: 202 }],
    ['$dps/registrations/res/404/', { status: 404 }],
    ['$dps/registrations/res/200/?', { status: 200 }],
  ])('parses %s', (topic, expected) => {
    expect(parseResponseTopic(topic)).toEqual(expected);
  });

  it.each([
    ['$dps/registrations/unknown'], // [C] topic_not_matched
    ['$dps/registrations/PUT/iotdps-register/?$rid=1'],
    ['$iothub/twin/res/200/?$rid=1'],
    ['devices/x/messages/devicebound/'],
    ['$dps/registrations/res'],
    ['$DPS/registrations/res/200/?$rid=1'],
    [''],
  ])('returns undefined for the non-DPS-response topic %j', (topic) => {
    expect(parseResponseTopic(topic)).toBeUndefined();
  });

  it.each([
    ['$dps/registrations/res/'],
    ['$dps/registrations/res/abc/?$rid=1'],
    ['$dps/registrations/res/20/?$rid=1'],
    ['$dps/registrations/res/2000/?$rid=1'],
    ['$dps/registrations/res/099/?$rid=1'],
    ['$dps/registrations/res/600/?$rid=1'],
    ['$dps/registrations/res/+200/?$rid=1'],
    ['$dps/registrations/res/200?$rid=1'],
    ['$dps/registrations/res/200/extra/?$rid=1'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=abc'],
    ['$dps/registrations/res/202/?$rid=1&retry-after='],
    ['$dps/registrations/res/202/?$rid=1&retry-after=-1'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=1.5'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=1e3'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=9999999999'],
    ['$dps/registrations/res/202/?$rid=1&retry-after=3&retry-after=4'],
    ['$dps/registrations/res/202/?$rid=1&$rid=2'],
    ['$dps/registrations/res/202/?$rid=%E0%A4'],
  ])('throws protocol for the malformed DPS response topic %j', (topic) => {
    const error = errorOf(() => parseResponseTopic(topic));
    expect(error.kind).toBe('protocol');
    expect(error.message).toMatch(/topic/);
  });

  it('round-trips responseTopic for any status, rid and retry-after, and finds params in any order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.string({ minLength: 1, maxLength: 40 }).filter((s) => {
          try {
            encodeURIComponent(s);
            return true;
          } catch {
            return false;
          }
        }),
        fc.option(fc.integer({ min: 0, max: 999_999_999 }), { nil: undefined }),
        (status, rid, retryAfterSeconds) => {
          const topic = responseTopic(status, rid, retryAfterSeconds);
          const expected = retryAfterSeconds === undefined ? { status, rid } : { status, rid, retryAfterSeconds };
          expect(parseResponseTopic(topic)).toEqual(expected);
          const [head, query] = topic.split('?') as [string, string];
          const reversed = `${head}?${query.split('&').reverse().join('&')}&unknown=1`;
          expect(parseResponseTopic(reversed)).toEqual(expected);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('server side: parseRequestTopic and responseTopic', () => {
  it('parses the register and poll topics of azure-sdk-for-c and the Node SDK', () => {
    expect(parseRequestTopic('$dps/registrations/PUT/iotdps-register/?$rid=1')).toEqual({ type: 'register', rid: '1' });
    expect(parseRequestTopic(`$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=${TEST_OPERATION_ID}`)).toEqual({
      type: 'poll',
      rid: '1',
      operationId: TEST_OPERATION_ID,
    });
    expect(parseRequestTopic(`$dps/registrations/GET/iotdps-get-operationstatus/?operationId=${TEST_OPERATION_ID}&$rid=9&x=y`)).toEqual({
      type: 'poll',
      rid: '9',
      operationId: TEST_OPERATION_ID,
    });
  });

  it('round-trips our own request topics', () => {
    expect(parseRequestTopic(registerTopic('ab.12'))).toEqual({ type: 'register', rid: 'ab.12' });
    expect(parseRequestTopic(pollTopic('ab.13', TEST_OPERATION_ID))).toEqual({
      type: 'poll',
      rid: 'ab.13',
      operationId: TEST_OPERATION_ID,
    });
  });

  it.each([
    ['$dps/registrations/res/200/?$rid=1'],
    ['$dps/registrations/PUT/iotdps-other/?$rid=1'],
    ['$dps/registrations/GET/iotdps-register/?$rid=1'],
    ['$dps/registrations/POST/iotdps-register/?$rid=1'],
    ['devices/x/messages/events/'],
    [''],
  ])('returns undefined for the non-request topic %j', (topic) => {
    expect(parseRequestTopic(topic)).toBeUndefined();
  });

  it.each([
    ['$dps/registrations/PUT/iotdps-register/'],
    ['$dps/registrations/PUT/iotdps-register/?'],
    ['$dps/registrations/PUT/iotdps-register/?$rid='],
    ['$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2'],
    ['$dps/registrations/PUT/iotdps-register/x?$rid=1'],
    ['$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1'],
    ['$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId='],
    ['$dps/registrations/GET/iotdps-get-operationstatus/?operationId=op'],
    ['$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=%zz'],
  ])('throws protocol for the malformed request topic %j', (topic) => {
    expect(errorOf(() => parseRequestTopic(topic)).kind).toBe('protocol');
  });

  it("builds response topics the Node SDK's matcher accepts", () => {
    // [N] mqtt.js matches /^\$dps\/registrations\/res\/(.*)\/\?(.*)$/ and reads $rid and retry-after
    // with querystring.parse.
    const nodeMatcher = /^\$dps\/registrations\/res\/(.*)\/\?(.*)$/;
    const topic = responseTopic(202, 'a3c9f3e2-5d0b-4b55-8a5f-0cb2f9a1b7e4', 3);
    expect(topic).toBe('$dps/registrations/res/202/?$rid=a3c9f3e2-5d0b-4b55-8a5f-0cb2f9a1b7e4&retry-after=3');
    const match = nodeMatcher.exec(topic)!;
    expect(match[1]).toBe('202');
    const query = new URLSearchParams(match[2]);
    expect(query.get('$rid')).toBe('a3c9f3e2-5d0b-4b55-8a5f-0cb2f9a1b7e4');
    expect(query.get('retry-after')).toBe('3');
    expect(responseTopic(200, '1')).toBe('$dps/registrations/res/200/?$rid=1'); // [C] assigned example
  });

  it('refuses a bad status, rid or retry-after', () => {
    for (const status of [99, 600, 200.5, Number.NaN]) expect(errorOf(() => responseTopic(status, '1')).kind).toBe('invalid-input');
    expect(errorOf(() => responseTopic(200, '')).kind).toBe('invalid-input');
    expect(errorOf(() => responseTopic(200, '\ud800')).kind).toBe('invalid-input');
    for (const retry of [-1, 1.5, 1e12]) expect(errorOf(() => responseTopic(429, '1', retry)).kind).toBe('invalid-input');
  });
});

import { createHmac } from 'node:crypto';
import { SharedAccessSignature } from 'azure-iot-common';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProvisioningError } from '../src/errors.js';
import {
  c2dSubscribeTopic,
  DESIRED_SUBSCRIBE_TOPIC,
  hubSasToken,
  hubUsername,
  METHODS_SUBSCRIBE_TOPIC,
  methodResponseTopic,
  parseC2dTopic,
  parseDesiredTopic,
  parseMethodTopic,
  parseTwinResponseTopic,
  reportedPatchTopic,
  TWIN_RESPONSE_SUBSCRIBE_TOPIC,
  telemetryTopic,
  twinGetTopic,
} from '../src/hub/topics.js';
import { verifySasToken } from '../src/sas-verify.js';
import { errorOf } from './support/errors.js';

// Sources:
//  [D]  Microsoft, "Communicate with an IoT hub using the MQTT protocol"
//       (MicrosoftDocs/azure-docs articles/iot/iot-mqtt-connect-to-iot-hub.md).
//  [C]  Azure/azure-sdk-for-c sdk/tests/iot/hub/test_az_iot_hub_client*.c (client, sas, c2d, twin, methods).
//  [N]  Azure/azure-iot-sdk-node device/core/test/_shared_access_signature_test.js.
const C_HUB = 'myiothub.azure-devices.net'; // [C]
const C_DEVICE = 'my_device'; // [C]

describe('CONNECT fields', () => {
  it('builds the username of the doc, with the URL-encoded model ID of azure-sdk-for-c', () => {
    // [D] 'contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12'
    expect(hubUsername('contoso.azure-devices.net', 'MyDevice01')).toBe('contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12');
    // [C] '...&model-id=dtmi%3AYOUR_COMPANY_NAME_HERE%3Asample_device%3B1'
    expect(hubUsername(C_HUB, C_DEVICE, 'dtmi:YOUR_COMPANY_NAME_HERE:sample_device;1')).toBe(
      'myiothub.azure-devices.net/my_device/?api-version=2021-04-12&model-id=dtmi%3AYOUR_COMPANY_NAME_HERE%3Asample_device%3B1',
    );
  });

  it('refuses hub names, device IDs and model IDs that are not what IoT Hub allows, before any traffic', () => {
    for (const hub of ['', 'my hub.azure-devices.net', 'hub/x', 'hub.net:8883', '-hub.net'])
      errorOf(() => hubUsername(hub, 'dev'), 'invalid-input');
    for (const id of ['', 'a/b', 'a#b', 'a+b', 'a b', 'é', 'x'.repeat(129)]) errorOf(() => hubUsername(C_HUB, id), 'invalid-input');
    for (const model of ['', 'Thermostat', 'dtmi:a b;1', 'x'.repeat(600)]) errorOf(() => hubUsername(C_HUB, 'dev', model), 'invalid-input');
    errorOf(() => hubSasToken(C_HUB, 'a/b', 'kew=', 1), 'invalid-input');
  });

  it("signs the SAS token exactly as Microsoft's Node SDK test expects", () => {
    // [N] SharedAccessSignature.create('host', 'device', 'key', 12345) →
    //   'SharedAccessSignature sr=host%2Fdevices%2Fdevice&sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345'.
    // Node's Buffer decodes the key 'key' leniently to the bytes 91 ec; 'kew=' is their canonical base64.
    expect(hubSasToken('host', 'device', 'kew=', 12345)).toBe(
      'SharedAccessSignature sr=host%2Fdevices%2Fdevice&sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345',
    );
  });

  it("signs azure-sdk-for-c's string to sign and has its password shape (no skn)", () => {
    const key = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
    const token = hubSasToken(C_HUB, C_DEVICE, key, 1578941692);
    // [C] az_iot_hub_client_sas_get_signature: 'myiothub.azure-devices.net%2Fdevices%2Fmy_device\n1578941692';
    //     az_iot_hub_client_sas_get_password: 'SharedAccessSignature sr=<that sr>&sig=<url-encoded sig>&se=1578941692'.
    const sig = createHmac('sha256', Buffer.from(key, 'base64'))
      .update('myiothub.azure-devices.net%2Fdevices%2Fmy_device\n1578941692')
      .digest('base64');
    expect(token).toBe(
      `SharedAccessSignature sr=myiothub.azure-devices.net%2Fdevices%2Fmy_device&sig=${encodeURIComponent(sig)}&se=1578941692`,
    );
    expect(verifySasToken(token, key, 1578941691, `${C_HUB}/devices/${C_DEVICE}`).ok).toBe(true);
  });

  it('agrees with azure-iot-common for any device ID IoT Hub allows', () => {
    const idChar = fc.constantFrom(..."abcXYZ019-.%_*?!(),:=@$'".split(''));
    fc.assert(
      fc.property(
        fc.array(idChar, { minLength: 1, maxLength: 128 }).map((c) => c.join('')),
        fc.integer({ min: 1, max: 2 ** 31 }),
        (id, expiry) => {
          const key = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
          const theirs = SharedAccessSignature.create(
            encodeURIComponent(`${C_HUB}/devices/${id}`),
            undefined as unknown as string,
            key,
            expiry,
          ).toString();
          expect(hubSasToken(C_HUB, id, key, expiry)).toBe(theirs);
        },
      ),
    );
  });
});

describe('telemetry and cloud-to-device topics', () => {
  it("builds the doc's telemetry topics, system properties first", () => {
    expect(telemetryTopic('dev')).toBe('devices/dev/messages/events/');
    // [D] '$.ct=application%2Fjson&$.ce=utf-8' and 'devices/{device-id}/messages/events/$.ct=application%2Fjson%3Bcharset%3Dutf-8'
    expect(telemetryTopic('dev', { contentType: 'application/json', contentEncoding: 'utf-8' })).toBe(
      'devices/dev/messages/events/$.ct=application%2Fjson&$.ce=utf-8',
    );
    expect(telemetryTopic('dev', { contentType: 'application/json;charset=utf-8' })).toBe(
      'devices/dev/messages/events/$.ct=application%2Fjson%3Bcharset%3Dutf-8',
    );
    expect(telemetryTopic('dev', { messageId: 'm 1', correlationId: 'c&1', properties: { 'alert level': 'high/1', empty: '' } })).toBe(
      'devices/dev/messages/events/$.mid=m%201&$.cid=c%261&alert%20level=high%2F1&empty=',
    );
  });

  it('refuses properties that cannot be encoded or would pass for system properties', () => {
    errorOf(() => telemetryTopic('dev', { properties: { $ct: 'x' } }), 'invalid-input');
    errorOf(() => telemetryTopic('dev', { properties: { '': 'x' } }), 'invalid-input');
    errorOf(() => telemetryTopic('dev', { properties: { a: 'x\ud800' } }), 'invalid-input');
    errorOf(() => telemetryTopic('dev', { properties: { 'a\udc00': 'x' } }), 'invalid-input');
    errorOf(() => telemetryTopic('dev', { properties: { a: 1 as unknown as string } }), 'invalid-input');
    errorOf(() => telemetryTopic('dev', { contentType: 'x\ud800' }), 'invalid-input');
  });

  it('parses the C2D topics of azure-sdk-for-c and the doc', () => {
    expect(c2dSubscribeTopic('dev')).toBe('devices/dev/messages/devicebound/#'); // [D]
    expect({ ...parseC2dTopic('devices/useragent_c/messages/devicebound/', 'useragent_c') }).toEqual({}); // [C] test_url_no_props
    // [C] test_url_encoded_topic
    const topic =
      'devices/useragent_c/messages/devicebound/%24.to=%2Fdevices%2Fuseragent_c%2Fmessages%2FdeviceBound&abc=123&ghi=%2Fsome%2Fthing&jkl=%2Fsome%2Fthing%2F%3Fbla%3Dbla';
    expect({ ...parseC2dTopic(topic, 'useragent_c') }).toEqual({
      '$.to': '/devices/useragent_c/messages/deviceBound',
      abc: '123',
      ghi: '/some/thing',
      jkl: '/some/thing/?bla=bla',
    });
    // [D] '/?prop1&prop2=&prop3=a%20string': null, empty string, a string
    expect({ ...parseC2dTopic('devices/d/messages/devicebound/?prop1&prop2=&prop3=a%20string', 'd') }).toEqual({
      prop1: null,
      prop2: '',
      prop3: 'a string',
    });
  });

  it('ignores other topics and refuses malformed property bags', () => {
    expect(parseC2dTopic('devices/other/messages/devicebound/a=1', 'dev')).toBeUndefined();
    expect(parseC2dTopic('devices/dev/message#$vicebound/a=1', 'dev')).toBeUndefined(); // [C]
    errorOf(() => parseC2dTopic('devices/dev/messages/devicebound/a=%E0%A4%A', 'dev'), 'protocol');
    errorOf(() => parseC2dTopic('devices/dev/messages/devicebound/a=1&a=2', 'dev'), 'protocol');
    // A property named __proto__ is an own property of a prototype-less record, nothing more.
    const properties = parseC2dTopic('devices/dev/messages/devicebound/__proto__=x', 'dev')!;
    expect(Object.getPrototypeOf(properties)).toBe(null);
    // biome-ignore lint/complexity/useLiteralKeys: the point is the own property named __proto__
    // biome-ignore lint/suspicious/noProto: the point is the own property named __proto__
    expect(properties['__proto__']).toBe('x');
  });

  it('round-trips any property bag the telemetry builder encodes (property)', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 12 });
    fc.assert(
      fc.property(
        fc.dictionary(
          text.filter((s) => s.length > 0 && !s.startsWith('$')),
          text,
          { maxKeys: 5 },
        ),
        fc.option(text, { nil: undefined }),
        (properties, contentType) => {
          const topic = telemetryTopic('dev', { ...(contentType !== undefined && { contentType }), properties });
          const bag = topic.slice('devices/dev/messages/events/'.length);
          expect(bag).not.toMatch(/[#+/\s]/);
          const parsed = { ...parseC2dTopic(`devices/dev/messages/devicebound/${bag}`, 'dev') };
          expect(parsed).toEqual({ ...(contentType !== undefined && { '$.ct': contentType }), ...properties });
        },
      ),
    );
  });
});

describe('twin topics', () => {
  it('builds the GET and PATCH topics of the doc and azure-sdk-for-c', () => {
    expect(TWIN_RESPONSE_SUBSCRIBE_TOPIC).toBe('$iothub/twin/res/#');
    expect(DESIRED_SUBSCRIBE_TOPIC).toBe('$iothub/twin/PATCH/properties/desired/#');
    expect(twinGetTopic('id_one')).toBe('$iothub/twin/GET/?$rid=id_one'); // [C]
    expect(reportedPatchTopic('id_one')).toBe('$iothub/twin/PATCH/properties/reported/?$rid=id_one'); // [C]
    for (const rid of ['', 'a&b', 'a b', 'x'.repeat(65)]) errorOf(() => twinGetTopic(rid), 'invalid-input');
  });

  it("parses twin responses (azure-sdk-for-c's vectors and the doc's)", () => {
    expect(parseTwinResponseTopic('$iothub/twin/res/200/?$rid=id_one')).toEqual({ status: 200, rid: 'id_one' });
    expect(parseTwinResponseTopic('$iothub/twin/res/204/?$rid=id_one&$version=16')).toEqual({ status: 204, rid: 'id_one', version: 16 });
    expect(parseTwinResponseTopic('$iothub/twin/res/204/?$rid=1&$version=6')).toEqual({ status: 204, rid: '1', version: 6 }); // [D]
    expect(parseTwinResponseTopic('$iothub/twin/res/504/?$version=3&x=y&$rid=id_one')).toEqual({ status: 504, rid: 'id_one', version: 3 });
    expect(parseTwinResponseTopic('$iothub/twin/rez/200')).toBeUndefined(); // [C] rez does not exist
    expect(parseTwinResponseTopic('devices/my_device/$iothub/twin/res/200/?$rid=id_one')).toBeUndefined(); // [C] not at offset 0
    for (const topic of [
      '$iothub/twin/res/200',
      '$iothub/twin/res/2000/?$rid=1',
      '$iothub/twin/res/abc/?$rid=1',
      '$iothub/twin/res/204/?$rid=1&$version=-1',
      '$iothub/twin/res/204/?$rid=1&$version=1.5',
      '$iothub/twin/res/200/?$rid=1&$rid=2',
      '$iothub/twin/res/200/?$rid=%ZZ',
    ]) {
      errorOf(() => parseTwinResponseTopic(topic), 'protocol');
    }
  });

  it('parses desired-property topics, with or without a $version', () => {
    expect(parseDesiredTopic('$iothub/twin/PATCH/properties/desired/?$version=8')).toEqual({ version: 8 }); // [D]
    expect(parseDesiredTopic('$iothub/twin/PATCH/properties/desired/')).toEqual({});
    expect(parseDesiredTopic('$iothub/twin/PATCH/properties/reported/?$version=8')).toBeUndefined();
    errorOf(() => parseDesiredTopic('$iothub/twin/PATCH/properties/desired/?$version=id_one'), 'protocol'); // [C]'s version is not ours
    errorOf(() => parseDesiredTopic('$iothub/twin/PATCH/properties/desired/x'), 'protocol');
  });
});

describe('direct method topics', () => {
  it('parses calls and builds answers as azure-sdk-for-c does', () => {
    expect(METHODS_SUBSCRIBE_TOPIC).toBe('$iothub/methods/POST/#'); // [C]
    expect(parseMethodTopic('$iothub/methods/POST/TestMethod/?$rid=1')).toEqual({ name: 'TestMethod', rid: '1' }); // [C]
    expect(methodResponseTopic(200, '2')).toBe('$iothub/methods/res/200/?$rid=2'); // [C]
    expect(methodResponseTopic(65535, '2')).toBe('$iothub/methods/res/65535/?$rid=2'); // [C]
    expect(parseMethodTopic('$iothub/methods/res/200/?$rid=1')).toBeUndefined();
    for (const status of [-1, 65_536, 1.5, NaN]) errorOf(() => methodResponseTopic(status, '1'), 'invalid-input');
  });

  it('refuses odd method names and unusable request ids as malformed', () => {
    const odd = ['', 'a b', 'a%2Fb', 'a&b', 'a\u0000b', 'a\u001b[2Jb', 'é', 'x'.repeat(129)];
    for (const name of odd) errorOf(() => parseMethodTopic(`$iothub/methods/POST/${name}/?$rid=1`), 'protocol');
    expect(parseMethodTopic(`$iothub/methods/POST/${'x'.repeat(128)}/?$rid=1`)!.name).toHaveLength(128);
    errorOf(() => parseMethodTopic('$iothub/methods/POST/a/b/?$rid=1'), 'protocol');
    for (const tail of ['', '?$rid=1', '/?', '/?$rid=', '/?$rid=a b', '/?$rid=1&$rid=2', `/?$rid=${'1'.repeat(129)}`]) {
      errorOf(() => parseMethodTopic(`$iothub/methods/POST/reboot${tail}`), 'protocol');
    }
  });

  it('round-trips any allowed name and request id, and never throws anything but a ProvisioningError (property)', () => {
    const nameChar = fc.constantFrom(..."azAZ09-._:~!$'()*,;=@".split(''));
    const ridChar = fc.constantFrom(...'azAZ09._~%:-'.split(''));
    fc.assert(
      fc.property(fc.array(nameChar, { minLength: 1, maxLength: 128 }), fc.array(ridChar, { minLength: 1, maxLength: 128 }), (n, r) => {
        const [name, rid] = [n.join(''), r.join('')];
        expect(parseMethodTopic(`$iothub/methods/POST/${name}/?$rid=${rid}`)).toEqual({ name, rid });
        expect(methodResponseTopic(200, rid)).toBe(`$iothub/methods/res/200/?$rid=${rid}`);
      }),
    );
    const prefixes = [
      '$iothub/methods/POST/',
      '$iothub/twin/res/',
      '$iothub/twin/PATCH/properties/desired/',
      'devices/dev/messages/devicebound/',
    ];
    fc.assert(
      fc.property(fc.constantFrom(...prefixes), fc.string({ maxLength: 40 }), (prefix, tail) => {
        for (const parse of [parseMethodTopic, parseTwinResponseTopic, parseDesiredTopic, (t: string) => parseC2dTopic(t, 'dev')]) {
          try {
            parse(prefix + tail);
          } catch (error) {
            expect(error).toBeInstanceOf(ProvisioningError);
          }
        }
      }),
    );
  });
});

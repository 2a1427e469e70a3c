// The IoT Hub device side on the engine: CONNECT fields, SAS tokens (with the Node SDK's
// known-answer vector), topics and bodies built and parsed, and a short session over the
// scripted hub (connect, twin, desired update, reported patch, method, C2D, telemetry, close).
import { utf8Encode } from '../../../src/bytes.js';
import { parseDesiredPatch, parseMethodPayload, parseTwinDocument } from '../../../src/hub/messages.js';
import { connectHub } from '../../../src/hub/session.js';
import * as topics from '../../../src/hub/topics.js';
import type { HubEvent } from '../../../src/ports.js';
import { FakeClock, runToEnd } from '../../support/fake-clock.js';
import { HUB, ScriptedHub } from '../../support/scripted-hub.js';
import { attempt, attemptAsync, seededRandom } from './util.js';

interface Env {
  idle(): Promise<void>;
}

/** Azure/azure-iot-sdk-node device/core/test/_shared_access_signature_test.js ('key' decodes to the bytes of 'kew='). */
export const NODE_SDK_SAS =
  'SharedAccessSignature sr=host%2Fdevices%2Fdevice&sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345';
const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';

export function hubTopics() {
  const sas = {
    nodeSdk: topics.hubSasToken('host', 'device', 'kew=', 12345),
    sdkForC: topics.hubSasToken('myiothub.azure-devices.net', 'my_device', KEY, 1578941692),
    odd: topics.hubSasToken(HUB, "a-.%_*?!(),:=@$'", KEY, 1),
  };
  const usernames = [
    attempt(() => topics.hubUsername('contoso.azure-devices.net', 'MyDevice01')),
    attempt(() => topics.hubUsername(HUB, 'dev', 'dtmi:YOUR_COMPANY_NAME_HERE:sample_device;1')),
    ...['a/b', 'é', 'x'.repeat(129)].map((id) => attempt(() => topics.hubUsername(HUB, id))),
    attempt(() => topics.hubUsername(`${'a'.repeat(64)}.net`, 'dev')),
  ];
  const telemetry = [
    attempt(() =>
      topics.telemetryTopic('dev', { contentType: 'application/json', contentEncoding: 'utf-8', properties: { 'grüße 😀': 'a&b=c/d' } }),
    ),
    attempt(() => topics.telemetryTopic('dev', { properties: { a: 'x\ud800' } })),
  ];
  const parsed = [
    '$iothub/twin/res/204/?$rid=id_one&$version=16',
    '$iothub/twin/res/200',
    '$iothub/twin/PATCH/properties/desired/?$version=8',
    '$iothub/methods/POST/TestMethod/?$rid=1',
    '$iothub/methods/POST/a%20b/?$rid=1',
    `$iothub/methods/POST/${'x'.repeat(129)}/?$rid=1`,
  ].map((topic) =>
    attempt(() => topics.parseTwinResponseTopic(topic) ?? topics.parseDesiredTopic(topic) ?? topics.parseMethodTopic(topic)),
  );
  const c2d = attempt(() => ({
    ...topics.parseC2dTopic('devices/d/messages/devicebound/%24.to=%2Fdevices%2Fd&prop1&prop2=&prop3=a%20string&__proto__=x', 'd'),
  }));
  const bodies = [
    attempt(() =>
      parseTwinDocument(
        utf8Encode('{"desired":{"telemetrySendFrequency":"5m","$version":12},"reported":{"batteryLevel":55,"$version":123}}'),
      ),
    ),
    attempt(() => parseTwinDocument(utf8Encode('{"desired":'))),
    attempt(() => parseDesiredPatch(utf8Encode('{"telemetrySendFrequency":"5m","route":null,"$version":8}'), 8)),
    attempt(() => parseMethodPayload(utf8Encode(`${'['.repeat(65)}${']'.repeat(65)}`))),
  ];
  return { sas, usernames, telemetry, parsed, c2d, bodies };
}

export async function hubSession(env: Env) {
  const clock = new FakeClock(1_795_392_000_000);
  const hub = new ScriptedHub();
  const events: HubEvent[] = [];
  const seen: unknown[] = [];
  const outcome = await attemptAsync(async () => {
    const session = await runToEnd(
      connectHub(
        {
          hub: HUB,
          deviceId: 'dev-1',
          deviceKey: KEY,
          sasTtlSeconds: 600,
          onDesired: (patch, version) => seen.push(['desired', patch, version]),
          onMethod: (name, payload) => ({ status: 200, payload: { name, payload } }),
          onC2D: (body, properties) => seen.push(['c2d', body.length, { ...properties }]),
        },
        { connect: hub.connect, clock, log: (e) => events.push(e), random: seededRandom(7) },
      ),
      clock,
      env.idle,
    );
    const version = await runToEnd(session.updateReported({ firmware: '1.0.0' }), clock, env.idle);
    hub.sendDesired({ telemetryInterval: 5 }, 2);
    hub.publish('$iothub/methods/POST/getStatus/?$rid=11', '{"verbose":true}');
    hub.publish('devices/dev-1/messages/devicebound/color=blue', 'hello');
    await runToEnd(session.sendTelemetry('{"t":21.5}', { contentType: 'application/json' }), clock, env.idle);
    session.close();
    return { version, twin: session.twin, ended: (await session.ended) === undefined };
  });
  return {
    outcome,
    events,
    seen,
    telemetry: hub.telemetry,
    methodAnswers: hub.methodAnswers,
    twinRequests: hub.twinRequests.map((r) => r.method),
  };
}

export async function hub(env: Env) {
  return { topics: hubTopics(), session: await hubSession(env) };
}

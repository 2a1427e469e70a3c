import { describe, expect, it } from 'vitest';
import { ProvisioningError } from '../src/errors.js';
import type { HubSessionOptions } from '../src/hub/options.js';
import { shouldReprovision } from '../src/hub/reprovision.js';
import { connectHub } from '../src/hub/session.js';
import { encodePacket, type Packet } from '../src/mqtt/codec.js';
import type { HubEvent } from '../src/ports.js';
import { parseSasToken, verifySasToken } from '../src/sas-verify.js';
import { failure } from './support/errors.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { HUB, ScriptedHub } from './support/scripted-hub.js';

const DEVICE = 'sensor-0042';
const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='; // base64 of 32 ASCII bytes

/** Settles `promise`, firing fake timers while it waits; fails if it hangs with nothing pending. */
async function drive<T>(promise: Promise<T>, clock: FakeClock): Promise<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let guard = 0; guard < 10_000; guard++) {
    await settle();
    if (settled) return promise;
    if (!(await clock.runNext())) throw new Error('stuck: not settled and no timer pending');
  }
  throw new Error('did not settle after 10 000 timers');
}

function setup(options: Partial<HubSessionOptions> = {}) {
  const clock = new FakeClock();
  const hub = new ScriptedHub();
  const events: HubEvent[] = [];
  const desired: [unknown, number][] = [];
  const c2d: [string, unknown][] = [];
  const open = () =>
    connectHub(
      {
        hub: HUB,
        deviceId: DEVICE,
        deviceKey: KEY,
        onDesired: (patch, version) => desired.push([patch, version]),
        onMethod: (name, payload) => (name === 'fail' ? Promise.reject(new Error('nope')) : { status: 200, payload: { name, payload } }),
        onC2D: (body, properties) => c2d.push([new TextDecoder().decode(body), { ...properties }]),
        ...options,
      },
      { connect: hub.connect, clock, log: (e) => events.push(e), random: () => 0.5 },
    );
  const connect = () => drive(open(), clock);
  const types = () => events.map((e) => e.type);
  return { clock, hub, events, desired, c2d, open, connect, types };
}

const sentTypes = (packets: Packet[]) => packets.map((p) => (p.type === 'publish' ? `publish ${p.topic.split('?')[0]}` : p.type));

describe('connecting', () => {
  it('presents the device ID, the username and a fresh hub SAS token, and subscribes and GETs the twin right behind CONNECT', async () => {
    const t = setup();
    t.hub.autoConnack = false;
    t.hub.holdSubacks = true;
    const opening = t.open();
    await settle();
    const connection = t.hub.last;
    const connect = connection.sentOf('connect')[0]!;
    expect(connect).toMatchObject({ clientId: DEVICE, username: `${HUB}/${DEVICE}/?api-version=2021-04-12`, clean: true });
    const token = parseSasToken(connect.password!);
    expect(token).toMatchObject({ resource: `${HUB}/devices/${DEVICE}`, se: t.clock.now() / 1000 + 3600 });
    expect(token.skn).toBeUndefined();
    expect(verifySasToken(connect.password!, KEY, t.clock.now() / 1000, `${HUB}/devices/${DEVICE}`).ok).toBe(true);
    // No CONNACK yet: the SUBSCRIBEs and the GET left right behind CONNECT, so a connect costs one round trip after TLS.
    expect(sentTypes(connection.sent)).toEqual([
      'connect',
      'subscribe',
      'subscribe',
      'subscribe',
      'subscribe',
      'publish $iothub/twin/GET/',
    ]);
    t.hub.connack();
    expect(connection.sentOf('subscribe').map((s) => s.subscriptions[0]!.topic)).toEqual([
      '$iothub/twin/res/#',
      '$iothub/twin/PATCH/properties/desired/#',
      '$iothub/methods/POST/#',
      `devices/${DEVICE}/messages/devicebound/#`,
    ]);
    t.hub.releaseSubacks();
    const session = await drive(opening, t.clock);
    expect(session.twin).toEqual(t.hub.twin);
    expect(t.desired).toEqual([[{ telemetryInterval: 10 }, 1]]);
    expect(t.types()).toEqual(['hub-connecting', 'hub-twin', 'hub-desired', 'hub-connected']);
    session.close();
  });

  it('a hub that refuses CONNECT fails the GET sent behind it at once, with the refusal', async () => {
    const t = setup();
    t.hub.connacks.push(5);
    const error = await failure(t.connect(), 'unauthorized');
    expect(error.message).toMatch(/CONNACK 5/);
    expect(t.clock.pendingTimers).toBe(0); // no twin request left waiting for its timeout
  });

  it('connects to an endpoint override and sends the model ID, subscribing only to what it handles', async () => {
    const t = setup({
      endpoint: { host: '127.0.0.1', port: 18883 },
      modelId: 'dtmi:com:example:Thermostat;1',
      onMethod: undefined,
      onC2D: undefined,
    });
    const session = await t.connect();
    expect(t.hub.network.attempts).toEqual([{ host: '127.0.0.1', port: 18883 }]);
    expect(t.hub.last.sentOf('connect')[0]!.username).toBe(
      `${HUB}/${DEVICE}/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1`,
    );
    expect(t.hub.last.sentOf('subscribe')).toHaveLength(2);
    session.close();
  });

  it('ends at once with unauthorized when the hub answers CONNACK 5 (time to provision again)', async () => {
    const t = setup();
    t.hub.connacks.push(5);
    const error = await failure(t.connect(), 'unauthorized');
    expect(error.status).toBe(5);
    expect(shouldReprovision(error)).toBe(true);
    expect(t.hub.network.connections).toHaveLength(1);
    expect(t.clock.pendingTimers).toBe(0);
  });

  it('retries CONNACK 3 (server unavailable) with backoff', async () => {
    const t = setup();
    t.hub.connacks.push(3, 3);
    const session = await t.connect();
    expect(t.hub.network.connections).toHaveLength(3);
    expect(t.events.filter((e) => e.type === 'hub-disconnected').map((e) => (e as { waitMs: number }).waitMs)).toEqual([1500, 2500]);
    session.close();
  });

  it('gives up with the last error once the hub has been out of reach for offlineTimeoutMs', async () => {
    const t = setup({ offlineTimeoutMs: 10_000 });
    for (let i = 0; i < 10; i++) t.hub.network.failNext(new Error('getaddrinfo ENOTFOUND'));
    const error = await failure(t.connect(), 'network');
    expect(error.message).toMatch(/could not be reached for \d+ s: .*ENOTFOUND/);
    expect(shouldReprovision(error)).toBe(true);
  });

  it('retries a malformed twin document on a new connection', async () => {
    const t = setup();
    t.hub.twinReplies.push({ status: 200, body: '{"desired":' });
    const session = await t.connect();
    expect(t.hub.network.connections).toHaveLength(2);
    expect(t.events.find((e) => e.type === 'hub-disconnected')).toMatchObject({ reason: expect.stringMatching(/not valid JSON/) });
    session.close();
  });
});

describe('a connected session', () => {
  async function connected(options: Partial<HubSessionOptions> = {}) {
    const t = setup(options);
    const session = await t.connect();
    return { ...t, session };
  }

  it('patches reported properties and resolves with their new version', async () => {
    const t = await connected();
    expect(await drive(t.session.updateReported({ firmware: '1.0.0' }), t.clock)).toBe(2);
    expect(t.hub.twin.reported).toEqual({ firmware: '1.0.0', $version: 2 });
    expect(JSON.parse(t.hub.twinRequests.at(-1)!.body)).toEqual({ firmware: '1.0.0' });
    expect((await drive(t.session.getTwin(), t.clock)).reported.$version).toBe(2);
    t.session.close();
  });

  it('maps twin error statuses to kinds, times out silent requests, and ignores answers to no request', async () => {
    const t = await connected({ requestTimeoutMs: 5000 });
    t.hub.twinReplies.push(
      { status: 429 },
      { status: 400 },
      { silent: true },
      { status: 204, rid: 'stray.1', version: 9 },
      { status: 200, body: '[1]' },
    );
    expect((await failure(drive(t.session.updateReported({ a: 1 }), t.clock), 'throttled')).status).toBe(429);
    expect((await failure(drive(t.session.updateReported({ a: 1 }), t.clock), 'failed')).status).toBe(400);
    await failure(drive(t.session.getTwin(), t.clock), 'timeout');
    const stray = t.session.updateReported({ a: 2 });
    await settle();
    expect(t.events.at(-1)).toEqual({ type: 'hub-ignored', reason: 'a twin response to no request in flight' });
    await failure(drive(stray, t.clock), 'timeout');
    await failure(drive(t.session.getTwin(), t.clock), 'protocol');
    expect(t.session.isConnected).toBe(true);
    t.session.close();
  });

  it('applies desired updates in version order and ignores older or repeated ones', async () => {
    const t = await connected();
    t.hub.sendDesired({ telemetryInterval: 5 }, 2);
    t.hub.sendDesired({ telemetryInterval: 7 }, 3);
    t.hub.sendDesired({ telemetryInterval: 1 }, 2);
    t.hub.sendDesired({ telemetryInterval: 1 }, 3);
    t.hub.sendDesired({ telemetryInterval: 8 }, 4, { topicVersion: null });
    await settle();
    expect(t.desired).toEqual([
      [{ telemetryInterval: 10 }, 1],
      [{ telemetryInterval: 5 }, 2],
      [{ telemetryInterval: 7 }, 3],
      [{ telemetryInterval: 8 }, 4],
    ]);
    expect(t.events.filter((e) => e.type === 'hub-ignored')).toHaveLength(2);
    t.session.close();
  });

  it('catches up from the whole twin when a desired version was missed', async () => {
    const t = await connected();
    t.hub.twin.desired = { telemetryInterval: 30, mode: 'eco', $version: 3 };
    t.hub.sendDesired({ mode: 'eco' }, 3);
    await settle();
    expect(t.hub.twinRequests.map((r) => r.method)).toEqual(['GET', 'GET']);
    expect(t.desired.at(-1)).toEqual([{ telemetryInterval: 30, mode: 'eco' }, 3]);
    t.session.close();
  });

  it('answers direct methods, 400 for a payload that is not JSON, 500 when the handler fails; odd names are ignored', async () => {
    const t = await connected();
    expect(await t.hub.callMethod('getStatus', '{"verbose":true}', '11')).toEqual({
      status: 200,
      rid: '11',
      body: '{"name":"getStatus","payload":{"verbose":true}}',
    });
    expect(await t.hub.callMethod('getStatus', '', '12')).toMatchObject({ status: 200, body: '{"name":"getStatus","payload":null}' });
    expect(await t.hub.callMethod('getStatus', '{bad', '13')).toMatchObject({ status: 400, rid: '13' });
    expect(await t.hub.callMethod('fail', '{}', '14')).toMatchObject({
      status: 500,
      body: '{"message":"The method fail failed on the device"}',
    });
    for (const name of ['a%20b', '..%2F', 'x'.repeat(129)]) t.hub.publish(`$iothub/methods/POST/${name}/?$rid=15`, '{}');
    await settle();
    expect(t.hub.methodAnswers).toHaveLength(4);
    expect(t.events.filter((e) => e.type === 'hub-ignored')).toHaveLength(3);
    expect(t.session.isConnected).toBe(true);
    t.session.close();
  });

  it('delivers cloud-to-device messages with their properties and drops oversized ones', async () => {
    const t = await connected({ maxC2dBytes: 16 });
    t.hub.publish(`devices/${DEVICE}/messages/devicebound/%24.mid=m1&color=blue%20green&flag`, 'hello');
    t.hub.publish(`devices/${DEVICE}/messages/devicebound/`, 'x'.repeat(17));
    t.hub.publish('devices/another/messages/devicebound/', 'not mine');
    await settle();
    expect(t.c2d).toEqual([['hello', { '$.mid': 'm1', color: 'blue green', flag: null }]]);
    expect(t.events.filter((e) => e.type === 'hub-ignored').map((e) => (e as { reason: string }).reason)).toEqual([
      'a cloud-to-device message of 17 bytes (over 16)',
      'a message on a topic this session does not handle',
    ]);
    t.session.close();
  });

  it('sends telemetry at QoS 1 and resolves on PUBACK; without one in time, fails it and connects again', async () => {
    const t = await connected({ requestTimeoutMs: 4000 });
    await drive(
      t.session.sendTelemetry('{"t":21.5}', { contentType: 'application/json', contentEncoding: 'utf-8', properties: { alert: 'no' } }),
      t.clock,
    );
    expect(t.hub.telemetry).toEqual([
      { topic: `devices/${DEVICE}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=no`, body: '{"t":21.5}' },
    ]);
    expect(t.hub.last.sentOf('publish').at(-1)!.qos).toBe(1);
    t.hub.ackTelemetry = false;
    const silent = t.hub.last;
    await failure(drive(t.session.sendTelemetry('x'), t.clock), 'timeout');
    // No PUBACK in time: that connection went silent; the session drops it and connects again.
    expect(silent.closedBy).toBe('client');
    expect(t.events).toContainEqual({
      type: 'hub-disconnected',
      reason: 'IoT Hub did not acknowledge the telemetry message within 4 s',
      attempt: 1,
      waitMs: expect.any(Number),
    });
    t.hub.ackTelemetry = true;
    await t.clock.advance(2000); // the backoff: at most 1 s and 1 s of jitter
    await settle();
    expect(t.session.isConnected).toBe(true);
    await drive(t.session.sendTelemetry('y'), t.clock);
    expect(t.hub.last).not.toBe(silent);
    expect(t.hub.telemetry.at(-1)!.body).toBe('y');
    t.session.close();
    await failure(t.session.sendTelemetry('x'), 'network');
  });

  it('renews its SAS token by reconnecting at 80 % of its lifetime, and GETs the twin again', async () => {
    const t = await connected({ sasTtlSeconds: 600 });
    const first = t.hub.last;
    t.hub.twin.desired = { telemetryInterval: 60, $version: 2 };
    await t.clock.advance(479_000);
    expect(t.hub.network.connections).toHaveLength(1);
    await t.clock.advance(1_000);
    expect(first.closedBy).toBe('client');
    expect(first.sentOf('disconnect')).toHaveLength(1);
    const second = t.hub.last;
    expect(second).not.toBe(first);
    expect(parseSasToken(second.sentOf('connect')[0]!.password!).se).toBe(t.clock.now() / 1000 + 600);
    expect(t.desired.at(-1)).toEqual([{ telemetryInterval: 60 }, 2]);
    expect(t.events.find((e) => e.type === 'hub-renewing')).toEqual({ type: 'hub-renewing', expiresAt: Date.UTC(2025, 0, 1) + 600_000 });
    t.session.close();
  });

  it('reconnects after a drop with backoff and catches up on the twin', async () => {
    const t = await connected();
    t.hub.twin.desired = { telemetryInterval: 20, $version: 4 };
    t.hub.last.drop(new Error('connection reset'));
    await settle();
    expect(t.session.isConnected).toBe(false);
    await failure(t.session.getTwin(), 'network');
    await t.clock.advance(1500);
    expect(t.session.isConnected).toBe(true);
    expect(t.desired.at(-1)).toEqual([{ telemetryInterval: 20 }, 4]);
    expect(t.events.find((e) => e.type === 'hub-disconnected')).toMatchObject({
      reason: expect.stringMatching(/connection reset/),
      waitMs: 1500,
    });
    t.session.close();
  });

  it('treats a QoS 2 PUBLISH as a protocol error that costs the connection, then reconnects', async () => {
    const t = await connected();
    const qos1 = encodePacket({
      type: 'publish',
      topic: '$iothub/methods/POST/x/?$rid=1',
      payload: new Uint8Array(0),
      qos: 1,
      dup: false,
      retain: false,
      messageId: 3,
    });
    qos1[0] = 0x34; // PUBLISH, QoS 2
    t.hub.last.sendBytes(qos1);
    await settle();
    expect(t.events.find((e) => e.type === 'hub-disconnected')).toMatchObject({ reason: expect.stringMatching(/QoS 2/) });
    await t.clock.advance(1500);
    expect(t.hub.network.connections).toHaveLength(2);
    expect(t.session.isConnected).toBe(true);
    t.session.close();
  });

  it('ends with unauthorized when the hub refuses the reconnection (the device was disabled)', async () => {
    const t = await connected();
    t.hub.connacks.push(5);
    t.hub.last.drop();
    await t.clock.advance(1500);
    const ended = await t.session.ended;
    expect(ended).toBeInstanceOf(ProvisioningError);
    expect(ended!.kind).toBe('unauthorized');
    expect(shouldReprovision(ended)).toBe(true);
    expect(t.clock.pendingTimers).toBe(0);
  });

  it('survives handlers that throw, logging that they did without their text', async () => {
    const t = await connected({
      onDesired: (patch) => {
        if ('boom' in patch) throw new Error('secret-1');
      },
      onC2D: () => {
        throw new Error('secret-2');
      },
    });
    t.hub.sendDesired({ boom: true }, 2);
    t.hub.publish(`devices/${DEVICE}/messages/devicebound/`, 'x');
    await settle();
    expect(t.events.filter((e) => e.type === 'hub-ignored')).toEqual([
      { type: 'hub-ignored', reason: 'the desired-properties handler threw' },
      { type: 'hub-ignored', reason: 'the cloud-to-device handler threw' },
    ]);
    expect(t.session.isConnected).toBe(true);
    t.session.close();
  });

  it('ends cleanly on close(): no timers left, no key or token in any event', async () => {
    const t = await connected();
    await drive(t.session.sendTelemetry('x'), t.clock);
    t.session.close();
    expect(await t.session.ended).toBeUndefined();
    expect(t.hub.last.closedBy).toBe('client');
    expect(t.clock.pendingTimers).toBe(0);
    const password = t.hub.network.connections[0]!.sentOf('connect')[0]!.password!;
    const printed = JSON.stringify(t.events);
    for (const secret of [KEY, password, parseSasToken(password).sig, encodeURIComponent(parseSasToken(password).sig)])
      expect(printed).not.toContain(secret);
  });
});

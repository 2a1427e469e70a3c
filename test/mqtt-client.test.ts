// The MQTT client session against a scripted server and a fake clock: no sockets, no sleeping.
import { describe, expect, it } from 'vitest';
import { type ErrorKind, ProvisioningError } from '../src/errors.js';
import { MqttClient, type MqttClientOptions } from '../src/mqtt/client.js';
import { encodePacket, type Packet } from '../src/mqtt/codec.js';
import { FakeClock, settle } from './support/fake-clock.js';
import { broker, type Responder, type ScriptedConnection, ScriptedNetwork } from './support/scripted-connection.js';

const ENDPOINT = { host: 'dps.example.test', port: 8883 };
const USERNAME = '0ne00000000/registrations/dev-1/api-version=2019-03-31';
const SIG = 'k2v9SEKRETsignatureZq8%3D';
const PASSWORD = `SharedAccessSignature sr=0ne00000000%2fregistrations%2fdev-1&sig=${SIG}&se=1735693200&skn=registration`;
const CONNACK_OK: Packet = { type: 'connack', sessionPresent: false, returnCode: 0 };
const acceptConnect: Responder = (packet, connection) => {
  if (packet.type === 'connect') connection.send(CONNACK_OK);
};

/** Every error a test sees goes through here: right kind, and never the password or its signature. */
function expectError(error: unknown, kind: ErrorKind, message?: RegExp): ProvisioningError {
  expect(error).toBeInstanceOf(ProvisioningError);
  const e = error as ProvisioningError;
  expect({ kind: e.kind, message: e.message }).toEqual({ kind, message: expect.stringMatching(message ?? /./) });
  for (let c: unknown = e; c instanceof Error; c = (c as { cause?: unknown }).cause) {
    expect(`${c.message} ${String(c)} ${c.stack ?? ''}`).not.toContain(SIG);
  }
  return e;
}

/** Watches a promise without awaiting it (and without leaving a rejection unhandled). */
function watch<T>(promise: Promise<T>) {
  const seen: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  promise.then(
    (value) => Object.assign(seen, { state: 'resolved', value }),
    (error: unknown) => Object.assign(seen, { state: 'rejected', error }),
  );
  return seen;
}

function setup(respond: Responder = acceptConnect, options: Partial<MqttClientOptions> = {}) {
  const clock = new FakeClock();
  const network = new ScriptedNetwork({ respond });
  const messages: { topic: string; payload: Uint8Array }[] = [];
  const closes: (ProvisioningError | undefined)[] = [];
  const connecting = MqttClient.connect(network.connect, ENDPOINT, clock, {
    clientId: 'dev-1',
    username: USERNAME,
    password: PASSWORD,
    onMessage: (topic, payload) => messages.push({ topic, payload }),
    onClose: (error) => closes.push(error),
    ...options,
  });
  return { clock, network, messages, closes, connecting };
}

async function connected(respond?: Responder, options?: Partial<MqttClientOptions>) {
  const s = setup(respond, options);
  const client = await s.connecting;
  return { ...s, client, server: s.network.last };
}

/** After any close: no timer left behind, the connection closed, nothing open. */
function expectClosed(s: { clock: FakeClock; network: ScriptedNetwork }, client?: MqttClient) {
  expect(s.clock.pendingTimers).toBe(0);
  for (const connection of s.network.connections) expect(connection.closed).toBe(true);
  if (client) expect(client.isOpen).toBe(false);
}

describe('connect', () => {
  it('sends CONNECT (clean session, credentials, keep-alive) and resolves on CONNACK 0', async () => {
    const s = await connected(acceptConnect, { keepAliveSeconds: 30 });
    expect(s.server.endpoint).toEqual(ENDPOINT);
    expect(s.server.sent).toEqual([
      { type: 'connect', clientId: 'dev-1', username: USERNAME, password: PASSWORD, keepAlive: 30, clean: true },
    ]);
    expect(s.client.isOpen).toBe(true);
    expect(s.clock.pendingDelays()).toEqual([30_000, 30_000]); // keep-alive only: the connect timer is gone
    s.client.disconnect();
    expect(s.server.sent.at(-1)).toEqual({ type: 'disconnect' });
    expect(s.closes).toEqual([]);
    expectClosed(s, s.client);
  });

  it('takes CONNACK in any split', async () => {
    const s = setup((packet, connection) => {
      if (packet.type !== 'connect') return;
      connection.sendBytes(Uint8Array.of(0x20));
      connection.sendBytes(Uint8Array.of(0x02, 0x00));
      connection.sendBytes(Uint8Array.of(0x00));
    });
    expect((await s.connecting).isOpen).toBe(true);
  });

  const refusals: [number, ErrorKind, RegExp][] = [
    [1, 'protocol', /CONNACK 1: unacceptable protocol version/],
    [2, 'invalid-input', /client identifier "dev-1" \(CONNACK 2: identifier rejected\)$/],
    [3, 'server', /CONNACK 3: server unavailable.*try again later/],
    [4, 'unauthorized', /CONNACK 4: bad user name or password\)$/],
    [5, 'unauthorized', /CONNACK 5: not authorized\)$/],
    [6, 'protocol', /unknown CONNACK return code 6/],
    [0x80, 'protocol', /unknown CONNACK return code 128/],
  ];
  for (const [code, kind, message] of refusals) {
    it(`maps CONNACK ${code} to '${kind}' and closes`, async () => {
      const s = setup((packet, connection) => {
        if (packet.type === 'connect') connection.send({ type: 'connack', sessionPresent: false, returnCode: code });
      });
      const error = await s.connecting.catch((e: unknown) => e);
      expect(expectError(error, kind, message).status).toBe(code);
      expect(s.network.last.closedBy).toBe('client');
      expect(s.closes).toEqual([]); // connect() rejected instead
      expectClosed(s);
    });
  }

  it("times out with 'network' when the server does not answer CONNECT", async () => {
    const s = setup(() => {}, { connectTimeoutMs: 5000 });
    const result = watch(s.connecting);
    await s.clock.advance(4999);
    expect(result.state).toBe('pending');
    expect(s.network.last.sentOf('connect')).toHaveLength(1);
    await s.clock.advance(1);
    expectError(result.error, 'network', /did not answer CONNECT within 5 s/);
    expectClosed(s);
  });

  it('times out when TLS never completes, and closes a connection the port delivers too late', async () => {
    const clock = new FakeClock();
    const network = new ScriptedNetwork({ respond: acceptConnect }).holdNext();
    const result = watch(MqttClient.connect(network.connect, ENDPOINT, clock, { clientId: 'd', onMessage() {}, onClose() {} }));
    await clock.advance(30_000);
    expectError(result.error, 'network', /Could not open a connection .* within 30 s/);
    const late = network.held[0]!.accept();
    await settle();
    expect(late.closedBy).toBe('client');
    expect(late.sent).toEqual([]); // no CONNECT on a connection nobody waits for
    expect(clock.pendingTimers).toBe(0);
  });

  it('passes a failed TLS connect through, and wraps other port errors as network', async () => {
    const tls = new ProvisioningError('tls', 'The server certificate is not trusted');
    const clock = new FakeClock();
    const network = new ScriptedNetwork().failNext(tls).failNext(new Error('getaddrinfo ENOTFOUND'));
    const options = { clientId: 'd', password: PASSWORD, username: 'u', onMessage() {}, onClose() {} };
    expect(await MqttClient.connect(network.connect, ENDPOINT, clock, options).catch((e: unknown) => e)).toBe(tls);
    const wrapped = await MqttClient.connect(network.connect, ENDPOINT, clock, options).catch((e: unknown) => e);
    expectError(wrapped, 'network', /Could not connect to dps.example.test:8883: getaddrinfo ENOTFOUND/);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects when the server closes or resets the connection before CONNACK', async () => {
    const closed = setup((packet, connection) => packet.type === 'connect' && connection.drop());
    expectError(await closed.connecting.catch((e: unknown) => e), 'network', /closed the connection before answering CONNECT/);
    expectClosed(closed);
    const reset = setup((packet, connection) => packet.type === 'connect' && connection.drop(new Error('ECONNRESET')));
    expectError(await reset.connecting.catch((e: unknown) => e), 'network', /lost before answering CONNECT: ECONNRESET/);
    expectClosed(reset);
  });

  it('rejects anything but CONNACK first, and session present on a clean session, as protocol errors', async () => {
    const early = setup((packet, connection) => packet.type === 'connect' && connection.send({ type: 'pingresp' }));
    expectError(await early.connecting.catch((e: unknown) => e), 'protocol', /unexpected PINGRESP before CONNACK/);
    expectClosed(early);
    const present = setup(
      (packet, connection) => packet.type === 'connect' && connection.send({ type: 'connack', sessionPresent: true, returnCode: 0 }),
    );
    expectError(await present.connecting.catch((e: unknown) => e), 'protocol', /session present/);
    expectClosed(present);
  });

  it('refuses bad options before opening any connection', async () => {
    const tooLong = { password: `${PASSWORD}${'='.repeat(65_536)}` }; // its error must not quote it
    for (const options of [
      { keepAliveSeconds: 70_000 },
      { keepAliveSeconds: 1.5 },
      { connectTimeoutMs: 0 },
      { maxPacketSize: 1 },
      { clientId: 'a\u0000b' },
      tooLong,
    ]) {
      const s = setup(acceptConnect, options);
      expectError(await s.connecting.catch((e: unknown) => e), 'invalid-input');
      expect(s.network.attempts).toEqual([]);
      expect(s.clock.pendingTimers).toBe(0);
    }
  });
});

describe('requests behind CONNECT, before CONNACK (onConnectSent)', () => {
  const hold: Responder = () => {}; // the test answers CONNECT itself

  it('sends them right behind CONNECT, and settles them once the server accepts', async () => {
    const requests: { subscribed?: ReturnType<typeof watch<number>>; published?: ReturnType<typeof watch<void>> } = {};
    const s = setup(hold, {
      onConnectSent: (client) => {
        requests.subscribed = watch(client.subscribe('$iothub/twin/res/#', 1));
        requests.published = watch(client.publish('$iothub/twin/GET/?$rid=1', new Uint8Array(0), 0));
      },
    });
    const connecting = watch(s.connecting);
    await settle();
    const server = s.network.last;
    expect(server.sent.map((p) => p.type)).toEqual(['connect', 'subscribe', 'publish']);
    expect(connecting.state).toBe('pending');
    expect(requests.published!.state).toBe('resolved'); // QoS 0: written
    server.send(CONNACK_OK, { type: 'suback', messageId: server.sentOf('subscribe')[0]!.messageId, granted: [1] });
    await settle();
    expect(connecting.state).toBe('resolved');
    expect(requests.subscribed!).toMatchObject({ state: 'resolved', value: 1 });
  });

  it('rejects them with the refusal when the server refuses the connection', async () => {
    let subscribed: ReturnType<typeof watch<number>> | undefined;
    const s = setup(hold, { onConnectSent: (client) => void (subscribed = watch(client.subscribe('t/#', 1))) });
    const connecting = watch(s.connecting);
    await settle();
    s.network.last.send({ type: 'connack', sessionPresent: false, returnCode: 5 });
    await settle();
    expectError(connecting.error, 'unauthorized', /CONNACK 5/);
    expectError(subscribed!.error, 'unauthorized', /CONNACK 5/);
    expectClosed(s);
  });

  it('ends the attempt, with a typed error, when the callback throws', async () => {
    const s = setup(acceptConnect, {
      onConnectSent: () => {
        throw new Error('bug');
      },
    });
    expectError(await s.connecting.catch((e: unknown) => e), 'invalid-input', /Sending behind CONNECT failed: bug/);
  });
});

describe('subscribe and publish', () => {
  it('subscribe resolves with the granted QoS; a refusal (0x80) rejects as failed and the session stays open', async () => {
    const s = await connected();
    const granted = watch(s.client.subscribe('$dps/registrations/res/#', 1));
    const sub = await s.server.nextSent('subscribe', 0);
    expect(sub.subscriptions).toEqual([{ topic: '$dps/registrations/res/#', qos: 1 }]);
    await settle();
    expect(granted.state).toBe('pending');
    s.server.send({ type: 'suback', messageId: sub.messageId, granted: [0] });
    await settle();
    expect(granted).toEqual({ state: 'resolved', value: 0 });

    const refused = watch(s.client.subscribe('forbidden/#', 0));
    s.server.send({ type: 'suback', messageId: s.server.sentOf('subscribe')[1]!.messageId, granted: [0x80] });
    await settle();
    expectError(refused.error, 'failed', /refused the subscription to "forbidden\/#"/);
    expect(s.client.isOpen).toBe(true);
    expect(s.closes).toEqual([]);
  });

  it('pipelines: SUBSCRIBE and PUBLISH go out in call order before any SUBACK, and both complete', async () => {
    const s = await connected();
    const subscribed = watch(s.client.subscribe('$dps/registrations/res/#', 1));
    const published = watch(s.client.publish('$dps/registrations/PUT/iotdps-register/?$rid=1', new Uint8Array([123, 125]), 1));
    expect(s.server.sent.map((p) => p.type)).toEqual(['connect', 'subscribe', 'publish']); // written synchronously, in order
    const [sub] = s.server.sentOf('subscribe');
    const [pub] = s.server.sentOf('publish');
    expect(pub).toMatchObject({ qos: 1, dup: false, retain: false, payload: new Uint8Array([123, 125]) });
    expect(pub!.messageId).not.toBe(sub!.messageId);
    // Acks may come back in one chunk; the PUBACK first, even.
    s.server.send({ type: 'puback', messageId: pub!.messageId! }, { type: 'suback', messageId: sub!.messageId, granted: [1] });
    await settle();
    expect([subscribed, published]).toEqual([
      { state: 'resolved', value: 1 },
      { state: 'resolved', value: undefined },
    ]);
  });

  it('QoS 1 publish resolves only on its PUBACK; QoS 0 resolves once written', async () => {
    const s = await connected();
    const acked = watch(s.client.publish('t/1', new Uint8Array([1]), 1));
    await s.clock.advance(5000);
    expect(acked.state).toBe('pending');
    s.server.send({ type: 'puback', messageId: s.server.sentOf('publish')[0]!.messageId! });
    await settle();
    expect(acked.state).toBe('resolved');
    await s.client.publish('t/0', new Uint8Array([2]), 0);
    expect(s.server.sent.at(-1)).toEqual({
      type: 'publish',
      topic: 't/0',
      payload: new Uint8Array([2]),
      qos: 0,
      dup: false,
      retain: false,
    });
  });

  it('rejects a bad topic or QoS as invalid-input without sending anything or closing', async () => {
    const s = await connected();
    expectError(await s.client.publish('a/+', new Uint8Array(), 1).catch((e: unknown) => e), 'invalid-input', /wildcards/);
    expectError(await s.client.publish('a/#', new Uint8Array(), 0).catch((e: unknown) => e), 'invalid-input', /wildcards/);
    expectError(await s.client.subscribe('a/#/b', 0).catch((e: unknown) => e), 'invalid-input', /# must be the last level/);
    expectError(await s.client.publish('t', new Uint8Array(), 2 as 0).catch((e: unknown) => e), 'invalid-input', /QoS 2 is not supported/);
    expectError(await s.client.subscribe('t', 2 as 0).catch((e: unknown) => e), 'invalid-input', /QoS 2 is not supported/);
    expect(s.server.sent).toHaveLength(1);
    expect(s.client.isOpen).toBe(true);
  });

  it('cycles message ids 1..65535, skipping ids still in flight', async () => {
    const s = await connected();
    const stuck = watch(s.client.publish('t', new Uint8Array(), 1)); // id 1, never acknowledged
    const ids: number[] = [];
    for (let i = 2; i <= 0xffff; i++) {
      void s.client.publish('t', new Uint8Array(), 1);
      const { messageId } = s.server.sent.at(-1) as { messageId: number };
      ids.push(messageId);
      s.server.send({ type: 'puback', messageId });
    }
    expect(ids).toEqual(Array.from({ length: 0xffff - 1 }, (_, i) => i + 2));
    void s.client.publish('t', new Uint8Array(), 1);
    expect((s.server.sent.at(-1) as { messageId: number }).messageId).toBe(2); // wrapped past 65535, skipped 1
    expect(stuck.state).toBe('pending');
  });

  it('PUBACKs an inbound QoS 1 PUBLISH before delivering it; delivers QoS 0 without an ack', async () => {
    const seenAtDelivery: [string, number][] = []; // topic, PUBACKs already sent
    let server: ScriptedConnection | undefined;
    const s = await connected(acceptConnect, { onMessage: (topic) => seenAtDelivery.push([topic, server!.sentOf('puback').length]) });
    server = s.server;
    const payload = new TextEncoder().encode('{"status":"assigning"}');
    s.server.send({
      type: 'publish',
      topic: '$dps/registrations/res/202/?$rid=1',
      payload,
      qos: 1,
      dup: false,
      retain: false,
      messageId: 77,
    });
    s.server.send({ type: 'publish', topic: 'q0', payload: new Uint8Array([9]), qos: 0, dup: false, retain: false });
    expect(s.server.sentOf('puback')).toEqual([{ type: 'puback', messageId: 77 }]);
    expect(seenAtDelivery).toEqual([
      ['$dps/registrations/res/202/?$rid=1', 1],
      ['q0', 1],
    ]);
  });

  it('ends the session when onMessage throws, and never lets the exception reach the port', async () => {
    const topics: string[] = [];
    const closed: Array<ProvisioningError | undefined> = [];
    const s = await connected(acceptConnect, {
      onMessage: (topic) => {
        topics.push(topic);
        if (topic === 'a') throw new Error('handler bug');
      },
      onClose: (error) => closed.push(error),
    });
    const publish = (topic: string): Packet => ({ type: 'publish', topic, payload: new Uint8Array(), qos: 0, dup: false, retain: false });
    const chunk = Uint8Array.from([...encodePacket(publish('a')), ...encodePacket(publish('b'))]);
    expect(() => s.server.sendBytes(chunk)).not.toThrow();
    expect(topics).toEqual(['a']); // nothing more is handled on a session that ended
    expect(s.client.isOpen).toBe(false);
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ kind: 'protocol', message: 'Handling the message on "a" failed: handler bug' });
  });
});

describe('keep-alive', () => {
  it('sends PINGREQ after keepAliveSeconds without sending, and stays open while PINGRESP comes back', async () => {
    const s = await connected(broker(), { keepAliveSeconds: 10 });
    await s.clock.advance(6000);
    await s.client.publish('t', new Uint8Array(), 1); // resets both idle timers (PUBACK came back)
    await s.clock.advance(9999);
    expect(s.server.sentOf('pingreq')).toHaveLength(0);
    await s.clock.advance(1);
    expect(s.server.sentOf('pingreq')).toHaveLength(1);
    await s.clock.advance(60_000);
    expect(s.server.sentOf('pingreq')).toHaveLength(7); // one every 10 s, each answered
    expect(s.client.isOpen).toBe(true);
    expect(s.closes).toEqual([]);
  });

  it("closes with 'network' when nothing answers a PINGREQ within keepAliveSeconds", async () => {
    const s = await connected(acceptConnect, { keepAliveSeconds: 10 });
    const pending = watch(s.client.subscribe('x', 1));
    await s.clock.advance(10_000);
    expect(s.server.sentOf('pingreq')).toHaveLength(1);
    await s.clock.advance(9999);
    expect(s.closes).toEqual([]);
    await s.clock.advance(1);
    expect(s.closes).toHaveLength(1);
    expectError(s.closes[0], 'network', /went silent.*10 s of a PINGREQ/);
    expectError(pending.error, 'network', /went silent/);
    expect(s.server.closedBy).toBe('client');
    expectClosed(s, s.client);
  });

  it('detects silence even while the client keeps sending (no send-idle PINGREQ would ever go out)', async () => {
    const s = await connected(acceptConnect, { keepAliveSeconds: 10 });
    for (let t = 0; t < 40 && s.client.isOpen; t += 4) {
      await s.client.publish('t', new Uint8Array(), 0).catch(() => {});
      await s.clock.advance(4000);
    }
    expect(s.server.sentOf('pingreq')).toHaveLength(1); // after 10 s without receiving
    expectError(s.closes[0], 'network', /went silent/);
    expect(s.clock.now() - Date.UTC(2025, 0, 1)).toBe(20_000); // 10 s idle + 10 s for the answer
    expectClosed(s, s.client);
  });

  it('sends no PINGREQ when keep-alive is 0', async () => {
    const s = await connected(acceptConnect, { keepAliveSeconds: 0 });
    expect(s.server.sent[0]).toMatchObject({ type: 'connect', keepAlive: 0 });
    expect(s.clock.pendingTimers).toBe(0);
  });
});

describe('losing the connection', () => {
  it("rejects every pending operation with 'network' and fires onClose once", async () => {
    const s = await connected();
    const sub = watch(s.client.subscribe('$dps/registrations/res/#', 1));
    const pub = watch(s.client.publish('t', new Uint8Array([1]), 1));
    s.server.drop(new Error('read ECONNRESET'));
    await settle();
    for (const op of [sub, pub]) expectError(op.error, 'network', /dps.example.test:8883 was lost: read ECONNRESET/);
    expect(s.closes).toHaveLength(1);
    expect(s.closes[0]).toBe(sub.error);
    expectClosed(s, s.client);
    s.server.drop(); // a second close from the port changes nothing
    s.client.disconnect();
    expect(s.closes).toHaveLength(1);
    expectError(await s.client.publish('t', new Uint8Array(), 0).catch((e: unknown) => e), 'network', /connection is closed.*ECONNRESET/);
    expectError(await s.client.subscribe('t', 0).catch((e: unknown) => e), 'network', /Cannot subscribe to "t"/);
  });

  it("an orderly close by the server is a 'network' error too", async () => {
    const s = await connected();
    s.server.drop();
    expectError(s.closes[0], 'network', /closed the connection/);
    expectClosed(s, s.client);
  });

  it('disconnect() sends DISCONNECT, rejects pending operations, skips onClose, and is idempotent', async () => {
    const s = await connected();
    const pub = watch(s.client.publish('t', new Uint8Array(), 1));
    s.client.disconnect();
    s.client.disconnect();
    await settle();
    expect(s.server.sent.map((p) => p.type)).toEqual(['connect', 'publish', 'disconnect']);
    expect(s.server.closedBy).toBe('client');
    expectError(pub.error, 'network', /disconnect\(\)/);
    expect(s.closes).toEqual([]);
    expectClosed(s, s.client);
  });
});

describe('a server that breaks the protocol', () => {
  const cases: [string, (s: Awaited<ReturnType<typeof connected>>) => void, RegExp][] = [
    ['garbage bytes', (s) => s.server.sendBytes(Uint8Array.of(0x00, 0x13, 0x37)), /Invalid MQTT packet type 0/],
    ['a malformed packet', (s) => s.server.sendBytes(Uint8Array.of(0x40, 0x02, 0x00, 0x00)), /PUBACK.*identifier 0/],
    ['an oversized packet', (s) => s.server.sendBytes(Uint8Array.of(0x30, 0xff, 0xff, 0x7f)), /exceeds the limit of 65536/],
    [
      'a SUBACK for an unknown id',
      (s) => s.server.send({ type: 'suback', messageId: 999, granted: [0] }),
      /SUBACK for message id 999, which matches no request/,
    ],
    [
      'a PUBACK answering a SUBSCRIBE',
      (s) => s.server.send({ type: 'puback', messageId: s.server.sentOf('subscribe')[0]!.messageId }),
      /PUBACK for message id/,
    ],
    ['an UNSUBACK', (s) => s.server.send({ type: 'unsuback', messageId: 1 }), /UNSUBACK/],
    ['a second CONNACK', (s) => s.server.send(CONNACK_OK), /second CONNACK/],
    ['a PINGREQ', (s) => s.server.send({ type: 'pingreq' }), /PINGREQ, which only a client sends/],
    [
      'a SUBACK with two codes',
      (s) => s.server.send({ type: 'suback', messageId: s.server.sentOf('subscribe')[0]!.messageId, granted: [1, 1] }),
      /2 return codes/,
    ],
    [
      'a SUBACK granting more than asked',
      (s) => s.server.send({ type: 'suback', messageId: s.server.sentOf('subscribe')[0]!.messageId, granted: [2] }),
      /granting QoS 2 for a QoS 0/,
    ],
  ];
  for (const [name, act, message] of cases) {
    it(`closes on ${name}: protocol error to onClose and to pending operations`, async () => {
      const s = await connected();
      const pending = watch(s.client.subscribe('x', 0));
      act(s);
      await settle();
      expect(s.closes).toHaveLength(1);
      expectError(s.closes[0], 'protocol', message);
      expect(pending.error).toBe(s.closes[0]);
      expect(s.server.closedBy).toBe('client');
      expectClosed(s, s.client);
    });
  }
});

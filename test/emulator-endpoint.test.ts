// The device endpoint byte by byte: a raw MQTT client (mqtt-packet over node:tls) checks the
// CONNECT rules, the topics, the 202/poll flow, error bodies, isolation between devices,
// malformed input and the fault plan. Loopback only.
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { generate, type Packet, parser } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticateDevice, MAX_TOKEN_LIFETIME_SECONDS } from '../emulator/auth.js';
import { type DpsEmulator, startEmulator } from '../emulator/index.js';
import { deriveDeviceKey } from '../src/identity.js';
import { buildSasToken } from '../src/sas.js';

const ID_SCOPE = '0ne0000E2E1';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const GROUP_KEY = key(21);
const HUB = 'hub-1.azure-devices.net';
const RES = '$dps/registrations/res/#';
const REGISTER = (rid: string): string => `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`;
const POLL = (rid: string, op: string): string => `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${rid}&operationId=${op}`;

let emulator: DpsEmulator;
let stateDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'dps-emulator-endpoint-'));
  emulator = await startEmulator({
    idScope: ID_SCOPE,
    stateDir,
    retryAfterSeconds: 2,
    assignmentDelayMs: 300,
    maxPacketBytes: 4096,
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${key(1)}` }],
      enrollmentGroups: [{ enrollmentGroupId: 'group-1', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } } }],
      individualEnrollments: [
        {
          registrationId: 'disabled-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key(3) } },
          provisioningStatus: 'disabled',
        },
      ],
    },
  });
});

afterAll(async () => {
  await emulator?.close();
  await rm(stateDir, { recursive: true, force: true });
});

/** A device speaking raw MQTT 3.1.1: every packet it receives is kept for assertions. */
class RawDevice {
  readonly received: Packet[] = [];
  readonly closed: Promise<void>;
  #wake: () => void = () => {};
  private constructor(readonly socket: TLSSocket) {
    const p = parser({ protocolVersion: 4 });
    p.on('packet', (packet) => {
      this.received.push(packet);
      this.#wake();
    });
    socket.on('data', (chunk: Buffer) => p.parse(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static open(): Promise<RawDevice> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: emulator.endpoint.port, ca: emulator.caPem }, () =>
        resolve(new RawDevice(socket)),
      );
      socket.once('error', reject);
    });
  }

  /** Connect as `registrationId` with a device key (a valid token unless overridden). */
  static async device(
    registrationId: string,
    options: { password?: string; username?: string; clientId?: string } = {},
  ): Promise<RawDevice> {
    const device = await RawDevice.open();
    const password = options.password ?? sasFor(registrationId, deriveDeviceKey(GROUP_KEY, registrationId));
    device.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      clientId: options.clientId ?? registrationId,
      username: options.username ?? `${ID_SCOPE}/registrations/${registrationId}/api-version=2019-03-31`,
      password: Buffer.from(password),
    });
    return device;
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet));
  }

  /** The next packet of `cmd` (optionally matching), waiting up to `ms`. */
  async next<T extends Packet>(cmd: T['cmd'], match: (p: T) => boolean = () => true, ms = 3000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const index = this.received.findIndex((p) => p.cmd === cmd && match(p as T));
      if (index !== -1) return this.received.splice(index, 1)[0] as T;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${cmd} within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => (clearTimeout(timer), resolve());
      });
    }
  }

  async connack(): Promise<number> {
    return (await this.next<Extract<Packet, { cmd: 'connack' }>>('connack')).returnCode ?? -1;
  }

  async subscribe(topic = RES): Promise<number[]> {
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    return (await this.next<Extract<Packet, { cmd: 'suback' }>>('suback')).granted as number[];
  }

  /** Publish a request and wait for the response whose $rid matches. */
  async request(topic: string, body: string | Buffer, rid: string): Promise<{ topic: string; status: number; body: any }> {
    this.send({ cmd: 'publish', topic, payload: Buffer.from(body), qos: 0, retain: false, dup: false });
    const response = await this.next<Extract<Packet, { cmd: 'publish' }>>('publish', (p) => p.topic.includes(`$rid=${rid}`));
    return { topic: response.topic, status: Number(response.topic.split('/')[3]), body: JSON.parse(response.payload.toString()) };
  }

  async ready(): Promise<this> {
    expect(await this.connack()).toBe(0);
    expect(await this.subscribe()).toEqual([1]); // QoS 1 asked, 1 granted (responses still come at QoS 0)
    return this;
  }

  end(): void {
    this.socket.destroy();
  }
}

function sasFor(registrationId: string, deviceKey: string, expiry = Math.floor(Date.now() / 1000) + 3600, scope = ID_SCOPE): string {
  return buildSasToken({ resource: `${scope}/registrations/${registrationId}`, key: deviceKey, expiry, keyName: 'registration' });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const register = (d: RawDevice, id: string, rid = 'r1') => d.request(REGISTER(rid), JSON.stringify({ registrationId: id }), rid);

describe('CONNECT', () => {
  it('accepts a token signed with the derived key, sr raw or %2f-encoded (both SDKs)', async () => {
    const a = await RawDevice.device('conn-ok-1');
    expect(await a.connack()).toBe(0);
    // azure-sdk-for-c URL-encodes '/' in sr as %2f and signs that exact text; computed here independently.
    const id = 'conn-ok-2';
    const sr = `${ID_SCOPE}%2fregistrations%2f${id}`;
    const se = Math.floor(Date.now() / 1000) + 600;
    const sig = createHmac('sha256', Buffer.from(deriveDeviceKey(GROUP_KEY, id), 'base64'))
      .update(`${sr}\n${se}`)
      .digest('base64');
    const b = await RawDevice.device(id, {
      password: `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=registration`,
    });
    expect(await b.connack()).toBe(0);
    a.end();
    b.end();
  });

  it('accepts a token valid for up to ten years and refuses a longer one (the maximum Microsoft states for IoT Hub)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = (id: string, expiry: number) => sasFor(id, deriveDeviceKey(GROUP_KEY, id), expiry);
    const longest = await RawDevice.device('conn-long-1', { password: token('conn-long-1', now + MAX_TOKEN_LIFETIME_SECONDS - 60) });
    expect(await longest.connack()).toBe(0);
    longest.end();
    const tooLong = await RawDevice.device('conn-long-2', { password: token('conn-long-2', now + MAX_TOKEN_LIFETIME_SECONDS + 3600) });
    expect(await tooLong.connack()).toBe(5);
    await tooLong.closed;
    // An expiry in milliseconds, a common mistake, lies thousands of years ahead.
    const millis = await RawDevice.device('conn-long-3', { password: token('conn-long-3', Date.now() + 3_600_000) });
    expect(await millis.connack()).toBe(5);
    await millis.closed;

    // The exact bound, and the reason the emulator logs.
    const username = `${ID_SCOPE}/registrations/conn-long-4/api-version=2019-03-31`;
    const at = (expiry: number) => authenticateDevice(emulator.model, ID_SCOPE, 'conn-long-4', username, token('conn-long-4', expiry), now);
    expect(MAX_TOKEN_LIFETIME_SECONDS).toBe(3653 * 24 * 3600);
    expect(at(now + MAX_TOKEN_LIFETIME_SECONDS).ok).toBe(true);
    expect(at(now + MAX_TOKEN_LIFETIME_SECONDS + 1)).toEqual({ ok: false, reason: 'token-lifetime' });
  });

  it.each([
    ['a wrong ID scope', { username: `0ne99999999/registrations/conn-bad/api-version=2019-03-31` }],
    ['a client id other than the registration ID', { clientId: 'someone-else' }],
    ['an expired token', { password: sasFor('conn-bad', deriveDeviceKey(GROUP_KEY, 'conn-bad'), 1_000_000) }],
    ['a token for another resource', { password: sasFor('other-device', deriveDeviceKey(GROUP_KEY, 'conn-bad')) }],
    ['the group key instead of the derived key', { password: sasFor('conn-bad', GROUP_KEY) }],
    ['a password that is no token', { password: 'hunter2' }],
  ])('refuses %s with CONNACK 5', async (_what, options) => {
    const device = await RawDevice.device('conn-bad', options);
    expect(await device.connack()).toBe(5);
    await device.closed;
  });
});

describe('topics and the register/poll flow', () => {
  it('grants only the response topic', async () => {
    const device = await RawDevice.device('sub-1');
    expect(await device.connack()).toBe(0);
    expect(await device.subscribe('#')).toEqual([128]);
    expect(await device.subscribe('$dps/registrations/PUT/#')).toEqual([128]);
    expect(await device.subscribe(RES)).toEqual([1]);
    device.end();
  });

  it('answers 202 with retry-after, 202 again before the operation completes, then 200 with the full state', async () => {
    const device = await (await RawDevice.device('flow-1')).ready();
    const started = await register(device, 'flow-1', 'abc');
    expect(started.topic).toBe('$dps/registrations/res/202/?$rid=abc&retry-after=2');
    expect(started.body).toEqual({ operationId: expect.stringMatching(/^4\.[0-9a-f]{16}\.[0-9a-f-]{36}$/), status: 'assigning' });
    const early = await device.request(POLL('p1', started.body.operationId), '', 'p1');
    expect(early.status).toBe(202);
    await sleep(350);
    const done = await device.request(POLL('p2', started.body.operationId), ' ', 'p2');
    expect(done.topic).toBe('$dps/registrations/res/200/?$rid=p2');
    expect(done.body.status).toBe('assigned');
    expect(Object.keys(done.body.registrationState).sort()).toEqual([
      'assignedHub',
      'createdDateTimeUtc',
      'deviceId',
      'etag',
      'lastUpdatedDateTimeUtc',
      'registrationId',
      'status',
      'substatus',
    ]);
    expect(done.body.registrationState).toMatchObject({
      registrationId: 'flow-1',
      assignedHub: HUB,
      deviceId: 'flow-1',
      substatus: 'initialAssignment',
    });
    expect(emulator.model.registration('flow-1')?.state.assignedHub).toBe(HUB);
    device.end();
  });

  it("answers 404 in DPS error shape for an unknown operation, and for another device's operation", async () => {
    const a = await (await RawDevice.device('op-a')).ready();
    const b = await (await RawDevice.device('op-b')).ready();
    const unknown = await a.request(POLL('x', '4.0000000000000000.nope'), '', 'x');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({
      errorCode: expect.any(Number),
      trackingId: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
      message: expect.stringContaining('operation'),
      timestampUtc: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(String(unknown.body.errorCode)).toMatch(/^404\d{3}$/);
    const theirs = await register(b, 'op-b');
    expect((await a.request(POLL('y', theirs.body.operationId), '', 'y')).status).toBe(404);
    a.end();
    b.end();
  });

  it('answers 400 for a body that is not JSON or names another registration', async () => {
    const device = await (await RawDevice.device('bad-body')).ready();
    const notJson = await device.request(REGISTER('j'), '{"registrationId":', 'j');
    expect(notJson.status).toBe(400);
    expect(String(notJson.body.errorCode)).toMatch(/^400\d{3}$/);
    expect((await device.request(REGISTER('k'), JSON.stringify({ registrationId: 'someone' }), 'k')).status).toBe(400);
    expect((await register(device, 'bad-body', 'l')).status).toBe(202); // the connection is still usable
    device.end();
  });

  it('resolves a disabled enrollment with status disabled', async () => {
    const device = await (await RawDevice.device('disabled-1', { password: sasFor('disabled-1', key(3)) })).ready();
    const started = await register(device, 'disabled-1');
    await sleep(350);
    const done = await device.request(POLL('d', started.body.operationId), '', 'd');
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'disabled', registrationState: { registrationId: 'disabled-1', status: 'disabled' } });
    expect(done.body.registrationState.assignedHub).toBeUndefined();
    device.end();
  });

  it('closes the connection of a device that publishes to any other topic, or at QoS 2', async () => {
    const device = await (await RawDevice.device('wrong-topic')).ready();
    device.send({
      cmd: 'publish',
      topic: '$dps/registrations/res/200/?$rid=spoof',
      payload: Buffer.from('{}'),
      qos: 0,
      retain: false,
      dup: false,
    });
    await device.closed;
    const qos2 = await (await RawDevice.device('qos-two')).ready();
    qos2.send({
      cmd: 'publish',
      topic: REGISTER('q2'),
      payload: Buffer.from('{"registrationId":"qos-two"}'),
      qos: 2,
      messageId: 7,
      retain: false,
      dup: false,
    });
    await qos2.closed;
    expect(qos2.received.filter((p) => p.cmd === 'publish' || p.cmd === 'pubrec')).toEqual([]);
  });
});

describe('isolation and bad input', () => {
  it('sends a response only to the device that asked', async () => {
    const a = await (await RawDevice.device('iso-a')).ready();
    const b = await (await RawDevice.device('iso-b')).ready();
    expect((await register(a, 'iso-a', 'same-rid')).status).toBe(202);
    await sleep(200);
    expect(b.received.filter((p) => p.cmd === 'publish')).toEqual([]);
    a.end();
    b.end();
  });

  it.each([
    ['garbage bytes', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00])],
    [
      'a packet larger than the limit',
      generate({ cmd: 'publish', topic: REGISTER('big'), payload: Buffer.alloc(10_000, 0x20), qos: 0, retain: false, dup: false }),
    ],
    ['a remaining length that declares 200 MB', Buffer.from([0x30, 0x80, 0x80, 0x80, 0x60])],
  ])('closes a client that sends %s, and another client carries on', async (_what, bytes) => {
    const good = await (await RawDevice.device('bystander')).ready();
    const bad = await (await RawDevice.device('troublemaker')).ready();
    bad.socket.write(bytes);
    await bad.closed;
    expect((await register(good, 'bystander', 'still-here')).status).toBe(202);
    const fresh = await (await RawDevice.device('newcomer')).ready();
    fresh.end();
    good.end();
  });
});

describe('the fault plan', () => {
  it('throttles with and without retry-after, then serves normally', async () => {
    emulator.faults.push({ on: 'register', action: { type: 'status', status: 429, retryAfter: 5 }, registrationId: 'fault-1' });
    emulator.faults.push({ on: 'register', action: { type: 'status', status: 503 }, registrationId: 'fault-1' });
    const device = await (await RawDevice.device('fault-1')).ready();
    const throttled = await register(device, 'fault-1', 'a');
    expect(throttled.topic).toBe('$dps/registrations/res/429/?$rid=a&retry-after=5');
    expect(throttled.body.errorCode).toBe(429000);
    const unavailable = await register(device, 'fault-1', 'b');
    expect(unavailable.topic).toBe('$dps/registrations/res/503/?$rid=b');
    expect((await register(device, 'fault-1', 'c')).status).toBe(202);
    expect(emulator.faults.pending()).toEqual([]);
    device.end();
  });

  it('sends a stray response with a foreign $rid before the real one', async () => {
    emulator.faults.push({ on: 'register', action: { type: 'stray' }, registrationId: 'fault-2' });
    emulator.faults.push({ on: 'poll', action: { type: 'stray', status: 200 }, registrationId: 'fault-2' });
    const device = await (await RawDevice.device('fault-2')).ready();
    const started = await register(device, 'fault-2', 'mine');
    expect(started.status).toBe(202);
    const stray = device.received.splice(0).find((p) => p.cmd === 'publish') as Extract<Packet, { cmd: 'publish' }>;
    expect(stray.topic).toMatch(/^\$dps\/registrations\/res\/202\/\?\$rid=(?!mine)/);
    expect((await device.request(POLL('poll-rid', started.body.operationId), '', 'poll-rid')).status).toBe(202);
    const assignedStray = device.received.find((p) => p.cmd === 'publish') as Extract<Packet, { cmd: 'publish' }>;
    expect(assignedStray.topic).toMatch(/^\$dps\/registrations\/res\/200\/\?\$rid=(?!poll-rid)/);
    expect(JSON.parse(assignedStray.payload.toString())).toMatchObject({
      status: 'assigned',
      registrationState: { assignedHub: 'stray-hub.azure-devices.net' },
    });
    device.end();
  });

  it('drops the connection after answering a register, or instead of answering a poll', async () => {
    emulator.faults.push({ on: 'register', action: { type: 'drop', afterResponse: true }, registrationId: 'fault-3' });
    const first = await (await RawDevice.device('fault-3')).ready();
    const started = await register(first, 'fault-3');
    expect(started.status).toBe(202);
    await first.closed;
    emulator.faults.push({ on: 'poll', action: { type: 'drop' }, registrationId: 'fault-3' });
    const second = await (await RawDevice.device('fault-3')).ready();
    second.send({
      cmd: 'publish',
      topic: POLL('q', started.body.operationId),
      payload: Buffer.alloc(0),
      qos: 0,
      retain: false,
      dup: false,
    });
    await second.closed;
    expect(second.received.filter((p) => p.cmd === 'publish')).toEqual([]);
    const third = await (await RawDevice.device('fault-3')).ready();
    await sleep(300);
    expect((await third.request(POLL('r', started.body.operationId), '', 'r')).status).toBe(200); // the operation survived
    third.end();
  });

  it('holds an answer for a delay, and can drop a CONNECT without any CONNACK', async () => {
    emulator.faults.push({ on: 'register', action: { type: 'delay', ms: 300 }, registrationId: 'fault-6' });
    const slow = await (await RawDevice.device('fault-6')).ready();
    const started = Date.now();
    expect((await register(slow, 'fault-6')).status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    slow.end();
    emulator.faults.push({ on: 'connect', action: { type: 'drop' }, registrationId: 'fault-6' });
    const dropped = await RawDevice.device('fault-6');
    await dropped.closed;
    expect(dropped.received).toEqual([]);
  });

  it('refuses a CONNECT with the return code asked for, for the named device only', async () => {
    emulator.faults.push({ on: 'connect', action: { type: 'status', status: 3 }, registrationId: 'fault-4' });
    const other = await RawDevice.device('fault-5');
    expect(await other.connack()).toBe(0);
    const device = await RawDevice.device('fault-4');
    expect(await device.connack()).toBe(3);
    other.end();
  });
});

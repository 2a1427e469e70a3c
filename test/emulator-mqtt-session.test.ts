// The DPS endpoint's MQTT session (emulator/mqtt-session.ts) on a loopback TCP connection, with a
// raw client (mqtt-packet): the order of the protocol (CONNECT first and once, what arrives before
// CONNACK is held), its refusals and timers, and what it writes. DPS's own rules on top of it are
// tested in emulator-endpoint.test.ts and by Microsoft's clients.
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { generate, type IConnectPacket, type Packet, parser } from 'mqtt-packet';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MqttSession, type MqttSessionHandlers } from '../emulator/mqtt-session.js';
import { until } from './support/until.js';

const CONNECT: Packet = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'dev-1' };

interface Pair {
  client: Socket;
  server: Socket;
  session: MqttSession;
  /** What the session handed over, in order. */
  calls: string[];
  errors: string[];
  received: Packet[];
  closed: Promise<void>;
  send(...packets: Packet[]): void;
}

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

async function pair(
  handlers: Partial<MqttSessionHandlers> = {},
  options = { maxPacketBytes: 4096, connectTimeoutMs: 2000 },
): Promise<Pair> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = tcpConnect((server.address() as { port: number }).port, '127.0.0.1');
  client.on('error', () => {});
  const socket = await accepted;
  const calls: string[] = [];
  const errors: string[] = [];
  const received: Packet[] = [];
  const p = parser({ protocolVersion: 4 });
  p.on('packet', (packet) => received.push(packet));
  client.on('data', (chunk: Buffer) => p.parse(chunk));
  const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
  const session: MqttSession = new MqttSession(
    socket,
    {
      connect: (packet) => calls.push(`connect ${packet.clientId}`),
      subscribe: (packet) => calls.push(`subscribe ${packet.subscriptions.map((s) => s.topic).join(',')}`),
      unsubscribe: (packet) => calls.push(`unsubscribe ${packet.unsubscriptions.join(',')}`),
      publish: (packet) => calls.push(`publish ${packet.topic} qos ${packet.qos}`),
      error: (reason) => errors.push(reason),
      closed: () => calls.push('closed'),
      ...handlers,
    },
    options,
  );
  return {
    client,
    server: socket,
    session,
    calls,
    errors,
    received,
    closed,
    send: (...packets) => client.write(Buffer.concat(packets.map((packet) => generate(packet)))),
  };
}

const cmds = (packets: Packet[]): string[] => packets.map((packet) => packet.cmd);

describe('the MQTT session of one DPS connection', () => {
  it('hands over the CONNECT and holds what was sent behind it until the CONNECT is accepted', async () => {
    const t = await pair();
    t.send(CONNECT, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
    await until(() => t.calls.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(t.calls).toEqual(['connect dev-1']); // the SUBSCRIBE waits for CONNACK
    t.session.accept();
    expect(t.calls).toEqual(['connect dev-1', 'subscribe $dps/registrations/res/#']);
    await until(() => t.received.length > 0);
    expect(t.received[0]).toMatchObject({ cmd: 'connack', returnCode: 0, sessionPresent: false });
    t.client.destroy();
  });

  it('refuses with the return code given, then closes', async () => {
    const t = await pair();
    t.send(CONNECT);
    await until(() => t.calls.length > 0);
    t.session.refuse(5);
    await t.closed;
    expect(t.received).toMatchObject([{ cmd: 'connack', returnCode: 5 }]);
    expect(t.errors).toEqual([]);
  });

  it('answers a CONNECT of MQTT 3.1 or 5 with CONNACK 1 (unacceptable protocol level) without handing it over', async () => {
    for (const version of [3, 5] as const) {
      const t = await pair();
      t.send({ ...(CONNECT as IConnectPacket), protocolId: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version });
      await t.closed;
      await until(() => t.calls.includes('closed'));
      expect(t.received).toMatchObject([{ cmd: 'connack', returnCode: 1 }]);
      expect(t.calls).toEqual(['closed']);
    }
  });

  it('closes a connection whose first packet is not CONNECT, or that sends CONNECT twice', async () => {
    const first = await pair();
    first.send({ cmd: 'pingreq' });
    await first.closed;
    expect(first.errors).toEqual(['pingreq before CONNECT']);
    expect(first.received).toEqual([]);

    const twice = await pair();
    twice.send(CONNECT);
    await until(() => twice.calls.length > 0);
    twice.session.accept();
    twice.send(CONNECT);
    await twice.closed;
    expect(twice.errors).toEqual(['unexpected connect']);
  });

  it('closes a connection that sends no CONNECT in time', async () => {
    const t = await pair({}, { maxPacketBytes: 4096, connectTimeoutMs: 100 });
    await t.closed;
    expect(t.errors).toEqual(['no CONNECT in time']);
  });

  it('acknowledges a QoS 1 PUBLISH before the answer, both in one write; PINGREQ is answered; a QoS 0 PUBLISH has no PUBACK', async () => {
    let session!: MqttSession;
    const t = await pair({
      publish: (packet) =>
        session.send({ cmd: 'publish', topic: `re/${packet.topic}`, payload: Buffer.from('ok'), qos: 0, retain: false, dup: false }),
    });
    session = t.session;
    t.send(CONNECT);
    await new Promise((resolve) => setTimeout(resolve, 50));
    t.session.accept();
    await until(() => t.received.length === 1);
    const write = vi.spyOn(t.server, 'write');
    t.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false });
    await until(() => t.received.length === 3);
    expect(t.received.slice(1)).toMatchObject([
      { cmd: 'puback', messageId: 7 },
      { cmd: 'publish', topic: 're/a' },
    ]);
    expect(write).toHaveBeenCalledTimes(1);
    t.send({ cmd: 'publish', topic: 'b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, { cmd: 'pingreq' });
    await until(() => t.received.length === 5);
    expect(cmds(t.received.slice(3))).toEqual(['publish', 'pingresp']);
    t.client.destroy();
  });

  it('answers UNSUBSCRIBE with UNSUBACK and hands it over', async () => {
    const t = await pair();
    t.send(CONNECT);
    await until(() => t.calls.length > 0);
    t.session.accept();
    t.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['$dps/registrations/res/#'] });
    await until(() => t.received.length === 2);
    expect(t.received[1]).toMatchObject({ cmd: 'unsuback', messageId: 3 });
    expect(t.calls).toContain('unsubscribe $dps/registrations/res/#');
    t.client.destroy();
  });

  it('closes at a QoS 2 PUBLISH, a packet a client may not send, or a DISCONNECT (that one without an error)', async () => {
    const cases: [Packet, string[]][] = [
      [
        { cmd: 'publish', topic: 'a', payload: Buffer.alloc(0), qos: 2, messageId: 1, retain: false, dup: false },
        ['QoS 2 is not supported'],
      ],
      [{ cmd: 'suback', messageId: 1, granted: [0] }, ['unexpected suback']],
      [{ cmd: 'disconnect' }, []],
    ];
    for (const [packet, errors] of cases) {
      const t = await pair();
      t.send(CONNECT);
      await until(() => t.calls.length > 0);
      t.session.accept();
      t.send(packet);
      await t.closed;
      expect(t.errors).toEqual(errors);
      expect(t.calls).not.toContain('publish a qos 2');
    }
  });

  it('closes a packet over the size limit before it is buffered, and malformed bytes', async () => {
    const big = await pair();
    big.client.write(Buffer.from([0x30, 0xff, 0xff, 0x3f])); // a PUBLISH declaring a body of 1,048,575 bytes
    await big.closed;
    expect(big.errors).toEqual(['MQTT packet refused: a packet of 1048579 bytes exceeds the limit of 4096']);

    const garbage = await pair();
    garbage.client.write(Buffer.from([0x10, 0x02, 0xff, 0xff]));
    await garbage.closed;
    expect(garbage.errors).toHaveLength(1);
    expect(garbage.errors[0]).toMatch(/^malformed MQTT: /);
  });

  it('closes after 1.5 x keep-alive without a packet (§3.1.2.10), not while packets arrive', async () => {
    const t = await pair();
    t.send({ ...(CONNECT as IConnectPacket), keepalive: 1 });
    await until(() => t.calls.length > 0);
    t.session.accept();
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      t.send({ cmd: 'pingreq' });
    }
    expect(t.errors).toEqual([]); // 2 s, kept alive
    await t.closed;
    expect(t.errors).toEqual(['keep-alive timeout']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3400);
  });

  it('hangs up after what was sent has gone out, and runs what waited for it', async () => {
    const t = await pair();
    t.send(CONNECT);
    await until(() => t.calls.length > 0);
    t.session.accept();
    let written = false;
    t.session.send({ cmd: 'pingresp' }, () => {
      written = true;
    });
    t.session.hangUp();
    await t.closed;
    await until(() => t.calls.includes('closed'));
    expect(written).toBe(true);
    expect(cmds(t.received)).toEqual(['connack', 'pingresp']);
    expect(t.session.closed).toBe(true);
  });
});

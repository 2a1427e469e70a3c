// The emulator under load and abuse: many devices provisioning concurrently through one emulator
// (our core over hosts/node's TLS connect, a concurrency limiter, retry-after 0), while hostile
// clients hammer the same port. Shared by test/emulator-load.test.ts (a few hundred devices) and
// bench/emulator-load.js (1000 and more, with figures).
//
// Hostile clients, all on loopback, all bounded in number and time:
//   bad CONNECTs    a stream of CONNECTs with a wrong password, each must get CONNACK 5
//   garbage         TLS, then bytes that are no MQTT packet; and plain-text bytes that are no TLS
//   half-open TLS   TCP connected and a partial ClientHello, then nothing (held to the end)
//   mute            TLS completed, then no CONNECT at all (held to the end)
//   slowloris       a CONNECT sent one byte at a time
//   oversized       after a good CONNECT, a PUBLISH over the packet limit; and a CONNECT
//                   declaring 200 MB
//   slow HTTP       on the service API and on DPS's HTTPS device API: headers, and a body, sent
//                   one byte a second (with the servers' default deadlines: 10 s, 30 s)
//   WebSockets      on the HTTPS port's MQTT over WebSockets: a frame over the limit (closed
//                   1009), a text frame (1003), another subprotocol (400), an upgrade without TLS
import net from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { generate, type Packet, parser } from 'mqtt-packet';
import WebSocket from 'ws';
import { type DpsEmulator, startEmulator } from '../../emulator/index.js';
import { systemClock } from '../../hosts/node/clock.js';
import { createTlsConnect } from '../../hosts/node/tls-connect.js';
import { deriveDeviceKey } from '../../src/identity.js';
import type { ProvisioningEvent } from '../../src/ports.js';
import { provisionDevice } from '../../src/provisioner.js';
import { buildSasToken } from '../../src/sas.js';
import { rawExchange } from './raw-tls.js';
import { serviceToken } from './service-https.js';

export const LOAD_ID_SCOPE = '0ne0000LOAD';
export const LOAD_HUBS = ['hub-1.azure-devices.net', 'hub-2.azure-devices.net', 'hub-3.azure-devices.net'];
const GROUP_KEY = Buffer.alloc(32, 42).toString('base64');
const PACKET_LIMIT = 64 * 1024;

export interface LoadOptions {
  devices: number;
  /** Devices provisioning at once. */
  concurrency: number;
  /** Where the emulator keeps its CA (reused across runs). */
  stateDir: string;
  /** Run the hostile clients alongside (default true). */
  hostile?: boolean;
  /** Bad CONNECTs are sent, this many at a time (default 16), until the devices are done (at most `badConnects`, default 5000). */
  badConnects?: number;
  badConnectConcurrency?: number;
  progress?: (line: string) => void;
}

export interface HostileReport {
  badConnects: { sent: number; refused: number; other: string[] };
  garbage: { sent: number; closed: number };
  plainTextGarbage: { sent: number; closed: number };
  halfOpenTls: { opened: number };
  mute: { opened: number };
  slowloris: { sent: number; refused: number; closed: number };
  oversizedPublish: { sent: number; closed: number; answered: number };
  oversizedConnect: { sent: number; closed: number };
  /** Per server ('service', 'deviceHttps'): answered 408 and closed, within a minute. */
  slowHttpHeaders: Record<'service' | 'deviceHttps', { sent: number; timedOut: number }>;
  slowHttpBody: Record<'service' | 'deviceHttps', { sent: number; timedOut: number }>;
  /** MQTT over WebSockets: closed with the close code or refused with the status it should be. */
  webSocket: Record<'oversized' | 'text' | 'subprotocol' | 'plainText', { sent: number; refused: number }>;
}

export interface LoadReport {
  devices: number;
  concurrency: number;
  wallMs: number;
  assigned: number;
  failures: Array<{ registrationId: string; error: string }>;
  /** Connections beyond one per device: reconnects some fault forced. */
  extraConnections: number;
  /** Registration records in the emulator's model. */
  registrations: number;
  /** Devices found in more than one hub registry, in none, or in another hub than they were told. */
  inSeveralHubs: string[];
  inNoHub: string[];
  wrongHub: string[];
  perHub: Record<string, number>;
  latencyMs: { p50: number; p95: number; max: number };
  cpuMs: { user: number; system: number };
  peakRssMiB: number;
  hostile?: HostileReport;
  /** A device provisioned after the storm, and the emulator closed cleanly. */
  afterwards: { provisioned: boolean; closed: boolean };
}

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const progress = options.progress ?? (() => {});
  const dps = await startEmulator({
    idScope: LOAD_ID_SCOPE,
    stateDir: options.stateDir,
    retryAfterSeconds: 0,
    assignmentDelayMs: 0,
    maxPacketBytes: PACKET_LIMIT,
    config: {
      iotHubs: LOAD_HUBS.map((host) => ({
        connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(host).toString('base64')}`,
      })),
      enrollmentGroups: [{ enrollmentGroupId: 'load', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } } }],
    },
  });
  const connect = createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 30_000 });
  const provision = (registrationId: string, events: ProvisioningEvent[]) =>
    provisionDevice(
      {
        idScope: LOAD_ID_SCOPE,
        registrationId,
        groupKey: GROUP_KEY,
        endpoint: dps.endpoint,
        timeoutMs: 120_000,
        responseTimeoutMs: 30_000,
        backoff: { minMs: 100, maxMs: 2000, jitterMs: 100 },
      },
      { connect, clock: systemClock, log: (event) => events.push(event) },
    );

  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  const cpu = process.cpuUsage();
  const started = performance.now();
  let loadDone = false;

  const hostile = options.hostile === false ? undefined : startHostile(dps, options, () => loadDone);

  const ids = Array.from({ length: options.devices }, (_, i) => `load-${String(i).padStart(5, '0')}`);
  const latencies: number[] = [];
  const failures: LoadReport['failures'] = [];
  const told = new Map<string, string>();
  let connections = 0;
  let finished = 0;
  await forEachLimited(ids, options.concurrency, async (registrationId) => {
    const events: ProvisioningEvent[] = [];
    const t0 = performance.now();
    try {
      const { assignment } = await provision(registrationId, events);
      told.set(registrationId, assignment.assignedHub);
      latencies.push(performance.now() - t0);
    } catch (error) {
      failures.push({
        registrationId,
        error: error instanceof Error ? `${(error as { kind?: string }).kind}: ${error.message}` : String(error),
      });
    }
    connections += events.filter((e) => e.type === 'connecting').length;
    if (++finished % 250 === 0) progress(`${finished}/${options.devices} devices done`);
  });
  const wallMs = performance.now() - started;
  const cpuUsed = process.cpuUsage(cpu);
  loadDone = true;
  const hostileReport = await hostile?.finish();
  clearInterval(sampler);

  // Every device in exactly one hub registry, the one it was told.
  const where = new Map<string, string[]>();
  const perHub: Record<string, number> = {};
  for (const hub of LOAD_HUBS) {
    const devices = dps.model.hubDevices(hub);
    perHub[hub] = devices.length;
    for (const device of devices) where.set(device.deviceId, [...(where.get(device.deviceId) ?? []), hub]);
  }
  const registrations = dps.model.registrations().length;

  const afterwards = { provisioned: false, closed: false };
  try {
    const { assignment } = await provision('load-afterwards', []);
    afterwards.provisioned = assignment.deviceId === 'load-afterwards';
  } catch {
    // reported as not provisioned
  }
  afterwards.closed = await Promise.race([dps.close().then(() => true), sleep(15_000).then(() => false)]);

  latencies.sort((a, b) => a - b);
  const pick = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN);
  return {
    devices: options.devices,
    concurrency: options.concurrency,
    wallMs: Math.round(wallMs),
    assigned: told.size,
    failures,
    extraConnections: connections - options.devices,
    registrations,
    inSeveralHubs: ids.filter((id) => (where.get(id)?.length ?? 0) > 1),
    inNoHub: ids.filter((id) => !where.has(id)),
    wrongHub: ids.filter((id) => where.get(id)?.[0] !== undefined && told.get(id) !== where.get(id)![0]),
    perHub,
    latencyMs: { p50: pick(0.5), p95: pick(0.95), max: Math.round(latencies.at(-1) ?? NaN) },
    cpuMs: { user: Math.round(cpuUsed.user / 1000), system: Math.round(cpuUsed.system / 1000) },
    peakRssMiB: Math.round(peakRss / (1 << 20)),
    ...(hostileReport && { hostile: hostileReport }),
    afterwards,
  };
}

// ---- hostile clients ----

function startHostile(dps: DpsEmulator, options: LoadOptions, loadDone: () => boolean): { finish(): Promise<HostileReport> } {
  const report: HostileReport = {
    badConnects: { sent: 0, refused: 0, other: [] },
    garbage: { sent: 0, closed: 0 },
    plainTextGarbage: { sent: 0, closed: 0 },
    halfOpenTls: { opened: 0 },
    mute: { opened: 0 },
    slowloris: { sent: 0, refused: 0, closed: 0 },
    oversizedPublish: { sent: 0, closed: 0, answered: 0 },
    oversizedConnect: { sent: 0, closed: 0 },
    slowHttpHeaders: { service: { sent: 0, timedOut: 0 }, deviceHttps: { sent: 0, timedOut: 0 } },
    slowHttpBody: { service: { sent: 0, timedOut: 0 }, deviceHttps: { sent: 0, timedOut: 0 } },
    webSocket: {
      oversized: { sent: 0, refused: 0 },
      text: { sent: 0, refused: 0 },
      subprotocol: { sent: 0, refused: 0 },
      plainText: { sent: 0, refused: 0 },
    },
  };
  const held: net.Socket[] = [];
  const port = dps.endpoint.port;
  const tasks: Promise<unknown>[] = [];

  // A stream of bad CONNECTs for as long as the devices provision (bounded).
  const badTotal = options.badConnects ?? 5000;
  let badIndex = 0;
  const badWorker = async (): Promise<void> => {
    while (badIndex < badTotal && !loadDone()) {
      const i = badIndex++;
      report.badConnects.sent++;
      try {
        const client = await RawClient.open(port, dps.caPem);
        client.send(connectPacket(`hostile-bad-${i}`, 'SharedAccessSignature sr=nope&sig=bad&se=1&skn=registration'));
        const packet = await client.next(10_000);
        if (packet?.cmd === 'connack' && packet.returnCode === 5) report.badConnects.refused++;
        else report.badConnects.other.push(packet ? packet.cmd : 'no answer');
        client.destroy();
      } catch (error) {
        report.badConnects.other.push(String(error));
      }
    }
  };
  for (let w = 0; w < (options.badConnectConcurrency ?? 16); w++) tasks.push(badWorker());

  // Garbage after TLS, and bytes that are not TLS at all.
  for (let i = 0; i < 10; i++) {
    tasks.push(
      (async () => {
        const client = await RawClient.open(port, dps.caPem);
        report.garbage.sent++;
        client.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x13, 0x37]));
        if (await client.closedWithin(15_000)) report.garbage.closed++;
      })(),
      (async () => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((resolve) => socket.once('connect', resolve));
        report.plainTextGarbage.sent++;
        socket.write('GET / HTTP/1.1\r\nHost: dps\r\n\r\n');
        if (await closedWithin(socket, 15_000)) report.plainTextGarbage.closed++;
      })(),
    );
  }

  // Half-open TLS (a partial ClientHello), and TLS with no CONNECT: held until the end.
  for (let i = 0; i < 20; i++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.once('connect', () => {
      socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]));
      report.halfOpenTls.opened++;
    });
    held.push(socket);
    tasks.push(
      RawClient.open(port, dps.caPem).then((client) => {
        report.mute.opened++;
        held.push(client.socket);
      }),
    );
  }

  // Slowloris: a CONNECT (wrong password) one byte every 10 ms.
  for (let i = 0; i < 10; i++) {
    tasks.push(
      (async () => {
        const client = await RawClient.open(port, dps.caPem);
        report.slowloris.sent++;
        const bytes = generate(connectPacket(`hostile-slow-${i}`, 'SharedAccessSignature sr=x&sig=y&se=1&skn=registration'));
        for (const byte of bytes) {
          if (client.socket.destroyed) break;
          client.socket.write(Buffer.from([byte]));
          await sleep(10);
        }
        const packet = await client.next(15_000);
        if (packet?.cmd === 'connack' && packet.returnCode === 5) report.slowloris.refused++;
        if (await client.closedWithin(15_000)) report.slowloris.closed++;
      })(),
    );
  }

  // Slow HTTP clients (slowloris and a trickled body), one byte a second, on both HTTPS servers.
  const servers = { service: dps.service.endpoint.port, deviceHttps: dps.httpsEndpoint.port } as const;
  for (const [name, httpPort] of Object.entries(servers) as ['service' | 'deviceHttps', number][]) {
    for (let i = 0; i < 5; i++) {
      const slow = async (which: 'slowHttpHeaders' | 'slowHttpBody', head: string): Promise<void> => {
        report[which][name].sent++;
        const answer = await rawExchange(httpPort, dps.caPem, head, { trickle: 'x', everyMs: 1000, waitMs: 60_000 });
        if (/^HTTP\/1\.1 408 /.test(answer.text)) report[which][name].timedOut++;
      };
      tasks.push(
        slow('slowHttpHeaders', `GET /slow-${i} HTTP/1.1\r\nHost: x\r\nX-Slow: `),
        // Signed, so that the service API reads the body rather than answering 401 at once.
        slow(
          'slowHttpBody',
          `PUT /enrollmentGroups/slow-${i}?api-version=2021-10-01 HTTP/1.1\r\nHost: x\r\nAuthorization: ${serviceToken(dps)}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
        ),
      );
    }
  }

  // MQTT over WebSockets on DPS's HTTPS port: each abuser refused, as websocket.ts says.
  const wss = `wss://127.0.0.1:${dps.httpsEndpoint.port}/$iothub/websocket`;
  const webSocketAbuse = (which: keyof HostileReport['webSocket'], run: () => Promise<boolean>) =>
    tasks.push(
      (async () => {
        report.webSocket[which].sent++;
        if (await run().catch(() => false)) report.webSocket[which].refused++;
      })(),
    );
  /** Opens a WebSocket; resolves with its close code after `then` ran, or with the HTTP status refusing it. */
  const openWs = (protocol: string, then: (socket: WebSocket) => void) =>
    new Promise<{ code?: number; status?: number }>((resolve, reject) => {
      const socket = new WebSocket(wss, protocol, { ca: dps.caPem });
      socket.on('unexpected-response', (_request, response) => resolve({ status: response.statusCode ?? 0 }));
      socket.on('open', () => then(socket));
      socket.on('close', (code) => resolve({ code }));
      socket.on('error', () => {});
      setTimeout(() => reject(new Error('no answer within 15 s')), 15_000).unref();
    });
  for (let i = 0; i < 5; i++) {
    webSocketAbuse('oversized', async () => (await openWs('mqtt', (ws) => ws.send(Buffer.alloc(400 * 1024)))).code === 1009);
    webSocketAbuse('text', async () => (await openWs('mqtt', (ws) => ws.send('{"hello":1}'))).code === 1003);
    webSocketAbuse('subprotocol', async () => (await openWs('wamp', () => {})).status === 400);
    webSocketAbuse('plainText', async () => {
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        const socket = net.connect(dps.httpsEndpoint.port, '127.0.0.1', () =>
          socket.write('GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
        );
        socket.on('data', (chunk) => (text += chunk.toString('latin1')));
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
        setTimeout(() => socket.destroy(), 15_000).unref();
      });
      return !answer.includes(' 101 ');
    });
  }

  // Oversized: a PUBLISH over the limit after a good CONNECT, and a CONNECT declaring 200 MB.
  for (let i = 0; i < 10; i++) {
    tasks.push(
      (async () => {
        const id = `hostile-big-${i}`;
        const client = await RawClient.open(port, dps.caPem);
        client.send(connectPacket(id, sasFor(id)));
        const connack = await client.next(15_000);
        if (connack?.cmd !== 'connack' || connack.returnCode !== 0) return;
        client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
        report.oversizedPublish.sent++;
        const body = JSON.stringify({ registrationId: id, payload: 'x'.repeat(PACKET_LIMIT * 2) });
        client.send({
          cmd: 'publish',
          topic: '$dps/registrations/PUT/iotdps-register/?$rid=big',
          payload: Buffer.from(body),
          qos: 0,
          retain: false,
          dup: false,
        });
        if (await client.closedWithin(15_000)) report.oversizedPublish.closed++;
        if (client.received.some((p) => p.cmd === 'publish')) report.oversizedPublish.answered++;
      })(),
      (async () => {
        const client = await RawClient.open(port, dps.caPem);
        report.oversizedConnect.sent++;
        client.socket.write(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x64, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54]));
        if (await client.closedWithin(15_000)) report.oversizedConnect.closed++;
      })(),
    );
  }

  return {
    async finish() {
      await Promise.all(tasks.map((t) => t.catch(() => {})));
      for (const socket of held) socket.destroy();
      return report;
    },
  };
}

function connectPacket(clientId: string, password: string): Packet {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    keepalive: 60,
    clientId,
    username: `${LOAD_ID_SCOPE}/registrations/${clientId}/api-version=2019-03-31`,
    password: Buffer.from(password),
  };
}

function sasFor(registrationId: string): string {
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const key = deriveDeviceKey(GROUP_KEY, registrationId);
  return buildSasToken({ resource: `${LOAD_ID_SCOPE}/registrations/${registrationId}`, key, expiry, keyName: 'registration' });
}

/** A raw MQTT client over TLS: keeps what it receives. */
class RawClient {
  readonly received: Packet[] = [];
  #waiters: Array<() => void> = [];
  readonly #closed: Promise<void>;

  private constructor(readonly socket: TLSSocket) {
    const p = parser({ protocolVersion: 4 });
    p.on('packet', (packet) => {
      this.received.push(packet);
      for (const wake of this.#waiters.splice(0)) wake();
    });
    p.on('error', () => {});
    socket.on('data', (chunk: Buffer) => p.parse(chunk));
    socket.on('error', () => {});
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.#closed.then(() => {
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  static open(port: number, ca: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet));
  }

  /** The next packet, or undefined if the connection closes or `ms` pass first. */
  async next(ms: number): Promise<Packet | undefined> {
    const deadline = Date.now() + ms;
    while (this.received.length === 0 && !this.socket.destroyed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.#waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
    return this.received.shift();
  }

  closedWithin(ms: number): Promise<boolean> {
    return closedWithin(this.socket, ms, this.#closed);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function closedWithin(socket: net.Socket, ms: number, closed?: Promise<void>): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  const whenClosed = closed ?? new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    whenClosed.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => {
    clearTimeout(timer);
    socket.destroy();
  });
}

async function forEachLimited<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

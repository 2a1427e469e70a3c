// MQTT over secure WebSockets (issue 12): the emulator serves `wss://<host>/$iothub/websocket`
// (subprotocol mqtt) for DPS and the hubs on its HTTPS port, and the Node host's WebSocket
// transport provisions and goes online through it, directly or through an HTTP CONNECT proxy
// (HTTPS_PROXY, NO_PROXY). Refusals: another path, another subprotocol, a text frame, a frame
// over the limit, bytes that are not a CONNECT, plain HTTP on the TLS port: each closes that
// connection with its status or close code, and the emulator goes on serving.
import http from 'node:http';
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { connectUsername } from '../emulator/websocket.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { proxyFromEnv } from '../hosts/node/proxy.js';
import { createWebSocketConnect, WEBSOCKET_PORT as NODE_WEBSOCKET_PORT } from '../hosts/node/ws-connect.js';
import { connectHub } from '../src/hub/session.js';
import type { Connect } from '../src/ports.js';
import { provisionDevice } from '../src/provisioner.js';
import { WEBSOCKET_PORT, webSocketConnect } from '../src/ws/client.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { failure } from './support/errors.js';

const ID_SCOPE = '0ne000WSS01';
const HUB = 'hub-ws.azure-devices.net';
const keyOf = (text: string): string => Buffer.from(text.padEnd(32, '.')).toString('base64');
const DEVICE_KEY = keyOf('websocket-device-key');

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-websocket-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${keyOf(HUB)}` }],
      individualEnrollments: ['ws-1', 'ws-2', 'ws-3', 'ws-4'].map((registrationId) => ({
        registrationId,
        iotHubs: [HUB], // a hub linked later does not take them
        attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: keyOf('secondary') } },
        initialTwin: { properties: { desired: { telemetryInterval: 7 } } },
      })),
    },
  });
});

afterAll(async () => {
  await fixture?.close();
});

const wss = () => fixture.dps.httpsEndpoint;

function provision(registrationId: string, connect = createWebSocketConnect({ ca: fixture.dps.caPem, connectTimeoutMs: 5000 })) {
  return provisionDevice(
    { idScope: ID_SCOPE, endpoint: wss(), registrationId, deviceKey: DEVICE_KEY, timeoutMs: 20_000 },
    { connect, clock: systemClock },
  );
}

describe('MQTT over WebSockets, end to end', () => {
  it("the Node host's port for it is the core's (the host does not load the core's client until it connects)", () => {
    expect(NODE_WEBSOCKET_PORT).toBe(WEBSOCKET_PORT);
  });

  it('provisions with DPS, then goes online with its hub (twin, report, telemetry), both over wss on the HTTPS port', async () => {
    const { assignment } = await provision('ws-1');
    expect(assignment).toMatchObject({ assignedHub: HUB, deviceId: 'ws-1' });
    const session = await connectHub(
      { hub: HUB, deviceId: 'ws-1', deviceKey: DEVICE_KEY, endpoint: wss(), requestTimeoutMs: 5000, offlineTimeoutMs: 2000 },
      {
        // The hub's name for SNI, the certificate check and the Host header; the socket goes to 127.0.0.1.
        connect: createWebSocketConnect({ ca: fixture.dps.caPem, servername: HUB, connectTimeoutMs: 5000 }),
        clock: systemClock,
        random: nodeRandom,
      },
    );
    try {
      const twin = await session.getTwin();
      expect(twin.desired).toMatchObject({ telemetryInterval: 7 });
      await session.updateReported({ firmware: 'ws-test' });
      await session.sendTelemetry('{"t":21.5}', { contentType: 'application/json' });
      expect(fixture.dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'ws-1' && m.body === '{"t":21.5}')).toBe(true);
      expect(fixture.dps.hubs.twin(HUB, 'ws-1')?.properties.reported).toMatchObject({ firmware: 'ws-test' });
    } finally {
      session.close();
    }
  });

  it('a TLS server name naming another hub than the username is refused, as on the MQTT port', async () => {
    const other = 'hub-other.azure-devices.net';
    fixture.dps.model.linkHub({ connectionString: `HostName=${other};SharedAccessKeyName=iothubowner;SharedAccessKey=${keyOf(other)}` });
    await provision('ws-2');
    const error = await failure(
      connectHub(
        { hub: HUB, deviceId: 'ws-2', deviceKey: DEVICE_KEY, endpoint: wss(), requestTimeoutMs: 5000, offlineTimeoutMs: 500 },
        {
          connect: createWebSocketConnect({ ca: fixture.dps.caPem, servername: other, connectTimeoutMs: 5000 }),
          clock: systemClock,
          random: nodeRandom,
        },
      ),
    );
    expect(error.kind).toBe('unauthorized');
  });

  it('through an HTTP CONNECT proxy from HTTPS_PROXY; NO_PROXY sends a matching host direct', async () => {
    const proxy = await startConnectProxy();
    try {
      const env = { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` };
      const connect = createWebSocketConnect({ ca: fixture.dps.caPem, connectTimeoutMs: 5000, proxyFor: proxyFromEnv(env) });
      const { assignment } = await provision('ws-3', connect);
      expect(assignment.assignedHub).toBe(HUB);
      expect(proxy.tunnels).toEqual([`127.0.0.1:${wss().port}`]);

      const direct = createWebSocketConnect({
        ca: fixture.dps.caPem,
        connectTimeoutMs: 5000,
        proxyFor: proxyFromEnv({ ...env, NO_PROXY: 'example.com, 127.0.0.1' }),
      });
      await provision('ws-3', direct);
      expect(proxy.tunnels).toHaveLength(1);

      // A proxy that refuses the tunnel: a typed error that says so, at once (no retries: they would not help).
      proxy.refuseWith = 407;
      const error = await failure(provision('ws-4', connect));
      expect(error.kind).toBe('failed');
      expect(error.message).toMatch(/proxy 127\.0\.0\.1:\d+ refused to open a tunnel .*407/);
      expect(proxy.refused).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});

describe('the CLI with --transport mqtt-ws', () => {
  const caFile = () => fixture.dps.caPath;
  const common = (registrationId: string) => [
    '--id-scope',
    ID_SCOPE,
    '--registration-id',
    registrationId,
    '--key',
    DEVICE_KEY,
    '--ca',
    caFile(),
    '--transport',
    'mqtt-ws',
    '--timeout',
    '20',
  ];

  it('register: provisions over wss, through the proxy HTTPS_PROXY names', async () => {
    const proxy = await startConnectProxy();
    try {
      const run = await runCli(['register', ...common('ws-4'), '--endpoint', `127.0.0.1:${wss().port}`, '--json'], {
        HTTPS_PROXY: `127.0.0.1:${proxy.port}`,
      });
      expect(run.code, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ assignedHub: HUB, deviceId: 'ws-4' });
      expect(proxy.tunnels).toEqual([`127.0.0.1:${wss().port}`]);
    } finally {
      await proxy.close();
    }
  });

  it('device: provisioned and online, its hub reached over wss too; a bare host means port 443', async () => {
    const run = await runCli([
      'device',
      ...common('ws-4'),
      '--endpoint',
      `127.0.0.1:${wss().port}`,
      '--hub-endpoint',
      `127.0.0.1:${wss().port}`,
      '--msg-count',
      '1',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(new RegExp(`hub: connected|connected to .*127\\.0\\.0\\.1:${wss().port}`));
    expect(fixture.dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'ws-4')).toBe(true);

    // Without a port, mqtt-ws means 443: nothing listens there in this test, so the refusal names it.
    const bare = await runCli(['register', ...common('ws-4'), '--endpoint', '127.0.0.1', '--timeout', '2']);
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toContain('127.0.0.1:443');
  });

  it('refuses another transport; with plain MQTT, a set HTTPS_PROXY is named, not silently ignored', async () => {
    const bad = await runCli(['register', ...common('ws-1').slice(0, -4), '--transport', 'amqp']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--transport must be mqtt or mqtt-ws');
    const direct = await runCli(
      ['register', ...common('ws-1').slice(0, -4), '--endpoint', `127.0.0.1:${fixture.dps.endpoint.port}`, '--timeout', '20'],
      { HTTPS_PROXY: 'http://127.0.0.1:9' },
    );
    expect(direct.code, direct.stderr).toBe(0);
    expect(direct.stderr).toContain('warning: HTTPS_PROXY is set, but --transport mqtt connects directly');
  });
});

describe('what the WebSocket endpoint refuses, and goes on serving', () => {
  const url = () => `wss://127.0.0.1:${wss().port}/$iothub/websocket`;
  const open = (target: string, protocol: string | undefined): Promise<{ status?: number; socket?: WebSocket }> =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(target, protocol, { ca: fixture.dps.caPem });
      socket.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode! }));
      socket.on('open', () => resolve({ socket }));
      socket.on('error', reject);
    });
  const closed = (socket: WebSocket): Promise<number> => new Promise((resolve) => socket.on('close', (code) => resolve(code)));

  it('another path: 404; no mqtt subprotocol: 400', async () => {
    expect(await open(`wss://127.0.0.1:${wss().port}/mqtt`, 'mqtt')).toEqual({ status: 404 });
    expect(await open(url(), 'wamp')).toEqual({ status: 400 });
    expect(await open(url(), undefined)).toEqual({ status: 400 });
  });

  it('a text frame, a frame over the limit, a first packet that is not a CONNECT: the connection is closed', async () => {
    const text = (await open(url(), 'mqtt')).socket!;
    const textClosed = closed(text);
    text.send('hello');
    expect(await textClosed).toBe(1003);

    const big = (await open(url(), 'mqtt')).socket!;
    const bigClosed = closed(big);
    big.send(Buffer.alloc(400 * 1024));
    expect(await bigClosed).toBe(1009);

    const notConnect = (await open(url(), 'mqtt')).socket!;
    const notConnectClosed = closed(notConnect);
    notConnect.send(Buffer.from([0xc0, 0x00])); // PINGREQ before CONNECT
    expect(await notConnectClosed).toBeGreaterThanOrEqual(1000);
  });

  it('plain HTTP on the TLS port is not answered as WebSockets; the emulator still provisions afterwards', async () => {
    const reply = await new Promise<string>((resolve) => {
      const socket = net.connect(wss().port, '127.0.0.1', () => {
        socket.write('GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      });
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk.toString('latin1');
      });
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
    });
    expect(reply).not.toContain('101 Switching Protocols');
    const { assignment } = await provision('ws-1');
    expect(assignment.assignedHub).toBe(HUB);
  });
});

describe('connectUsername (the router reads the first packet: MQTT 3.1.1 §3.1)', () => {
  it('finds the username of a CONNECT (mqtt-packet encodes it), with and without a will, in any split', () => {
    const username = `${ID_SCOPE}/registrations/dev/api-version=2019-03-31`;
    const connect = (extra: object) =>
      new Uint8Array(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: 'dev',
          keepalive: 60,
          clean: true,
          ...extra,
        }),
      );
    const packet = connect({ username, password: Buffer.from('sig') });
    expect(connectUsername(packet)).toEqual({ username });
    for (let cut = 0; cut < packet.length; cut++) expect(connectUsername(packet.subarray(0, cut))).toBe('incomplete');
    const withWill = connect({ username, will: { topic: 'last/words', payload: Buffer.from('gone'), qos: 0, retain: false } });
    expect(connectUsername(withWill)).toEqual({ username });
    expect(connectUsername(connect({}))).toEqual({ username: undefined });
  });

  it('refuses what is not a CONNECT or lies about its lengths', () => {
    expect(connectUsername(Uint8Array.of(0xc0, 0))).toBe('invalid');
    expect(connectUsername(Uint8Array.of(0x10, 0xff, 0xff, 0xff, 0xff, 0x7f))).toBe('invalid');
    expect(connectUsername(Uint8Array.of(0x10, 3, 0, 9, 0))).toBe('invalid');
  });
});

describe('proxyFromEnv (curl’s HTTPS_PROXY and NO_PROXY)', () => {
  const hub = 'wss://hub.azure-devices.net:443/$iothub/websocket';
  it('uses HTTPS_PROXY, then https_proxy and ALL_PROXY; a bare host:port is http', () => {
    expect(proxyFromEnv({})(hub)).toBeUndefined();
    expect(proxyFromEnv({ HTTPS_PROXY: 'proxy:3128' })(hub)).toBe('http://proxy:3128');
    expect(proxyFromEnv({ https_proxy: 'http://p:8080' })(hub)).toBe('http://p:8080');
    expect(proxyFromEnv({ ALL_PROXY: 'http://all:1' })(hub)).toBe('http://all:1');
  });
  it('NO_PROXY: *, a domain and its subdomains (with or without a dot), an address, a port', () => {
    const p = (noProxy: string, url = hub) => proxyFromEnv({ HTTPS_PROXY: 'http://p:1', NO_PROXY: noProxy })(url);
    expect(p('*')).toBeUndefined();
    expect(p('azure-devices.net')).toBeUndefined();
    expect(p('.azure-devices.net')).toBeUndefined();
    expect(p('devices.net')).toBe('http://p:1'); // a name, not a string suffix
    expect(p('hub.azure-devices.net:443')).toBeUndefined();
    expect(p('hub.azure-devices.net:8443')).toBe('http://p:1');
    expect(p('127.0.0.1', 'wss://127.0.0.1:8444/x')).toBeUndefined();
    expect(p('::1', 'wss://[::1]:8444/x')).toBeUndefined();
    expect(p('[::1]:8444', 'wss://[::1]:8444/x')).toBeUndefined();
  });
});

/** A loopback HTTP proxy that opens CONNECT tunnels (or refuses them with `refuseWith`) and records their targets. */
async function startConnectProxy() {
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  const sockets = new Set<net.Socket>();
  const state = { tunnels: [] as string[], refuseWith: 0, refused: 0 };
  server.on('connect', (req, client: net.Socket, head: Buffer) => {
    sockets.add(client);
    if (state.refuseWith) {
      state.refused++;
      client.end(`HTTP/1.1 ${state.refuseWith} Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    state.tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(/:(?=\d+$)/);
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  });
}

describe("the core's WebSocket client (src/ws/client.ts) against a scripted ws server", () => {
  /** A plain TCP Connect port: the WebSocket layer does not care what is under it. */
  const tcp: Connect = (endpoint, handlers) =>
    new Promise((resolve, reject) => {
      const socket = net.connect(endpoint.port, endpoint.host, () => {
        socket.off('error', reject);
        socket.on('error', () => {});
        resolve({ write: (data) => socket.write(data), close: () => socket.end() });
      });
      socket.on('error', reject);
      socket.on('data', (chunk) => handlers.onData(new Uint8Array(chunk)));
      socket.on('close', () => handlers.onClose());
    });

  async function scripted(script: (ws: WebSocket) => void) {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'mqtt' });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    server.on('connection', script);
    const received: Uint8Array[] = [];
    let closed: ((error?: Error) => void) | undefined;
    const ended = new Promise<Error | undefined>((resolve) => (closed = resolve));
    const connection = await webSocketConnect(tcp, { random: Math.random })(
      { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
      { onData: (data) => received.push(data), onClose: (error) => closed!(error) },
    );
    return { server, connection, received, ended };
  }

  it('answers a ping with its payload, passes binary bytes on, and sends a turn of writes as one frame', async () => {
    const frames: Buffer[] = [];
    let pong: Buffer | undefined;
    const { server, connection, received } = await scripted((ws) => {
      ws.on('pong', (data) => (pong = data));
      ws.on('message', (data: Buffer) => frames.push(data));
      ws.ping(Buffer.from('are you there'));
      ws.send(Buffer.from([1, 2, 3]));
    });
    try {
      connection.write(Uint8Array.of(0x10, 1));
      connection.write(Uint8Array.of(0x20, 2));
      await vi.waitFor(() => expect(frames).toHaveLength(1));
      expect(frames[0]).toEqual(Buffer.from([0x10, 1, 0x20, 2]));
      await vi.waitFor(() => expect(pong?.toString()).toBe('are you there'));
      expect(Buffer.concat(received)).toEqual(Buffer.from([1, 2, 3]));
    } finally {
      connection.close();
      server.close();
    }
  });

  it('a close with 1000 ends quietly; with another code, as a network error naming it; a text frame, as a protocol error', async () => {
    for (const [script, expected] of [
      [(ws: WebSocket) => ws.close(1000), undefined],
      [(ws: WebSocket) => ws.close(4000, 'maintenance'), /closed the WebSocket \(4000: maintenance\)/],
      [(ws: WebSocket) => ws.send('text'), /text WebSocket message/],
    ] as const) {
      const { server, ended } = await scripted(script);
      const error = await ended;
      if (expected === undefined) expect(error).toBeUndefined();
      else expect(error?.message).toMatch(expected);
      server.close();
    }
  });
});

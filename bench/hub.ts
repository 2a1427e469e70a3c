// The hub session's figures (issue "online"), ours and Microsoft's device clients side by side
// against the emulator in a process of its own (bench/emulator-process.ts):
//
//   (h1) boot to "twin received" over a delaying link: a proxy holds every chunk DELAY_MS each way
//        (a round trip of 2 × DELAY_MS, on top of loopback), in front of both DPS and the hub.
//        Rounds = time / round trip. The floor is 5: DPS's 3 (TLS 1.3, CONNECT + SUBSCRIBE +
//        register pipelined, one poll, with retry-after 0) and the hub's 2 (TLS 1.3, CONNECT +
//        SUBSCRIBEs + twin GET pipelined). Ours: goOnline. Microsoft's: azure-iot-provisioning-device
//        with -mqtt, then azure-iot-device with -mqtt (Client.open, getTwin).
//        Ours over MQTT over WebSockets too (mqtt-ws: DPS and hub on the emulator's HTTPS port), whose
//        floor is 7: each service waits one round trip more, for the 101 to the upgrade (RFC 6455 §4.1).
//   (h2) CPU per telemetry message: this process's CPU time over N awaited QoS 1 sends, on loopback
//        without delay; and the emulator's CPU for them. Ours over WebSockets too.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { createWebSocketConnect } from '../hosts/node/ws-connect.js';
import { goOnline } from '../src/device.js';
import type { HubSession } from '../src/hub/session.js';
import { BENCH_GROUP_KEY, BENCH_ID_SCOPE, median, type Target, uniquePrefix } from './common.js';
import { loadMicrosoftClient, microsoftDeriveKey, provisionWithMicrosoft } from './microsoft.js';

const DELAY_MS = 20;
const require = createRequire(import.meta.url);

interface Options {
  emulatorFile: string;
  stateDir: string;
  quick: boolean;
}

export async function run(options: Options): Promise<Record<string, unknown>> {
  const reps = options.quick ? 2 : 5;
  const messages = options.quick ? 300 : 2000;
  const emulator = await startEmulator(options.emulatorFile, options.stateDir);
  const dpsProxy = await delayingProxy(emulator.port, DELAY_MS);
  const hubProxy = await delayingProxy(emulator.hubPort, DELAY_MS);
  const wssProxy = await delayingProxy(emulator.httpsPort, DELAY_MS);
  const prefix = uniquePrefix('hub');
  const results: Record<string, unknown> = { delayMs: DELAY_MS, roundTripMs: 2 * DELAY_MS };
  try {
    const rtt = 2 * DELAY_MS;
    console.log(`(h1) boot to "twin received", over a link holding each chunk ${DELAY_MS} ms each way (round trip ${rtt} ms + loopback)`);
    loadMicrosoftClient();
    const ours: number[] = [];
    const oursWs: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < reps; i++) {
      ours.push(await oursOnline(emulator.target, dpsProxy.port, hubProxy.port, `${prefix}o${i}`));
      oursWs.push(await oursOnline(emulator.target, wssProxy.port, wssProxy.port, `${prefix}w${i}`, 'mqtt-ws'));
      theirs.push(await microsoftOnline(emulator.target, dpsProxy.port, hubProxy.port, `${prefix}m${i}`));
    }
    const row = (label: string, samples: number[]) =>
      console.log(
        `  ${label.padEnd(44)}${median(samples).toFixed(0).padStart(6)} ms  ${(median(samples) / rtt).toFixed(1).padStart(5)} round trips`,
      );
    row('ours (goOnline)', ours);
    row("Microsoft's (provisioning + device client)", theirs);
    console.log(`  floor${' '.repeat(39)}${String(5 * rtt).padStart(6)} ms    5.0 round trips (DPS 3 + hub 2, TLS 1.3, pipelined)`);
    row('ours over WebSockets (mqtt-ws, one port)', oursWs);
    console.log(
      `  floor over WebSockets${' '.repeat(23)}${String(7 * rtt).padStart(6)} ms    7.0 round trips (each service + 1: the upgrade's 101)`,
    );
    results.bootToTwin = { oursMs: median(ours), oursWebSocketMs: median(oursWs), microsoftMs: median(theirs), floorMs: 5 * rtt, reps };

    console.log(`(h2) CPU per telemetry message (QoS 1, awaited one by one, ${messages} messages, loopback)`);
    const direct = { ...emulator.target, port: emulator.port };
    const wssTarget = { ...emulator.target, port: emulator.httpsPort };
    // Two rounds in the same order; the second is reported: the first one measured in a fresh
    // emulator paid for its warm-up (its emulator figure was about twice the second's).
    const round = async (r: number) => ({
      ours: await oursTelemetry(direct, emulator.hubPort, `${prefix}ot${r}`, messages, emulator.cpu),
      microsoft: await microsoftTelemetry(direct, emulator.hubPort, `${prefix}mt${r}`, messages, emulator.cpu),
      oursWebSocket: await oursTelemetry(wssTarget, emulator.httpsPort, `${prefix}wt${r}`, messages, emulator.cpu, 'mqtt-ws'),
    });
    await round(0);
    const warm = await round(1);
    const cpuRow = (label: string, f: { clientUs: number; emulatorUs: number; wallMs: number }) =>
      console.log(
        `  ${label.padEnd(44)}${f.clientUs.toFixed(0).padStart(6)} µs client  ${f.emulatorUs.toFixed(0).padStart(5)} µs emulator  ${((messages / f.wallMs) * 1000).toFixed(0).padStart(6)} msg/s`,
      );
    cpuRow('ours (HubSession.sendTelemetry)', warm.ours);
    cpuRow("Microsoft's (Client.sendEvent)", warm.microsoft);
    cpuRow('ours over WebSockets (mqtt-ws)', warm.oursWebSocket);
    results.telemetry = { messages, ...warm };
  } finally {
    dpsProxy.close();
    hubProxy.close();
    wssProxy.close();
    await emulator.close();
  }
  return results;
}

type Transport = 'mqtt' | 'mqtt-ws';
const connectFor = (target: Target, transport: Transport) =>
  transport === 'mqtt-ws' ? createWebSocketConnect({ ca: target.caPem }) : createTlsConnect({ ca: target.caPem });

async function oursOnline(
  target: Target,
  dpsPort: number,
  hubPort: number,
  registrationId: string,
  transport: Transport = 'mqtt',
): Promise<number> {
  const started = performance.now();
  const online = await goOnline(
    {
      idScope: BENCH_ID_SCOPE,
      registrationId,
      groupKey: BENCH_GROUP_KEY,
      endpoint: { host: '127.0.0.1', port: dpsPort },
      hubEndpoint: { host: '127.0.0.1', port: hubPort },
      timeoutMs: 30_000,
    },
    { connect: connectFor(target, transport), clock: systemClock },
  );
  const ms = performance.now() - started;
  if (online.session.twin.desired.telemetryInterval !== 60) throw new Error('ours: no initial twin');
  online.session.close();
  return ms;
}

async function microsoftOnline(target: Target, dpsPort: number, hubPort: number, registrationId: string): Promise<number> {
  const started = performance.now();
  const { assignedHub, deviceId } = await provisionWithMicrosoft({ ...target, port: dpsPort }, registrationId, BENCH_GROUP_KEY);
  const client = await openMicrosoftClient(target, hubPort, assignedHub, deviceId, microsoftDeriveKey(BENCH_GROUP_KEY, registrationId));
  const twin = (await client.getTwin()) as { properties: { desired: { telemetryInterval?: number } } };
  const ms = performance.now() - started;
  if (twin.properties.desired.telemetryInterval !== 60) throw new Error("Microsoft's: no initial twin");
  await client.close();
  return ms;
}

async function oursTelemetry(
  target: Target,
  hubPort: number,
  registrationId: string,
  count: number,
  emulatorCpu: () => Promise<number>,
  transport: Transport = 'mqtt',
) {
  const online = await goOnline(
    {
      idScope: BENCH_ID_SCOPE,
      registrationId,
      groupKey: BENCH_GROUP_KEY,
      endpoint: { host: '127.0.0.1', port: target.port },
      hubEndpoint: { host: '127.0.0.1', port: hubPort },
      timeoutMs: 30_000,
    },
    { connect: connectFor(target, transport), clock: systemClock },
  );
  return measure(
    count,
    emulatorCpu,
    (i) => (online.session as HubSession).sendTelemetry(JSON.stringify({ seq: i, temperature: 21.5 })),
    () => online.session.close(),
  );
}

async function microsoftTelemetry(
  target: Target,
  hubPort: number,
  registrationId: string,
  count: number,
  emulatorCpu: () => Promise<number>,
) {
  const { assignedHub, deviceId } = await provisionWithMicrosoft(target, registrationId, BENCH_GROUP_KEY);
  const client = await openMicrosoftClient(target, hubPort, assignedHub, deviceId, microsoftDeriveKey(BENCH_GROUP_KEY, registrationId));
  const { Message } = require('azure-iot-device') as typeof import('azure-iot-device');
  return measure(
    count,
    emulatorCpu,
    (i) => client.sendEvent(new Message(JSON.stringify({ seq: i, temperature: 21.5 }))).then(() => undefined),
    () => void client.close(),
  );
}

async function measure(count: number, emulatorCpu: () => Promise<number>, send: (i: number) => Promise<void>, close: () => void) {
  for (let i = 0; i < 20; i++) await send(i); // warm up
  const emulatorBefore = await emulatorCpu();
  const before = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < count; i++) await send(i);
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(before);
  const emulatorUs = ((await emulatorCpu()) - emulatorBefore) * 1000;
  close();
  return { clientUs: (used.user + used.system) / count, emulatorUs: emulatorUs / count, wallMs };
}

/** azure-iot-device over MQTT, its socket sent to the emulator's hub port (GatewayHostName: see test/emulator-iothub-sdk.test.ts). */
async function openMicrosoftClient(target: Target, hubPort: number, hub: string, deviceId: string, key: string) {
  const { Client } = require('azure-iot-device') as typeof import('azure-iot-device');
  const { Mqtt } = require('azure-iot-device-mqtt') as typeof import('azure-iot-device-mqtt');
  const client = Client.fromConnectionString(
    `HostName=${hub};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=127.0.0.1:${hubPort}`,
    Mqtt,
  );
  await client.setOptions({ ca: target.caPem });
  await client.open();
  return client;
}

/** A TCP forwarder that holds every chunk `delayMs` in each direction (order kept: one delay for all). */
function delayingProxy(targetPort: number, delayMs: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(targetPort, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), delayMs));
      from.on('end', () => setTimeout(() => to.end(), delayMs));
    };
    pipe(inbound, outbound);
    pipe(outbound, inbound);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => {
          for (const socket of sockets) socket.destroy();
          server.close();
        },
      }),
    ),
  );
}

async function startEmulator(file: string, stateDir: string) {
  const proc = fork(file, [JSON.stringify({ stateDir, retryAfterSeconds: 0 })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<{ port: number; hubPort: number; httpsPort: number; caPem: string; caPath: string }>(
    (resolve, reject) => {
      proc.once('message', (message) => resolve(message as never));
      proc.once('exit', (code) => reject(new Error(`the emulator exited with ${code}`)));
    },
  );
  return {
    port: ready.port,
    hubPort: ready.hubPort,
    httpsPort: ready.httpsPort,
    target: { host: '127.0.0.1', port: ready.port, caPem: ready.caPem, caPath: ready.caPath } as Target,
    cpu: () =>
      new Promise<number>((resolve) => {
        proc.once('message', (message) =>
          resolve(((message as { user: number; system: number }).user + (message as { system: number }).system) / 1000),
        );
        proc.send('cpu');
      }),
    close: () =>
      new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.send('close');
      }),
  };
}

// `moddable-dps fleet` against the emulator (retry-after 0), its engine with a scripted
// provisioning, and the TLS session resumption it uses by default.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetSummary } from '../cli/fleet/run.js';
import { fleetRegistrationId, percentile, runFleet, summarizeLatencies } from '../cli/fleet/run.js';
import { EXIT_CODES } from '../cli/shared/io.js';
import type { DpsEmulator } from '../emulator/index.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { ProvisioningError } from '../src/errors.js';
import type { Connection } from '../src/ports.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000FLEET';
const GROUP_KEY = Buffer.from('fleet-test-group-key-0123456789abcdefghij').toString('base64');
const HUB = 'fleet-hub.azure-devices.net';

let dps: DpsEmulator;
let dir: string;

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-fleet-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${GROUP_KEY}` }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'fleet-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
        },
      ],
    },
  });
  ({ dps, dir } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

const run = (args: string[], tty = false) => runCli(args, {}, { stderrIsTTY: tty, columns: 120 });

const fleetArgs = (prefix: string, count: number, concurrency: number) => [
  'fleet',
  '--id-scope',
  ID_SCOPE,
  '--group-key',
  GROUP_KEY,
  '--endpoint',
  `${dps.endpoint.host}:${dps.endpoint.port}`,
  '--ca',
  dps.caPath,
  '--prefix',
  prefix,
  '--count',
  String(count),
  '--concurrency',
  String(concurrency),
  '--timeout',
  '15',
];

/** What `fleet --json` prints: the run's summary, and whether TLS sessions were resumed. */
type Summary = FleetSummary & { tlsSessionResumption: boolean };

function expectConsistent(s: Summary): void {
  expect(s.succeeded + s.failed).toBe(s.count);
  expect(Object.values(s.failedByKind).reduce((a, b) => a + b, 0)).toBe(s.failed);
  expect(Object.keys(s.firstError).sort()).toEqual(Object.keys(s.failedByKind).sort());
  expect(s.throughputPerSecond).toBeCloseTo((s.succeeded * 1000) / s.wallTimeMs, 1);
  if (s.latencyMs) {
    const { min, p50, p95, p99, max, mean } = s.latencyMs;
    expect(min).toBeLessThanOrEqual(p50);
    expect(p50).toBeLessThanOrEqual(p95);
    expect(p95).toBeLessThanOrEqual(p99);
    expect(p99).toBeLessThanOrEqual(max);
    expect(mean).toBeGreaterThanOrEqual(min);
    expect(mean).toBeLessThanOrEqual(max);
    expect(max).toBeLessThanOrEqual(s.wallTimeMs);
  }
}

describe('moddable-dps fleet against the emulator', () => {
  it('assigns 50 devices at concurrency 10, each once, and prints a consistent JSON summary', async () => {
    const r = await run([...fleetArgs('fleet-a-', 50, 10), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Summary & Record<string, unknown>;
    expect(Object.keys(s).sort()).toEqual([
      'concurrency',
      'count',
      'cpuMs',
      'endpoint',
      'failed',
      'failedByKind',
      'firstError',
      'firstRegistrationId',
      'idScope',
      'lastRegistrationId',
      'latencyMs',
      'succeeded',
      'throughputPerSecond',
      'tlsSessionResumption',
      'wallTimeMs',
    ]);
    expect(s).toMatchObject({
      idScope: ID_SCOPE,
      endpoint: `${dps.endpoint.host}:${dps.endpoint.port}`,
      count: 50,
      concurrency: 10,
      succeeded: 50,
      failed: 0,
      failedByKind: {},
      firstRegistrationId: 'fleet-a-00',
      lastRegistrationId: 'fleet-a-49',
      tlsSessionResumption: true,
    });
    expectConsistent(s);
    expect(s.latencyMs).not.toBeNull();
    expect(s.cpuMs.perDevice).toBeGreaterThan(0);
    for (let i = 0; i < 50; i++) {
      const id = `fleet-a-${String(i).padStart(2, '0')}`;
      expect(dps.model.registration(id)?.state.assignedHub, id).toBe(HUB);
    }
    expect(dps.model.registration('fleet-a-50')).toBeUndefined();
    expect(r.stderr).toContain('fleet: 50/50 done (50 assigned, 0 failed)');
    for (const line of r.stderr.trim().split('\n')) {
      expect(line).toMatch(/^fleet: \d+\/50 done/);
      expect(Number(/(\d+) in flight/.exec(line)![1])).toBeLessThanOrEqual(10);
    }
    expect(r.stdout + r.stderr).not.toContain(GROUP_KEY);
  });

  it('counts failures by kind, and exits with the status of the most frequent one', async () => {
    dps.faults.push({ on: 'register', action: { type: 'status', status: 401 }, times: 5 });
    dps.faults.push({ on: 'register', action: { type: 'status', status: 400 }, times: 3 });
    const r = await run([...fleetArgs('fleet-b-', 20, 4), '--json', '--quiet']);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s).toMatchObject({ count: 20, succeeded: 12, failed: 8, failedByKind: { unauthorized: 5, failed: 3 } });
    expectConsistent(s);
    expect(s.firstError.unauthorized).toMatch(/401/);
    expect(r.code).toBe(EXIT_CODES.unauthorized);
    expect(r.stderr).toBe('');
    expect(dps.faults.pending()).toEqual([]);
  });

  it('reports a wrong group key as unauthorized for every device, in a human summary', async () => {
    const wrongKey = Buffer.from('not-the-fleet-group-key-0123456789').toString('base64');
    const args = fleetArgs('fleet-c-', 6, 3);
    args[args.indexOf('--group-key') + 1] = wrongKey;
    const r = await run([...args, '--full-handshakes']);
    expect(r.code).toBe(EXIT_CODES.unauthorized);
    expect(r.stdout).toMatch(/^fleet: 6 devices \(fleet-c-0 … fleet-c-5\)/);
    expect(r.stdout).toMatch(/assigned {5}0\n/);
    expect(r.stdout).toMatch(/failed {7}6\n {4}unauthorized +6 {2}first: /);
    expect(r.stdout).toContain('(no device was assigned)');
    expect(r.stdout + r.stderr).not.toContain(wrongKey);
  });

  it('draws a progress bar in place on a terminal, and nothing with --quiet', async () => {
    const bar = await run(fleetArgs('fleet-d-', 8, 4), true);
    expect(bar.code).toBe(0);
    expect(bar.stderr).toMatch(/^\r\[/);
    expect(bar.stderr).toContain('8/8 done (8 assigned, 0 failed)');
    expect(bar.stderr.endsWith('\x1b[K\n')).toBe(true);
    expect(bar.stderr.split('\n')).toHaveLength(2);
    const quiet = await run([...fleetArgs('fleet-e-', 3, 3), '--quiet'], true);
    expect(quiet).toMatchObject({ code: 0, stderr: '' });
  });

  it('has --help, and refuses bad flags with exit 2 before any traffic, without echoing the key', async () => {
    const help = await run(['fleet', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: moddable-dps fleet/);
    expect((await run(['--help'])).stdout).toMatch(/fleet {16}provision many virtual devices/);
    const before = dps.model.registration('fleet-f-0');
    const bad: string[][] = [
      [...fleetArgs('fleet-f-', 5, 2), '--frobnicate'],
      fleetArgs('fleet-f-', 5, 2).filter((a, i, all) => a !== '--count' && all[i - 1] !== '--count'),
      fleetArgs('fleet-f-', 0, 2),
      fleetArgs('fleet-f-', 5, 0),
      [...fleetArgs('fleet-f-', 5, 2), '--concurrency', 'ten'],
      fleetArgs('Fleet-F-', 5, 2),
      fleetArgs('fleet f ', 5, 2),
      [...fleetArgs('fleet-f-', 5, 2), '--group-key', 'sekrit!!'],
      [...fleetArgs('fleet-f-', 5, 2), 'stray-positional-secret'],
      [...fleetArgs('fleet-f-', 5, 2), '--ca', join(dir, 'missing.pem')],
    ];
    for (const args of bad) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(EXIT_CODES['invalid-input']);
      expect(r.stderr).toMatch(/^error \(invalid-input\): /);
      expect(r.stderr).not.toContain('sekrit');
      expect(r.stderr).not.toContain('stray-positional-secret');
      expect(r.stdout).toBe('');
    }
    expect(dps.model.registration('fleet-f-0')).toBe(before);
  });

  it('says what a flag takes for a negative value (-1 was "ambiguous" to the flag parser)', async () => {
    const timeout = await run([...fleetArgs('fleet-f-', 5, 2), '--timeout', '-1']);
    expect(timeout).toMatchObject({ code: EXIT_CODES['invalid-input'], stdout: '' });
    expect(timeout.stderr).toBe('error (invalid-input): --timeout must be a whole number from 1 to 86400\n');
    const start = await run([...fleetArgs('fleet-f-', 5, 2), '--start', '-5']);
    expect(start.stderr).toMatch(/^error \(invalid-input\): --start must be a whole number from 0 to \d+\n$/);
  });
});

describe('moddable-dps fleet --connect against the emulator', () => {
  const hubEndpoint = () => `${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`;

  it('takes each provisioned device online with its hub: twin received, one message sent, connect figures in the summary', async () => {
    const r = await run([...fleetArgs('fleet-on-', 6, 3), '--connect', '--hub-endpoint', hubEndpoint(), '--msg-count', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Summary & { connect: NonNullable<FleetSummary['connect']> & { messagesPerDevice: number } };
    expectConsistent(s);
    expect(s).toMatchObject({ succeeded: 6, failed: 0 });
    expect(s.connect).toMatchObject({ connected: 6, failed: 0, failedByKind: {}, firstError: {}, messagesPerDevice: 1 });
    const { min, p50, p95, p99, max } = s.connect.latencyMs!;
    expect(min).toBeGreaterThan(0);
    expect([min, p50, p95, p99, max]).toEqual([...[min, p50, p95, p99, max]].sort((a, b) => a - b));
    expect(max).toBeLessThanOrEqual(s.wallTimeMs);
    // What the hub saw: each device connected and sent its one message, JSON as the device CLI sends it
    const sent = dps.hubs.telemetry(HUB).filter((m) => m.deviceId.startsWith('fleet-on-'));
    expect(sent.map((m) => m.deviceId).sort()).toEqual([
      'fleet-on-0',
      'fleet-on-1',
      'fleet-on-2',
      'fleet-on-3',
      'fleet-on-4',
      'fleet-on-5',
    ]);
    expect(JSON.parse(sent[0]!.body)).toEqual({ seq: 1, registrationId: sent[0]!.deviceId });
    expect(sent[0]!.properties).toMatchObject({ '$.ct': 'application/json' });
    expect(dps.hubs.connected(HUB, 'fleet-on-0')).toBe(false); // each session closed at the end

    const human = await run([...fleetArgs('fleet-on-', 2, 2), '--connect', '--hub-endpoint', hubEndpoint(), '--quiet']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/\n {2}connected {4}2 /);
    expect(human.stdout).toMatch(/\n {2}connect {6}p50 [\d.]+ ms {2}p95 [\d.]+ ms {2}p99 [\d.]+ ms {2}max [\d.]+ ms\n/);
  });

  it('--transport mqtt-ws: DPS and the hub over secure WebSockets on the emulator HTTPS port, with resumed or full TLS handshakes', async () => {
    const wss = `${dps.httpsEndpoint.host}:${dps.httpsEndpoint.port}`;
    const args = fleetArgs('fleet-ws-', 4, 2).map((arg) => (arg === `${dps.endpoint.host}:${dps.endpoint.port}` ? wss : arg));
    const r = await run([...args, '--transport', 'mqtt-ws', '--connect', '--hub-endpoint', wss, '--msg-count', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Summary & { connect: NonNullable<FleetSummary['connect']> };
    expect(s).toMatchObject({ succeeded: 4, failed: 0 });
    expect(s.connect).toMatchObject({ connected: 4, failed: 0 });
    expect(dps.hubs.telemetry(HUB).filter((m) => m.deviceId.startsWith('fleet-ws-'))).toHaveLength(4);
    const fullArgs = fleetArgs('fleet-wsf-', 2, 2).map((arg) => (arg === `${dps.endpoint.host}:${dps.endpoint.port}` ? wss : arg));
    const full = await run([...fullArgs, '--transport', 'mqtt-ws', '--full-handshakes', '--quiet']);
    expect(full.code, full.stderr).toBe(0);
  });

  it('counts devices their hub refuses as connect failures by kind, and exits with that status', async () => {
    // Provisioned, then disabled in the hub: the next run provisions them again and their hub refuses them.
    expect((await run([...fleetArgs('fleet-off-', 3, 3), '--quiet'])).code).toBe(0);
    for (const id of ['fleet-off-0', 'fleet-off-2']) dps.hubs.setDeviceStatus(HUB, id, 'disabled');
    const r = await run([...fleetArgs('fleet-off-', 3, 3), '--connect', '--hub-endpoint', hubEndpoint(), '--json']);
    const s = JSON.parse(r.stdout) as Summary;
    expect(s).toMatchObject({ succeeded: 3, failed: 0 });
    expect(s.connect).toMatchObject({ connected: 1, failed: 2, failedByKind: { unauthorized: 2 } });
    expect(s.connect!.firstError.unauthorized).not.toContain(GROUP_KEY);
    expect(r.code).toBe(EXIT_CODES.unauthorized);
  });

  it('refuses the connect flags without --connect (exit 2)', async () => {
    for (const extra of [
      ['--msg-count', '1'],
      ['--hub-endpoint', '127.0.0.1:1'],
    ]) {
      const r = await run([...fleetArgs('fleet-flag-', 2, 2), ...extra]);
      expect(r.code).toBe(EXIT_CODES['invalid-input']);
      expect(r.stderr).toMatch(/go with --connect/);
    }
    const tooMany = await run([...fleetArgs('fleet-flag-', 2, 2), '--connect', '--msg-count', '1001']);
    expect(tooMany.code).toBe(EXIT_CODES['invalid-input']);
    expect(dps.model.registration('fleet-flag-0')).toBeUndefined();
  });
});

describe('the fleet engine', () => {
  it('keeps at most `concurrency` in flight, runs each index once, and sums up', async () => {
    let inFlight = 0;
    let most = 0;
    const seen: number[] = [];
    const summary = await runFleet({
      count: 40,
      concurrency: 7,
      provision: async (i) => {
        seen.push(i);
        most = Math.max(most, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 1 + (i % 3)));
        inFlight--;
        if (i % 10 === 3) throw new ProvisioningError('throttled', `device ${i} throttled`);
        if (i === 39) throw new Error('boom');
      },
    });
    expect(most).toBe(7);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(summary).toMatchObject({
      count: 40,
      concurrency: 7,
      succeeded: 35,
      failed: 5,
      failedByKind: { throttled: 4, unexpected: 1 },
      firstError: { throttled: 'device 3 throttled', unexpected: 'boom' },
    });
  });

  it('takes nearest-rank percentiles and pads IDs to the widest index', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100, shuffled order
    expect(
      percentile(
        [...samples].sort((a, b) => a - b),
        95,
      ),
    ).toBe(95);
    expect(summarizeLatencies(samples)).toEqual({ min: 1, p50: 50, p95: 95, p99: 99, max: 100, mean: 50.5 });
    expect(summarizeLatencies([7])).toEqual({ min: 7, p50: 7, p95: 7, p99: 7, max: 7, mean: 7 });
    expect(summarizeLatencies([])).toBeNull();
    expect(fleetRegistrationId('dev-', 7, 1000)).toBe('dev-0007');
    expect(fleetRegistrationId('dev-', 12, 12)).toBe('dev-12');
  });
});

describe('TLS session resumption for the fleet', () => {
  it('resumes the first session on later connections (not with resume: false), and fails like tls-connect for an untrusted server', async () => {
    const stateDir = join(dir, 'emulator');
    const reused: boolean[] = [];
    const server = tls.createServer(
      { cert: readFileSync(join(stateDir, 'server.pem')), key: readFileSync(join(stateDir, 'server-key.pem')) },
      (socket) => {
        reused.push(socket.isSessionReused());
        socket.write('hello'); // the client closes on data; the server's session ticket went out first
        socket.on('error', () => {});
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = { host: '127.0.0.1', port: (server.address() as { port: number }).port };
    try {
      for (const resume of [true, false]) {
        const connect = createTlsConnect({ ca: dps.caPem, resumeSessions: resume });
        for (let i = 0; i < 3; i++) {
          let connection: Connection | undefined;
          await new Promise<void>((resolve, reject) => {
            connect(endpoint, { onData: () => connection?.close(), onClose: () => resolve() }).then((c) => (connection = c), reject);
          });
        }
      }
      expect(reused).toEqual([false, true, true, false, false, false]); // resumed; then --full-handshakes
      const untrusted = await createTlsConnect({ resumeSessions: true })(endpoint, { onData: () => {}, onClose: () => {} }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(untrusted).toBeInstanceOf(ProvisioningError);
      expect((untrusted as ProvisioningError).kind).toBe('tls');
      expect((untrusted as ProvisioningError).message).toMatch(/not trusted/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

// The emulator under load and abuse: devices provisioning concurrently through one emulator over
// TLS (our core, a concurrency limiter, retry-after 0) while hostile clients hammer the same port
// (support/load.ts describes them). No registration may be lost or doubled, no device disturbed,
// every hostile client refused or closed. 1000 devices take 10-25 s on 2 cores (LOAD_DEVICES
// changes the number); bench/emulator-load.js prints the figures, with and without the attack.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOAD_HUBS, type LoadReport, runLoad } from './support/load.js';

const DEVICES = Number(process.env.LOAD_DEVICES ?? 1000);
const CONCURRENCY = 50;

let stateDir: string;
let report: LoadReport;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  stateDir = mkdtempSync(join(tmpdir(), 'dps-emulator-load-'));
  report = await runLoad({ devices: DEVICES, concurrency: CONCURRENCY, stateDir });
  if (process.env.PRINT_LOAD_REPORT) console.log(JSON.stringify(report, null, 2));
}, 150_000);

afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe(`${DEVICES} devices, ${CONCURRENCY} at a time, through one emulator under attack`, () => {
  it('assigns every device, with no failure and no reconnect', () => {
    expect(report.failures).toEqual([]);
    expect(report.assigned).toBe(DEVICES);
    expect(report.extraConnections).toBe(0);
  });

  it('loses no registration and doubles none: one record per device, each device in exactly one hub registry, the one it was told', () => {
    expect(report.registrations).toBe(DEVICES);
    expect(report.inNoHub).toEqual([]);
    expect(report.inSeveralHubs).toEqual([]);
    expect(report.wrongHub).toEqual([]);
    expect(Object.values(report.perHub).reduce((a, b) => a + b, 0)).toBe(DEVICES);
    for (const hub of LOAD_HUBS) expect(report.perHub[hub]).toBeGreaterThan(0);
  });

  it('refuses or closes every hostile client', () => {
    const h = report.hostile!;
    expect(h.badConnects.sent).toBeGreaterThan(0);
    expect(h.badConnects.other).toEqual([]);
    expect(h.badConnects.refused).toBe(h.badConnects.sent);
    expect(h.garbage).toEqual({ sent: 10, closed: 10 });
    expect(h.plainTextGarbage).toEqual({ sent: 10, closed: 10 });
    expect(h.slowloris).toEqual({ sent: 10, refused: 10, closed: 10 });
    expect(h.oversizedPublish).toEqual({ sent: 10, closed: 10, answered: 0 });
    expect(h.oversizedConnect).toEqual({ sent: 10, closed: 10 });
    // Slow HTTP clients on the service API and DPS's HTTPS device API: cut off by their deadlines (Node's defaults kept them).
    for (const server of ['service', 'deviceHttps'] as const) {
      expect(h.slowHttpHeaders[server]).toEqual({ sent: 5, timedOut: 5 });
      expect(h.slowHttpBody[server]).toEqual({ sent: 5, timedOut: 5 });
    }
    for (const abuse of ['oversized', 'text', 'subprotocol', 'plainText'] as const) {
      expect(h.webSocket[abuse], `WebSocket: ${abuse}`).toEqual({ sent: 5, refused: 5 });
    }
    expect(h.halfOpenTls.opened).toBe(20);
    expect(h.mute.opened).toBe(20);
  });

  it('still provisions a device afterwards, closes cleanly, and raised no unhandled rejection', () => {
    expect(report.afterwards).toEqual({ provisioned: true, closed: true });
    expect(unhandled).toEqual([]);
  });
});

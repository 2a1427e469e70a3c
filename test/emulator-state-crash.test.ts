// The emulator's state file under kill -9 (emulator/state-store.ts), as test/file-store-crash.test.ts
// does for the device's store: a child process saves the state through the StateStore, its model
// alternating between two states of 3,000 registrations each (about 2 MB), and is SIGKILLed at
// random moments. After every kill the file must read as exactly one of the two states (never a
// mix, empty or truncated), temp files of killed writers must not pile up (each writer removes
// them as a start does), and the next start restores the state and removes them.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DpsModel, type ModelSnapshot } from '../emulator/model.js';
import { openState, readStateFile, STATE_FILE } from '../emulator/state-store.js';

const MIN_KILLS = 30;
const MAX_KILLS = 50;
const ENOUGH_MID_WRITE = 10;
const DEVICES = 3000;
const HUBS = ['crash-hub-a.azure-devices.net', 'crash-hub-b.azure-devices.net'];
const KEY = Buffer.from('state-crash-test-key-0123456789abcdef').toString('base64');

let dir: string;
let writer: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dps-state-crash-'));
  writer = join(dir, 'state-writer.mjs');
  await build({
    entryPoints: [join(import.meta.dirname, 'support', 'state-writer.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: writer,
    logLevel: 'silent',
  });
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A model whose DEVICES registrations are all assigned to `hub`, each with its identity and twin there. */
function stateOn(hub: string): ModelSnapshot {
  const model = new DpsModel();
  for (const host of HUBS) model.linkHub({ connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}` });
  model.putEnrollmentGroup({
    enrollmentGroupId: 'crash-group',
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
  });
  const at = '2026-01-01T00:00:00.000Z';
  for (let i = 0; i < DEVICES; i++) {
    const registrationId = `crash-device-${i}`;
    model.saveRegistration({
      state: {
        registrationId,
        createdDateTimeUtc: at,
        lastUpdatedDateTimeUtc: at,
        assignedHub: hub,
        deviceId: registrationId,
        status: 'assigned',
        substatus: 'initialAssignment',
        etag: `etag-${i}`,
      },
      enrollment: { kind: 'group', enrollmentGroupId: 'crash-group' },
    });
    model.upsertHubDevice(hub, {
      deviceId: registrationId,
      registrationId,
      authentication: { type: 'sas', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
      tags: { index: i },
      properties: { desired: { interval: 60 }, reported: { hub } },
      createdDateTimeUtc: at,
      lastUpdatedDateTimeUtc: at,
    });
  }
  return JSON.parse(JSON.stringify(model.snapshot()));
}

interface Run {
  writes: number;
  midWrite: boolean;
}

function temps(): string[] {
  return readdirSync(join(dir, 'state')).filter((name) => name.startsWith(`.${STATE_FILE}.`) && name.endsWith('.tmp'));
}

function runAndKill(statePath: string, statesPath: string, ms: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, statePath, statesPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killTimer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      if (killTimer === undefined && stdout.startsWith('ready\n')) killTimer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL' || killTimer === undefined) {
        return reject(new Error(`the writer ended by itself (code ${code}, signal ${signal}): ${stderr}`));
      }
      const pid = child.pid!;
      resolve({
        writes: stdout.split('\n').filter((line) => line === 'w').length,
        midWrite: temps().some((name) => name.includes(`.${pid}.`)),
      });
    });
  });
}

describe('the emulator state file killed mid-save (SIGKILL loop)', () => {
  it('always reads as the old or the new state, never a mix, empty or truncated; the next start cleans up', async () => {
    const stateDir = join(dir, 'state');
    const statePath = join(stateDir, STATE_FILE);
    const states = [stateOn(HUBS[0]!), stateOn(HUBS[1]!)];
    const texts = states.map((s) => JSON.stringify(s));
    const statesPath = join(dir, 'states.json');
    writeFileSync(statesPath, JSON.stringify(states));
    // The first state, saved as a start would.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(stateDir);
    const first = await openState({ stateDir, idScope: '0ne00CRASH1', model: new DpsModel() });
    first.model.restore(states[0]!);
    await first.store.save();
    await first.store.close();

    const runs: Run[] = [];
    let mostTemps = 0;
    while (runs.length < MAX_KILLS && (runs.length < MIN_KILLS || runs.filter((r) => r.midWrite).length < ENOUGH_MID_WRITE)) {
      const run = await runAndKill(statePath, statesPath, Math.random() * 150);
      runs.push(run);
      const where = `after kill ${runs.length} (${run.writes} saves completed, ${run.midWrite ? 'inside a save' : 'between saves'})`;
      const stored = await readStateFile(statePath);
      expect(stored, where).toBeDefined();
      expect(texts.includes(JSON.stringify(stored!.model)), `${where}: the state is neither of the two`).toBe(true);
      mostTemps = Math.max(mostTemps, temps().length);
      expect(temps().length, `${where}: temp files piled up: ${temps().join(', ')}`).toBeLessThanOrEqual(1);
    }
    const midWrite = runs.filter((r) => r.midWrite).length;
    console.log(
      `state crash test: ${runs.length} kills, ${midWrite} inside a save (temp file left), ${runs.length - midWrite} between saves; ` +
        `${runs.reduce((n, r) => n + r.writes, 0)} saves completed in all; at most ${mostTemps} temp file(s) at once`,
    );
    expect(midWrite, 'no kill landed inside a save: the test proved nothing').toBeGreaterThan(0);

    // The next start restores one of the two states and removes what killed writers left.
    const next = await openState({ stateDir, idScope: '0ne00CRASH1', model: new DpsModel() });
    expect(next.origin).toBe('restored');
    expect(temps()).toEqual([]);
    expect(texts.includes(JSON.stringify(next.model.snapshot()))).toBe(true);
    await next.store.close();
  }, 180_000);
});

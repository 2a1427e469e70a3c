// The Node file store under kill -9: a child process rewrites one large record through
// createFileStore, alternating between two values, and is SIGKILLed at random moments. After
// every kill the file must hold exactly one of the two values (parsable, equal, never a mix, empty
// or truncated), and temp files left by killed writers must not pile up.
//
// What a killed writer leaves: when it dies between creating its temp file and renaming it, the
// temp file (`.<name>.<pid>.<random>.tmp`, mode 0600) stays behind; the target is untouched.
// The next write to that file removes such leftovers of writers that are no longer running.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStore } from '../hosts/node/file-store.js';
import { bundleWriter, killLoop } from './support/crash-loop.js';

/** Each value is about 1 MiB: a write (stringify, write, fsync, rename) takes milliseconds. */
const RECORD_BYTES = 1 << 20;

let dir: string;
let writer: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dps-store-crash-'));
  writer = await bundleWriter('store-writer', dir);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** An assignment record as the provisioner stores it, padded to RECORD_BYTES with `fill`. */
function record(hub: string, fill: string): string {
  const assignment = {
    version: 1,
    assignedHub: hub,
    deviceId: 'crash-device',
    registrationId: 'crash-device',
    idScope: '0ne00000001',
    endpoint: 'global.azure-devices-provisioning.net:8883',
    provisionedAt: '2025-01-01T00:00:00.000Z',
  };
  return JSON.stringify({ ...assignment, payload: { fill: fill.repeat(RECORD_BYTES) } });
}

function temps(): string[] {
  return readdirSync(dir).filter((name) => name.startsWith('.store.json.') && name.endsWith('.tmp'));
}

describe('the Node file store killed mid-write (SIGKILL loop)', () => {
  it('always holds the old or the new record, never a mix, empty or truncated, and leaves at most one temp file', async () => {
    const storePath = join(dir, 'store.json');
    const recordsPath = join(dir, 'records.json');
    const values = [record('hub-a.azure-devices.net', 'a'), record('hub-b.azure-devices.net', 'b')];
    writeFileSync(recordsPath, JSON.stringify(values));
    await createFileStore(storePath).set('assignment', values[0]!);

    await killLoop({
      label: 'file store',
      writer,
      args: [storePath, recordsPath],
      write: 'write',
      maxRunMs: 40,
      temps,
      async check(where) {
        // Exactly one of the two values, read raw and through a fresh store (the next boot).
        const text = readFileSync(storePath, 'utf8');
        let parsed: unknown;
        expect(() => (parsed = JSON.parse(text)), `${where}: the file is not valid JSON (${text.length} bytes)`).not.toThrow();
        expect(Object.keys(parsed as object), where).toEqual(['moddable-dps-store', 'records']);
        const records = (parsed as { records: Record<string, string> }).records;
        expect(Object.keys(records), where).toEqual(['assignment']);
        const value = records.assignment!;
        expect(values.includes(value), `${where}: the record is neither of the two values`).toBe(true);
        expect(await createFileStore(storePath).get('assignment'), where).toBe(value);
      },
    });

    // The next write (a new process, say) cleans up what killed writers left.
    await createFileStore(storePath).set('assignment', values[1]!);
    expect(temps()).toEqual([]);
    expect(await createFileStore(storePath).get('assignment')).toBe(values[1]);
  }, 120_000);

  it('removes only the temp files of writers that are gone: a running process may be mid-write', async () => {
    const storePath = join(dir, 'shared.json');
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // exited and reaped
    const running = process.ppid;
    const leftover = (pid: number) => `.shared.json.${pid}.0123456789ab.tmp`;
    for (const pid of [gone, running, process.pid]) writeFileSync(join(dir, leftover(pid)), '{"half":');
    writeFileSync(join(dir, '.shared.json.notes.tmp'), 'not ours');
    await createFileStore(storePath).set('assignment', 'x');
    const left = readdirSync(dir).filter((name) => name.startsWith('.shared.json.'));
    expect(left.sort()).toEqual([leftover(running), '.shared.json.notes.tmp'].sort());
  });
});

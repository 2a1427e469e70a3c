// The emulator's state file under kill -9 (emulator/state-store.ts), as test/file-store-crash.test.ts
// does for the device's store: a child process saves the state through the StateStore, its model
// alternating between two states of 3,000 registrations each (about 2 MB), and is SIGKILLed at
// random moments. Its saves are journal lines, and whole states when the journal outgrows
// state.json. After every kill state.json with its journal must read as exactly one of the two
// states (never a mix, empty or truncated), temp files of killed writers must not pile up (each
// writer removes them as a start does), and the next start restores the state and removes them.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DpsModel, type ModelSnapshot } from '../emulator/model.js';
import { journalPath, openState, readStateFile, STATE_FILE } from '../emulator/state-store.js';
import { bundleWriter, killLoop } from './support/crash-loop.js';

const DEVICES = 3000;
const HUBS = ['crash-hub-a.azure-devices.net', 'crash-hub-b.azure-devices.net'];
const KEY = Buffer.from('state-crash-test-key-0123456789abcdef').toString('base64');

let dir: string;
let writer: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dps-state-crash-'));
  writer = await bundleWriter('state-writer', dir);
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

/** The same state with every device moved to `hub` (its registration record, identity and twin). */
function movedTo(state: ModelSnapshot, hub: string): ModelSnapshot {
  const moved = structuredClone(state);
  for (const record of moved.registrations) record.state.assignedHub = hub;
  const devices = moved.hubs.flatMap((h) => h.devices);
  for (const h of moved.hubs)
    h.devices = h.hostName === hub ? devices.map((d) => ({ ...d, properties: { ...d.properties, reported: { hub } } })) : [];
  return moved;
}

function temps(): string[] {
  return readdirSync(join(dir, 'state')).filter(
    (name) => (name.startsWith(`.${STATE_FILE}.`) || name.startsWith('.state.journal.')) && name.endsWith('.tmp'),
  );
}

describe('the emulator state file killed mid-save (SIGKILL loop)', () => {
  it('always reads as the old or the new state, never a mix, empty or truncated; the next start cleans up', async () => {
    const stateDir = join(dir, 'state');
    const statePath = join(stateDir, STATE_FILE);
    const states = [stateOn(HUBS[0]!)];
    states.push(movedTo(states[0]!, HUBS[1]!));
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

    let journaled = 0;
    await killLoop({
      label: 'state',
      writer,
      args: [statePath, statesPath],
      write: 'save',
      maxRunMs: 150,
      temps,
      async check(where) {
        const stored = await readStateFile(statePath);
        expect(stored, where).toBeDefined();
        expect(texts.includes(JSON.stringify(stored!.model)), `${where}: the state is neither of the two`).toBe(true);
        if (readFileSync(journalPath(statePath), 'utf8') !== '') journaled++;
      },
    });
    // A kill cannot tear a line (one write() each); a torn line (a power cut) is read in emulator-state-journal.test.ts.
    console.log(`state crash test: at ${journaled} kills the state was state.json with journal lines`);

    // The next start restores one of the two states and removes what killed writers left.
    const next = await openState({ stateDir, idScope: '0ne00CRASH1', model: new DpsModel() });
    expect(next.origin).toBe('restored');
    expect(temps()).toEqual([]);
    expect(texts.includes(JSON.stringify(next.model.snapshot()))).toBe(true);
    await next.store.close();
  }, 180_000);
});

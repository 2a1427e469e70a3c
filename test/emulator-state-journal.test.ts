// The state journal (emulator/state-journal.ts): a random run of model changes, saved now and
// then as journal entries, played onto the first save's JSON gives the model's state at every
// save point; an unchanged model gives no entry; and the store (state-store.ts) appends a line
// per save, folds the journal into state.json when it outgrows it and at close, and reads back
// the state up to a torn last line.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { DpsModel } from '../emulator/model.js';
import { diffSnapshot, indexSnapshot, JournalReplay } from '../emulator/state-journal.js';
import { journalPath, openState, readStateFile, STATE_FILE, serializeState, stateText } from '../emulator/state-store.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const HUBS = ['journal-a.azure-devices.net', 'journal-b.azure-devices.net', 'journal-c.azure-devices.net'];
const AT = '2026-01-01T00:00:00.000Z';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function model(): DpsModel {
  const m = new DpsModel();
  for (const host of HUBS.slice(0, 2))
    m.linkHub({ connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}` });
  return m;
}

type Step =
  | { op: 'register'; device: number; hub: number; tag: number }
  | { op: 'forget'; device: number }
  | { op: 'remove-identity'; device: number; hub: number }
  | { op: 'group'; group: number; ttl: number }
  | { op: 'delete-group'; group: number }
  | { op: 'policy'; policy: 'hashed' | 'geoLatency' }
  | { op: 'link'; hub: number }
  | { op: 'unlink'; hub: number }
  | { op: 'save' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('register' as const), device: fc.nat(30), hub: fc.nat(2), tag: fc.nat(5) }),
  fc.record({ op: fc.constant('forget' as const), device: fc.nat(30) }),
  fc.record({ op: fc.constant('remove-identity' as const), device: fc.nat(30), hub: fc.nat(2) }),
  fc.record({ op: fc.constant('group' as const), group: fc.nat(3), ttl: fc.nat(3) }),
  fc.record({ op: fc.constant('delete-group' as const), group: fc.nat(3) }),
  fc.record({ op: fc.constant('policy' as const), policy: fc.constantFrom('hashed' as const, 'geoLatency' as const) }),
  fc.record({ op: fc.constant('link' as const), hub: fc.nat(2) }),
  fc.record({ op: fc.constant('unlink' as const), hub: fc.nat(2) }),
  fc.constant({ op: 'save' as const }),
);

/** Apply a step as the emulator would; a step the model refuses (an unknown record, a hub in use) changes nothing. */
function play(m: DpsModel, s: Step): void {
  const host = HUBS[(s as { hub?: number }).hub ?? 0]!;
  try {
    switch (s.op) {
      case 'register': {
        const registrationId = `device-${s.device}`;
        m.saveRegistration({
          state: {
            registrationId,
            createdDateTimeUtc: AT,
            lastUpdatedDateTimeUtc: AT,
            assignedHub: host,
            deviceId: registrationId,
            status: 'assigned',
            etag: `e${s.tag}`,
          },
          enrollment: { kind: 'group', enrollmentGroupId: 'group-0' },
        });
        m.upsertHubDevice(host, {
          deviceId: registrationId,
          registrationId,
          authentication: { type: 'sas', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
          tags: { tag: s.tag },
          properties: { desired: {} },
          createdDateTimeUtc: AT,
          lastUpdatedDateTimeUtc: AT,
        });
        return;
      }
      case 'forget':
        return m.deleteRegistration(`device-${s.device}`);
      case 'remove-identity':
        return m.removeHubDevice(host, `device-${s.device}`);
      case 'group':
        m.putEnrollmentGroup({
          enrollmentGroupId: `group-${s.group}`,
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
          initialTwin: { tags: { ttl: s.ttl }, properties: { desired: {} } },
        });
        return;
      case 'delete-group':
        return m.deleteEnrollmentGroup(`group-${s.group}`);
      case 'policy':
        return m.setAllocationPolicy(s.policy);
      case 'link':
        m.linkHub({ connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}` });
        return;
      case 'unlink':
        return m.unlinkHub(host);
      case 'save':
        return;
    }
  } catch {
    // refused: nothing changed
  }
}

/** The state as data, with every list in key order (order carries no meaning in the state). */
function canonical(snapshot: unknown): unknown {
  const json = JSON.parse(JSON.stringify(snapshot));
  const sortBy = (items: Record<string, unknown>[], key: (item: Record<string, unknown>) => string) =>
    items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  sortBy(json.registrations, (r) => (r.state as { registrationId: string }).registrationId);
  sortBy(json.enrollmentGroups, (g) => g.enrollmentGroupId as string);
  for (const hub of json.hubs) sortBy(hub.devices, (d) => d.deviceId as string);
  return json;
}

describe('the state journal', () => {
  it('played onto the first save, gives the model as it was at every later save (property)', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const m = model();
        const first = m.snapshot();
        const index = indexSnapshot(first);
        const replayed = JSON.parse(JSON.stringify(first)) as Record<string, unknown>;
        const replay = new JournalReplay(replayed);
        for (const s of [...steps, { op: 'save' as const }]) {
          play(m, s);
          if (s.op !== 'save') continue;
          const changes = diffSnapshot(index, m.snapshot());
          if (changes) replay.apply(JSON.parse(JSON.stringify(changes)));
          replay.finish();
          expect(canonical(replayed)).toEqual(canonical(m.snapshot()));
        }
      }),
    );
  });

  it('has no entry for a model that did not change, and only the changed records in one that did', () => {
    const m = model();
    play(m, { op: 'register', device: 1, hub: 0, tag: 1 });
    play(m, { op: 'register', device: 2, hub: 0, tag: 1 });
    const index = indexSnapshot(m.snapshot());
    expect(diffSnapshot(index, m.snapshot())).toBeUndefined();
    play(m, { op: 'register', device: 2, hub: 1, tag: 2 }); // moved: a new record, an identity on hub 1
    play(m, { op: 'remove-identity', device: 2, hub: 0 });
    const changes = diffSnapshot(index, m.snapshot())!;
    expect(changes.set?.registrations?.map((r) => r.state.registrationId)).toEqual(['device-2']);
    expect(Object.keys(changes.set?.devices ?? {})).toEqual([HUBS[1]]);
    expect(changes.delete?.devices).toEqual({ [HUBS[0]!]: ['device-2'] });
    expect(changes.small).toBeUndefined();
    expect(diffSnapshot(index, m.snapshot())).toBeUndefined(); // the index followed

    // A record removed from the middle of a list, one changed after it and one added: compared by key from there.
    for (const device of [3, 4, 5]) play(m, { op: 'register', device, hub: 0, tag: 1 });
    diffSnapshot(index, m.snapshot());
    play(m, { op: 'forget', device: 2 });
    play(m, { op: 'register', device: 4, hub: 0, tag: 3 });
    play(m, { op: 'register', device: 6, hub: 0, tag: 1 });
    const after = diffSnapshot(index, m.snapshot())!;
    expect(after.set?.registrations?.map((r) => r.state.registrationId)).toEqual(['device-4', 'device-6']);
    expect(after.delete?.registrations).toEqual(['device-2']);
  });
});

describe('the state store with its journal', () => {
  async function opened() {
    const stateDir = mkdtempSync(join(tmpdir(), 'dps-journal-'));
    dirs.push(stateDir);
    const opened = await openState({ stateDir, idScope: '0ne00JOURN1', model: model() });
    return { stateDir, ...opened, statePath: join(stateDir, STATE_FILE), journal: join(stateDir, 'state.journal') };
  }

  it('appends one line a save, reads back state.json with its journal, and folds the journal in at close', async () => {
    const { model: m, store, statePath, journal } = await opened();
    const written = readFileSync(statePath, 'utf8');
    play(m, { op: 'register', device: 1, hub: 0, tag: 1 });
    await store.flush();
    play(m, { op: 'register', device: 2, hub: 1, tag: 1 });
    await store.flush();
    expect(readFileSync(statePath, 'utf8')).toBe(written); // state.json untouched
    const lines = readFileSync(journal, 'utf8').split('\n');
    expect(lines).toHaveLength(3); // two lines and the last newline
    expect(JSON.parse(lines[1]!).set.registrations[0].state.registrationId).toBe('device-2');
    expect(canonical((await readStateFile(statePath))!.model)).toEqual(canonical(m.snapshot()));

    await store.close();
    expect(statSync(journal).size).toBe(0);
    const folded = JSON.parse(readFileSync(statePath, 'utf8'));
    expect(canonical(folded.model)).toEqual(canonical(m.snapshot()));
    expect(journalPath(statePath)).toBe(journal);
  });

  it('stops reading at a torn last line, and ignores lines of another generation (written before the last fold)', async () => {
    const { model: m, store, statePath, journal } = await opened();
    play(m, { op: 'register', device: 1, hub: 0, tag: 1 });
    await store.flush();
    const before = canonical(m.snapshot());
    play(m, { op: 'register', device: 2, hub: 0, tag: 1 });
    await store.flush();
    const text = readFileSync(journal, 'utf8');
    writeFileSync(journal, text.slice(0, -20)); // the second line torn, as by a kill mid-append
    expect(canonical((await readStateFile(statePath))!.model)).toEqual(before);
    writeFileSync(journal, text.replaceAll(/"journal":"[0-9a-f]+"/g, '"journal":"0000000000000000"'));
    const stale = (await readStateFile(statePath))!.model;
    expect(stale.registrations).toEqual([]);
    await store.close();
  });

  it('says which journal line cannot be played, and leaves both files as they are', async () => {
    const { model: m, store, statePath, journal } = await opened();
    play(m, { op: 'register', device: 1, hub: 0, tag: 1 });
    await store.flush();
    const generation = JSON.parse(readFileSync(statePath, 'utf8')).journal;
    appendFileSync(journal, `${JSON.stringify({ journal: generation, set: { registrations: 'not a list' } })}\n`);
    const bytes = readFileSync(journal);
    await expect(readStateFile(statePath)).rejects.toThrow(/state\.journal.*line 2 cannot be played onto state\.json/);
    expect(readFileSync(journal)).toEqual(bytes);
    await store.close().catch(() => {});
  });

  it('writes the whole state afresh once the journal outgrows state.json (and 1 MiB)', async () => {
    const { model: m, store, statePath, journal } = await opened();
    const initial = JSON.parse(readFileSync(statePath, 'utf8')).journal;
    for (let round = 0; statSync(journal).size <= 1024 * 1024 && round < 400; round++) {
      for (let d = 0; d < 30; d++) play(m, { op: 'register', device: d, hub: round % 2, tag: round });
      await store.flush();
    }
    play(m, { op: 'register', device: 0, hub: 0, tag: 999 });
    await store.flush();
    expect(JSON.parse(readFileSync(statePath, 'utf8')).journal).not.toBe(initial);
    expect(statSync(journal).size).toBe(0);
    expect(canonical((await readStateFile(statePath))!.model)).toEqual(canonical(m.snapshot()));
    await store.close();
  });
});

describe('the whole state, written in pieces', () => {
  it('is the text serializeState gives, piece boundaries inside the long lists included', () => {
    const m = model();
    const header = { idScope: '0ne00JOURN1', seed: { configFile: null, fingerprint: null }, savedAt: AT, journal: 'abc' };
    for (const devices of [0, 1, 999, 1000, 2501]) {
      for (let d = 0; d < devices; d++) play(m, { op: 'register', device: d, hub: d % 2, tag: d });
      play(m, { op: 'group', group: 1, ttl: devices });
      const state = { ...header, model: m.snapshot() };
      const pieces = [...stateText(state)];
      expect(pieces.join('')).toBe(serializeState(state));
      expect(pieces.length).toBeGreaterThan(Math.ceil(devices / 1000)); // the lists come in pieces
    }
  });
});

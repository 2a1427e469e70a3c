// The state's journal: what changed in the model between two saves, one line of JSON a save, so
// that a save costs what changed rather than the whole state (state-store.ts keeps the files).
//
// The model never changes a stored record in place: every write stores a new object. Two
// snapshots therefore differ exactly where a record is another object, so diffSnapshot() compares
// the collections that grow with a fleet (registrations, hub devices, enrollments) by identity,
// key by key, and the small parts (allocation policy, latency, linked hubs, the hubs' policies,
// CA certificates) as JSON text. applyEntry() plays an entry onto a parsed state's model, as
// DpsModel would hold it after the save that wrote the entry.

import type { ModelSnapshot, RegistrationRecord } from './model.js';
import type { EnrollmentGroup, IndividualEnrollment } from './model-types.js';

type HubDevice = ModelSnapshot['hubs'][number]['devices'][number];

/** The keyed collections, and the key the model files each record under. */
const KEYED = {
  registrations: (record: RegistrationRecord) => record.state.registrationId.toLowerCase(),
  enrollmentGroups: (group: EnrollmentGroup) => group.enrollmentGroupId.toLowerCase(),
  individualEnrollments: (enrollment: IndividualEnrollment) => enrollment.registrationId.toLowerCase(),
} as const;
type KeyedName = keyof typeof KEYED;
const KEYED_NAMES = Object.keys(KEYED) as KeyedName[];

/** The parts kept whole: each is small whatever the fleet's size. */
const SMALL = ['allocationPolicy', 'latency', 'linkedHubs', 'hubs', 'certificates'] as const;
type SmallName = (typeof SMALL)[number];

/** One save's changes. `devices` are keyed by the hub's host name (lower case), then device ID. */
export interface JournalChanges {
  set?: { [K in KeyedName]?: ModelSnapshot[K] } & { devices?: Record<string, HubDevice[]> };
  delete?: { [K in KeyedName]?: string[] } & { devices?: Record<string, string[]> };
  /** Small parts that changed, whole (`hubs` without their devices). */
  small?: Partial<Record<SmallName, unknown>>;
}

/** What the last save held: each record by key, each small part's text. */
export interface SnapshotIndex {
  keyed: Record<KeyedName, Map<string, object>>;
  devices: Map<string, Map<string, object>>;
  small: Record<SmallName, string | undefined>;
}

export function indexSnapshot(snapshot: ModelSnapshot): SnapshotIndex {
  const keyed = {} as SnapshotIndex['keyed'];
  for (const name of KEYED_NAMES) keyed[name] = byKey(snapshot[name] as object[], KEYED[name] as (item: object) => string);
  const small = {} as SnapshotIndex['small'];
  for (const name of SMALL) small[name] = smallText(snapshot, name);
  return { keyed, devices: devicesOf(snapshot), small };
}

/** The changes from what `index` holds to `snapshot` (undefined when there are none); `index` is brought up to `snapshot`. */
export function diffSnapshot(index: SnapshotIndex, snapshot: ModelSnapshot): JournalChanges | undefined {
  const set: NonNullable<JournalChanges['set']> = {};
  const del: NonNullable<JournalChanges['delete']> = {};
  let changed = false;
  for (const name of KEYED_NAMES) {
    const { added, removed } = follow(index.keyed[name], snapshot[name] as object[], KEYED[name] as (item: object) => string);
    if (added.length) (set as Record<string, object[]>)[name] = added;
    if (removed.length) del[name] = removed;
    changed ||= added.length > 0 || removed.length > 0;
  }
  const listed = new Set<string>();
  for (const hub of snapshot.hubs) {
    const host = hub.hostName.toLowerCase();
    listed.add(host);
    let registry = index.devices.get(host);
    if (!registry) index.devices.set(host, (registry = new Map()));
    const { added, removed } = follow(registry, hub.devices, deviceId);
    if (added.length) (set.devices ??= {})[host] = added as HubDevice[];
    if (removed.length) (del.devices ??= {})[host] = removed;
    changed ||= added.length > 0 || removed.length > 0;
  }
  for (const host of index.devices.keys()) if (!listed.has(host)) index.devices.delete(host); // gone with its hub (small.hubs)
  const small: NonNullable<JournalChanges['small']> = {};
  for (const name of SMALL) {
    const text = smallText(snapshot, name);
    if (text === index.small[name] || text === undefined) continue;
    index.small[name] = text;
    small[name] = JSON.parse(text);
    changed = true;
  }
  if (!changed) return undefined;
  const changes: JournalChanges = {};
  if (Object.keys(set).length) changes.set = set;
  if (Object.keys(del).length) changes.delete = del;
  if (Object.keys(small).length) changes.small = small;
  return changes;
}

/**
 * Play `changes` onto a parsed state's model (plain JSON, as state.json holds it), in place.
 * Throws TypeError when the model or the entry is not shaped as a save writes them.
 */
export function applyEntry(model: Record<string, unknown>, changes: JournalChanges): void {
  for (const name of KEYED_NAMES) {
    const added = changes.set?.[name] as object[] | undefined;
    const removed = changes.delete?.[name];
    if (!added && !removed) continue;
    const records = byKey(list(model[name], name), KEYED[name] as (item: object) => string);
    for (const key of strings(removed ?? [], name)) records.delete(key);
    for (const record of list(added ?? [], name)) records.set((KEYED[name] as (item: object) => string)(record), record);
    model[name] = [...records.values()];
  }
  const small = changes.small ?? {};
  for (const name of SMALL) {
    if (name !== 'hubs' && name in small) model[name] = small[name];
  }
  if (!('hubs' in small) && !changes.set?.devices && !changes.delete?.devices) return;
  const hubs = list(model.hubs, 'hubs') as ModelSnapshot['hubs'];
  const devices = new Map(hubs.map((hub) => [String(hub.hostName).toLowerCase(), byKey(list(hub.devices, 'devices'), deviceId)]));
  for (const [host, ids] of Object.entries(changes.delete?.devices ?? {})) {
    for (const id of strings(ids, 'devices')) devices.get(host)?.delete(id);
  }
  for (const [host, added] of Object.entries(changes.set?.devices ?? {})) {
    const registry = devices.get(host) ?? new Map<string, object>();
    devices.set(host, registry);
    for (const device of list(added, 'devices')) registry.set(deviceId(device), device);
  }
  const listed = 'hubs' in small ? (list(small.hubs, 'hubs') as Array<Omit<ModelSnapshot['hubs'][number], 'devices'>>) : hubs;
  model.hubs = listed.map(({ devices: _devices, ...hub }: { devices?: unknown; hostName: string }) => ({
    ...hub,
    devices: [...(devices.get(String(hub.hostName).toLowerCase())?.values() ?? [])],
  }));
}

/**
 * What differs between `known` (key → record) and `items`: records that are new or other objects,
 * and keys that are gone. `known` is updated to hold `items`. Deletions are rare: only when a key
 * is missing is the whole list looked at again.
 */
function follow<T extends object>(
  known: Map<string, object>,
  items: readonly T[],
  key: (item: T) => string,
): { added: T[]; removed: string[] } {
  const size = known.size;
  const added: T[] = [];
  let kept = 0; // keys of `known` still there
  for (const item of items) {
    const k = key(item);
    const was = known.get(k);
    if (was !== undefined) kept++;
    if (was === item) continue;
    added.push(item);
    known.set(k, item);
  }
  const removed: string[] = [];
  if (kept < size) {
    const present = new Set(items.map(key));
    for (const k of known.keys()) {
      if (present.has(k)) continue;
      removed.push(k);
      known.delete(k);
    }
  }
  return { added, removed };
}

function byKey(items: readonly object[], key: (item: object) => string): Map<string, object> {
  return new Map(items.map((item) => [key(item), item]));
}

function devicesOf(snapshot: ModelSnapshot): Map<string, Map<string, object>> {
  return new Map(snapshot.hubs.map((hub) => [hub.hostName.toLowerCase(), byKey(hub.devices, deviceId)]));
}

function deviceId(device: object): string {
  return (device as HubDevice).deviceId;
}

function smallText(snapshot: ModelSnapshot, name: SmallName): string | undefined {
  const value = name === 'hubs' ? snapshot.hubs.map(({ devices: _devices, ...hub }) => hub) : snapshot[name];
  return value === undefined ? undefined : JSON.stringify(value);
}

function list(value: unknown, what: string): object[] {
  if (!Array.isArray(value) || value.some((item) => item === null || typeof item !== 'object')) {
    throw new TypeError(`${what} is not a list of records`);
  }
  return value;
}

function strings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) throw new TypeError(`${what}: not a list of keys`);
  return value;
}

// The state's journal: what changed in the model between two saves, one line of JSON a save, so
// that a save costs what changed rather than the whole state (state-store.ts keeps the files).
//
// The model never changes a stored record in place: every write stores a new object. Two
// snapshots therefore differ exactly where a record is another object, so diffSnapshot() compares
// the collections that grow with a fleet (registrations, hub devices, enrollments) by identity,
// and the small parts (allocation policy, latency, linked hubs, the hubs' policies, CA
// certificates) as JSON text. The model's lists keep their order (a changed record keeps its
// place, a new one comes last), so the lists are walked side by side and compared by key only
// from where a record was removed. JournalReplay plays entries onto a parsed state's model, as
// DpsModel held it after the save that wrote the last of them.

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

/** What the last save held: its lists (the snapshot's own arrays), each hub's devices, each small part's text. */
export interface SnapshotIndex {
  lists: Record<KeyedName, readonly object[]>;
  devices: Map<string, readonly object[]>;
  small: Record<SmallName, string | undefined>;
}

/** The index of a snapshot that is being saved whole; it keeps the snapshot's arrays, which nobody changes. */
export function indexSnapshot(snapshot: ModelSnapshot): SnapshotIndex {
  const lists = {} as SnapshotIndex['lists'];
  for (const name of KEYED_NAMES) lists[name] = snapshot[name];
  const small = {} as SnapshotIndex['small'];
  for (const name of SMALL) small[name] = smallText(snapshot, name);
  return { lists, devices: new Map(snapshot.hubs.map((hub) => [hub.hostName.toLowerCase(), hub.devices])), small };
}

/** The changes from what `index` holds to `snapshot` (undefined when there are none); `index` is brought up to `snapshot`. */
export function diffSnapshot(index: SnapshotIndex, snapshot: ModelSnapshot): JournalChanges | undefined {
  const set: NonNullable<JournalChanges['set']> = {};
  const del: NonNullable<JournalChanges['delete']> = {};
  let changed = false;
  for (const name of KEYED_NAMES) {
    const { added, removed } = follow(index.lists[name], snapshot[name] as object[], KEYED[name] as (item: object) => string);
    index.lists[name] = snapshot[name];
    if (added.length) (set as Record<string, object[]>)[name] = added;
    if (removed.length) del[name] = removed;
    changed ||= added.length > 0 || removed.length > 0;
  }
  const listed = new Set<string>();
  for (const hub of snapshot.hubs) {
    const host = hub.hostName.toLowerCase();
    listed.add(host);
    const { added, removed } = follow(index.devices.get(host) ?? [], hub.devices, deviceId);
    index.devices.set(host, hub.devices);
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
 * Plays entries onto a parsed state's model (plain JSON, as state.json holds it): its lists become
 * maps when an entry first touches them and lists again at finish(), so a journal of many lines
 * costs one pass over the state, not one a line. apply() throws TypeError when the model or an
 * entry is not shaped as a save writes them.
 */
export class JournalReplay {
  readonly #model: Record<string, unknown>;
  readonly #records = new Map<KeyedName, Map<string, object>>();
  /** The hubs (without their devices) and each one's registry, once an entry touches them. */
  #hubs: Array<{ hostName: string }> | undefined;
  #devices: Map<string, Map<string, object>> | undefined;

  constructor(model: Record<string, unknown>) {
    this.#model = model;
  }

  apply(changes: JournalChanges): void {
    for (const name of KEYED_NAMES) {
      const added = changes.set?.[name] as object[] | undefined;
      const removed = changes.delete?.[name];
      if (!added && !removed) continue;
      const key = KEYED[name] as (item: object) => string;
      let records = this.#records.get(name);
      if (!records) this.#records.set(name, (records = byKey(list(this.#model[name], name), key)));
      for (const k of strings(removed ?? [], name)) records.delete(k);
      for (const record of list(added ?? [], name)) records.set(key(record), record);
    }
    const small = changes.small ?? {};
    for (const name of SMALL) {
      if (name !== 'hubs' && name in small) this.#model[name] = small[name];
    }
    if (!('hubs' in small) && !changes.set?.devices && !changes.delete?.devices) return;
    if (!this.#devices) {
      const hubs = list(this.#model.hubs, 'hubs') as ModelSnapshot['hubs'];
      this.#hubs = hubs.map(({ devices: _devices, ...hub }) => hub);
      this.#devices = new Map(hubs.map((hub) => [String(hub.hostName).toLowerCase(), byKey(list(hub.devices, 'devices'), deviceId)]));
    }
    const devices = this.#devices;
    if ('hubs' in small)
      this.#hubs = (list(small.hubs, 'hubs') as Array<{ hostName: string; devices?: unknown }>).map(({ devices: _d, ...hub }) => hub);
    for (const [host, ids] of Object.entries(changes.delete?.devices ?? {})) {
      for (const id of strings(ids, 'devices')) devices.get(host)?.delete(id);
    }
    for (const [host, added] of Object.entries(changes.set?.devices ?? {})) {
      let registry = devices.get(host);
      if (!registry) devices.set(host, (registry = new Map()));
      for (const device of list(added, 'devices')) registry.set(deviceId(device), device);
    }
    // A hub no longer listed takes its registry with it, as the snapshot lists only listed hubs.
    const listed = new Set(this.#hubs!.map((hub) => String(hub.hostName).toLowerCase()));
    for (const host of devices.keys()) if (!listed.has(host)) devices.delete(host);
  }

  /** Write the maps back into the model as lists (again after more entries, if need be). */
  finish(): void {
    for (const [name, records] of this.#records) this.#model[name] = [...records.values()];
    const devices = this.#devices;
    if (!devices) return;
    this.#model.hubs = this.#hubs!.map((hub) => ({
      ...hub,
      devices: [...(devices.get(String(hub.hostName).toLowerCase())?.values() ?? [])],
    }));
  }
}

/**
 * What differs from `before` to `items`: records that are new or other objects, and keys that
 * are gone. Side by side while the keys agree (a changed record keeps its place, new ones come
 * last); by key from the first place where they do not (a record was removed there).
 */
function follow<T extends object>(before: readonly T[], items: readonly T[], key: (item: T) => string): { added: T[]; removed: string[] } {
  const added: T[] = [];
  const removed: string[] = [];
  const common = Math.min(before.length, items.length);
  let i = 0;
  for (; i < common; i++) {
    const was = before[i]!;
    const item = items[i]!;
    if (was === item) continue;
    if (key(was) !== key(item)) break;
    added.push(item);
  }
  if (i === common) {
    for (let j = common; j < items.length; j++) added.push(items[j]!);
    for (let j = common; j < before.length; j++) removed.push(key(before[j]!));
    return { added, removed };
  }
  // The keys before i are the same on both sides (and unique), so only the rest is compared.
  const rest = new Map<string, T>();
  for (let j = i; j < before.length; j++) rest.set(key(before[j]!), before[j]!);
  for (let j = i; j < items.length; j++) {
    const k = key(items[j]!);
    if (rest.get(k) !== items[j]) added.push(items[j]!);
    rest.delete(k);
  }
  for (const k of rest.keys()) removed.push(k);
  return { added, removed };
}

function byKey(items: readonly object[], key: (item: object) => string): Map<string, object> {
  return new Map(items.map((item) => [key(item), item]));
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

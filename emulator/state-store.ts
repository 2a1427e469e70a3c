// The emulator's state on disk: <stateDir>/state.json holds the whole model (DpsModel.snapshot():
// linked hubs, allocation policy, latency, enrollments with their keys, registration records, every
// emulated hub's policies, identities and twins, the CA certificates with their verified flag and
// pending verification code), so that a restart forgets no device that still
// points at the emulator. Live connections, operations in flight and the telemetry log are not
// kept.
//
//   {"moddable-dps-emulator-state": 1, "idScope": "...", "seed": {"configFile", "fingerprint"},
//    "savedAt": "...", "journal": "<generation>", "model": {...}}
//   state.journal: {"journal": "<generation>", "savedAt": "...", "set", "delete", "small"}\n ...
//
// - Journaled: a save appends what changed since the last one to <stateDir>/state.journal, one
//   line of JSON (state-journal.ts), so its cost follows the change, not the state's size. When
//   the journal outgrows state.json, or at close(), the whole state is written afresh under a new
//   "journal" generation (in pieces, the thread serving devices between them) and the journal
//   starts empty; lines of another generation are ignored.
// - Crash-safe: a whole state is written to a uniquely named temp file in the same directory
//   (mode 0600), fsynced, renamed over state.json, and the directory fsynced (the journal is
//   replaced the same way). A journal line is appended and fsynced; reading stops at a line that
//   is torn (no newline, not JSON). A save killed at any point leaves the old or the new state,
//   never a mix; the next start removes temp files of writers that are gone.
// - Coalesced: the model notifies each change; a save follows at most MIN_DELAY_MS later, and
//   never sooner than COST_FACTOR times the last save's work on the thread took, so a fleet of
//   registrations costs a few saves a second at most and the saves' share of the emulator's CPU
//   stays under about 1/COST_FACTOR whatever the state's size. close() saves what is pending.
// - Seeded once: the config a state was seeded from is remembered by its fingerprint; a later
//   start with a different config is refused (StateConflictError) rather than guessed at.
// - A file that cannot be read as a state (not JSON, another format, a directory) is a
//   StateFileError naming it, and is never written over.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DpsError } from './dps-errors.js';
import { DpsModel, type ModelSnapshot } from './model.js';
import type { AllocationPolicy, LatencyTable, ModelConfig } from './model-types.js';
import { stateFileError } from './state-dir.js';
import { diffSnapshot, indexSnapshot, type JournalChanges, JournalReplay, type SnapshotIndex } from './state-journal.js';
import { validateInstancePolicy, validateLatency } from './validation.js';
import { parseCertificate } from './x509.js';

export const STATE_FILE = 'state.json';
/** The journal beside a state file: state.json → state.journal. */
export function journalPath(statePath: string): string {
  return join(dirname(statePath), `${basename(statePath).replace(/\.json$/, '')}.journal`);
}
/** The journal is folded into state.json once it holds more than this, and more than state.json. */
const MIN_JOURNAL_BYTES = 1024 * 1024;
const FORMAT_KEY = 'moddable-dps-emulator-state';
const FORMAT_VERSION = 1;
/** Shortest wait between a change and its save. */
const MIN_DELAY_MS = 200;
/**
 * The wait is at least this many times the last save's cost to the emulator's thread (serialising
 * and encoding the text): saving takes at most about 1/20 of the thread.
 */
const COST_FACTOR = 20;
/** After a failed save, the next try waits at least this long. */
const RETRY_DELAY_MS = 2_000;

/** Where the state came from: the config file that seeded it, by name and by content. */
export interface StateSeed {
  /** The config file's name as given, or null (seeded without one, or by a library caller). */
  configFile: string | null;
  /** sha256 of the seeding config (canonical JSON), or null when there was none. */
  fingerprint: string | null;
}

export interface StoredState {
  idScope: string;
  seed: StateSeed;
  savedAt: string;
  /** The generation of the journal lines that follow this state.json (absent: none). */
  journal?: string;
  model: ModelSnapshot;
}

/** A state file that cannot be used: it is left as it is. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(
      `cannot use the emulator's state file ${path}: ${reason}. It was left untouched: move it away, ` +
        'or start with --reset to set it aside (renamed to a .bak file) and begin afresh',
    );
  }
}

/** The stored state and the config given now disagree: the caller must choose. */
export class StateConflictError extends Error {
  override readonly name = 'StateConflictError';
  constructor(
    readonly path: string,
    readonly configFile: string,
    seededFrom: string | null,
  ) {
    super(
      `the config file ${configFile} is not the one the emulator's state ${path} was seeded from ` +
        `(${seededFrom === null ? 'that state was seeded without a config file' : `that state was seeded from ${seededFrom} as it was then`}), ` +
        'and the state now holds what happened since (registrations, hub identities, changes made through the service API). ' +
        'Start without --config to keep the state, or with --reset to set the state aside (renamed to a .bak file) and ' +
        `seed a new one from ${configFile}; \`moddable-dps emulator export\` writes the state as a config file`,
    );
  }
}

/** sha256 of a config in canonical JSON (keys sorted), or null for none. */
function configFingerprint(config: ModelConfig | undefined): string | null {
  if (config === undefined) return null;
  return `sha256:${createHash('sha256').update(canonical(config)).digest('hex')}`;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

// ---- reading ----

/** The state in `path`, or undefined when there is no file. A file that is not a usable state throws StateFileError. */
export async function readStateFile(path: string): Promise<StoredState | undefined> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined; // no state (the directory is checked when made)
    throw new StateFileError(path, `it cannot be read (${error.code ?? error.message})`);
  });
  if (stats === undefined) return undefined;
  if (!stats.isFile()) throw new StateFileError(path, 'it is not a regular file');
  let text: string;
  try {
    // Non-blocking and not through a link: a FIFO put there since the check cannot hang the start.
    const handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0));
    try {
      if (!(await handle.stat()).isFile()) throw new StateFileError(path, 'it is not a regular file');
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof StateFileError) throw error;
    throw new StateFileError(path, `it cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return parseState(path, text, await readJournal(journalPath(path)));
}

/** The journal's text, or '' when there is none (it is ours: only a missing file is expected). */
async function readJournal(path: string): Promise<string> {
  try {
    const handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0));
    try {
      if (!(await handle.stat()).isFile()) throw new StateFileError(path, 'it is not a regular file');
      return await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof StateFileError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new StateFileError(path, `it cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/**
 * Play the journal's lines of `root`'s generation onto its model, in order, up to the first torn
 * line (a save killed while appending it). Lines of another generation were folded into
 * state.json already.
 */
function replayJournal(path: string, root: Record<string, unknown>, journal: string): void {
  if (typeof root.journal !== 'string' || journal === '') return;
  const model = root.model;
  if (model === null || typeof model !== 'object' || Array.isArray(model)) return; // the checks below say what is wrong
  const replay = new JournalReplay(model as Record<string, unknown>);
  let at = 0;
  for (let line = 1; ; line++) {
    const end = journal.indexOf('\n', at);
    if (end === -1) break; // a torn last line, or none
    let entry: (JournalChanges & { journal?: unknown; savedAt?: unknown }) | undefined;
    try {
      entry = JSON.parse(journal.slice(at, end));
    } catch {
      break; // torn
    }
    at = end + 1;
    if (entry === null || typeof entry !== 'object' || entry.journal !== root.journal) continue;
    try {
      replay.apply(entry);
    } catch (error) {
      throw new StateFileError(journalPath(path), `line ${line} cannot be played onto ${basename(path)} (${(error as Error).message})`);
    }
    if (typeof entry.savedAt === 'string') root.savedAt = entry.savedAt;
  }
  replay.finish();
}

/** Check a state file's text, with its journal played onto it; the reason names the JSON pointer of the first thing wrong. */
function parseState(path: string, text: string, journal = ''): StoredState {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new StateFileError(path, `it is not valid JSON (${text.length} bytes${text.length === 0 ? ': empty' : ''})`);
  }
  const fail = (pointer: string, what: string): never => {
    throw new StateFileError(path, `${pointer || 'the document'}: ${what}`);
  };
  const root = record(json, '', 'not a JSON object', fail);
  const version = root[FORMAT_KEY];
  if (version === undefined) fail('', `not an emulator state file (no "${FORMAT_KEY}" marker)`);
  if (version !== FORMAT_VERSION) {
    fail(`/${FORMAT_KEY}`, typeof version === 'number' && version > FORMAT_VERSION ? 'written by a newer moddable-dps' : 'unknown format');
  }
  if (typeof root.idScope !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(root.idScope)) fail('/idScope', 'not an ID scope');
  const seed = record(root.seed, '/seed', 'not an object', fail);
  for (const field of ['configFile', 'fingerprint'] as const) {
    if (seed[field] !== null && typeof seed[field] !== 'string') fail(`/seed/${field}`, 'not a string or null');
  }
  if (typeof root.savedAt !== 'string') fail('/savedAt', 'not a date');
  if (root.journal !== undefined && typeof root.journal !== 'string') fail('/journal', 'not a journal generation');
  replayJournal(path, root, journal);
  const model = record(root.model, '/model', 'not an object', fail);
  record(model.latency, '/model/latency', 'not an object', fail);
  try {
    validateInstancePolicy(model.allocationPolicy as AllocationPolicy);
    validateLatency(model.latency as LatencyTable);
  } catch (error) {
    if (error instanceof DpsError) fail('/model', error.message);
    throw error;
  }
  const list = (field: string, check: (item: Record<string, unknown>) => boolean, what: string): void => {
    const items = model[field];
    if (!Array.isArray(items)) fail(`/model/${field}`, 'not a list');
    (items as unknown[]).forEach((item, i) => {
      if (item === null || typeof item !== 'object' || Array.isArray(item) || !check(item as Record<string, unknown>)) {
        fail(`/model/${field}/${i}`, `not ${what}`);
      }
    });
  };
  const text_ = (value: unknown): boolean => typeof value === 'string' && value !== '';
  const object = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);
  list('linkedHubs', (h) => text_(h.hostName) && text_(h.connectionString), 'a linked hub');
  list('enrollmentGroups', (e) => text_(e.enrollmentGroupId) && object(e.attestation), 'an enrollment group');
  list('individualEnrollments', (e) => text_(e.registrationId) && object(e.attestation), 'an individual enrollment');
  list('registrations', (r) => object(r.state) && text_(r.state.registrationId) && object(r.enrollment), 'a registration record');
  list(
    'hubs',
    (h) =>
      text_(h.hostName) &&
      Array.isArray(h.policies) &&
      h.policies.every((p: unknown) => object(p) && text_(p.keyName) && Array.isArray(p.rights) && text_(p.primaryKey)) &&
      Array.isArray(h.devices) &&
      h.devices.every((d: unknown) => object(d) && text_(d.deviceId)),
    'an IoT hub with its policies and devices',
  );
  // Absent in states saved before X.509: none.
  if (model.certificates !== undefined) {
    list(
      'certificates',
      (c) =>
        typeof c.name === 'string' &&
        /^[A-Za-z0-9_.-]{1,64}$/.test(c.name) &&
        isCaCertificate(c.certificate) &&
        typeof c.isVerified === 'boolean' &&
        (c.verificationCode === undefined || text_(c.verificationCode)) &&
        text_(c.etag),
      'a CA certificate ({name, certificate: a PEM CA certificate, isVerified, etag})',
    );
  }
  return {
    idScope: root.idScope as string,
    seed: seed as unknown as StateSeed,
    savedAt: root.savedAt as string,
    ...(typeof root.journal === 'string' && { journal: root.journal }),
    model: model as unknown as ModelSnapshot,
  };
}

function isCaCertificate(value: unknown): boolean {
  try {
    return parseCertificate(value, 'state').ca;
  } catch {
    return false;
  }
}

function record(value: unknown, pointer: string, what: string, fail: (pointer: string, what: string) => never): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(pointer, what);
  return value as Record<string, unknown>;
}

/** A model holding a stored state; a state the model refuses (a bad policy, latency table) is a StateFileError. */
function restoreModel(path: string, state: StoredState): DpsModel {
  const model = new DpsModel();
  try {
    model.restore(state.model);
  } catch (error) {
    if (error instanceof DpsError) throw new StateFileError(path, `/model: ${error.message}`);
    throw error;
  }
  return model;
}

// ---- writing ----

/** The file's text for a state. */
export function serializeState(state: StoredState): string {
  return JSON.stringify({ [FORMAT_KEY]: FORMAT_VERSION, ...state });
}

/** Records of the long lists (registrations, each hub's devices, ...) per piece of stateText(). */
const PIECE_RECORDS = 1000;

/**
 * The text serializeState() gives (`model` last), in pieces of at most PIECE_RECORDS records of
 * its lists, so that writing a large state leaves the thread to the devices between pieces (the
 * records never change in place, so the snapshot stays as it was taken meanwhile).
 */
export function* stateText(state: StoredState): Generator<string> {
  const { model, ...header } = state;
  yield `${JSON.stringify({ [FORMAT_KEY]: FORMAT_VERSION, ...header }).slice(0, -1)},"model":{`;
  let comma = '';
  for (const [key, value] of Object.entries(model)) {
    if (value === undefined) continue;
    const name = `${comma}${JSON.stringify(key)}:`;
    comma = ',';
    if (key === 'hubs') {
      const hubs = value as ModelSnapshot['hubs'];
      yield `${name}[`;
      for (let i = 0; i < hubs.length; i++) {
        const { devices, ...hub } = hubs[i]!;
        const fields = JSON.stringify(hub);
        yield `${i ? ',' : ''}${fields === '{}' ? '{' : `${fields.slice(0, -1)},`}"devices":`;
        yield* listText(devices);
        yield '}';
      }
      yield ']';
    } else if (Array.isArray(value)) {
      yield name;
      yield* listText(value);
    } else {
      yield `${name}${JSON.stringify(value)}`;
    }
  }
  yield '}}';
}

function* listText(items: readonly unknown[]): Generator<string> {
  if (items.length === 0) yield '[]';
  for (let i = 0; i < items.length; i += PIECE_RECORDS) {
    const end = Math.min(items.length, i + PIECE_RECORDS);
    const parts = new Array<string>(end - i);
    for (let j = i; j < end; j++) parts[j - i] = JSON.stringify(items[j]);
    yield `${i === 0 ? '[' : ','}${parts.join(',')}${end === items.length ? ']' : ''}`;
  }
}

/** Replace `path` with `text` (or its pieces, written one after the other) crash-safely: temp file, fsync, rename, fsync of the directory. */
export async function writeStateFile(path: string, text: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      if (typeof text === 'string' || text instanceof Uint8Array) await handle.writeFile(text);
      else {
        for (const piece of text) {
          for (let at = 0; at < piece.length; ) at += (await handle.write(piece, at)).bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw stateFileError(path, error);
  }
  try {
    const handle = await open(dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort: some file systems cannot fsync a directory
  }
}

/** Remove temp files of `path` left by writers that were killed (a process no longer running, or this one). */
export async function removeLeftovers(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names) {
    const match = name.startsWith(prefix) && /^(\d+)\.[0-9a-f]+\.tmp$/.exec(name.slice(prefix.length));
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || !running(pid)) await unlink(join(dirname(path), name)).catch(() => {});
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- the store ----

export interface OpenStateOptions {
  stateDir: string;
  idScope: string;
  /** The config given now, and the file it came from. */
  config?: ModelConfig;
  configFile?: string;
  /** The model built from `config` (which checked it): a new state starts as it. */
  model: DpsModel;
  /** Set a stored state aside and seed afresh from `config`. */
  reset?: boolean;
  /** A save failed (it is tried again after the next change, and by close()). */
  onError?: (error: Error) => void;
}

export interface OpenedState {
  model: DpsModel;
  store: StateStore;
  /** 'seeded': a new state from the config; 'restored': the stored one. */
  origin: 'seeded' | 'restored';
  /** Where a reset put the previous state file. */
  setAside?: string;
}

/**
 * Open the state in `stateDir` (which must exist): the stored one, or a new one seeded with the
 * config's model (on the first start, or with `reset`). A config that differs from the one the stored
 * state was seeded from is refused (StateConflictError); so is a stored state that cannot be read
 * (StateFileError). A seeded state is written at once.
 */
export async function openState(options: OpenStateOptions): Promise<OpenedState> {
  const path = join(options.stateDir, STATE_FILE);
  await removeLeftovers(path);
  await removeLeftovers(journalPath(path));
  const fingerprint = configFingerprint(options.config);
  let setAside: string | undefined;
  if (options.reset) {
    const exists = await lstat(path).then(
      () => true,
      () => false,
    );
    if (exists) {
      setAside = `${path}.${new Date().toISOString().replace(/[:.]/g, '-')}.bak`;
      await rename(path, setAside).catch((error) => {
        throw stateFileError(path, error);
      });
      // Its journal (the changes since it was written, if any) goes beside it as <setAside>.journal.
      const journal = journalPath(path);
      const size = await lstat(journal).then(
        (stats) => stats.size,
        () => undefined,
      );
      const moved = size ? rename(journal, `${setAside}.journal`) : size === 0 ? unlink(journal) : undefined;
      await moved?.catch((error) => {
        throw stateFileError(journal, error);
      });
    }
  } else {
    const stored = await readStateFile(path);
    if (stored) {
      if (fingerprint !== null && fingerprint !== stored.seed.fingerprint) {
        throw new StateConflictError(path, options.configFile ?? 'given', stored.seed.configFile);
      }
      const model = restoreModel(path, stored);
      const store = new StateStore(path, model, { idScope: options.idScope, seed: stored.seed }, options.onError);
      if (stored.idScope !== options.idScope) await store.save();
      return { model, store, origin: 'restored' };
    }
  }
  const { model } = options;
  const seed: StateSeed = { configFile: options.config === undefined ? null : (options.configFile ?? null), fingerprint };
  const store = new StateStore(path, model, { idScope: options.idScope, seed }, options.onError);
  await store.save();
  return { model, store, origin: 'seeded', ...(setAside !== undefined && { setAside }) };
}

/** Saves a model's state to state.json and its journal, coalescing changes (see the top of this file). */
export class StateStore {
  readonly path: string;
  readonly #journalPath: string;
  readonly #model: DpsModel;
  readonly #header: { idScope: string; seed: StateSeed };
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #unsubscribe: () => void;
  #timer: NodeJS.Timeout | undefined;
  #dirty = false;
  #writing: Promise<void> | undefined;
  #failure: Error | undefined;
  #costMs = 0;
  #closed = false;
  /** The journal's generation, and what the state on disk holds (for the next journal line). */
  #generation: string | undefined;
  #index: SnapshotIndex | undefined;
  #journalBytes = 0;
  /** Bytes of the last whole state written: the journal is folded in once it outgrows them. */
  #stateBytes = 0;
  /** The next save writes the whole state: the first one, save(), close(), after a failed write. */
  #whole = true;

  constructor(path: string, model: DpsModel, header: { idScope: string; seed: StateSeed }, onError?: (error: Error) => void) {
    this.path = path;
    this.#journalPath = journalPath(path);
    this.#model = model;
    this.#header = header;
    this.#onError = onError;
    this.#unsubscribe = model.onChange(() => {
      this.#dirty = true;
      this.#schedule();
    });
  }

  /** Write the whole state now (and wait for a save in flight); rejects when the save fails. */
  async save(): Promise<void> {
    this.#dirty = true;
    this.#whole = true;
    await this.flush();
  }

  /** Wait until every change made so far is on disk; rejects when the last save failed. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#writing) await this.#writing;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#dirty) await this.#write();
    if (this.#failure) throw this.#failure;
  }

  /** Save what is pending, the journal folded into state.json, and stop following the model. */
  async close(): Promise<void> {
    this.#unsubscribe();
    try {
      if (this.#writing) await this.#writing.catch(() => {});
      if (this.#journalBytes > 0 || this.#dirty) await this.save();
      else await this.flush();
    } finally {
      this.#closed = true;
      clearTimeout(this.#timer);
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#writing !== undefined || this.#closed) return;
    const delay = Math.max(this.#failure ? RETRY_DELAY_MS : MIN_DELAY_MS, this.#costMs * COST_FACTOR);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#write();
    }, delay);
    this.#timer.unref();
  }

  #write(): Promise<void> {
    this.#dirty = false;
    const started = performance.now();
    const snapshot = this.#model.snapshot();
    const savedAt = new Date().toISOString();
    const whole =
      this.#whole || this.#index === undefined || (this.#journalBytes > MIN_JOURNAL_BYTES && this.#journalBytes > this.#stateBytes);
    let writing: Promise<void>;
    if (whole) {
      const generation = randomBytes(8).toString('hex');
      const index = indexSnapshot(snapshot);
      // Serialised and encoded piece by piece as the write goes (in this thread: that work is the cost).
      const pieces = stateText({ ...this.#header, savedAt, journal: generation, model: snapshot });
      let workMs = performance.now() - started;
      let bytes = 0;
      const encoded = (function* (): Generator<Uint8Array> {
        for (;;) {
          const at = performance.now();
          const next = pieces.next();
          if (next.done) return;
          const piece = Buffer.from(next.value, 'utf8');
          bytes += piece.length;
          workMs += performance.now() - at;
          yield piece;
        }
      })();
      // state.json first: until the journal is replaced, its lines are of the old generation.
      writing = writeStateFile(this.path, encoded)
        .then(() => {
          this.#costMs = workMs;
          return writeStateFile(this.#journalPath, '');
        })
        .then(() => {
          this.#generation = generation;
          this.#index = index;
          this.#journalBytes = 0;
          this.#whole = false;
          this.#stateBytes = bytes;
        });
    } else {
      const changes = diffSnapshot(this.#index!, snapshot);
      if (!changes) {
        this.#costMs = performance.now() - started;
        return Promise.resolve();
      }
      const line = Buffer.from(`${JSON.stringify({ journal: this.#generation, savedAt, ...changes })}\n`, 'utf8');
      this.#costMs = performance.now() - started;
      writing = appendFile(this.#journalPath, line).then(
        () => {
          this.#journalBytes += line.length;
        },
        (error: Error) => {
          this.#whole = true; // the journal may end in a torn line: nothing may follow it
          throw error;
        },
      );
    }
    writing = writing.then(
      () => {
        this.#failure = undefined;
      },
      (error: Error) => {
        this.#dirty = true;
        this.#failure = error;
        this.#onError?.(error);
      },
    );
    this.#writing = writing.finally(() => {
      this.#writing = undefined;
      if (this.#dirty) this.#schedule();
    });
    return this.#writing;
  }
}

/** Append `bytes` to the journal and wait until they are on disk. */
async function appendFile(path: string, bytes: Uint8Array): Promise<void> {
  try {
    const handle = await open(path, 'a', 0o600);
    try {
      await handle.writeFile(bytes); // O_APPEND: at the end, whole
      await handle.datasync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw stateFileError(path, error);
  }
}

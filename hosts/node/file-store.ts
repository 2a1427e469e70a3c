// The Node host's Store port: one JSON file mapping key → string.
//
// - The file is {"moddable-dps-store": 1, "records": {key: string, …}}. A file written by the
//   previous version (the records object alone, exactly as JSON.stringify(records, null, 2) and a
//   newline wrote it) is read as well and rewritten in the current format by the next change.
//   An empty file reads as an empty store (as `mktemp` leaves it).
// - Only a file that is absent or holds such a store is ever written. Anything else (another
//   program's file, a damaged or newer store, a directory, a FIFO, a device, a socket) is refused
//   with ProvisioningError('storage') and left untouched; its type is checked before it is opened,
//   and it is opened non-blocking, so a FIFO never blocks.
// - A symbolic link is followed: the file it points to must itself be a store, and is replaced
//   atomically (the link stays a link). A link to a missing file is refused: it could make the
//   store create a file anywhere the link points.
// - Every change rewrites the whole file atomically: a uniquely named temp file in the same
//   directory is written with mode 0o600, fsynced, renamed over the target, and the directory
//   is fsynced (best effort). After a crash the file holds the old or the new object, never a
//   mix, and readers never see a half-written file.
// - Changes to one path are serialised through a promise chain shared by every store of that
//   path in this process; `get` waits for changes already queued (read-your-writes). Other
//   processes writing the same file are not coordinated: the last rename wins.
// - With a `deadline`, every operation ends by then: one that has not finished (a hung file
//   system) rejects with ProvisioningError('timeout').
// - A writer killed mid-write (kill -9, power loss) leaves its temp file behind, never a damaged
//   target. Each write first removes such leftovers: temp files of this target named for a
//   process that is no longer running, or for this process (whose writes to one path are
//   serialised, so none of its own is in flight). A live process's temp file is left alone.

import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, realpath, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ProvisioningError } from '../../src/errors.js';
import type { Store } from '../../src/ports.js';
import { makeDirectory } from './directory.js';

type Records = Record<string, string>;

export interface FileStoreOptions {
  /** Date.now() time by which every operation ends (rejecting with kind 'timeout' if it has not). */
  deadline?: number;
}

/** The marker of the current format, and its version. */
const FORMAT_KEY = 'moddable-dps-store';
const FORMAT_VERSION = 1;

/** Tail of the change queue of each absolute path. */
const queues = new Map<string, Promise<void>>();

export function createFileStore(path: string, options: FileStoreOptions = {}): Store {
  if (typeof path !== 'string' || path === '') {
    throw new ProvisioningError('invalid-input', 'the store path must be a non-empty file name');
  }
  const file = resolve(path);
  const { deadline } = options;

  function change(edit: (records: Records) => boolean): Promise<void> {
    const previous = queues.get(file) ?? Promise.resolve();
    const next = previous.then(async () => {
      const { target, records } = await load(file);
      const updated = records ?? emptyRecords();
      if (edit(updated)) await writeAtomically(target, updated);
    });
    const tail = next.catch(() => {});
    queues.set(file, tail);
    void tail.then(() => {
      if (queues.get(file) === tail) queues.delete(file);
    });
    return bounded(next, file, deadline);
  }

  return {
    get(key) {
      return bounded(
        (async () => {
          await queues.get(file);
          const { records } = await load(file);
          return records !== undefined && Object.hasOwn(records, key) ? records[key] : undefined;
        })(),
        file,
        deadline,
      );
    },
    set(key, value) {
      if (typeof key !== 'string' || typeof value !== 'string') {
        return Promise.reject(new ProvisioningError('invalid-input', 'store keys and values must be strings'));
      }
      return change((records) => {
        records[key] = value;
        return true;
      });
    },
    delete(key) {
      return change((records) => {
        if (!Object.hasOwn(records, key)) return false;
        delete records[key];
        return true;
      });
    },
  };
}

/** `operation`, or a timeout error once `deadline` passes (the operation itself cannot be cancelled). */
function bounded<T>(operation: Promise<T>, file: string, deadline: number | undefined): Promise<T> {
  if (deadline === undefined) return operation;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProvisioningError('timeout', `the store ${file} did not answer before the deadline`)),
      Math.max(0, deadline - Date.now()),
    );
  });
  return Promise.race([operation, expired]).finally(() => clearTimeout(timer));
}

/**
 * The file that holds the store (`file`, or the file a symbolic link there points to) and its
 * records: undefined when there is no file yet. Anything that is not a store throws 'storage'.
 */
async function load(file: string): Promise<{ target: string; records: Records | undefined }> {
  let target = file;
  let stats = await lstatOrAbsent(file);
  if (stats?.isSymbolicLink()) {
    try {
      target = await realpath(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw refused(file, 'it is a symbolic link to a missing file');
      throw storageError(`cannot resolve the symbolic link ${file}`, error);
    }
    stats = await lstatOrAbsent(target);
  }
  if (stats === undefined) return { target, records: undefined };
  checkRegularFile(file, stats);
  let text: string;
  try {
    // Non-blocking and not through a link: a FIFO or link put there since the check cannot hang us.
    const handle = await open(target, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0));
    try {
      checkRegularFile(file, await handle.stat());
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof ProvisioningError) throw error;
    throw storageError(`cannot read the store ${file}`, error);
  }
  return { target, records: parseStore(file, text) };
}

async function lstatOrAbsent(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw storageError(`cannot read the store ${path}`, error);
  }
}

function checkRegularFile(file: string, stats: Stats): void {
  if (stats.isFile()) return;
  const what = stats.isDirectory()
    ? 'a directory'
    : stats.isFIFO()
      ? 'a FIFO'
      : stats.isCharacterDevice() || stats.isBlockDevice()
        ? 'a device'
        : stats.isSocket()
          ? 'a socket'
          : 'not a regular file';
  throw refused(file, `it is ${what}`);
}

/** The records of a store file; anything else throws 'storage'. */
function parseStore(file: string, text: string): Records {
  if (text === '') return emptyRecords();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw refused(file, 'it is not a store file (not JSON)');
  }
  if (isObject(parsed) && Object.hasOwn(parsed, FORMAT_KEY)) {
    const keys = Object.keys(parsed);
    if (parsed[FORMAT_KEY] !== FORMAT_VERSION)
      throw refused(file, `it is a store of another format (${FORMAT_KEY} ${JSON.stringify(parsed[FORMAT_KEY])})`);
    if (keys.length !== 2 || !isRecords(parsed.records)) throw refused(file, 'it is a damaged store file');
    return Object.assign(emptyRecords(), parsed.records);
  }
  // The previous version's file: the records alone, exactly as it wrote them.
  if (isRecords(parsed) && text === serialise(parsed)) return Object.assign(emptyRecords(), parsed);
  throw refused(file, 'it is not a store file');
}

function refused(file: string, why: string): ProvisioningError {
  return new ProvisioningError('storage', `refusing to use ${file} as the store: ${why}; it is left untouched`);
}

function serialise(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** A null-prototype object: keys such as "__proto__" are plain data. */
function emptyRecords(): Records {
  return Object.create(null) as Records;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRecords(value: unknown): value is Records {
  return isObject(value) && Object.values(value).every((v) => typeof v === 'string');
}

async function writeAtomically(file: string, records: Records): Promise<void> {
  const directory = dirname(file);
  const temp = join(directory, `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await makeDirectory(directory, 0o700);
  } catch (error) {
    throw storageError(`cannot create the directory ${directory}`, error);
  }
  await removeStaleTemps(directory, basename(file));
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.chmod(0o600); // exact, whatever the umask
      await handle.writeFile(serialise({ [FORMAT_KEY]: FORMAT_VERSION, records }), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw storageError(`cannot write the store ${file}`, error);
  }
  await syncDirectory(directory);
}

/** Deletes `.<name>.<pid>.<random>.tmp` files that killed writers left. Best effort. */
async function removeStaleTemps(directory: string, name: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch {
    return;
  }
  const prefix = `.${name}.`;
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const match = /^(\d{1,10})\.[0-9a-f]{12}\.tmp$/.exec(entry.slice(prefix.length));
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid !== process.pid && isRunning(pid)) continue;
    await unlink(join(directory, entry)).catch(() => {});
  }
}

function isRunning(pid: number): boolean {
  if (!(pid > 0)) return false; // process.kill(0) would signal our own process group
  try {
    process.kill(pid, 0); // signal 0: only checks that the process exists
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/** Make the rename durable. Not every platform can open or fsync a directory (Windows). */
async function syncDirectory(directory: string): Promise<void> {
  try {
    const handle = await open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort
  }
}

function storageError(what: string, error: unknown): ProvisioningError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = code ?? (error instanceof Error ? error.message : String(error));
  return new ProvisioningError('storage', `${what} (${reason})`, { cause: error });
}

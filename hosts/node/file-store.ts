// The Node host's Store port: one JSON object file mapping key → string.
//
// - Every change rewrites the whole file atomically: a uniquely named temp file in the same
//   directory is written with mode 0o600, fsynced, renamed over the target, and the directory
//   is fsynced (best effort). After a crash the file holds the old or the new object, never a
//   mix, and readers never see a half-written file.
// - Changes to one path are serialised through a promise chain shared by every store of that
//   path in this process; `get` waits for changes already queued (read-your-writes). Other
//   processes writing the same file are not coordinated: the last rename wins.
// - A file that is not a JSON object of strings makes `get` throw ProvisioningError('storage');
//   `set` and `delete` replace it with a fresh object (the new value is never lost to it).
// - A writer killed mid-write (kill -9, power loss) leaves its temp file behind, never a damaged
//   target. Each write first removes such leftovers: temp files of this target named for a
//   process that is no longer running, or for this process (whose writes to one path are
//   serialised, so none of its own is in flight). A live process's temp file is left alone.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ProvisioningError } from '../../src/errors.js';
import type { Store } from '../../src/ports.js';

type Records = Record<string, string>;

/** Tail of the change queue of each absolute path. */
const queues = new Map<string, Promise<void>>();

export function createFileStore(path: string): Store {
  if (typeof path !== 'string' || path === '') {
    throw new ProvisioningError('invalid-input', 'the store path must be a non-empty file name');
  }
  const file = resolve(path);

  function change(edit: (records: Records) => boolean): Promise<void> {
    const previous = queues.get(file) ?? Promise.resolve();
    const next = previous.then(async () => {
      const records = (await load(file, 'recover')) ?? emptyRecords();
      if (edit(records)) await writeAtomically(file, records);
    });
    const tail = next.catch(() => {});
    queues.set(file, tail);
    void tail.then(() => {
      if (queues.get(file) === tail) queues.delete(file);
    });
    return next;
  }

  return {
    async get(key) {
      await queues.get(file);
      const records = await load(file, 'throw');
      return records !== undefined && Object.hasOwn(records, key) ? records[key] : undefined;
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

/**
 * The records in `file`; undefined when the file does not exist. A corrupt file throws
 * (`onCorrupt: 'throw'`) or reads as empty (`'recover'`, for a change that replaces it).
 */
async function load(file: string, onCorrupt: 'throw' | 'recover'): Promise<Records | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw storageError(`cannot read the store ${file}`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    if (onCorrupt === 'recover') return emptyRecords();
    throw new ProvisioningError('storage', `the store ${file} is not valid JSON`, { cause: error });
  }
  if (!isRecords(parsed)) {
    if (onCorrupt === 'recover') return emptyRecords();
    throw new ProvisioningError('storage', `the store ${file} is not a JSON object of strings`);
  }
  return Object.assign(emptyRecords(), parsed);
}

/** A null-prototype object: keys such as "__proto__" are plain data. */
function emptyRecords(): Records {
  return Object.create(null) as Records;
}

function isRecords(value: unknown): value is Records {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

async function writeAtomically(file: string, records: Records): Promise<void> {
  const directory = dirname(file);
  const temp = join(directory, `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(directory, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw storageError(`cannot create the directory ${directory}`, error);
  }
  await removeStaleTemps(directory, basename(file));
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.chmod(0o600); // exact, whatever the umask
      await handle.writeFile(`${JSON.stringify(records, null, 2)}\n`, 'utf8');
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

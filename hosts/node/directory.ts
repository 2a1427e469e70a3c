// Making a directory and its missing parents, one level at a time, with an end.
//
// Node 20's `mkdir(path, { recursive: true })` loops forever where a parent can neither be made
// nor found, as under /proc ('/proc/nope/x': ENOENT for /proc/nope, forever): the promise never
// settles, a thread-pool thread spins, and the sync form hangs the process. Here each missing
// level is made once, from the top, and the first refusal is thrown as it is (code and path).
import { mkdirSync, type Stats, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Makes `path` and its missing parents (each with `mode`); an existing directory is fine. */
export async function makeDirectory(path: string, mode = 0o700): Promise<void> {
  for (const level of await missingLevels(resolve(path))) {
    try {
      await mkdir(level, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      checkDirectory(level, await stat(level)); // made meanwhile by someone else
    }
  }
}

/** makeDirectory, for synchronous code. */
export function makeDirectorySync(path: string, mode = 0o700): void {
  const target = resolve(path);
  const missing: string[] = [];
  for (let level = target; ; level = dirname(level)) {
    const stats = statOrAbsent(() => statSync(level));
    if (stats) {
      checkDirectory(level, stats);
      break;
    }
    missing.unshift(level);
    if (dirname(level) === level) break;
  }
  for (const level of missing) {
    try {
      mkdirSync(level, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      checkDirectory(level, statSync(level));
    }
  }
}

/** The levels of `target` that do not exist yet, top first; throws if one that exists is not a directory. */
async function missingLevels(target: string): Promise<string[]> {
  const missing: string[] = [];
  for (let level = target; ; level = dirname(level)) {
    const stats = await stat(level).catch((error: NodeJS.ErrnoException) => {
      if (!absent(error)) throw error;
      return undefined;
    });
    if (stats) {
      checkDirectory(level, stats);
      return missing;
    }
    missing.unshift(level);
    if (dirname(level) === level) return missing;
  }
}

function statOrAbsent(read: () => Stats): Stats | undefined {
  try {
    return read();
  } catch (error) {
    if (!absent(error as NodeJS.ErrnoException)) throw error;
    return undefined;
  }
}

/** Not there: missing, or under a file (the walk up then finds the file). */
function absent(error: NodeJS.ErrnoException): boolean {
  return error.code === 'ENOENT' || error.code === 'ENOTDIR';
}

function checkDirectory(path: string, stats: { isDirectory(): boolean }): void {
  if (stats.isDirectory()) return;
  const error: NodeJS.ErrnoException = new Error(`ENOTDIR: not a directory, mkdir '${path}'`);
  error.code = 'ENOTDIR';
  error.path = path;
  throw error;
}

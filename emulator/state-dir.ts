// The state directory: made (with its missing parents) one level at a time, so that a path that
// can be neither made nor found ends with an error naming it. Node 20's recursive mkdir loops
// forever on one ('/proc/nope/st'): the emulator never started, spun a CPU and could not be
// stopped. (The Node host has the same walk for --store; the emulator imports no host.)
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** The state directory cannot be made or written: the path and why, for the person who chose it. */
export class StateDirectoryError extends Error {
  override readonly name = 'StateDirectoryError';
  constructor(
    readonly path: string,
    readonly code: string,
    what = 'cannot make the state directory',
  ) {
    super(`${what} ${path}: ${describeCode(code, path)}`);
  }
}

/** Makes `stateDir` and its missing parents (mode 0700); an existing directory is fine. */
export async function makeStateDirectory(stateDir: string): Promise<void> {
  const target = resolve(stateDir);
  const missing: string[] = [];
  for (let level = target; ; level = dirname(level)) {
    const stats = await stat(level).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw new StateDirectoryError(target, error.code ?? 'unknown');
    });
    if (stats) {
      if (!stats.isDirectory()) throw new StateDirectoryError(target, level === target ? 'EEXIST' : 'ENOTDIR');
      break;
    }
    missing.unshift(level);
    if (dirname(level) === level) break;
  }
  for (const level of missing) {
    try {
      await mkdir(level, { mode: 0o700 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
      if (code !== 'EEXIST' || !(await stat(level)).isDirectory()) throw new StateDirectoryError(target, code);
    }
  }
}

/** A failed write in the state directory, as a StateDirectoryError naming the file. */
export function stateFileError(path: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === undefined ? error : new StateDirectoryError(path, code, 'cannot write');
}

function describeCode(code: string, path: string): string {
  switch (code) {
    case 'EEXIST':
      return 'a file (not a directory) is in the way';
    case 'ENOTDIR':
      return `a parent of ${path} is a file, not a directory`;
    case 'ENOENT':
      return 'a parent cannot be made there (ENOENT)';
    case 'EACCES':
    case 'EPERM':
      return `not allowed (${code})`;
    case 'EROFS':
      return 'the file system is read-only (EROFS)';
    default:
      return code;
  }
}

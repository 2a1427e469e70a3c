// makeDirectory: the missing levels are made one at a time and the first refusal is thrown, so a
// path that can be neither made nor found ends (Node 20's recursive mkdir loops on it forever).
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeDirectory, makeDirectorySync } from '../hosts/node/directory.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'moddable-dps-directory-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** What `make` throws (its code and path), or 'made'. */
async function outcome(make: () => unknown): Promise<{ code?: string; path?: string } | 'made'> {
  try {
    await make();
    return 'made';
  } catch (error) {
    const { code, path } = error as NodeJS.ErrnoException;
    return { ...(code !== undefined && { code }), ...(path !== undefined && { path }) };
  }
}

describe.each([
  ['makeDirectory', makeDirectory],
  ['makeDirectorySync', makeDirectorySync],
] as const)('%s', (_name, make) => {
  it('makes the missing levels with the mode given, and takes a directory that exists', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    expect(await outcome(() => make(deep, 0o700))).toBe('made');
    expect(statSync(deep).isDirectory()).toBe(true);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    expect(await outcome(() => make(deep))).toBe('made');
    expect(await outcome(() => make(dir))).toBe('made');
  });

  it.runIf(process.platform === 'linux')('ends with ENOENT under /proc, where a recursive mkdir never returns', async () => {
    expect(await outcome(() => make('/proc/nope/st'))).toEqual({ code: 'ENOENT', path: '/proc/nope' });
  });

  it.runIf(process.platform === 'linux' && existsSync('/sys/kernel'))(
    'throws the refusal of the level it cannot make (EPERM under /sys)',
    async () => {
      const result = await outcome(() => make('/sys/nope/st'));
      expect(result).toMatchObject({ path: '/sys/nope' });
      expect(['EPERM', 'EACCES']).toContain((result as { code: string }).code);
    },
  );

  it('names a file in the way as ENOTDIR, whether it is the directory or a parent', async () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    expect(await outcome(() => make(file))).toEqual({ code: 'ENOTDIR', path: file });
    expect(await outcome(() => make(join(file, 'sub', 'dir')))).toEqual({ code: 'ENOTDIR', path: file });
  });
});

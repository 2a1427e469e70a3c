import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileStore } from '../hosts/node/file-store.js';
import { ProvisioningError } from '../src/errors.js';

// rename can be made to fail, to see what a failed write leaves behind.
const faults = vi.hoisted(() => ({ rename: false }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    rename: async (from: string, to: string) => {
      if (faults.rename) throw Object.assign(new Error('injected I/O error'), { code: 'EIO' });
      return real.rename(from, to);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'moddable-dps-store-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function storageError(promise: Promise<unknown>): Promise<ProvisioningError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as ProvisioningError).kind).toBe('storage');
    return error as ProvisioningError;
  }
  throw new Error('expected a storage error');
}

const onPosix = process.platform !== 'win32';

describe('createFileStore', () => {
  it('round-trips set, get and delete, and keeps other keys', async () => {
    const file = join(dir, 'device.json');
    const store = createFileStore(file);
    expect(await store.get('assignment')).toBeUndefined();
    await store.set('assignment', '{"assignedHub":"hub-1.azure-devices.net"}');
    await store.set('other', 'x');
    expect(await store.get('assignment')).toBe('{"assignedHub":"hub-1.azure-devices.net"}');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ assignment: '{"assignedHub":"hub-1.azure-devices.net"}', other: 'x' });

    // A second store of the same file (the next run) sees it.
    expect(await createFileStore(file).get('other')).toBe('x');

    await store.delete('assignment');
    expect(await store.get('assignment')).toBeUndefined();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ other: 'x' });
  });

  it('does not create a file to delete a key that is not there', async () => {
    const file = join(dir, 'never.json');
    await createFileStore(file).delete('k');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('creates missing parent directories', async () => {
    const file = join(dir, 'a', 'b', 'store.json');
    await createFileStore(file).set('k', 'v');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ k: 'v' });
  });

  it.runIf(onPosix)('writes the file with mode 0600, also over an existing 0644 file', async () => {
    const file = join(dir, 'identity.json');
    writeFileSync(file, '{}', { mode: 0o644 });
    chmodSync(file, 0o644);
    await createFileStore(file).set('k', 'v');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('replaces the file atomically: a concurrent reader only ever sees whole JSON, and no temp file is left', async () => {
    const file = join(dir, 'store.json');
    const store = createFileStore(file);
    await store.set('seed', '0');
    const big = 'x'.repeat(64 * 1024); // large enough that a non-atomic write could be seen half-done
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = readFileSync(file, 'utf8');
        const parsed = JSON.parse(text) as Record<string, string>; // throws on a torn file
        expect(parsed.seed).toBe('0');
        reads++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 40; i++) await store.set('value', `${i}:${big}`);
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect((await store.get('value'))!.startsWith('39:')).toBe(true);
    expect(readdirSync(dir)).toEqual(['store.json']);
  });

  it('serialises concurrent sets: every value is persisted, also across two stores of one file', async () => {
    const file = join(dir, 'store.json');
    const a = createFileStore(file);
    const b = createFileStore(join(dir, '.', 'store.json'));
    await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).set(`key${i}`, `value${i}`)));
    const onDisk = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    expect(Object.keys(onDisk).length).toBe(50);
    for (let i = 0; i < 50; i++) expect(onDisk[`key${i}`]).toBe(`value${i}`);
    expect(readdirSync(dir)).toEqual(['store.json']);
  });

  it('reads its own writes: get waits for a set that has not finished', async () => {
    const store = createFileStore(join(dir, 'store.json'));
    const pending = store.set('k', 'v1');
    expect(await store.get('k')).toBe('v1');
    await pending;
    void store.delete('k');
    expect(await store.get('k')).toBeUndefined();
  });

  it('a corrupt file: get throws storage naming the file; set replaces it and keeps the new value', async () => {
    const file = join(dir, 'store.json');
    writeFileSync(file, '{"assignment": "half-writ');
    const store = createFileStore(file);
    const error = await storageError(store.get('assignment'));
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not valid JSON/);

    await store.set('assignment', 'fresh');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ assignment: 'fresh' });
    expect(await store.get('assignment')).toBe('fresh');
  });

  it('valid JSON of the wrong shape is rejected too, and delete repairs it', async () => {
    for (const text of ['[1,2]', '"text"', 'null', '{"a":1}']) {
      const file = join(dir, 'shape.json');
      writeFileSync(file, text);
      const store = createFileStore(file);
      const error = await storageError(store.get('a'));
      expect(error.message).toMatch(/not a JSON object of strings/);
      await store.set('a', 'b');
      await store.delete('a');
      expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({});
    }
  });

  it('keeps "__proto__" and similar keys as plain data', async () => {
    const file = join(dir, 'store.json');
    const store = createFileStore(file);
    await store.set('__proto__', 'p');
    await store.set('constructor', 'c');
    expect(await store.get('__proto__')).toBe('p');
    expect(await store.get('toString')).toBeUndefined();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(JSON.parse('{"__proto__":"p","constructor":"c"}'));
  });

  it('a failed write is a storage error, keeps the old file, leaves no temp file, and does not block later writes', async () => {
    const file = join(dir, 'store.json');
    const store = createFileStore(file);
    await store.set('k', 'old');
    faults.rename = true;
    try {
      const error = await storageError(store.set('k', 'new'));
      expect(error.message).toContain(file);
      expect(error.message).toContain('EIO');
    } finally {
      faults.rename = false;
    }
    expect(readdirSync(dir)).toEqual(['store.json']);
    expect(await store.get('k')).toBe('old');
    await store.set('k', 'newer');
    expect(await store.get('k')).toBe('newer');
  });

  it('a store path that is a directory is a storage error on get and set', async () => {
    const file = join(dir, 'store.json');
    mkdirSync(file);
    const store = createFileStore(file);
    await storageError(store.get('k'));
    await storageError(store.set('k', 'v'));
  });

  it('a parent that is a file is a storage error', async () => {
    writeFileSync(join(dir, 'plain'), 'x');
    const store = createFileStore(join(dir, 'plain', 'store.json'));
    await storageError(store.set('k', 'v'));
    await storageError(store.get('k'));
  });

  it('rejects an empty path as invalid input', () => {
    expect(() => createFileStore('')).toThrow(ProvisioningError);
  });
});

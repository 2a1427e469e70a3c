// An emulator for one test file: a fresh state directory under the system's temporary folder,
// the emulator started in it, and one close() that stops it and removes the folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DpsEmulator, type EmulatorOptions, startEmulator } from '../../emulator/index.js';

export interface TestEmulator {
  dps: DpsEmulator;
  /** The test's own folder; the emulator's state is in <dir>/emulator. */
  dir: string;
  close(): Promise<void>;
}

export async function startTestEmulator(prefix: string, options: Omit<EmulatorOptions, 'stateDir'>): Promise<TestEmulator> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let dps: DpsEmulator;
  try {
    dps = await startEmulator({ ...options, stateDir: join(dir, 'emulator') });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dps,
    dir,
    async close() {
      await dps.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

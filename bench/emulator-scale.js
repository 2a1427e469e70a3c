// `node bench/emulator-scale.js [--devices=100000]`: the emulator at scale (bench/emulator-scale.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleForNode } from './bundle.js';

const arg = process.argv.find((a) => a.startsWith('--devices='));
const devices = arg ? Number(arg.slice('--devices='.length)) : 100_000;
const emulatorFile = await bundleForNode('bench/emulator-process.ts', 'bench/emulator-process', { logLevel: 'warning' });
const scale = await import(
  pathToFileURL(await bundleForNode('bench/emulator-scale.ts', 'bench/emulator-scale', { logLevel: 'warning' })).href
);
const stateDir = mkdtempSync(join(tmpdir(), 'dps-bench-scale-'));
try {
  console.log(`(s) the emulator at scale: ${devices} devices, 16 at a time, state kept, retry-after 0`);
  const result = await scale.run({ emulatorFile, stateDir, devices });
  if (process.argv.includes('--json')) console.log(JSON.stringify(result));
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}

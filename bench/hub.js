// `node bench/hub.js [--quick]`: the hub session's figures alone (bench/hub.ts; npm run bench
// runs them too): boot to "twin received" over a delaying link, and CPU per telemetry message,
// ours and Microsoft's side by side.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleForNode } from './bundle.js';

const emulatorFile = await bundleForNode('bench/emulator-process.ts', 'bench/emulator-process', { logLevel: 'warning' });
const hub = await import(pathToFileURL(await bundleForNode('bench/hub.ts', 'bench/hub', { logLevel: 'warning' })).href);
const stateDir = mkdtempSync(join(tmpdir(), 'dps-bench-hub-'));
try {
  await hub.run({ emulatorFile, stateDir, quick: process.argv.includes('--quick') });
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}

// `node bench/console.js [--devices=1000] [--runs=50]`: the web console's pages rendered on the server (bench/console.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleForNode, ROOT } from './bundle.js';

const option = (name, fallback) => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
};
const devices = option('devices', 1000);
const runs = option('runs', 50);
const bench = await import(pathToFileURL(await bundleForNode('bench/console.ts', 'bench/console', { logLevel: 'warning' })).href);
const stateDir = mkdtempSync(join(tmpdir(), 'dps-bench-console-'));
try {
  console.log(`(w) the web console's pages, rendered on the server: examples/emulator.json, then ${devices} devices registered`);
  const result = await bench.run({ stateDir, configFile: join(ROOT, 'examples', 'emulator.json'), devices, runs });
  if (process.argv.includes('--json')) console.log(JSON.stringify(result));
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}

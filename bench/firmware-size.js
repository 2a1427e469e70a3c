#!/usr/bin/env node
// The firmware's footprint: builds manifest.json with the Moddable SDK's mcconfig for the
// simulator in release mode and prints the size of each of the firmware's own compiled modules
// (the .xsb bytecode mcconfig leaves under $MODDABLE/build/tmp/<platform>/mc/release/moddable-dps/
// modules): the core (src/), the device host (hosts/moddable/) and the npm modules it bundles.
// XS bytecode is the same for every target, so these are the sizes that go into an ESP32 build.
// The SDK's own modules (TLS, sockets, Preference, ...) are not counted.
//
//   MODDABLE=~/moddable node bench/firmware-size.js [--json]
//
// Without the SDK it prints one line saying so and exits 0.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const PLATFORM = process.platform === 'darwin' ? 'mac' : process.platform === 'win32' ? 'win' : 'lin';
const MODDABLE = process.env.MODDABLE;
const json = process.argv.includes('--json');

const TOOLS = MODDABLE ? join(MODDABLE, 'build', 'bin', PLATFORM, 'release') : '';
const mcconfig = join(TOOLS, PLATFORM === 'win' ? 'mcconfig.exe' : 'mcconfig');
if (!MODDABLE || !existsSync(mcconfig)) {
  console.log(
    `firmware-size: skipped: ${MODDABLE ? `no mcconfig in ${TOOLS} (build the SDK's tools)` : 'MODDABLE is not set (needs the Moddable SDK)'}`,
  );
  process.exit(0);
}

const GROUPS = [
  { name: 'core (src/)', prefix: 'src' },
  { name: 'device host (hosts/moddable/)', prefix: 'hosts/moddable' },
  { name: 'npm: @noble/hashes', prefix: '@noble/hashes' },
];

const build = spawnSync(mcconfig, ['-m', '-p', PLATFORM, '-t', 'build', join(REPO, 'manifest.json')], {
  cwd: REPO,
  encoding: 'utf8',
  env: { ...process.env, PATH: [TOOLS, join(REPO, 'node_modules', '.bin'), process.env.PATH].join(PLATFORM === 'win' ? ';' : ':') },
  maxBuffer: 64 * 1024 * 1024,
});
if (build.status !== 0) {
  process.stderr.write(`${build.stdout}\n${build.stderr}\nfirmware-size: mcconfig failed (exit ${build.status})\n`);
  process.exit(1);
}

const modulesDir = join(MODDABLE, 'build', 'tmp', PLATFORM, 'mc', 'release', 'moddable-dps', 'modules');
const rows = [];
for (const file of listXsb(modulesDir)) {
  const module = relative(modulesDir, file)
    .replace(/\\/g, '/')
    .replace(/\.xsb$/, '');
  const group = GROUPS.find((g) => module === g.prefix || module.startsWith(`${g.prefix}/`));
  if (group) rows.push({ group: group.name, module, bytes: statSync(file).size });
}

const total = rows.reduce((sum, row) => sum + row.bytes, 0);
const date = new Date().toISOString().slice(0, 10);
if (json) {
  console.log(JSON.stringify({ date, platform: PLATFORM, build: 'release', modules: rows, total }, null, 2));
} else {
  console.log(`Firmware modules, compiled XS bytecode (.xsb), release build for ${PLATFORM}, ${date}`);
  for (const group of GROUPS) {
    const inGroup = rows.filter((row) => row.group === group.name);
    if (!inGroup.length) continue;
    console.log(`\n${group.name}`);
    for (const row of inGroup) console.log(`  ${row.module.padEnd(34)} ${String(row.bytes).padStart(7)} bytes`);
    console.log(`  ${'subtotal'.padEnd(34)} ${String(inGroup.reduce((sum, row) => sum + row.bytes, 0)).padStart(7)} bytes`);
  }
  console.log(`\n${'total'.padEnd(36)} ${String(total).padStart(7)} bytes`);
}

function listXsb(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listXsb(path));
    else if (entry.name.endsWith('.xsb')) out.push(path);
  }
  return out.sort();
}

// Footprint of the core on the XS engine (xsnap, built by @agoric/xsnap), and its bundle size.
//   node bench/xs-footprint.js            plain XS (as on a device)
//   node bench/xs-footprint.js --lockdown after SES lockdown (frozen intrinsics)
//   node bench/xs-footprint.js --json     the figures as JSON
//   node bench/xs-footprint.js --repeat=N run each operation N times (default 3): "retained" must not grow with N
//
// Per operation, xsnap reports for one delivery: computrons (XS's metering: executed byte codes
// and some native work; deterministic, machine-independent) and the heap's slot count when the
// delivery ended. Each operation starts with a garbage collection, so "slots" = what it allocated
// (if no collection ran during it) and "retained" = slots still live after the next collection.
// A slot is 32 bytes on 64-bit XS and 16 bytes on ESP32. xsnap does not report chunk memory
// (string and ArrayBuffer contents), so strings and byte arrays count only by their slots.
// Under --lockdown, "load" is mostly SES's tamed global eval (xsnap evaluates scripts with it),
// which scans the source text with regular expressions: ~11 computrons per byte of source.
// Moddable's preloaded modules do not go through it; use the plain figures for a device.
// The flow figures include the in-memory DPS that answers the device (it encodes and decodes
// its side with the same codec): about one "MQTT decode" plus one "MQTT encode" of extra work.
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { bundleForNode, ROOT } from './bundle.js';

const args = new Set(process.argv.slice(2));
const lockdown = args.has('--lockdown');

// The harness is TypeScript (test/xs/harness.ts): bundle it for Node first.
const harnessFile = await bundleForNode('test/xs/harness.ts', 'xs-harness');
const harness = await import(pathToFileURL(harnessFile).href);

// ---- Bundle size of the core: what a device imports (provisionDevice and the identity helpers).
const DEVICE_ENTRY = [
  "export { provisionDevice, loadAssignment } from '../../src/provisioner.js';",
  "export { buildRegistrationId, validateRegistrationId, deriveDeviceKey } from '../../src/identity.js';",
  "export { ProvisioningError } from '../../src/errors.js';",
].join('\n');

async function size(minify) {
  const result = await build({
    stdin: { contents: DEVICE_ENTRY, resolveDir: join(ROOT, 'test', 'xs'), sourcefile: 'device-entry.ts', loader: 'ts' },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    minify,
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].contents;
  const inputs = Object.values(result.metafile.outputs)[0].inputs;
  let own = 0;
  let deps = 0;
  for (const [path, { bytesInOutput }] of Object.entries(inputs)) {
    if (path.includes('node_modules')) deps += bytesInOutput;
    else own += bytesInOutput;
  }
  return { bytes: code.length, gzip: gzipSync(code).length, own, deps, modules: Object.keys(inputs).length };
}

// ---- Computrons and heap per operation.
const OPERATIONS = [
  ['noop', 'empty command (harness dispatch, gc)'],
  ['deriveDeviceKey', 'key derivation (HMAC-SHA256, base64)'],
  ['sasToken', 'DPS SAS token'],
  ['mqttEncode', 'MQTT encode (5 device packets)'],
  ['mqttDecode', 'MQTT decode (6 DPS packets, 1 stream)'],
  ['registerFlow', 'registerDevice: register, 202, poll, 200'],
  ['provisionFirstBoot', 'provisionDevice, first boot (+derive, store)'],
  ['provisionSecondBoot', 'provisionDevice, second boot (cached)'],
  ['hubConnect', 'hub connect: CONNECT, 3 SUBSCRIBEs, twin GET'],
  ['hubTelemetry', 'hub telemetry message (QoS 1, PUBACK)'],
];
const REPEAT = Number([...args].find((a) => a.startsWith('--repeat='))?.slice(9) ?? 3);

const code = harness.sandboxed(await harness.bundle("import './footprint-entry.ts';"));
const empty = harness.sandboxed(await harness.bundle(''));
const command = (name) => JSON.stringify({ name });
const commands = [command('gc')];
for (const [name] of OPERATIONS) {
  for (let i = 0; i < REPEAT; i++) commands.push(command(name));
  commands.push(command('gc'));
}

const [run, baseline] = await Promise.all([
  harness.runXs({ name: 'xs-footprint', lockdown, scripts: [code], commands }),
  harness.runXs({ name: 'xs-footprint-empty', lockdown, scripts: [empty] }),
]);
if (run.error) throw new Error(`xsnap: ${run.error}\n${run.stderr}`);
for (const { reply } of run.commands) {
  const parsed = JSON.parse(reply);
  if (!parsed.ok) throw new Error(`an operation failed in XS: ${JSON.stringify(parsed.error)}`);
}

const rows = [];
let at = 1;
let before = run.commands[0].meterUsage.currentHeapCount;
for (const [name, label] of OPERATIONS) {
  const runs = run.commands.slice(at, at + REPEAT);
  const after = run.commands[at + REPEAT].meterUsage.currentHeapCount;
  at += REPEAT + 1;
  rows.push({
    name,
    label,
    computeFirst: runs[0].meterUsage.compute,
    computeNext: runs[REPEAT - 1].meterUsage.compute,
    slotsFirst: runs[0].meterUsage.currentHeapCount - before,
    retained: after - before,
  });
  before = after;
}
const load = {
  compute: run.scripts[0].meterUsage.compute - baseline.scripts[0].meterUsage.compute,
  slots: run.scripts[0].meterUsage.currentHeapCount - baseline.scripts[0].meterUsage.currentHeapCount,
};

const [plain, minified] = await Promise.all([size(false), size(true)]);
const figures = {
  date: new Date().toISOString().slice(0, 10),
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cpus: availableParallelism(), node: process.version },
  engine: 'xsnap 0.15.0 (XS 13.3.0)',
  lockdown,
  load,
  operations: rows,
  bundle: { plain, minified },
};

if (args.has('--json')) {
  console.log(JSON.stringify(figures, null, 2));
} else {
  const pad = (text, n) => String(text).padEnd(n);
  const num = (n) => String(n).padStart(11);
  console.log(
    `XS footprint of the moddable-dps core — ${figures.date}, ${figures.machine.cpu} (${figures.machine.cpus} CPUs), Node ${process.version}`,
  );
  console.log(`${figures.engine}${lockdown ? ', after SES lockdown' : ', plain (no lockdown)'}`);
  console.log('');
  console.log(`${pad('operation', 46)}${num('computrons')}${num('(repeat)')}${num('slots')}${num('retained')}`);
  console.log(`${pad('load the bundle (module init)', 46)}${num(load.compute)}${num('')}${num(load.slots)}${num('')}`);
  for (const r of rows) console.log(`${pad(r.label, 46)}${num(r.computeFirst)}${num(r.computeNext)}${num(r.slotsFirst)}${num(r.retained)}`);
  console.log('');
  console.log(
    `computrons: first run, then the last of ${REPEAT}; slots: allocated by the first run (32 B each on 64-bit XS, 16 B on ESP32);`,
  );
  console.log(`retained: slots still live after a collection once the ${REPEAT} runs ended (caches, the stored record).`);
  console.log("every figure includes the empty command's cost (first row).");
  if (lockdown) console.log("under lockdown, 'load' is mostly SES's global eval scanning the bundle's source, not the core's module init.");
  console.log('');
  console.log('core bundle (provisionDevice + identity helpers, with @noble/hashes; esbuild, ES2022):');
  const line = (name, s) =>
    console.log(
      `  ${pad(name, 10)}${String(s.bytes).padStart(7)} bytes  gzip ${String(s.gzip).padStart(6)}  (own code ${s.own}, dependencies ${s.deps}; ${s.modules} modules)`,
    );
  line('plain', plain);
  line('minified', minified);
}

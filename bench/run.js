// `npm run bench`: our client against Microsoft's (azure-iot-provisioning-device-mqtt) and against
// the floor, side by side in one run on the local emulator, then the XS footprint and the
// firmware size. Every figure is printed; the targets are checked as ratios from this run.
//
//   node bench/run.js               the full run (about 3 minutes)
//   node bench/run.js --quick       fewer repetitions and devices (a smoke run, figures noisier)
//   node bench/run.js --json=FILE   also write every figure to FILE
//
// Each client runs in a process of its own, the emulator in another (see bench/README.md for
// what each figure means and the recorded results). Ours is measured as users run it: the
// `moddable-dps` CLI in dist/ (rebuilt first) for whole-process time and fleet runs.
import { execFile, fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { bundleForNode, ROOT } from './bundle.js';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const JSON_FILE = argv.find((a) => a.startsWith('--json='))?.slice(7);
const REPS = QUICK ? 2 : 7; // latency repetitions (each client: one cold + one warm, and one whole process)
const LOAD_REPS = QUICK ? 1 : 5; // CPU and fleet repetitions
const CPU_DEVICES = QUICK ? 60 : 200;
const FLEET_DEVICES = QUICK ? 150 : 400;
const CONCURRENCY = 16;
const RETRY_AFTER_S = 1;

const CLI = join(ROOT, 'dist', 'cli', 'bin.js');
const GROUP_KEY = Buffer.alloc(32, 7).toString('base64'); // bench/common.ts BENCH_GROUP_KEY
const ID_SCOPE = '0ne000BENCH';
const results = { date: new Date().toISOString(), machine: machine(), quick: QUICK };

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const pad = (x, n) => String(x).padStart(n);
let runCounter = 0;
const prefix = (tag) => `b${Date.now().toString(36)}-${tag}-${runCounter++}-`;

// ---- set-up ---------------------------------------------------------------------------------
const m = results.machine;
console.log(
  `moddable-dps bench — ${results.date.slice(0, 10)}, ${m.cpu}, ${m.cpus} CPUs (nproc), Node ${m.node}, load average ${m.loadavg}`,
);
console.log(QUICK ? '--quick: fewer repetitions, noisier figures\n' : '');

await promisify(execFile)(
  process.execPath,
  [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
  { cwd: ROOT },
).catch((error) => {
  console.log(`warning: the build reported errors; measuring what it emitted\n${String(error.stdout ?? error).slice(0, 2000)}`);
});
const bundled = {};
for (const name of ['emulator-process', 'client-process', 'microsoft-register']) {
  bundled[name] = await bundleForNode(`bench/${name}.ts`, `bench/${name}`, { logLevel: 'warning' });
}
const stateDir = mkdtempSync(join(tmpdir(), 'dps-bench-'));

// ---- (d) the floor and (a) latency, on an emulator with retry-after 1 s -----------------------
let dps = await emulator(RETRY_AFTER_S);
console.log(`(d) the floor — loopback, emulator with retry-after ${RETRY_AFTER_S} s`);
const floorRun = await child({
  task: 'floor',
  target: dps.target,
  handshakes: 30,
  roundTrips: 50,
  idealRuns: QUICK ? 3 : 5,
  prefix: prefix('floor'),
});
const handshakeMs = median(floorRun.handshakeMs);
const rttMs = median(floorRun.rttMs);
const floorMs = RETRY_AFTER_S * 1000 + handshakeMs + 3 * rttMs;
const floorColdMs = RETRY_AFTER_S * 1000 + floorRun.handshakeColdMs + 3 * rttMs;
const ideal = {
  totalMs: median(floorRun.ideal.map((t) => t.totalMs)),
  handshakeMs: median(floorRun.ideal.map((t) => t.handshakeMs)),
  connectMs: median(floorRun.ideal.map((t) => t.connectMs)),
  registerMs: median(floorRun.ideal.map((t) => t.registerMs)),
  pollMs: median(floorRun.ideal.map((t) => t.pollMs.at(-1))),
  waitedMs: median(floorRun.ideal.map((t) => t.waitedMs)),
};
console.log(
  `  TLS handshake            ${f2(handshakeMs)} ms median of ${floorRun.handshakeMs.length} (the first in a fresh process: ${f2(floorRun.handshakeColdMs)} ms)`,
);
console.log(`  MQTT round trip          ${f2(rttMs)} ms median of ${floorRun.rttMs.length} (PINGREQ → PINGRESP)`);
console.log(
  `  floor                    ${f1(floorMs)} ms = ${RETRY_AFTER_S * 1000} + handshake + 3 round trips (overhead floor ${f1(floorMs - RETRY_AFTER_S * 1000)} ms; cold process ${f1(floorColdMs - RETRY_AFTER_S * 1000)} ms)`,
);
console.log(
  `  ideal client             ${f1(ideal.totalMs)} ms median of ${floorRun.ideal.length}: handshake ${f2(ideal.handshakeMs)}, CONNECT→CONNACK ${f2(ideal.connectMs)}, register→202 ${f2(ideal.registerMs)}, wait ${f1(ideal.waitedMs)}, poll→200 ${f2(ideal.pollMs)}`,
);
console.log(
  `                           (same packets as ours, raw TLS, no parsing: the protocol's floor on this server, its own work included)`,
);
results.floor = { handshakeMs, handshakeColdMs: floorRun.handshakeColdMs, rttMs, floorMs, floorColdMs, ideal };

console.log(`\n(a) latency of one provisioning, retry-after ${RETRY_AFTER_S} s — median of ${REPS}, each client in a fresh process`);
const lat = { ours: { cold: [], warm: [], whole: [] }, microsoft: { cold: [], warm: [], whole: [] }, node: [], contextMs: [] };
for (let rep = 0; rep < REPS; rep++) {
  for (const client of rep % 2 ? ['microsoft', 'ours'] : ['ours', 'microsoft']) {
    const r = await child({ task: 'one', target: dps.target, client, prefix: prefix(`one-${client}`) });
    lat[client].cold.push(r.coldMs);
    if (r.contextMs !== undefined) lat.contextMs.push(r.contextMs);
    lat[client].warm.push(r.warmMs);
    lat[client].whole.push(await wholeProcess(client, dps.target));
  }
  lat.node.push((await timed(process.execPath, ['-e', ''])).ms);
}
const L = (client, what) => median(lat[client][what]);
const row = (label, a, b, note = '') => console.log(`  ${label.padEnd(34)}${pad(f1(a), 9)}${pad(f1(b), 11)}   ${note}`);
console.log(`  ${''.padEnd(34)}${pad('ours', 9)}${pad('Microsoft', 11)}`);
row('first in the process (cold), ms', L('ours', 'cold'), L('microsoft', 'cold'), 'client set-up included');
row('second in the process (warm), ms', L('ours', 'warm'), L('microsoft', 'warm'));
row(
  'overhead beyond the wait, cold',
  L('ours', 'cold') - 1000,
  L('microsoft', 'cold') - 1000,
  `ours: createTlsConnect alone ${f1(median(lat.contextMs))} ms (Node's root certificates + the CA into one context)`,
);
row('overhead beyond the wait, warm', L('ours', 'warm') - 1000, L('microsoft', 'warm') - 1000);
row(
  'whole process, ms',
  L('ours', 'whole'),
  L('microsoft', 'whole'),
  `spawn to exit: 'moddable-dps register' vs Microsoft's sample; 'node -e ""' takes ${f1(median(lat.node))}`,
);
const imports = { cli: [], emulatorCommand: [] };
for (let rep = 0; rep < REPS; rep++) {
  imports.cli.push(await importTime('cli/main.js'));
  imports.emulatorCommand.push(await importTime('cli/emulator.js'));
}
console.log(
  `  CLI start-up: importing dist/cli/main.js takes ${f1(median(imports.cli))} ms; the 'emulator' command's modules (aedes, node-forge, ...), loaded only when that command runs, take ${f1(median(imports.emulatorCommand))} ms`,
);
results.latency = {
  raw: lat,
  median: Object.fromEntries(
    ['ours', 'microsoft'].map((c) => [c, { coldMs: L(c, 'cold'), warmMs: L(c, 'warm'), wholeProcessMs: L(c, 'whole') }]),
  ),
  nodeStartMs: median(lat.node),
  createTlsConnectMs: median(lat.contextMs),
  importCliMs: median(imports.cli),
  importEmulatorCommandMs: median(imports.emulatorCommand),
};
await dps.close();

// ---- (b) CPU per provisioning and (c) fleet throughput, retry-after 0 --------------------------
dps = await emulator(0);
console.log(
  `\n(b) client CPU per provisioning (user + system) — ${CPU_DEVICES} devices one at a time, retry-after 0, median of ${LOAD_REPS}`,
);
const CPU_CLIENTS = ['ours', 'ours-full', 'microsoft', 'ideal', 'ideal-resume', 'ideal-resume-tls12'];
const LABEL = {
  ours: "ours: 'moddable-dps fleet' (TLS sessions resumed)",
  'ours-full': "ours: 'moddable-dps fleet --full-handshakes'",
  microsoft: "Microsoft's client, same limiter",
  ideal: 'ideal client (full handshakes)',
  'ideal-resume': 'ideal client (TLS sessions resumed)',
  'ideal-resume-tls12': 'ideal client (TLS 1.2 sessions resumed)',
};
const cpu = Object.fromEntries(CPU_CLIENTS.map((c) => [c, []]));
for (let rep = 0; rep < LOAD_REPS; rep++) {
  for (const client of rotate(CPU_CLIENTS, rep)) cpu[client].push(await fleetRun(client, dps, CPU_DEVICES, 1));
}
console.log(`  ${''.padEnd(52)}${pad('client ms', 10)}${pad('emulator ms', 13)}${pad('p50 ms', 9)}  (per device)`);
const cpuMedian = {};
for (const client of CPU_CLIENTS) {
  const runs = cpu[client];
  cpuMedian[client] = {
    clientMs: median(runs.map((r) => r.cpuMs.perDevice)),
    emulatorMs: median(runs.map((r) => r.emulatorCpuPerDeviceMs)),
    p50Ms: median(runs.map((r) => r.latencyMs.p50)),
  };
  const c = cpuMedian[client];
  console.log(`  ${LABEL[client].padEnd(52)}${pad(f2(c.clientMs), 10)}${pad(f2(c.emulatorMs), 13)}${pad(f2(c.p50Ms), 9)}`);
}
results.cpu = { devices: CPU_DEVICES, runs: cpu, median: cpuMedian };
const core = [];
for (let rep = 0; rep < LOAD_REPS; rep++) core.push((await child({ task: 'core', devices: QUICK ? 2000 : 5000 })).cpuUsPerDevice);
console.log(
  `  the core alone (bench/core.ts: registerDevice over a replaying connection, no TLS): ${f1(median(core))} µs per provisioning`,
);
results.cpu.coreUsPerDevice = median(core);

console.log(`\n(c) fleet throughput — ${FLEET_DEVICES} devices at concurrency ${CONCURRENCY}, retry-after 0, median of ${LOAD_REPS}`);
// The emulator keeps its state in <stateDir>/state.json (emulator/state-store.ts); 'ours-memory'
// runs ours against a second emulator started with --in-memory, alternating with the others.
const FLEET_CLIENTS = ['ours', 'ours-memory', 'ours-full', 'microsoft', 'ideal-resume', 'ideal-resume-tls12'];
LABEL['ours-memory'] = 'ours, against an emulator --in-memory';
const dpsMemory = await emulator(0, { inMemory: true });
await fleetRun('ours', dpsMemory, FLEET_DEVICES, CONCURRENCY); // warm-up, as (b) warmed the other: not counted
const fleet = Object.fromEntries(FLEET_CLIENTS.map((c) => [c, []]));
for (let rep = 0; rep < LOAD_REPS; rep++) {
  for (const client of rotate(FLEET_CLIENTS, rep)) {
    fleet[client].push(
      client === 'ours-memory'
        ? await fleetRun('ours', dpsMemory, FLEET_DEVICES, CONCURRENCY)
        : await fleetRun(client, dps, FLEET_DEVICES, CONCURRENCY),
    );
  }
}
await dpsMemory.close();
console.log(
  `  ${''.padEnd(52)}${pad('devices/s', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('client', 9)}${pad('emulator', 10)}${pad('emu busy', 10)}`,
);
const fleetMedian = {};
for (const client of FLEET_CLIENTS) {
  const runs = fleet[client];
  const f = (fleetMedian[client] = {
    throughput: median(runs.map((r) => r.throughputPerSecond)),
    p50Ms: median(runs.map((r) => r.latencyMs.p50)),
    p99Ms: median(runs.map((r) => r.latencyMs.p99)),
    clientMs: median(runs.map((r) => r.cpuMs.perDevice)),
    emulatorMs: median(runs.map((r) => r.emulatorCpuPerDeviceMs)),
    emulatorBusy: median(runs.map((r) => r.emulatorBusy)),
  });
  console.log(
    `  ${LABEL[client].padEnd(52)}${pad(f1(f.throughput), 10)}${pad(f1(f.p50Ms), 9)}${pad(f1(f.p99Ms), 9)}${pad(f2(f.clientMs), 9)}${pad(f2(f.emulatorMs), 10)}${pad(`${Math.round(f.emulatorBusy * 100)} %`, 10)}`,
  );
}
console.log('  (client, emulator: CPU ms per device; emu busy: emulator CPU time / wall time, 100 % = one core)');
const stored = await dps.state();
console.log(
  `  the state kept (ours vs ours --in-memory): ${f2(fleetMedian.ours.throughput / fleetMedian['ours-memory'].throughput)} of the in-memory throughput (target >= 0.85); ` +
    `state.json ${f1(stored.bytes / 1e6)} MB for ${stored.registrations} registrations and their hub devices, ${Math.round(stored.bytes / Math.max(1, stored.registrations))} bytes each; writing it whole (when the journal is folded in) serialises it in ${f1(stored.serializeMs)} ms`,
);
results.fleet = { devices: FLEET_DEVICES, concurrency: CONCURRENCY, runs: fleet, median: fleetMedian, state: stored };
await dps.close();
rmSync(stateDir, { recursive: true, force: true });

// ---- (h) the hub session (bench/hub.ts) --------------------------------------------------------
{
  const hub = await import(pathToFileURL(await bundleForNode('bench/hub.ts', 'bench/hub', { logLevel: 'warning' })).href);
  const hubState = mkdtempSync(join(tmpdir(), 'dps-bench-hub-'));
  console.log('');
  try {
    results.hub = await hub.run({ emulatorFile: bundled['emulator-process'], stateDir: hubState, quick: QUICK });
  } finally {
    rmSync(hubState, { recursive: true, force: true });
  }
}

// ---- targets ----------------------------------------------------------------------------------
console.log('\ntargets (ratios from this run)');
const verdict = (ok) => (ok ? 'PASS' : 'MISS');
const targets = [];
const target = (name, value, ok, note) => {
  targets.push({ name, value, pass: ok });
  console.log(`  ${verdict(ok)}  ${name.padEnd(58)}${pad(value, 10)}   ${note}`);
};
const over = (c, w) => L(c, w) - 1000;
target(
  'latency overhead ours / Microsoft <= 0.20, cold',
  f2(over('ours', 'cold') / over('microsoft', 'cold')),
  over('ours', 'cold') <= over('microsoft', 'cold') / 5,
  `${f1(over('ours', 'cold'))} vs ${f1(over('microsoft', 'cold'))} ms`,
);
target(
  'latency overhead ours / Microsoft <= 0.20, warm',
  f2(over('ours', 'warm') / over('microsoft', 'warm')),
  over('ours', 'warm') <= over('microsoft', 'warm') / 5,
  `${f1(over('ours', 'warm'))} vs ${f1(over('microsoft', 'warm'))} ms`,
);
target(
  'latency within 10 ms of the floor, warm',
  `+${f1(L('ours', 'warm') - floorMs)} ms`,
  L('ours', 'warm') - floorMs <= 10,
  `${f1(L('ours', 'warm'))} vs floor ${f1(floorMs)} ms`,
);
target(
  'latency within 10 ms of the floor, cold',
  `+${f1(L('ours', 'cold') - floorColdMs)} ms`,
  L('ours', 'cold') - floorColdMs <= 10,
  `${f1(L('ours', 'cold'))} vs cold floor ${f1(floorColdMs)} ms`,
);
const cpuRatio = cpuMedian.ours.clientMs / cpuMedian.microsoft.clientMs;
target(
  'CPU per provisioning ours / Microsoft <= 0.33',
  f2(cpuRatio),
  cpuRatio <= 1 / 3,
  `${f2(cpuMedian.ours.clientMs)} vs ${f2(cpuMedian.microsoft.clientMs)} ms (--full-handshakes ${f2(cpuMedian['ours-full'].clientMs / cpuMedian.microsoft.clientMs)})`,
);
const thrRatio = fleetMedian.ours.throughput / fleetMedian.microsoft.throughput;
target(
  `fleet throughput ours / Microsoft >= 3, concurrency ${CONCURRENCY}`,
  f2(thrRatio),
  thrRatio >= 3,
  `${f1(fleetMedian.ours.throughput)} vs ${f1(fleetMedian.microsoft.throughput)} devices/s (--full-handshakes ${f2(fleetMedian['ours-full'].throughput / fleetMedian.microsoft.throughput)})`,
);
console.log('\nwhat bounds the ratios here (from the same run)');
console.log(
  `  latency: 1/5 of Microsoft's warm overhead is ${f1(over('microsoft', 'warm') / 5)} ms; the ideal client's overhead is ${f1(ideal.totalMs - 1000)} ms (ideal / Microsoft ${f2((ideal.totalMs - 1000) / over('microsoft', 'warm'))}), the floor's ${f1(floorMs - 1000)} ms`,
);
const ofMs = (c) => `${f2(cpuMedian[c].clientMs)} ms (${f2(cpuMedian[c].clientMs / cpuMedian.microsoft.clientMs)} of Microsoft's)`;
console.log(
  `  CPU: the ideal client costs ${ofMs('ideal')}, resumed ${ofMs('ideal-resume')}; with TLS 1.2 resumption ${ofMs('ideal-resume-tls12')}`,
);
const emuCap = 1000 / fleetMedian.ours.emulatorMs;
console.log(
  `  throughput: ideal client (resumed) / Microsoft ${f2(fleetMedian['ideal-resume'].throughput / fleetMedian.microsoft.throughput)}, with TLS 1.2 resumption ${f2(fleetMedian['ideal-resume-tls12'].throughput / fleetMedian.microsoft.throughput)}`,
);
console.log(
  `  throughput: the emulator spends ${f2(fleetMedian.ours.emulatorMs)} ms CPU per device with ours (one thread): at most ${f1(emuCap)} devices/s = ${f2(emuCap / fleetMedian.microsoft.throughput)}× Microsoft's rate, on ${m.cpus} cores shared with the client`,
);
results.targets = targets;

// ---- (e) XS footprint and firmware size (benches of their own) --------------------------------
for (const script of ['xs-footprint.js', 'firmware-size.js']) {
  const file = join(ROOT, 'bench', script);
  console.log(`\n(e) bench/${script}`);
  if (!existsSync(file)) {
    console.log(`  skipped: bench/${script} is not in this checkout`);
    continue;
  }
  const code = await new Promise((resolve) => spawn(process.execPath, [file], { cwd: ROOT, stdio: 'inherit' }).on('exit', resolve));
  if (code !== 0) console.log(`  bench/${script} exited with ${code}`);
}

if (JSON_FILE) {
  writeFileSync(JSON_FILE, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nfigures written to ${JSON_FILE}`);
}

// ---- helpers ----------------------------------------------------------------------------------

function machine() {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: availableParallelism(),
    node: process.version,
    loadavg: loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
  };
}

function rotate(list, n) {
  return list.map((_, i) => list[(i + n) % list.length]);
}

/** The emulator in its own process. */
async function emulator(retryAfterSeconds, { inMemory = false } = {}) {
  const proc = fork(bundled['emulator-process'], [JSON.stringify({ stateDir, retryAfterSeconds, inMemory })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('exit', (code) => reject(new Error(`the emulator exited with ${code}`)));
  });
  const target = { host: '127.0.0.1', port: ready.port, caPem: ready.caPem, caPath: ready.caPath };
  return {
    target,
    cpu: () =>
      new Promise((resolve) => {
        proc.once('message', (message) => resolve((message.user + message.system) / 1000));
        proc.send('cpu');
      }),
    state: () =>
      new Promise((resolve) => {
        proc.once('message', resolve);
        proc.send('state');
      }),
    close: () =>
      new Promise((resolve) => {
        proc.once('exit', resolve);
        proc.send('close');
      }),
  };
}

/** Run a task in bench/client-process.ts; resolves with its result. */
function child(task) {
  return new Promise((resolve, reject) => {
    const proc = fork(bundled['client-process'], [JSON.stringify(task)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result;
    proc.once('message', (message) => (result = message));
    proc.once('exit', (code) =>
      result ? resolve(result) : reject(new Error(`${task.task}/${task.client ?? ''} exited with ${code} and no result`)),
    );
  });
}

/** Wall time of a process from spawn to exit. */
function timed(command, args, env = process.env) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    execFile(command, args, { env, cwd: ROOT, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const ms = performance.now() - started;
      if (error && error.code !== 0 && typeof error.code !== 'number') return reject(error);
      resolve({ ms, code: error ? error.code : 0, stdout, stderr });
    });
  });
}

/** ms to import a module of dist/ in a fresh process. */
async function importTime(module) {
  const url = new URL(`../dist/${module}`, import.meta.url).href;
  const run = await timed(process.execPath, [
    '--input-type=module',
    '-e',
    `const t = performance.now(); await import(${JSON.stringify(url)}); console.log(performance.now() - t);`,
  ]);
  return Number(run.stdout.trim());
}

/** One provisioning in a process of its own: our CLI, or Microsoft's sample. */
async function wholeProcess(client, target) {
  const id = `${prefix(`whole-${client}`)}0`;
  const endpoint = `${target.host}:${target.port}`;
  const run =
    client === 'ours'
      ? await timed(process.execPath, [
          CLI,
          'register',
          '--id-scope',
          ID_SCOPE,
          '--registration-id',
          id,
          '--group-key',
          GROUP_KEY,
          '--endpoint',
          endpoint,
          '--ca',
          target.caPath,
          '--quiet',
        ])
      : await timed(process.execPath, [bundled['microsoft-register'], endpoint, target.caPath, id], {
          ...process.env,
          BENCH_GROUP_KEY: GROUP_KEY,
        });
  if (run.code !== 0 || !run.stdout.includes('bench-hub'))
    throw new Error(`${client} whole-process run failed (${run.code}): ${run.stderr}`);
  return run.ms;
}

/** A fleet run (ours: the CLI; others: client-process.ts), with the emulator's CPU time per device. */
async function fleetRun(client, dps, count, concurrency) {
  const before = await dps.cpu();
  let summary;
  if (client === 'ours' || client === 'ours-full') {
    const args = [
      CLI,
      'fleet',
      '--id-scope',
      ID_SCOPE,
      '--group-key',
      GROUP_KEY,
      '--endpoint',
      `${dps.target.host}:${dps.target.port}`,
      '--ca',
      dps.target.caPath,
    ];
    args.push('--count', String(count), '--concurrency', String(concurrency), '--prefix', prefix(client), '--json', '--quiet');
    if (client === 'ours-full') args.push('--full-handshakes');
    const run = await timed(process.execPath, args);
    if (run.code !== 0) throw new Error(`moddable-dps fleet failed (${run.code}): ${run.stderr}${run.stdout}`);
    summary = JSON.parse(run.stdout);
  } else {
    summary = await child({ task: 'fleet', target: dps.target, client, count, concurrency, prefix: prefix(client) });
  }
  const emulatorMs = (await dps.cpu()) - before;
  if (summary.failed > 0) throw new Error(`${client}: ${summary.failed} devices failed: ${JSON.stringify(summary.firstError)}`);
  return { ...summary, emulatorCpuPerDeviceMs: emulatorMs / count, emulatorBusy: emulatorMs / summary.wallTimeMs };
}

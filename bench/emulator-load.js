// The emulator under load and abuse, with figures: N devices provisioning concurrently through
// one emulator over TLS (our core, a concurrency limiter, retry-after 0), with and without the
// hostile clients of test/support/load.ts hammering the same port. Devices and emulator share
// one process, as in test/emulator-load.test.ts.
//
//   node bench/emulator-load.js                        1000 devices, 50 at a time, with and without hostile clients
//   node bench/emulator-load.js --devices=5000 --concurrency=100
//   node bench/emulator-load.js --hostile-only          skip the run without hostile clients
//   node bench/emulator-load.js --json                  the reports as JSON
//
// Exits 1 when a run loses, doubles or fails a registration, or a hostile client is not refused.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleForNode } from './bundle.js';

const flag = (name, fallback) => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
};
const DEVICES = flag('devices', 1000);
const CONCURRENCY = flag('concurrency', 50);
const JSON_OUT = process.argv.includes('--json');
const HOSTILE_ONLY = process.argv.includes('--hostile-only');

// The load harness is TypeScript: bundle it for Node first.
const harnessFile = await bundleForNode('test/support/load.ts', 'emulator-load');
const { runLoad } = await import(pathToFileURL(harnessFile).href);

const stateDir = mkdtempSync(join(tmpdir(), 'dps-emulator-load-bench-'));
const machine = {
  date: new Date().toISOString().slice(0, 10),
  cpu: cpus()[0]?.model ?? 'unknown',
  cpus: availableParallelism(),
  node: process.version,
};
const runs = [];
let ok = true;
try {
  for (const hostile of HOSTILE_ONLY ? [true] : [false, true]) {
    const loadavgBefore = Number(loadavg()[0].toFixed(2));
    const report = await runLoad({
      devices: DEVICES,
      concurrency: CONCURRENCY,
      stateDir,
      hostile,
      progress: (line) => !JSON_OUT && console.log(`  ${line}`),
    });
    const problems = check(report, hostile);
    ok &&= problems.length === 0;
    runs.push({ hostile, loadavgBefore, report, problems });
    if (!JSON_OUT) print(report, hostile, problems, loadavgBefore);
  }
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
if (JSON_OUT) console.log(JSON.stringify({ machine, runs }, null, 2));
else console.log(`\n${machine.date} · ${machine.cpus} × ${machine.cpu} · Node ${machine.node}`);
process.exitCode = ok ? 0 : 1;

function check(r, hostile) {
  const problems = [];
  if (r.failures.length) problems.push(`${r.failures.length} devices failed, e.g. ${r.failures[0].registrationId}: ${r.failures[0].error}`);
  if (r.assigned !== r.devices) problems.push(`${r.assigned} of ${r.devices} assigned`);
  if (r.registrations !== r.devices) problems.push(`${r.registrations} registration records for ${r.devices} devices`);
  for (const key of ['inNoHub', 'inSeveralHubs', 'wrongHub']) if (r[key].length) problems.push(`${key}: ${r[key].length}`);
  if (!r.afterwards.provisioned || !r.afterwards.closed) problems.push(`afterwards: ${JSON.stringify(r.afterwards)}`);
  if (hostile) {
    const h = r.hostile;
    if (h.badConnects.refused !== h.badConnects.sent)
      problems.push(`bad CONNECTs: ${h.badConnects.refused} of ${h.badConnects.sent} refused`);
    for (const key of ['garbage', 'plainTextGarbage', 'oversizedPublish', 'oversizedConnect', 'slowloris']) {
      if (h[key].closed !== h[key].sent) problems.push(`${key}: ${h[key].closed} of ${h[key].sent} closed`);
    }
    if (h.oversizedPublish.answered) problems.push('an oversized PUBLISH was answered');
  }
  return problems;
}

function print(r, hostile, problems, loadavgBefore) {
  const rate = (r.devices / (r.wallMs / 1000)).toFixed(0);
  console.log(
    `\n${r.devices} devices, ${r.concurrency} at a time, ${hostile ? 'WITH' : 'without'} hostile clients (1-min load average before: ${loadavgBefore})`,
  );
  console.log(
    `  wall ${(r.wallMs / 1000).toFixed(1)} s (${rate} devices/s); per device p50 ${r.latencyMs.p50} ms, p95 ${r.latencyMs.p95} ms, max ${r.latencyMs.max} ms`,
  );
  console.log(
    `  CPU user ${(r.cpuMs.user / 1000).toFixed(1)} s + system ${(r.cpuMs.system / 1000).toFixed(1)} s; peak RSS ${r.peakRssMiB} MiB`,
  );
  console.log(
    `  assigned ${r.assigned}, registration records ${r.registrations}, reconnects ${r.extraConnections}; per hub ${Object.values(r.perHub).join(' / ')}`,
  );
  if (hostile) {
    const h = r.hostile;
    console.log(
      `  hostile: ${h.badConnects.sent} bad CONNECTs (${h.badConnects.refused} refused with CONNACK 5), ${h.garbage.sent}+${h.plainTextGarbage.sent} garbage, ` +
        `${h.halfOpenTls.opened} half-open TLS, ${h.mute.opened} mute, ${h.slowloris.sent} slowloris, ${h.oversizedPublish.sent}+${h.oversizedConnect.sent} oversized`,
    );
  }
  console.log(
    problems.length ? `  FAIL: ${problems.join('; ')}` : '  PASS: none lost, none doubled, every hostile client refused or closed',
  );
}

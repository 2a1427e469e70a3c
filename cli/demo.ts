// `npm start`: the whole story in one run. Starts a local DPS and its IoT hubs on loopback from
// examples/emulator.json (three linked hubs weighted 1, 2 and 7, one enrollment group),
// provisions a demo device through the Node host exactly as `moddable-dps register` does, shows
// where it landed, takes it online (initial twin, a report, telemetry), has its hub forget it
// (refused, provisioned again, online again), and stops. Leaves nothing behind: the emulator's
// CA lives in a temporary directory that is removed at the end.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfigFile } from '../emulator/config-file.js';
import { type DpsEmulator, startEmulator } from '../emulator/index.js';
import { symmetricKeys } from '../emulator/model-types.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { goOnline } from '../src/device.js';
import { ProvisioningError } from '../src/errors.js';
import type { Store } from '../src/ports.js';
import { provisionDevice } from '../src/provisioner.js';
import { printable } from '../src/text.js';
import { type CliIo, reportError } from './shared/io.js';
import { describeEvent, describeHubEvent } from './shared/output.js';

export const DEMO_REGISTRATION_ID = 'demo-device-001';
const DEMO_CONFIG = join('examples', 'emulator.json');

export async function runDemo(io: CliIo): Promise<number> {
  const out = (text = '') => io.stdout(`${text}\n`);
  const stateDir = mkdtempSync(join(tmpdir(), 'moddable-dps-demo-'));
  // Ctrl+C mid-demo: remove the temporary directory, then end as SIGINT would.
  const interrupted = () => {
    rmSync(stateDir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  let dps: DpsEmulator | undefined;
  try {
    const configPath = findDemoConfig();
    const { idScope = '0ne00DEMO01', config } = await loadConfigFile(configPath);
    out('moddable-dps demo: a local Device Provisioning Service, and a device provisioned through it');
    out();
    out(`1. Start the DPS emulator on loopback with ${DEMO_CONFIG} (infrastructure as code)`);
    dps = await startEmulator({ idScope, stateDir, host: '127.0.0.1', port: 0, retryAfterSeconds: 1, config });
    const hubs = dps.model.linkedHubs();
    const total = hubs.filter((h) => h.applyAllocationPolicy).reduce((sum, h) => sum + h.allocationWeight, 0);
    const width = Math.max(...hubs.map((h) => h.hostName.length));
    out(`   ID scope           ${dps.idScope}`);
    out(`   device endpoint    ${dps.endpoint.host}:${dps.endpoint.port} (MQTT over TLS, as DPS)`);
    out(`   CA certificate     freshly made in ${stateDir} (removed at the end)`);
    out(`   allocation policy  ${dps.model.allocationPolicy}: each device goes to one hub, in proportion to the weights`);
    for (const hub of hubs) {
      const share = hub.applyAllocationPolicy
        ? `${Math.round((100 * hub.allocationWeight) / total)}% of devices`
        : 'never chosen by the policy';
      out(`     ${hub.hostName.padEnd(width)}  weight ${String(hub.allocationWeight).padEnd(3)}  ${share}`);
    }
    const group = dps.model.enrollmentGroups()[0];
    if (!group) throw new ProvisioningError('invalid-input', `${DEMO_CONFIG} has no enrollment group`);
    out(`   enrollment group   ${group.enrollmentGroupId} (symmetric key; each device's key is derived from the group's)`);
    out();

    out(`2. Provision ${DEMO_REGISTRATION_ID} through the Node host, as the firmware would`);
    out(
      `   (npx moddable-dps register --id-scope ${dps.idScope} --registration-id ${DEMO_REGISTRATION_ID} --group-key <the group's key> --endpoint ${dps.endpoint.host}:${dps.endpoint.port} --ca <the CA>)`,
    );
    const store = memoryStore();
    const { assignment } = await provisionDevice(
      {
        idScope: dps.idScope,
        registrationId: DEMO_REGISTRATION_ID,
        groupKey: symmetricKeys(group.attestation)!.primaryKey,
        endpoint: dps.endpoint,
        timeoutMs: 30_000,
        clientVersion: 'moddable-dps-demo/0.1.0',
      },
      {
        connect: createTlsConnect({ ca: dps.caPem }),
        clock: systemClock,
        random: nodeRandom,
        log: (event) => out(`   ${describeEvent(event)}`),
        store,
      },
    );
    out();

    out('3. Where it landed');
    out(`   assigned hub       ${assignment.assignedHub}`);
    out(`   device ID          ${assignment.deviceId}`);
    const device = dps.model.hubDevice(assignment.assignedHub, assignment.deviceId);
    if (device) {
      out(`   in that hub's device registry (created by DPS with the group's initial twin):`);
      out(`     device ${device.deviceId}, created ${device.createdDateTimeUtc}`);
      out(`     tags ${JSON.stringify(device.tags)}, desired properties ${JSON.stringify(device.properties.desired)}`);
    }
    const record = dps.model.registration(DEMO_REGISTRATION_ID);
    if (record) {
      out(
        `   DPS's registration record: ${record.state.status} (${record.state.substatus ?? '-'}) through enrollment group ${group.enrollmentGroupId}`,
      );
    }
    out(`   (hashed allocation is deterministic: ${DEMO_REGISTRATION_ID} lands here every time; other IDs spread 1:2:7)`);
    out();

    out(`4. Online: connect to ${assignment.assignedHub} (the emulator's hubs listen on ${dps.hubEndpoint.host}:${dps.hubEndpoint.port})`);
    out(`   (npx moddable-dps device ... --hub-endpoint ${dps.hubEndpoint.host}:${dps.hubEndpoint.port} does all of this)`);
    const demoDevice = {
      idScope: dps.idScope,
      registrationId: DEMO_REGISTRATION_ID,
      groupKey: symmetricKeys(group.attestation)!.primaryKey,
      endpoint: dps.endpoint,
      hubEndpoint: dps.hubEndpoint,
      timeoutMs: 30_000,
      clientVersion: 'moddable-dps-demo/0.1.0',
    };
    const ports = {
      connect: createTlsConnect({ ca: dps.caPem }),
      clock: systemClock,
      random: nodeRandom,
      store,
      log: (event: Parameters<typeof describeEvent>[0]) => out(`   ${describeEvent(event)}`),
      hubLog: (event: Parameters<typeof describeHubEvent>[0]) => out(`   ${describeHubEvent(event)}`),
      onEvent: (event: { reason: string; round: number }) =>
        out(`   the hub turned the device away (${printable(event.reason)}): provisioning again (round ${event.round})`),
    };
    let online = await goOnline(demoDevice, ports);
    out(`   twin desired properties (the enrollment's initial twin): ${printable(JSON.stringify(online.session.twin.desired))}`);
    await online.session.updateReported({ client: 'moddable-dps-demo/0.1.0', registrationId: DEMO_REGISTRATION_ID });
    for (let seq = 1; seq <= 2; seq++)
      await online.session.sendTelemetry(JSON.stringify({ seq, temperature: 20 + seq }), { contentType: 'application/json' });
    const received = () => dps!.hubs.telemetry(assignment.assignedHub).filter((m) => m.deviceId === assignment.deviceId).length;
    out(`   telemetry: the hub has ${received()} messages from ${assignment.deviceId}`);
    out();

    out(`5. The hub forgets the device (as if an operator deleted it there): refused, provisioned again, online again`);
    dps.hubs.deleteDevice(assignment.assignedHub, assignment.deviceId);
    const why = await online.session.ended;
    out(`   the session ended: ${printable(why?.message ?? 'closed')}`);
    online = await goOnline({ ...demoDevice, force: true }, ports);
    await online.session.sendTelemetry(JSON.stringify({ seq: 3, temperature: 23 }), { contentType: 'application/json' });
    out(`   online again on ${online.assignment.assignedHub}; the hub has ${received()} messages from ${assignment.deviceId}`);
    online.session.close();
    out();
    out('Next:');
    out(`   npx moddable-dps emulator --config ${DEMO_CONFIG}`);
    out('      run the emulator yourself (Ctrl+C stops it) and point devices, the CLI or the firmware at it');
    out('   README.md, "The local DPS emulator"');
    out('      link hubs, change weights and the policy, enroll devices, see where they land');
    return 0;
  } catch (error) {
    return reportError(error, io);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await dps?.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** examples/emulator.json of this checkout, from the source (cli/) or from the build (dist/cli/). */
function findDemoConfig(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, DEMO_CONFIG);
    if (existsSync(candidate)) return relative(process.cwd(), candidate) || candidate;
    dir = dirname(dir);
  }
  throw new ProvisioningError('invalid-input', `Cannot find ${DEMO_CONFIG}: run the demo from a checkout of moddable-dps`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runDemo({
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
  });
}

/** The assignment between the steps, in memory: the demo leaves nothing behind. */
function memoryStore(): Store {
  const values = new Map<string, string>();
  return {
    get: async (key) => values.get(key),
    set: async (key, value) => void values.set(key, value),
    delete: async (key) => void values.delete(key),
  };
}

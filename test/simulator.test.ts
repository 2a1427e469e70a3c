// The firmware end to end: manifest.json built with the Moddable SDK's mcconfig for the simulator
// (-p lin), run headless (Xvfb) with its trace read through the SDK's xsbug-log, against the local
// DPS emulator. The factory settings (serial number, group key) are written into the simulator's
// Preference file as a factory would write them into NVS; the rest comes from mcconfig arguments.
//
// The first build is the README's configuration, made exactly by the line the emulator's banner
// prints (serial number and group key on the mcconfig command line, sntp= so the device keeps the
// host's clock), with retryMin=2 so that the retries fit in a test and hubTokenTtl=60 so that a
// hub token's renewal does:
//   boot 1: builds its registration ID from {serial}-{mac}, provisions, stores the assignment,
//           goes online: the initial twin's telemetryInterval, a reported patch, telemetry
//   boot 2: finds the stored assignment and does not contact DPS
//   boot 3: the stored record damaged on "disk": read as damaged, provisions again
//   boot 4: a newer record torn midway (the other slot): the previous record is read, DPS skipped
//   boot 5: DPS refuses CONNECT with CONNACK 3 twice, then 5 twice: typed error lines and retries,
//           never a lost simulator (closing the socket inside its callback crashed it), then ready
//   boot 6: a wrong group key from the factory (Preference): refused, traced, retried, again
//   boot 7: a DPS error message with escape codes and a newline: traced escaped, on one line
//   online: the stored hub no longer knows the device (refused, provisioned again, online again),
//           then a "reprovision" direct method (provisioned again, online again), "reboot" 501;
//           then deleted from its hub while online: dropped, refused at reconnect (CONNACK 5),
//           provisioned again, online again. Both refusals killed the simulator once (SIGPIPE
//           from writes behind a refused CONNECT; a socket freed under a queued message);
//           then online for a minute: the hub token renewed by reconnecting, telemetry going on;
//           then its hub goes silent (a loopback proxy stalls the link): the telemetry PUBACK
//           that never comes ends the connection after 30 s, the device reconnects, no DPS
//           (built again for it, with the proxy as hubEndpoint);
//   transport=mqtt-ws: the same device over secure WebSockets, DPS and hub on the emulator's HTTPS port
// A second build (no key, the default anchor):
//   no key (a configuration error) stops the loop; with the factory's serial and group key, the
//   built-in anchors (Microsoft's two Azure roots) refuse the emulator: a tls error, traced and
//   retried; anchors in Preference "dps"/"ca" replace them (the emulator's CA second or first in
//   the bundle, another CA in the other place: accepted either way); a malformed one is traced
//   and the built-in pair is used; what `moddable-dps factory` writes into NVS (a derived key, the
//   endpoint, the anchors) provisions the device, with no group key on it; and what
//   `factory --issue-certs` writes (an X.509 certificate and its key) provisions it through a
//   group trusting the line's CA and takes it online; an expired certificate is refused; an
//   individual enrollment with a self-signed certificate provisions and goes online too
//
// Needs: Linux, $MODDABLE with its tools built (mcconfig, mcsim), npm install done in
// $MODDABLE/tools/xsbug-log, xvfb-run. Skipped otherwise. Downloads nothing.
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firmwareBuildLine } from '../cli/emulator.js';
import { createCa, issueDeviceCertificate, selfSignedDeviceCertificate } from '../cli/shared/certificates.js';
import { loadOrCreateCertificates } from '../emulator/certificates.js';
import { type DpsEmulator, type EndpointEvent, startEmulator } from '../emulator/index.js';
import { buildRegistrationId, deriveDeviceKey } from '../src/identity.js';
import { runCli } from './support/cli-runner.js';
import { startTcpProxy } from './support/tcp-proxy.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const MODDABLE = process.env.MODDABLE;
const TOOLS = MODDABLE ? join(MODDABLE, 'build', 'bin', 'lin', 'release') : '';
const XSBUG_LOG = MODDABLE ? join(MODDABLE, 'tools', 'xsbug-log') : '';
/** Where the simulator build lands (the manifest's NAME is moddable-dps). */
const APP = MODDABLE ? join(MODDABLE, 'build', 'bin', 'lin', 'mc', 'debug', 'moddable-dps', 'mc.so') : '';
/** The simulator's Preference store on Linux: config.file.root ("/tmp/") + modpreferences.json. */
const PREFERENCES = '/tmp/modpreferences.json';

const ID_SCOPE = '0ne00051M01';
const GROUP_KEY = Buffer.from('simulator-test-group-key-0123456789abcdef-0123456789').toString('base64');
const WRONG_KEY = Buffer.from('not-the-group-key-of-this-enrollment-group-0123456789').toString('base64');
const GROUP = 'factory-line';
const HUB = 'hub-sim.azure-devices.net';
/** The serial number the banner's build line gives the simulator. */
const SERIAL = 'SN-0001';
/** The simulator's MAC address, from the manifest's "lin" config. */
const MAC = '02:00:00:00:d5:01';
/** The boot trace of the built-in anchors: Microsoft's two roots for Azure IoT (hosts/moddable/anchors.ts). */
const AZURE_PAIR = 'DigiCertGlobalRootG2.der sha256 cb3ccbb76031e5e0, MicrosoftRSARootCA2017.der sha256 c741f70f4b2a8d88';
const REGISTRATION_ID = buildRegistrationId('{serial}-{mac}', { serial: SERIAL, mac: MAC });

function missing(): string | undefined {
  if (!MODDABLE) return 'MODDABLE is not set (the simulator test needs the Moddable SDK with its Linux tools built)';
  if (process.platform !== 'linux') return 'the simulator test runs on Linux only';
  if (!existsSync(join(TOOLS, 'mcconfig')) || !existsSync(join(TOOLS, 'mcsim')))
    return `no mcconfig/mcsim in ${TOOLS}: build the SDK's tools`;
  if (!existsSync(join(XSBUG_LOG, 'node_modules'))) return `run npm install in ${XSBUG_LOG} once`;
  if (spawnSync('sh', ['-c', 'command -v xvfb-run']).status !== 0) return 'xvfb-run is not installed';
  return undefined;
}
const skipReason = missing();

if (skipReason) {
  describe('firmware in the Moddable simulator', () => {
    it.skip(`skipped: ${skipReason}`, () => {});
  });
} else {
  describe('firmware in the Moddable simulator', () => {
    let dps: DpsEmulator;
    let stateDir: string;
    let sntp: dgram.Socket | undefined;
    let savedPreferences: Record<string, unknown> | undefined;
    const events: EndpointEvent[] = [];

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), 'dps-simulator-'));
      dps = await startEmulator({
        idScope: ID_SCOPE,
        stateDir,
        retryAfterSeconds: 1,
        config: {
          iotHubs: [
            {
              connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.alloc(32, 9).toString('base64')}`,
            },
          ],
          enrollmentGroups: [
            {
              enrollmentGroupId: GROUP,
              attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
              // The device reads its telemetry interval from here once online.
              initialTwin: { tags: {}, properties: { desired: { telemetryInterval: 1 } } },
            },
          ],
        },
        onEvent: (event) => events.push(event),
      });
      sntp = await startSntpResponder();
      savedPreferences = readPreferences();
      // No factory settings: the README's build carries the serial number and the group key.
      writePreferences({ ...savedPreferences, dps: undefined, 'dps-state': undefined });
    });

    afterAll(async () => {
      if (savedPreferences) {
        const now = readPreferences();
        writePreferences({ ...now, dps: savedPreferences.dps, 'dps-state': savedPreferences['dps-state'] });
      }
      sntp?.close();
      await dps?.close();
      if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    });

    it('builds with the mcconfig line the emulator prints (the README configuration), trusting its CA', () => {
      const line = firmwareBuildLine(dps, {
        platform: 'lin',
        endpoint: `${dps.endpoint.host}:${dps.endpoint.port}`,
        hubEndpoint: `${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`,
      });
      const placeholder = `"groupKey=<primary key of enrollment group ${GROUP}>"`;
      expect(line).toContain(placeholder);
      // As a user runs it: in a shell, from the checkout, the key filled in.
      build(['sh', '-c', `${line.replace(placeholder, `"groupKey=${GROUP_KEY}"`)} retryMin=2 hubTokenTtl=60`]);
    }, 620_000);

    it('boot 1: builds its registration ID, syncs its clock, provisions and stores its hub', async () => {
      const trace = await boot();
      expect(trace).toContain(`dps: registration-id ${REGISTRATION_ID}`);
      expect(trace).toContain(`dps: trust config caCertificate sha256 ${fingerprintPrefix(dps.caPem)}`);
      expect(trace).toContain('dps: warning the enrollment group key is on this device: use a derived device key in production');
      expect(trace).toMatch(/dps: settings idScope \S+ \(config\) key group \(config\) endpoint 127\.0\.0\.1:\d+ \(config\)/);
      expect(trace).toMatch(/dps: clock \S+ device \(/);
      expect(trace).toContain(`dps: registering ${REGISTRATION_ID}`);
      expect(trace).toContain(`dps: assigned ${HUB} ${REGISTRATION_ID}`);
      expect(trace).toContain('dps: stored assignment');
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned`);
      expect(trace).not.toContain('dps: error');
      expectNoSecrets(trace);
      expect(dps.model.registration(REGISTRATION_ID)?.state).toMatchObject({ status: 'assigned', assignedHub: HUB });
      expect(dps.model.hubDevice(HUB, REGISTRATION_ID)).toBeDefined();
      expect(Object.keys(readPreferences()['dps-state'] ?? {})).toContain('assignment.a0');
      const memory =
        /dps: memory slot-heap (\d+) peak (\d+) chunk-heap (\d+) peak (\d+) stack-peak (\d+) gc (\d+) in (\d+) ms modules (\d+)/.exec(
          trace,
        );
      expect(memory, trace).not.toBeNull();
      const [, , slotPeak, , chunkPeak, stackPeak] = memory!.map(Number);
      expect(slotPeak).toBeGreaterThan(0);
      expect(chunkPeak).toBeGreaterThan(0);
      expect(stackPeak).toBeGreaterThan(0);
      console.log(`simulator, provisioning: ${memory![0]}`);
    }, 150_000);

    it("boot 1, online: connects to its hub, takes the initial twin's interval, reports and sends telemetry", async () => {
      const trace = await boot(/^hub: telemetry 2$/);
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} cached`);
      expect(trace).toMatch(new RegExp(`hub: connected 127\\.0\\.0\\.1:${dps.hubEndpoint.port}`));
      expect(trace).toContain(`hub: online ${HUB} ${REGISTRATION_ID} desired 1 interval 1`);
      expect(trace).toMatch(/hub: reported \d+/);
      expect(trace).toContain('hub: telemetry 1');
      expectNoSecrets(trace);
      const messages = dps.hubs.telemetry(HUB).filter((m) => m.deviceId === REGISTRATION_ID);
      expect(messages.length).toBeGreaterThanOrEqual(2);
      expect(JSON.parse(messages[0]!.body)).toMatchObject({ seq: 1 });
      expect(dps.hubs.twin(HUB, REGISTRATION_ID)?.properties.reported).toMatchObject({
        firmware: 'moddable-dps/0.1.0',
        registrationId: REGISTRATION_ID,
      });
      const memory = trace.split('\n').find((line) => line.startsWith('dps: memory'));
      console.log(`simulator, provisioned from the store and online: ${memory}`);
    }, 150_000);

    it('boot 2: reports the stored assignment and does not contact DPS', async () => {
      const before = connections();
      const trace = await boot();
      expect(trace).toContain(`dps: cached ${HUB} ${REGISTRATION_ID}`);
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} cached`);
      expect(trace).not.toContain('dps: connecting');
      expect(connections()).toBe(before);
      expectNoSecrets(trace);
      console.log(`simulator, cached boot: ${trace.split('\n').find((line) => line.startsWith('dps: memory'))}`);
    }, 150_000);

    it('boot 3: a damaged stored record is read as damaged, never as a hub, and the device provisions again', async () => {
      const preferences = readPreferences();
      const slot = (preferences['dps-state'] as Record<string, { buffer: string }>)['assignment.a0']!;
      const bytes = slot.buffer.split(',').map(Number);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x20; // flip a bit in the stored value, past the header
      slot.buffer = bytes.join(',');
      writePreferences(preferences);
      const before = connections();
      const trace = await boot();
      expect(trace).toMatch(/dps: store-unreadable The stored "assignment" record is damaged \(checksum mismatch\)/);
      expect(trace).not.toContain('dps: cached');
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned`);
      expect(connections()).toBeGreaterThan(before);
    }, 150_000);

    it('boot 4: a newer record torn by a power cut leaves the previous one, which is reported', async () => {
      // What a write interrupted midway leaves: the valid record in one slot (here b), the other
      // slot (a) holding a higher sequence whose checksum fails.
      const preferences = readPreferences();
      const slots = preferences['dps-state'] as Record<string, { buffer: string } | undefined>;
      const valid = slots['assignment.a0'] ?? slots['assignment.b0'];
      const torn = valid!.buffer.split(',').map(Number);
      torn[5] = torn[5]! + 1; // sequence + 1 (big-endian u32 at offset 2), checksum left as it was
      preferences['dps-state'] = { 'assignment.b0': valid, 'assignment.a0': { buffer: torn.join(',') } };
      writePreferences(preferences);
      const before = connections();
      const trace = await boot();
      expect(trace).toContain(`dps: cached ${HUB} ${REGISTRATION_ID}`);
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} cached`);
      expect(connections()).toBe(before);
    }, 150_000);

    it('boot 5: DPS refuses CONNECT (CONNACK 3 twice, then 5 twice): typed errors, retries, never a crash, then ready', async () => {
      writePreferences({ ...readPreferences(), 'dps-state': undefined });
      dps.faults.push({ on: 'connect', action: { type: 'status', status: 3 }, times: 2 });
      dps.faults.push({ on: 'connect', action: { type: 'status', status: 5 }, times: 2 });
      const before = connections();
      const trace = await boot(/^dps: (ready|stopped)/, 150_000);
      // CONNACK 3 is transient: the flow retries it itself; CONNACK 5 ends the attempt as unauthorized, and the boot loop retries.
      expect(trace).toMatch(/dps: retrying attempt 1 wait \d+ ms: The server is unavailable \(CONNACK 3/);
      expect(trace).toMatch(/dps: retrying attempt 2 wait \d+ ms: The server is unavailable \(CONNACK 3/);
      expect(trace.match(/dps: error unauthorized The server refused the connection \(CONNACK 5: not authorized\)/g)).toHaveLength(2);
      expect(trace).toMatch(/dps: retry 1 in \d+ s[\s\S]*dps: retry 2 in \d+ s/);
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned`);
      expect(connections()).toBe(before + 1);
      expect(dps.faults.fired().filter((r) => r.on === 'connect')).toHaveLength(4);
      expectNoSecrets(trace);
    }, 180_000);

    it('boot 6: a wrong group key from the factory: refused, traced and retried, every time', async () => {
      writePreferences({ ...readPreferences(), dps: { groupKey: WRONG_KEY }, 'dps-state': undefined });
      const trace = await boot(/^dps: retry 3 in/, 150_000);
      expect(trace).toMatch(/dps: settings idScope \S+ \(config\) key group \(preference\)/);
      expect(
        trace.match(/dps: error unauthorized The server refused the connection \(CONNACK 5: not authorized\)/g)!.length,
      ).toBeGreaterThanOrEqual(3);
      expect(trace).not.toContain('dps: ready');
      expect(trace).not.toContain(WRONG_KEY);
      expect(trace).not.toContain(deriveDeviceKey(WRONG_KEY, REGISTRATION_ID));
      expectNoSecrets(trace);
    }, 180_000);

    it('boot 7: text from DPS is traced escaped, on one line (an error message with escape codes and a newline)', async () => {
      writePreferences({ ...readPreferences(), dps: undefined, 'dps-state': undefined });
      dps.faults.push({
        on: 'register',
        action: { type: 'status', status: 400, errorCode: 400004, message: '\u001b[2Jall good\ndps: ready forged' },
      });
      const trace = await boot(/^dps: retry 1 in/);
      expect(trace).toContain('dps: error failed DPS refused the registration (400): \\u001b[2Jall good\\ndps: ready forged');
      expect(trace).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
      expect(trace.split('\n').filter((line) => line.startsWith('dps: ready'))).toEqual([]);
    }, 150_000);

    it('online: a stored hub that no longer knows the device refuses it; provisioned again, online again; a reprovision method does the same', async () => {
      writePreferences({ ...readPreferences(), dps: undefined });
      expect(await boot(/^hub: online /)).toContain('dps: stored assignment');
      dps.hubs.deleteDevice(HUB, REGISTRATION_ID); // the stored assignment now names a hub that forgot the device
      const child = bootProcess(/^hub: telemetry 1$/);
      try {
        const first = await child.reached;
        expect(first).toContain(`dps: cached ${HUB} ${REGISTRATION_ID}`);
        expect(first).toMatch(/dps: reprovisioning 1 in 0 ms: .*CONNACK 5/);
        expect(first).toContain(`dps: registering ${REGISTRATION_ID}`);
        expect(first).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned reprovisions 1`);
        expect(await dps.hubs.invokeMethod(HUB, REGISTRATION_ID, 'reprovision', {}, 10_000)).toEqual({
          status: 200,
          payload: { reprovisioning: true },
        });
        const again = await child.until(/^hub: online .* interval 1$/, 2);
        expect(again).toContain('hub: reprovision requested');
        expect(again.match(/dps: registering /g)).toHaveLength(2);
        expect(await dps.hubs.invokeMethod(HUB, REGISTRATION_ID, 'reboot', {}, 10_000)).toMatchObject({ status: 501 });
        expectNoSecrets(again);
      } finally {
        await child.stop();
      }
    }, 150_000);

    it('online, then deleted from its hub: dropped mid-session, refused at reconnect, provisioned again, online again', async () => {
      const child = bootProcess(/^hub: telemetry 1$/);
      try {
        expect(await child.reached).toContain(`dps: cached ${HUB} ${REGISTRATION_ID}`);
        dps.hubs.deleteDevice(HUB, REGISTRATION_ID); // the hub closes the device's live connection
        const again = await child.until(/^hub: online /, 2);
        expect(again).toMatch(/hub: disconnected attempt 1 wait \d+ ms: The server at .* closed the connection/);
        expect(again).toContain('hub: ended unauthorized The server refused the connection (CONNACK 5: not authorized)');
        expect(again).toContain(`dps: registering ${REGISTRATION_ID}`);
        expect(again).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned`);
        expect(dps.hubs.connected(HUB, REGISTRATION_ID)).toBe(true);
        expectNoSecrets(again);
      } finally {
        await child.stop();
      }
    }, 150_000);

    it("online past its hub token's renewal (hubTokenTtl=60: at 48 s): reconnects with a fresh token and goes on sending", async () => {
      const child = bootProcess(/^hub: renewing token expiring /, 120_000);
      try {
        const before = await child.reached;
        const sent = before.split('\n').filter((line) => /^hub: telemetry \d+$/.test(line)).length;
        expect(sent).toBeGreaterThan(30); // one a second for the first 48 s
        const after = await child.until(/^hub: telemetry \d+$/, sent + 3);
        const renewal = after.slice(after.indexOf('hub: renewing'));
        expect(renewal).toMatch(/hub: connecting 127\.0\.0\.1:\d+ attempt 2/);
        expect(renewal).toMatch(/hub: connected 127\.0\.0\.1:\d+/);
        expect(renewal).not.toMatch(/dps: (registering|error)|hub: ended/);
        expect(dps.hubs.connected(HUB, REGISTRATION_ID)).toBe(true);
        expectNoSecrets(after);
      } finally {
        await child.stop();
      }
    }, 150_000);

    it('online, then its hub goes silent (the link stalls, as when a NAT entry dies): the telemetry PUBACK that never comes ends the connection, the device reconnects and goes on', async () => {
      // The README's build, but the hub reached through a loopback proxy that can stall a link.
      const proxy = await startTcpProxy(dps.hubEndpoint);
      try {
        const line = firmwareBuildLine(dps, {
          platform: 'lin',
          endpoint: `${dps.endpoint.host}:${dps.endpoint.port}`,
          hubEndpoint: `${proxy.endpoint.host}:${proxy.endpoint.port}`,
        });
        const placeholder = `"groupKey=<primary key of enrollment group ${GROUP}>"`;
        build(['sh', '-c', `${line.replace(placeholder, `"groupKey=${GROUP_KEY}"`)} retryMin=2`]);
        const child = bootProcess(/^hub: telemetry 2$/);
        try {
          await child.reached;
          proxy.stallOpen(); // nothing more passes either way; the device's socket stays open
          const after = await child.until(new RegExp(`^hub: connected 127\\.0\\.0\\.1:${proxy.endpoint.port}$`), 2);
          const tail = after.slice(after.lastIndexOf('hub: telemetry 2'));
          expect(tail).toMatch(/hub: telemetry-failed 3 IoT Hub did not acknowledge the telemetry message within 30 s/);
          expect(tail).toMatch(/hub: disconnected attempt 1 wait \d+ ms: IoT Hub did not acknowledge the telemetry message within 30 s/);
          expect(tail).not.toMatch(/dps: (registering|error)|hub: ended/); // a silent hub is not a refusal: no DPS
          expect(proxy.accepted).toBe(2);
          const sent = after.split('\n').filter((l) => /^hub: telemetry \d+$/.test(l)).length;
          const resumed = await child.until(/^hub: telemetry \d+$/, sent + 2);
          expect(dps.hubs.connected(HUB, REGISTRATION_ID)).toBe(true);
          expectNoSecrets(resumed);
        } finally {
          await child.stop();
        }
      } finally {
        await proxy.close();
      }
    }, 300_000);

    it('transport=mqtt-ws: provisions and goes online over secure WebSockets, DPS and hub both on the emulator HTTPS port', async () => {
      writePreferences({ ...readPreferences(), 'dps-state': undefined }); // provision afresh, over WebSockets
      const wss = `${dps.httpsEndpoint.host}:${dps.httpsEndpoint.port}`;
      const line = firmwareBuildLine(dps, { platform: 'lin', endpoint: wss, hubEndpoint: wss });
      const placeholder = `"groupKey=<primary key of enrollment group ${GROUP}>"`;
      build(['sh', '-c', `${line.replace(placeholder, `"groupKey=${GROUP_KEY}"`)} retryMin=2 transport=mqtt-ws`]);
      const before = connections();
      const trace = await boot(/^hub: telemetry 2$/);
      expect(trace).toMatch(
        new RegExp(`dps: settings .* endpoint 127\\.0\\.0\\.1:${dps.httpsEndpoint.port} \\(config\\) transport mqtt-ws \\(config\\)`),
      );
      expect(trace).toContain(`dps: connected 127.0.0.1:${dps.httpsEndpoint.port}`);
      expect(trace).toContain(`dps: ready ${HUB} ${REGISTRATION_ID} provisioned`);
      expect(trace).toContain(`hub: connected 127.0.0.1:${dps.httpsEndpoint.port}`);
      expect(trace).toContain(`hub: online ${HUB} ${REGISTRATION_ID} desired 1 interval 1`);
      expect(trace).not.toContain('dps: error');
      expect(connections()).toBe(before + 1); // DPS saw the device connect (through its WebSocket)
      expectNoSecrets(trace);
    }, 300_000);

    it('a build without a key: the configuration error is traced and stops the retry loop', async () => {
      writePreferences({ ...readPreferences(), dps: undefined, 'dps-state': undefined });
      build([
        '-d',
        '-m',
        '-p',
        'lin',
        '-t',
        'build',
        join(REPO, 'manifest.json'),
        `idScope=${ID_SCOPE}`,
        `endpoint=${dps.endpoint.host}:${dps.endpoint.port}`,
        'sntp=',
        'retryMin=2',
        'caCertificate=',
      ]);
      const trace = await boot();
      expect(trace).toMatch(/dps: error invalid-input No key: write Preference "dps"\/"deviceKey"/);
      expect(trace).toMatch(/dps: stopped/);
      expect(trace).not.toContain('dps: connecting');
    }, 620_000);

    it('factory settings in Preference, and a server the built-in anchor does not trust: a tls error, traced and retried', async () => {
      // What the factory writes into NVS: the serial number and the group key (domain "dps").
      writePreferences({ ...readPreferences(), dps: { serial: 'SN-0042', groupKey: GROUP_KEY }, 'dps-state': undefined });
      const trace = await boot(/^dps: retry 1 in/);
      expect(trace).toMatch(/key group \(preference\)/);
      expect(trace).toContain(`dps: registration-id ${buildRegistrationId('{serial}-{mac}', { serial: 'SN-0042', mac: MAC })}`);
      expect(trace).toContain(`dps: trust ${AZURE_PAIR}`);
      expect(trace).toMatch(/dps: error tls The TLS handshake with 127\.0\.0\.1:\d+ failed: the server certificate is not trusted/);
      expect(trace).toMatch(/dps: retry 1 in \d+ s/);
      expectNoSecrets(trace);
    }, 150_000);

    it('anchors written to Preference "dps"/"ca" replace the built-in pair (a server chained to any of them is accepted); a malformed one is reported and the pair is used', async () => {
      // Another CA, first in the bundle: the emulator's chain reaches the second anchor only.
      const decoyDir = mkdtempSync(join(tmpdir(), 'dps-decoy-ca-'));
      try {
        const decoy = (await loadOrCreateCertificates({ stateDir: decoyDir })).caPem;
        const factory = { serial: 'SN-0042', groupKey: GROUP_KEY };
        for (const bundle of [
          [decoy, dps.caPem],
          [dps.caPem, decoy],
        ]) {
          writePreferences({ ...readPreferences(), dps: { ...factory, ca: bundle.join('\n') }, 'dps-state': undefined });
          const trace = await boot(/^dps: (assigned|stopped) /);
          const [first, second] = bundle.map((pem) => fingerprintPrefix(pem));
          expect(trace).toContain(`dps: trust Preference "dps"/"ca" #1 sha256 ${first}, Preference "dps"/"ca" #2 sha256 ${second}`);
          expect(trace).toMatch(/dps: assigned /);
          expect(trace).not.toContain('dps: error');
        }
        writePreferences({ ...readPreferences(), dps: { ...factory, ca: 'not a certificate' }, 'dps-state': undefined });
        const trace = await boot(/^dps: retry 1 in/);
        expect(trace).toContain(
          'dps: warning Preference "dps"/"ca" holds no PEM certificate (-----BEGIN CERTIFICATE-----): using the build\'s anchors',
        );
        expect(trace).toContain(`dps: trust ${AZURE_PAIR}`);
        expect(trace).toMatch(/dps: error tls The TLS handshake with 127\.0\.0\.1:\d+ failed: the server certificate is not trusted/);
      } finally {
        rmSync(decoyDir, { recursive: true, force: true });
      }
    }, 300_000);

    it('what `moddable-dps factory` writes into NVS provisions the device with its derived key: no group key on it, no warning', async () => {
      const out = mkdtempSync(join(tmpdir(), 'dps-factory-line-'));
      try {
        writeFileSync(join(out, 'group.key'), GROUP_KEY);
        writeFileSync(join(out, 'devices.csv'), `serial,mac\nSN-0777,${MAC}\n`);
        writeFileSync(join(out, 'ca-in.pem'), dps.caPem);
        const run = await runCli([
          'factory',
          ...['--id-scope', ID_SCOPE, '--group-key-file', join(out, 'group.key'), '--devices', join(out, 'devices.csv')],
          ...['--endpoint', `${dps.endpoint.host}:${dps.endpoint.port}`, '--ca-file', join(out, 'ca-in.pem'), '--out', join(out, 'nvs')],
        ]);
        expect(run.code, run.stderr).toBe(0);
        const id = buildRegistrationId('{serial}-{mac}', { serial: 'SN-0777', mac: MAC });
        const nvs = readNvsCsv(join(out, 'nvs', `${id}.csv`));
        expect(Object.keys(nvs).sort()).toEqual(['ca', 'deviceKey', 'endpoint', 'idScope', 'regId']);
        writePreferences({ ...readPreferences(), dps: nvs, 'dps-state': undefined });
        const trace = await boot(/^dps: (assigned|stopped) /);
        expect(trace).toMatch(
          /dps: settings idScope \S+ \(preference\) key device \(preference\) endpoint 127\.0\.0\.1:\d+ \(preference\)/,
        );
        expect(trace).toContain(`dps: registration-id ${id}`);
        expect(trace).toContain(`dps: assigned ${HUB} ${id}`);
        expect(trace).not.toContain('dps: warning');
        expect(trace).not.toContain(nvs.deviceKey);
        expect(dps.model.registration(id)?.state).toMatchObject({ status: 'assigned' });
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }, 150_000);

    it('X.509: what `factory --issue-certs` writes (a certificate from the line CA, its PKCS#8 key) provisions the device through a group trusting that CA and takes it online; an expired certificate is refused; an individual enrollment with a self-signed certificate provisions too', async () => {
      const out = mkdtempSync(join(tmpdir(), 'dps-factory-x509-'));
      try {
        // One certificate, issued by the CA the group trusts: the simulator's socket sends at most
        // 1024 bytes a write, less than a TLS Certificate message holding a chain of two (see the host README).
        const lineCa = createCa('simulator test line CA');
        dps.model.putEnrollmentGroup({
          enrollmentGroupId: 'x509-line',
          attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: lineCa.cert } } } },
          initialTwin: { tags: {}, properties: { desired: { telemetryInterval: 1 } } },
        } as never);
        writeFileSync(join(out, 'line.pem'), lineCa.cert);
        writeFileSync(join(out, 'line-key.pem'), lineCa.key, { mode: 0o600 });
        writeFileSync(join(out, 'devices.csv'), `serial,mac\nSN-0509,${MAC}\n`);
        writeFileSync(join(out, 'ca-in.pem'), dps.caPem);
        const run = await runCli([
          'factory',
          ...['--id-scope', ID_SCOPE, '--issue-certs', '--ca-cert', join(out, 'line.pem'), '--ca-key', join(out, 'line-key.pem')],
          ...['--devices', join(out, 'devices.csv'), '--endpoint', `${dps.endpoint.host}:${dps.endpoint.port}`],
          ...['--ca-file', join(out, 'ca-in.pem'), '--out', join(out, 'nvs')],
        ]);
        expect(run.code, run.stderr).toBe(0);
        const id = buildRegistrationId('{serial}-{mac}', { serial: 'SN-0509', mac: MAC });
        const nvs = readNvsCsv(join(out, 'nvs', `${id}.csv`));
        expect(Object.keys(nvs).sort()).toEqual(['ca', 'cert', 'certKey', 'endpoint', 'idScope', 'regId']);
        writePreferences({ ...readPreferences(), dps: nvs, 'dps-state': undefined });
        // The factory's build (no key, no anchors: Preference has them), with the emulator's hubs.
        build([
          ...['-d', '-m', '-p', 'lin', '-t', 'build', join(REPO, 'manifest.json')],
          ...[
            `idScope=${ID_SCOPE}`,
            'sntp=',
            'retryMin=2',
            'caCertificate=',
            `hubEndpoint=${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`,
          ],
        ]);
        const trace = await boot(/^hub: (telemetry 1|ended)|^dps: stopped /);
        expect(trace).toMatch(/dps: settings idScope \S+ \(preference\) key x509 \(preference\)/);
        expect(trace).toContain(`dps: assigned ${HUB} ${id}`);
        expect(trace).toContain(`hub: online ${HUB} ${id} desired 1 interval 1`);
        expect(trace).not.toContain('PRIVATE KEY');
        expect(trace).not.toContain(nvs.certKey!.split('\n')[1]!.slice(0, 24));
        expect(dps.model.registration(id)?.enrollment).toMatchObject({ kind: 'group', enrollmentGroupId: 'x509-line' });
        expect(dps.model.hubDevice(HUB, id)?.authentication.type).toBe('certificateAuthority');

        // The same device with a certificate that expired yesterday: refused (CONNACK 5), traced, retried.
        const expired = issueDeviceCertificate(lineCa, id, {
          notBefore: new Date(Date.now() - 400 * 86_400_000),
          notAfter: new Date(Date.now() - 86_400_000),
        });
        writePreferences({ ...readPreferences(), dps: { ...nvs, cert: expired.cert, certKey: expired.key }, 'dps-state': undefined });
        const refused = await boot(/^dps: retry 1 /);
        expect(refused).toMatch(/dps: error unauthorized .*CONNACK 5/);
        expect(events.filter((e) => e.type === 'refused' && e.clientId === id).map((e) => (e as { reason: string }).reason)).toContain(
          'cert-expired',
        );

        // An individual X.509 enrollment: a self-signed certificate, known to DPS by its thumbprint.
        const single = 'x509-individual-sim';
        const own = selfSignedDeviceCertificate(single);
        dps.model.putIndividualEnrollment({
          registrationId: single,
          attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: own.cert } } } },
        } as never);
        writePreferences({
          ...readPreferences(),
          dps: { ...nvs, regId: single, cert: own.cert, certKey: own.key },
          'dps-state': undefined,
        });
        const individual = await boot(/^hub: (telemetry 1|ended)|^dps: stopped /);
        expect(individual).toContain(`dps: assigned ${HUB} ${single}`);
        expect(individual).toMatch(new RegExp(`hub: online ${HUB} ${single} `));
        expect(dps.model.registration(single)?.enrollment).toMatchObject({ kind: 'individual' });
        expect(dps.model.hubDevice(HUB, single)?.authentication.type).toBe('selfSigned');
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }, 900_000);

    /** Runs mcconfig (argv, or a shell command line) from the checkout, the SDK's tools and tsc on the PATH, as the README says. */
    function build(args: string[]): void {
      const [command, ...rest] = args[0] === 'sh' ? args : [join(TOOLS, 'mcconfig'), ...args];
      const result = spawnSync(command!, rest, {
        cwd: REPO,
        encoding: 'utf8',
        env: { ...process.env, PATH: `${TOOLS}:${join(REPO, 'node_modules', '.bin')}:${process.env.PATH}` },
        maxBuffer: 64 * 1024 * 1024,
        timeout: 600_000,
      });
      const output = `${result.stdout}\n${result.stderr}`;
      expect(
        result.status,
        output
          .split('\n')
          .filter((line) => /error|failure/i.test(line))
          .join('\n'),
      ).toBe(0);
      expect(existsSync(APP)).toBe(true);
    }

    function connections(): number {
      return events.filter((event) => event.type === 'connected').length;
    }
  });
}

/** Run the app once; resolve with its "dps: " and "hub: " trace lines once a line matches `until` (ready or stopped), then stop it. */
async function boot(until = /^dps: (ready|stopped)/, timeoutMs = 120_000): Promise<string> {
  const run = bootProcess(until, timeoutMs);
  try {
    await run.reached;
    // A debug build traces its memory use right after "ready": give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 500));
    return run.trace();
  } finally {
    await run.stop();
  }
}

/**
 * The simulator running the app, its trace read as it comes: `reached` settles once a line
 * matches `first`; until(pattern, n) once n lines in all match `pattern`. Any wait fails at once
 * when the simulator crashes (a SIGSEGV leaves xsbug-log waiting: mcsim itself is watched) or
 * aborts, and after `timeoutMs`.
 */
function bootProcess(first: RegExp, timeoutMs = 120_000) {
  const child = spawn('xvfb-run', ['-a', 'node', join(XSBUG_LOG, 'xsbug-log.js'), join(TOOLS, 'mcsim'), APP], {
    cwd: tmpdir(),
    detached: true, // its own process group: xvfb-run, Xvfb, xsbug-log and mcsim end together
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waits = new Set<{
    pattern: RegExp;
    count: number;
    resolve: (trace: string) => void;
    reject: (error: Error) => void;
    timer: NodeJS.Timeout;
  }>();
  let failure: Error | undefined;
  let buffered = '';
  const trace = () => lines.join('\n');
  const check = () => {
    for (const wait of waits) {
      if (lines.filter((line) => wait.pattern.test(line)).length >= wait.count) {
        waits.delete(wait);
        clearTimeout(wait.timer);
        wait.resolve(trace());
      }
    }
  };
  const fail = (error: Error) => {
    failure ??= error;
    for (const wait of waits) {
      clearTimeout(wait.timer);
      wait.reject(error);
    }
    waits.clear();
  };
  const until = (pattern: RegExp, count = 1): Promise<string> =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      const timer = setTimeout(() => {
        waits.delete(wait);
        reject(new Error(`no ${count} line(s) matching ${pattern} within ${timeoutMs / 1000} s; trace:\n${trace()}`));
      }, timeoutMs);
      const wait = { pattern, count, resolve, reject, timer };
      waits.add(wait);
      check();
    });
  const take = (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const raw of parts) {
      // xsbug-log prints "[Thread 1] <trace>" between xsdb prompts and terminal escapes.
      const line = raw
        .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
        .replace(/\(xsdb\) /g, '')
        .replace(/^\[Thread \d+\] /, '')
        .trim();
      if (line.startsWith('dps: ') || line.startsWith('hub: ')) lines.push(line);
      if (line.includes('XS abort')) fail(new Error(`${line}\n${trace()}`));
    }
    check();
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  child.on('error', (error) => fail(error));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('exit', (code, signal) => fail(new Error(`xsbug-log ended (${signal ?? `exit ${code}`}); trace:\n${trace()}`)));
  let seen = false;
  const watchdog = setInterval(() => {
    const alive = spawnSync('pgrep', ['-g', String(child.pid), '-x', 'mcsim']).status === 0;
    if (alive) seen = true;
    else if (seen) fail(new Error(`the simulator (mcsim) died; trace:\n${trace()}`));
  }, 500);
  const reached = until(first);
  reached.catch(() => {}); // a test that never awaits it still sees the failure in until()
  return {
    reached,
    until,
    trace,
    async stop(): Promise<void> {
      clearInterval(watchdog);
      failure ??= new Error('stopped');
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    },
  };
}

/** The first 8 bytes of the certificate's SHA-256, as the firmware traces them. */
function fingerprintPrefix(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').slice(0, 16).toLowerCase();
}

function expectNoSecrets(trace: string): void {
  expect(trace).not.toContain(GROUP_KEY);
  expect(trace).not.toContain(deriveDeviceKey(GROUP_KEY, REGISTRATION_ID));
  expect(trace).not.toMatch(/SharedAccessSignature|sig=/);
}

function readPreferences(): Record<string, Record<string, unknown> | undefined> {
  try {
    return JSON.parse(readFileSync(PREFERENCES, 'utf8')) as Record<string, Record<string, unknown>>;
  } catch {
    return {};
  }
}

function writePreferences(preferences: Record<string, unknown>): void {
  const kept = Object.fromEntries(Object.entries(preferences).filter(([, value]) => value !== undefined));
  writeFileSync(PREFERENCES, JSON.stringify(kept));
}

/** An SNTP server on 127.0.0.1:123 answering with this machine's time; undefined when the port cannot be bound. */
function startSntpResponder(): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.on('message', (request, peer) => {
      if (request.length < 48) return;
      const answer = Buffer.alloc(48);
      answer[0] = (4 << 3) | 4; // version 4, mode 4 (server)
      answer[1] = 1; // stratum 1
      const seconds = Math.floor(Date.now() / 1000) + 2_208_988_800; // NTP counts from 1900
      answer.writeUInt32BE(seconds, 32); // receive timestamp
      answer.writeUInt32BE(seconds, 40); // transmit timestamp, the one clients read
      request.copy(answer, 24, 40, 48); // originate = the client's transmit timestamp
      socket.send(answer, peer.port, peer.address);
    });
    socket.once('error', () => {
      socket.close();
      resolve(undefined);
    });
    socket.bind(123, '127.0.0.1', () => resolve(socket));
  });
}

/** A factory NVS CSV read as nvs_partition_gen would: data rows as strings, a file row as the file's text. */
function readNvsCsv(path: string): Record<string, string> {
  const rows = readFileSync(path, 'utf8').trim().split('\n').slice(2);
  return Object.fromEntries(
    rows.map((row) => {
      const [key, type, , value] = row.split(',');
      return [key!, type === 'file' ? readFileSync(value!, 'utf8') : value!];
    }),
  );
}

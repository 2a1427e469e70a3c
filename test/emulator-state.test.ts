// The emulator's state across restarts (emulator/state-store.ts): what it learned at run time
// (registration records, hub identities and twins, linked-hub changes and renewed keys, the
// policy, enrollments with generated keys) is there after a restart on the same state directory,
// and a device with a stored assignment goes straight back online; the config seeds the state
// once and a different one is refused (or --reset); --in-memory keeps nothing; `emulator export`
// writes a config file an emulator starts from with the same configuration; a state file that
// cannot be read stops the start with exit 2, naming it, and is left as it was.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueDeviceCertificate } from '../cli/shared/certificates.js';
import { loadConfigFile } from '../emulator/config-file.js';
import {
  type DpsEmulator,
  type EmulatorOptions,
  STATE_FILE,
  StateConflictError,
  StateFileError,
  startEmulator,
} from '../emulator/index.js';
import { readStateFile } from '../emulator/state-store.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { connectHub } from '../src/hub/session.js';
import { deriveDeviceKey } from '../src/identity.js';
import { provisionDevice } from '../src/provisioner.js';
import { runCli } from './support/cli-runner.js';
import { EPHEMERAL_PORTS, startEmulatorCommand } from './support/emulator-cli.js';
import { MemoryStore } from './support/memory-store.js';

const ID_SCOPE = '0ne00STATE1';
const HUBS = ['state-hub-1.azure-devices.net', 'state-hub-2.azure-devices.net'];
const hubKey = (host: string) => Buffer.from(`${host} hub key 0123456789`).toString('base64');
const GROUP_KEY = Buffer.from('state-test-group-key-0123456789abcdef').toString('base64');
const CONFIG: NonNullable<EmulatorOptions['config']> = {
  iotHubs: HUBS.map((host, i) => ({
    connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${hubKey(host)}`,
    location: i === 0 ? 'westus' : 'eastus',
  })),
  enrollmentGroups: [
    {
      enrollmentGroupId: 'state-group',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
      initialTwin: { tags: { line: 'a' }, properties: { desired: { interval: 60 } } },
    },
  ],
};

const dir = mkdtempSync(join(tmpdir(), 'dps-emulator-state-'));
const running = new Set<DpsEmulator>();
afterAll(async () => {
  await Promise.all([...running].map((dps) => dps.close()));
  rmSync(dir, { recursive: true, force: true });
});

let dirs = 0;
const newStateDir = () => join(dir, `state-${++dirs}`);

async function start(stateDir: string, options: Partial<EmulatorOptions> = {}): Promise<DpsEmulator> {
  const dps = await startEmulator({ idScope: ID_SCOPE, stateDir, retryAfterSeconds: 0, ...options });
  running.add(dps);
  return dps;
}

async function stop(dps: DpsEmulator): Promise<void> {
  running.delete(dps);
  await dps.close();
}

async function provision(dps: DpsEmulator, registrationId: string, store = new MemoryStore()) {
  const deviceKey = deriveDeviceKey(GROUP_KEY, registrationId);
  const { assignment } = await provisionDevice(
    { idScope: ID_SCOPE, endpoint: dps.endpoint, registrationId, deviceKey, timeoutMs: 20_000 },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock, store },
  );
  return { assignment, store, deviceKey };
}

function online(dps: DpsEmulator, hub: string, deviceId: string, deviceKey: string) {
  return connectHub(
    {
      hub,
      deviceId,
      deviceKey,
      endpoint: dps.hubEndpoint,
      requestTimeoutMs: 5000,
      offlineTimeoutMs: 2000,
      backoff: { minMs: 10, maxMs: 50, jitterMs: 10 },
    },
    { connect: createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 }), clock: systemClock, random: nodeRandom },
  );
}

/** Everything the model holds, read through its public API, keys included. */
function everything(dps: DpsEmulator) {
  const { model } = dps;
  return {
    allocationPolicy: model.allocationPolicy,
    latency: JSON.parse(JSON.stringify(model.latency)),
    linkedHubs: model.linkedHubs(),
    enrollmentGroups: model.enrollmentGroups(),
    individualEnrollments: model.individualEnrollments(),
    registrations: model.registrations(),
    hubs: model.iotHubs.list().map((hub) => ({ ...hub, devices: model.hubDevices(hub.hostName) })),
  };
}

describe('the state survives a restart', () => {
  it('keeps registrations, hub identities and twins, linked-hub changes, keys and the policy; a device with a stored assignment goes online', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { config: CONFIG });
    expect(one.state).toMatchObject({ path: join(stateDir, STATE_FILE), origin: 'seeded' });
    const devices = await Promise.all(['state-dev-1', 'state-dev-2', 'state-dev-3'].map((id) => provision(one, id)));
    const first = devices[0]!;
    // The device reports; the service side sets a desired property and a tag.
    const session = await online(one, first.assignment.assignedHub, first.assignment.deviceId, first.deviceKey);
    await session.updateReported({ firmware: '2.1' });
    session.close();
    one.hubs.updateTwin(first.assignment.assignedHub, first.assignment.deviceId, { tags: { rack: 7 }, desired: { interval: 5 } });
    // Run-time changes of the configuration: a renewed hub key and the link updated to it, a
    // weight, the policy, latency, an individual enrollment with generated keys, a disabled device.
    const renewed = one.model.iotHubs.renewKey(HUBS[1]!, 'iothubowner', 'primary');
    one.model.updateHub(HUBS[1]!, {
      connectionString: `HostName=${HUBS[1]};SharedAccessKeyName=iothubowner;SharedAccessKey=${renewed.primaryKey}`,
      allocationWeight: 9,
    });
    one.model.setLatency({ westus: { westus: 3, eastus: 60 } });
    one.model.setAllocationPolicy('geoLatency');
    one.model.putIndividualEnrollment({ registrationId: 'state-individual' });
    const second = devices[1]!.assignment;
    one.hubs.setDeviceStatus(second.assignedHub, second.deviceId, 'disabled');
    const before = everything(one);
    expect(before.registrations).toHaveLength(3);
    await stop(one);

    const two = await start(stateDir);
    expect(two.state?.origin).toBe('restored');
    expect(everything(two)).toEqual(before);
    expect(two.hubs.twin(first.assignment.assignedHub, first.assignment.deviceId)).toMatchObject({
      tags: { line: 'a', rack: 7 },
      properties: { desired: { interval: 5, $version: 2 }, reported: { firmware: '2.1', $version: 2 } },
    });
    // The device with its stored assignment connects to its hub at once, with its twin.
    const again = await online(two, first.assignment.assignedHub, first.assignment.deviceId, first.deviceKey);
    expect((await again.getTwin()).reported).toMatchObject({ firmware: '2.1' });
    again.close();
    // It registers again: DPS knows it (its record's creation date is the first one's).
    const created = before.registrations.find((r) => r.state.registrationId === 'state-dev-1')!.state.createdDateTimeUtc;
    await provision(two, 'state-dev-1');
    expect(two.model.registration('state-dev-1')?.state.createdDateTimeUtc).toBe(created);
    // The disabled device stays disabled.
    expect(two.hubs.twin(second.assignedHub, second.deviceId)?.status).toBe('disabled');
    await stop(two);
  }, 60_000);

  it('saves changes made after the start without a restart in between (coalesced, as journal lines), and on close (into state.json)', async () => {
    const stateDir = newStateDir();
    const dps = await start(stateDir, { config: CONFIG });
    await provision(dps, 'state-saved-1');
    await dps.state!.flush();
    const saved = await readStateFile(join(stateDir, STATE_FILE));
    expect(saved!.model.registrations.map((r) => r.state.registrationId)).toEqual(['state-saved-1']);
    expect(readFileSync(join(stateDir, 'state.journal'), 'utf8')).toContain('state-saved-1');
    dps.model.deleteRegistration('state-saved-1');
    await stop(dps);
    expect(JSON.parse(readFileSync(join(stateDir, STATE_FILE), 'utf8')).model.registrations).toEqual([]);
    expect(readFileSync(join(stateDir, 'state.journal'), 'utf8')).toBe('');
    expect(readdirSync(stateDir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });
});

describe('CA certificates survive a restart (issue 14)', () => {
  it('keeps each certificate, its verified flag and a pending verification code; a group naming the verified one still trusts it', async () => {
    const stateDir = newStateDir();
    const verifiedCa = createCa('state-test verified root');
    const pendingCa = createCa('state-test pending root');
    const one = await start(stateDir, { config: CONFIG });
    one.model.certificates.put('verified-root', verifiedCa.cert, true);
    one.model.certificates.put('pending-root', pendingCa.cert);
    const { verificationCode } = one.model.certificates.generateVerificationCode('pending-root');
    one.model.putEnrollmentGroup({
      enrollmentGroupId: 'state-x509',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'verified-root', secondary: 'pending-root' } } },
    });
    const before = one.model.certificates.list();
    expect(before.map((c) => [c.name, c.isVerified])).toEqual([
      ['verified-root', true],
      ['pending-root', false],
    ]);
    await stop(one);

    const two = await start(stateDir, { config: CONFIG });
    expect(two.state?.origin).toBe('restored');
    expect(two.model.certificates.list()).toEqual(before);
    expect(two.model.certificates.get('pending-root')?.verificationCode).toBe(verificationCode);
    // The verified CA is trusted: a device whose certificate it issued provisions by it alone.
    const device = issueDeviceCertificate(verifiedCa, 'state-x509-1');
    const { assignment } = await provisionDevice(
      { idScope: ID_SCOPE, endpoint: two.endpoint, registrationId: 'state-x509-1', x509: true, timeoutMs: 20_000 },
      { connect: createTlsConnect({ ca: two.caPem, clientCertificate: device, connectTimeoutMs: 5000 }), clock: systemClock },
    );
    expect(assignment.deviceId).toBe('state-x509-1');
    expect(two.model.registration('state-x509-1')?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'state-x509' });
    // The code generated before the restart still completes the proof of possession after it.
    const proof = issueDeviceCertificate(pendingCa, verificationCode!).cert;
    expect(two.model.certificates.verify('pending-root', proof).isVerified).toBe(true);
    await stop(two);

    const three = await start(stateDir, { config: CONFIG });
    expect(three.model.certificates.get('pending-root')).toMatchObject({ isVerified: true });
    expect(three.model.certificates.get('pending-root')?.verificationCode).toBeUndefined();
    // export: a config file with the certificates and their flags, which an emulator starts from.
    const kept = three.model.certificates.list().map((c) => [c.name, c.certificate, c.isVerified]);
    await stop(three);
    const out = join(stateDir, 'exported.json');
    const exported = await runCli(['emulator', 'export', '--state-dir', stateDir, '--out', out]);
    expect(exported.code, exported.stderr).toBe(0);
    const config = JSON.parse(readFileSync(out, 'utf8'));
    expect(config.certificates.map((c: { name: string; isVerified: boolean }) => [c.name, c.isVerified])).toEqual([
      ['verified-root', true],
      ['pending-root', true],
    ]);
    const file = await loadConfigFile(out);
    const fromExport = await start(newStateDir(), { config: file.config, configFile: out });
    expect(fromExport.model.certificates.list().map((c) => [c.name, c.certificate, c.isVerified])).toEqual(kept);
    await stop(fromExport);
  }, 60_000);

  it('a stored CA certificate that is not one stops the start, naming the file and the entry', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { config: CONFIG });
    one.model.certificates.put('damaged-root', createCa('state-test damaged root').cert, true);
    await stop(one);
    const statePath = join(stateDir, STATE_FILE);
    const state = JSON.parse(readFileSync(statePath, 'utf8'));
    for (const [damage, pointer] of [
      [(c: Record<string, unknown>) => void (c.certificate = 'not a certificate'), /\/model\/certificates\/0: not a CA certificate/],
      [(c: Record<string, unknown>) => void (c.isVerified = 'yes'), /\/model\/certificates\/0: not a CA certificate/],
      [(c: Record<string, unknown>) => void (c.name = '__proto__ x'), /\/model\/certificates\/0: not a CA certificate/],
    ] as const) {
      const damaged = structuredClone(state);
      damage(damaged.model.certificates[0]);
      writeFileSync(statePath, JSON.stringify(damaged));
      const error = await start(stateDir).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StateFileError);
      expect((error as Error).message).toMatch(pointer);
    }
    const notAList = structuredClone(state);
    notAList.model.certificates = 'none';
    writeFileSync(statePath, JSON.stringify(notAList));
    await expect(start(stateDir)).rejects.toThrow(/\/model\/certificates: not a list/);
  });
});

describe('the config and the stored state', () => {
  it('a later start with the same config keeps the state; a changed config is refused naming both files; reset seeds afresh and keeps the old file', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { config: CONFIG, configFile: 'line.json' });
    one.model.setAllocationPolicy('static');
    await stop(one);

    const same = await start(stateDir, { config: CONFIG, configFile: 'line.json' });
    expect(same.state?.origin).toBe('restored');
    expect(same.model.allocationPolicy).toBe('static');
    await stop(same);

    const statePath = join(stateDir, STATE_FILE);
    const bytes = readFileSync(statePath);
    const changed = { ...CONFIG, allocationPolicy: 'geoLatency' as const };
    const refusal = await start(stateDir, { config: changed, configFile: 'line-v2.json' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(StateConflictError);
    expect((refusal as Error).message).toContain('line-v2.json');
    expect((refusal as Error).message).toContain(statePath);
    expect((refusal as Error).message).toContain('seeded from line.json');
    expect(readFileSync(statePath)).toEqual(bytes);

    const reset = await start(stateDir, { config: changed, configFile: 'line-v2.json', reset: true });
    expect(reset.state?.origin).toBe('seeded');
    expect(reset.model.allocationPolicy).toBe('geoLatency');
    expect(readFileSync(reset.state!.setAside!)).toEqual(bytes);
    await stop(reset);
  });

  it('a state seeded without a config refuses a config; without --config the CLI keeps the state and its ID scope', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { idScope: '0ne00NOCFG1' });
    one.model.linkHub(CONFIG.iotHubs![0]!);
    await stop(one);
    await expect(start(stateDir, { config: CONFIG, configFile: 'late.json' })).rejects.toThrow(/seeded without a config file/);

    const { dps, io, stop: stopCli } = await startEmulatorCommand(['--state-dir', stateDir, ...EPHEMERAL_PORTS]);
    expect(dps.idScope).toBe('0ne00NOCFG1');
    expect(dps.model.linkedHubs().map((h) => h.hostName)).toEqual([HUBS[0]]);
    expect(io.out()).toMatch(/state\s+\S*state\.json {2}\(kept from the last run/);
    expect(await stopCli()).toBe(0);
  });

  it('--in-memory keeps nothing: no state file, and the next start knows nothing of the last', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { config: CONFIG, inMemory: true });
    expect(one.state).toBeUndefined();
    await provision(one, 'state-memory-1');
    await stop(one);
    expect(existsSync(join(stateDir, STATE_FILE))).toBe(false);
    const two = await start(stateDir, { config: CONFIG, inMemory: true });
    expect(two.model.registrations()).toEqual([]);
    await stop(two);

    const { io, stop: stopCli } = await startEmulatorCommand(['--state-dir', stateDir, '--in-memory', ...EPHEMERAL_PORTS]);
    expect(io.out()).toMatch(/state\s+in memory only/);
    expect(await stopCli()).toBe(0);
    expect(existsSync(join(stateDir, STATE_FILE))).toBe(false);
  });
});

describe('emulator export', () => {
  it('writes a config file an emulator starts from with the same configuration (export → start → export is the same file)', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { config: CONFIG });
    const renewed = one.model.iotHubs.renewKey(HUBS[0]!, 'iothubowner', 'swap');
    one.model.updateHub(HUBS[0]!, {
      connectionString: `HostName=${HUBS[0]};SharedAccessKeyName=iothubowner;SharedAccessKey=${renewed.primaryKey}`,
      allocationWeight: 4,
      applyAllocationPolicy: false,
    });
    one.model.putIndividualEnrollment({ registrationId: 'exported-one', deviceId: 'exported-device', iotHubs: [HUBS[1]!] });
    one.model.putEnrollmentGroup({
      enrollmentGroupId: 'exported-group',
      provisioningStatus: 'disabled',
      reprovisionPolicy: { migrateDeviceData: false },
    });
    one.model.setLatency({ westus: { eastus: 70 } });
    one.model.setAllocationPolicy('geoLatency');
    await one.state!.flush();

    const out = join(dir, 'exported.json');
    const exported = await runCli(['emulator', 'export', '--state-dir', stateDir, '--out', out]);
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);
    expect(exported.stdout).toMatch(/2 linked hubs, 2 enrollment groups, 1 individual enrollments/);
    const text = readFileSync(out, 'utf8');
    for (const key of [GROUP_KEY, renewed.primaryKey]) expect(exported.stdout).not.toContain(key);
    expect(text).toContain(renewed.primaryKey);

    const file = await loadConfigFile(out);
    expect(file.idScope).toBe(ID_SCOPE);
    const twoDir = newStateDir();
    const two = await start(twoDir, { idScope: file.idScope!, config: file.config, configFile: out });
    const config = (dps: DpsEmulator) => {
      const { registrations: _r, hubs: _h, ...rest } = everything(dps);
      const strip = (e: object) => {
        const { etag: _e, createdDateTimeUtc: _c, lastUpdatedDateTimeUtc: _u, ...kept } = e as Record<string, unknown>;
        return kept;
      };
      return { ...rest, enrollmentGroups: rest.enrollmentGroups.map(strip), individualEnrollments: rest.individualEnrollments.map(strip) };
    };
    expect(config(two)).toEqual(config(one));
    await two.state!.flush();
    const again = join(dir, 'exported-again.json');
    expect((await runCli(['emulator', 'export', '--state-dir', twoDir, '--out', again])).code).toBe(0);
    expect(readFileSync(again, 'utf8')).toBe(text);
    await Promise.all([stop(one), stop(two)]);
  });

  it('refuses a state directory with no state, and an --out that is the state file', async () => {
    const empty = newStateDir();
    const none = await runCli(['emulator', 'export', '--state-dir', empty, '--out', join(dir, 'none.json')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/there is no emulator state in .*state\.json/);
    const same = await runCli(['emulator', 'export', '--state-dir', empty, '--out', join(empty, STATE_FILE)]);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/would overwrite the state file/);
  });
});

describe('a state file that cannot be read', () => {
  const corrupt: [string, (valid: string) => string, RegExp][] = [
    ['torn in half', (valid) => valid.slice(0, valid.length / 2), /not valid JSON/],
    ['empty', () => '', /not valid JSON \(0 bytes: empty\)/],
    ['another program’s JSON', () => '{"records": {}}', /not an emulator state file/],
    [
      'a newer format',
      (valid) => valid.replace('"moddable-dps-emulator-state":1', '"moddable-dps-emulator-state":2'),
      /newer moddable-dps/,
    ],
    [
      'a registration without its ID',
      (valid) => valid.replace('"registrationId":"state-bad-1"', '"registrationId":7'),
      /\/model\/registrations\/0: not a registration record/,
    ],
    ['an unknown allocation policy', (valid) => valid.replace('"allocationPolicy":"hashed"', '"allocationPolicy":"nearest"'), /\/model: /],
  ];
  it.each(corrupt)(
    '%s: the start is refused naming the file (exit 2 from the CLI), and the file is left as it was',
    async (_what, damage, reason) => {
      const stateDir = newStateDir();
      const one = await start(stateDir, { config: CONFIG });
      await provision(one, 'state-bad-1');
      await stop(one);
      const statePath = join(stateDir, STATE_FILE);
      const damaged = damage(readFileSync(statePath, 'utf8'));
      writeFileSync(statePath, damaged);

      const error = await start(stateDir, { config: CONFIG }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StateFileError);
      expect((error as StateFileError).path).toBe(statePath);
      expect((error as Error).message).toMatch(reason);

      for (const args of [[], ['--id-scope', ID_SCOPE]]) {
        const run = await runCli(['emulator', '--state-dir', stateDir, ...EPHEMERAL_PORTS, ...args]);
        expect(run.code).toBe(2);
        expect(run.stderr.trim().split('\n')).toHaveLength(1);
        expect(run.stderr).toContain(statePath);
        expect(run.stderr).toMatch(reason);
      }
      const exported = await runCli(['emulator', 'export', '--state-dir', stateDir, '--out', join(stateDir, 'out.json')]);
      expect(exported.code).toBe(2);
      expect(exported.stderr).toContain(statePath);
      expect(readFileSync(statePath, 'utf8')).toBe(damaged);
      expect(readdirSync(stateDir).filter((name) => name.startsWith(`.${STATE_FILE}`))).toEqual([]);
    },
  );

  it('a directory in place of the state file is refused too', async () => {
    const stateDir = newStateDir();
    const one = await start(stateDir, { inMemory: true });
    await stop(one);
    const statePath = join(stateDir, STATE_FILE);
    rmSync(statePath, { force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(statePath);
    await expect(start(stateDir)).rejects.toThrow(/not a regular file/);
  });
});

// Allocation policies and the model's rules: weighted hashing shares, determinism, apply=false,
// static, geoLatency, edge rules from the seeds (unlinked hubs, reprovisioning), validation.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { allocateHub, geoLatencyPick, hashedPick } from '../emulator/allocation.js';
import type { DeviceAttestation } from '../emulator/auth.js';
import { DpsError } from '../emulator/dps-errors.js';
import { DpsModel } from '../emulator/model.js';
import type { LinkedHub, LinkedHubConfig } from '../emulator/model-types.js';
import { symmetricKeys } from '../emulator/model-types.js';
import { RegistrationService } from '../emulator/registrations.js';
import { validateLinkedHub } from '../emulator/validation.js';

const KEY = Buffer.alloc(32, 5).toString('base64');
const hubConfig = (name: string, extra: Partial<LinkedHubConfig> = {}): LinkedHubConfig => ({
  connectionString: `HostName=${name}.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`,
  ...extra,
});
const hub = (name: string, extra: Partial<LinkedHubConfig> = {}): LinkedHub => validateLinkedHub(hubConfig(name, extra));
const ids = (n: number, prefix = 'device'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

function shares(hubs: LinkedHub[], registrationIds: string[]): Map<string, number> {
  const counts = new Map(hubs.map((h) => [h.hostName, 0]));
  for (const id of registrationIds) {
    const chosen = hashedPick(
      hubs.filter((h) => h.applyAllocationPolicy),
      id,
    );
    if (chosen) counts.set(chosen.hostName, counts.get(chosen.hostName)! + 1);
  }
  return counts;
}

describe('hashed allocation', () => {
  it('spreads 3000 registration IDs over weights 1:2:7 within 4 binomial standard deviations', () => {
    const hubs = [hub('w1', { allocationWeight: 1 }), hub('w2', { allocationWeight: 2 }), hub('w7', { allocationWeight: 7 })];
    const n = 3000;
    const counts = shares(hubs, ids(n));
    for (const h of hubs) {
      const p = h.allocationWeight / 10;
      // Each hub's count is Binomial(n, p): sd = sqrt(n p (1-p)), i.e. 0.55, 0.73 and 0.84 percentage
      // points for p = 0.1, 0.2, 0.7. Four sd: ±2.2, ±2.9, ±3.4 points (a fair hash fails this < 1 in 15000).
      const share = counts.get(h.hostName)! / n;
      const bound = 4 * Math.sqrt((p * (1 - p)) / n);
      expect(Math.abs(share - p), `${h.hostName}: ${share} vs ${p}`).toBeLessThanOrEqual(bound);
    }
  });

  it('never picks a hub whose applyAllocationPolicy is false', () => {
    const hubs = [hub('on-1'), hub('off', { applyAllocationPolicy: false, allocationWeight: 1000 }), hub('on-2')];
    const counts = shares(hubs, ids(1000));
    expect(counts.get('off.azure-devices.net')).toBe(0);
    expect(counts.get('on-1.azure-devices.net')! + counts.get('on-2.azure-devices.net')!).toBe(1000);
    const result = allocateHub({ registrationId: 'x', policy: 'hashed', linkedHubs: [hubs[1]!] });
    expect(result).toMatchObject({ ok: false, status: 400, message: expect.stringContaining('applies the allocation policy') });
  });

  it('is deterministic for a hub set, whatever its order, and adding a hub moves devices only onto the new hub', () => {
    const hubs = [hub('a', { allocationWeight: 3 }), hub('b'), hub('c', { allocationWeight: 5 })];
    const before = ids(2000).map((id) => hashedPick(hubs, id)!.hostName);
    expect(ids(2000).map((id) => hashedPick([...hubs].reverse(), id)!.hostName)).toEqual(before);
    const added = hub('d', { allocationWeight: 2 }); // 2 / 11 of the weight: about 364 of 2000 should move
    const after = ids(2000).map((id) => hashedPick([...hubs, added], id)!.hostName);
    let moved = 0;
    after.forEach((name, i) => {
      if (name !== before[i]) {
        moved++;
        expect(name).toBe(added.hostName);
      }
    });
    expect(Math.abs(moved / 2000 - 2 / 11)).toBeLessThan(0.04);
  });

  it('treats registration IDs case-insensitively', () => {
    const hubs = [hub('a'), hub('b'), hub('c')];
    for (const id of ids(50, 'Sensor')) expect(hashedPick(hubs, id)).toEqual(hashedPick(hubs, id.toLowerCase()));
  });
});

describe('static and geoLatency', () => {
  it("static always gives the enrollment's hub, even one with applyAllocationPolicy false", () => {
    const linked = [hub('a'), hub('pinned', { applyAllocationPolicy: false }), hub('c', { allocationWeight: 1000 })];
    for (const id of ids(100)) {
      const result = allocateHub({
        registrationId: id,
        policy: 'static',
        linkedHubs: linked,
        enrollmentHubs: ['pinned.azure-devices.net'],
      });
      expect(result).toMatchObject({ ok: true, hub: { hostName: 'pinned.azure-devices.net' } });
    }
    expect(allocateHub({ registrationId: 'x', policy: 'static', linkedHubs: linked })).toMatchObject({ ok: false });
  });

  it('geoLatency picks the nearest region, breaks ties by weighted hash, and skips apply=false', () => {
    const linked = [
      hub('us-1', { location: 'westus' }),
      hub('us-2', { location: 'westus', allocationWeight: 3 }),
      hub('eu', { location: 'westeurope' }),
      hub('near-but-off', { location: 'westus', applyAllocationPolicy: false }),
    ];
    const latency = { westus: { westeurope: 140 }, westeurope: { westeurope: 5 } };
    const fromUs = ids(400).map(
      (id) =>
        geoLatencyPick(
          linked.filter((h) => h.applyAllocationPolicy),
          id,
          'westus',
          latency,
        )!.hostName,
    );
    expect(new Set(fromUs)).toEqual(new Set(['us-1.azure-devices.net', 'us-2.azure-devices.net']));
    expect(fromUs.filter((n) => n === 'us-2.azure-devices.net').length).toBeGreaterThan(250); // weight 3 of 4
    const fromEu = allocateHub({
      registrationId: 'eu-device',
      policy: 'geoLatency',
      linkedHubs: linked,
      deviceRegion: 'westeurope',
      latency,
    });
    expect(fromEu).toMatchObject({ ok: true, hub: { hostName: 'eu.azure-devices.net' } });
  });
});

describe('the model', () => {
  it('validates linked hubs: weight 1..1000 (null means 1), apply null means true, connection string fields', () => {
    const model = new DpsModel({ iotHubs: [hubConfig('h', { allocationWeight: null, applyAllocationPolicy: null })] });
    expect(model.linkedHub('H.azure-devices.net')).toMatchObject({ allocationWeight: 1, applyAllocationPolicy: true });
    for (const weight of [0, 1001, 2.5]) {
      expect(() => model.linkHub(hubConfig('w', { allocationWeight: weight }))).toThrow(/allocationWeight/);
    }
    expect(() => model.linkHub({ connectionString: `HostName=x.azure-devices.net;SharedAccessKey=${KEY}` })).toThrow(/SharedAccessKeyName/);
    expect(() => model.linkHub({ connectionString: 'HostName=x.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey=***' })).toThrow(
      /base64/,
    );
    expect(() => model.linkHub(hubConfig('h'))).toThrow(/already linked/);
    expect(() => model.setAllocationPolicy('custom')).toThrow(/cannot be custom/);
  });

  it('refuses a static enrollment without exactly one hub, and hubs that are not linked', () => {
    const model = new DpsModel({ iotHubs: [hubConfig('a'), hubConfig('b')] });
    const attestation = { type: 'symmetricKey' as const };
    expect(() => model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation, allocationPolicy: 'static' })).toThrow(DpsError);
    expect(() =>
      model.putEnrollmentGroup({
        enrollmentGroupId: 'g',
        attestation,
        allocationPolicy: 'static',
        iotHubs: ['a.azure-devices.net', 'b.azure-devices.net'],
      }),
    ).toThrow(/exactly one/);
    expect(() => model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation, iotHubs: ['nope.azure-devices.net'] })).toThrow(
      /not linked/,
    );
    const group = model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation });
    expect(Buffer.from(symmetricKeys(group.attestation)!.primaryKey, 'base64')).toHaveLength(64); // generated, as DPS does
    expect(() => model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation }, '"stale"')).toThrow(/etag/);
    expect(model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation }, group.etag).attestation).toEqual(group.attestation);
  });
});

describe('registrations through the model', () => {
  const device = (registrationId: string): DeviceAttestation => ({
    registrationId,
    enrollment: { kind: 'group', enrollmentGroupId: 'g' },
    authentication: { type: 'sas', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
  });
  const body = (id: string): Uint8Array => Buffer.from(JSON.stringify({ registrationId: id }));
  const finish = (model: DpsModel, id: string) => {
    const service = new RegistrationService(model, { retryAfterSeconds: 0, assignmentDelayMs: 0 });
    const started = service.register(device(id), body(id)) as { body: { operationId: string } };
    return (service.poll(device(id), started.body.operationId).body as { registrationState: any }).registrationState;
  };

  it('fails clearly when an enrollment lists a hub that was unlinked; enrollments without hubs follow the linked set', () => {
    const model = new DpsModel({ iotHubs: [hubConfig('a'), hubConfig('b')] });
    model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation: { type: 'symmetricKey' }, iotHubs: ['a.azure-devices.net'] });
    model.unlinkHub('a.azure-devices.net');
    const state = finish(model, 'orphan-1');
    expect(state).toMatchObject({ status: 'failed', errorCode: 400004, errorMessage: expect.stringContaining('no longer linked') });
    model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation: { type: 'symmetricKey' } });
    model.linkHub(hubConfig('c', { allocationWeight: 1000 }));
    expect(finish(model, 'follower-1').assignedHub).toBe('c.azure-devices.net'); // joined at once, weight 1000 of 1002
  });

  it('re-registration follows reprovisionPolicy: keep the hub, or move with migrated or reset data', () => {
    const model = new DpsModel({ iotHubs: [hubConfig('a')] });
    const twin = { tags: { site: 'one' } };
    model.putEnrollmentGroup({
      enrollmentGroupId: 'g',
      attestation: { type: 'symmetricKey' },
      initialTwin: twin,
      reprovisionPolicy: { updateHubAssignment: false },
    });
    expect(finish(model, 'mover')).toMatchObject({ assignedHub: 'a.azure-devices.net', substatus: 'initialAssignment' });
    model.linkHub(hubConfig('b', { allocationWeight: 1000 }));
    model.updateHub('a.azure-devices.net', { applyAllocationPolicy: false });
    expect(finish(model, 'mover').assignedHub).toBe('a.azure-devices.net'); // updateHubAssignment false keeps it
    model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation: { type: 'symmetricKey' }, initialTwin: { tags: { site: 'two' } } });
    expect(finish(model, 'mover')).toMatchObject({ assignedHub: 'b.azure-devices.net', substatus: 'deviceDataMigrated' });
    expect(model.hubDevice('b.azure-devices.net', 'mover')?.tags).toEqual({ site: 'one' }); // migrated, not the new twin
    expect(model.hubDevice('a.azure-devices.net', 'mover')).toBeUndefined();
    model.putEnrollmentGroup({
      enrollmentGroupId: 'g',
      attestation: { type: 'symmetricKey' },
      initialTwin: { tags: { site: 'three' } },
      reprovisionPolicy: { migrateDeviceData: false },
    });
    model.updateHub('a.azure-devices.net', { applyAllocationPolicy: true, allocationWeight: 1000 });
    model.updateHub('b.azure-devices.net', { applyAllocationPolicy: false });
    expect(finish(model, 'mover')).toMatchObject({ assignedHub: 'a.azure-devices.net', substatus: 'deviceDataReset' });
    expect(model.hubDevice('a.azure-devices.net', 'mover')?.tags).toEqual({ site: 'three' });
  });

  it('reset to initial config resets the twin on the same hub too ("a factory reset without changing IoT hubs"); a device that stays keeps its status', () => {
    const model = new DpsModel({ iotHubs: [hubConfig('a')] });
    const initialTwin = { tags: { site: 'one' }, properties: { desired: { interval: 10 } } };
    model.putEnrollmentGroup({ enrollmentGroupId: 'g', attestation: { type: 'symmetricKey' }, initialTwin });
    expect(finish(model, 'stayer').substatus).toBe('initialAssignment');
    const used = { ...model.hubDevice('a.azure-devices.net', 'stayer')!, status: 'disabled' as const };
    used.properties = { desired: { interval: 5 }, reported: { firmware: '1.0' } };
    used.twinVersions = { desired: 2, reported: 3 };
    model.replaceHubDevice('a.azure-devices.net', used);
    expect(finish(model, 'stayer').substatus).toBe('initialAssignment'); // migrate data (the default): the twin stays as it is
    expect(model.hubDevice('a.azure-devices.net', 'stayer')).toMatchObject({
      status: 'disabled',
      properties: used.properties,
      twinVersions: used.twinVersions,
    });

    model.putEnrollmentGroup({
      enrollmentGroupId: 'g',
      attestation: { type: 'symmetricKey' },
      initialTwin,
      reprovisionPolicy: { migrateDeviceData: false },
    });
    expect(finish(model, 'stayer')).toMatchObject({ assignedHub: 'a.azure-devices.net', substatus: 'deviceDataReset' });
    const reset = model.hubDevice('a.azure-devices.net', 'stayer')!;
    expect(reset).toMatchObject({ status: 'disabled', tags: { site: 'one' }, properties: { desired: { interval: 10 } } });
    expect(reset.properties.reported).toBeUndefined();
    expect(reset.twinVersions).toBeUndefined(); // $version 1 and 1, as DPS creates a twin
  });
});

describe('custom allocation', () => {
  /** A webhook on loopback; `answer` decides each response. Returns the requests it saw. */
  async function withWebhook(
    answer: (body: any) => { status: number; json?: unknown },
    run: (url: string, seen: any[]) => Promise<void>,
  ): Promise<void> {
    const seen: any[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let text = '';
      req.on('data', (c) => (text += c));
      req.on('end', () => {
        const body = JSON.parse(text);
        seen.push(body);
        const { status, json } = answer(body);
        res.writeHead(status, { 'content-type': 'application/json' }).end(json === undefined ? '' : JSON.stringify(json));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/allocate`, seen);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  async function provision(model: DpsModel, id: string, payload?: unknown): Promise<any> {
    const service = new RegistrationService(model, { retryAfterSeconds: 0, assignmentDelayMs: 0, webhookTimeoutMs: 2000 });
    const attestation: DeviceAttestation = {
      registrationId: id,
      enrollment: { kind: 'group', enrollmentGroupId: 'g' },
      authentication: { type: 'sas', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
    };
    const started = service.register(attestation, Buffer.from(JSON.stringify({ registrationId: id, payload }))) as {
      body: { operationId: string };
    };
    for (let i = 0; i < 200; i++) {
      const response = service.poll(attestation, started.body.operationId);
      if (response.status === 200) return (response.body as { registrationState: unknown }).registrationState;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('the operation never completed');
  }

  const customGroup = (model: DpsModel, webhookUrl: string) =>
    model.putEnrollmentGroup({
      enrollmentGroupId: 'g',
      attestation: { type: 'symmetricKey' },
      allocationPolicy: 'custom',
      customAllocationDefinition: { webhookUrl, apiVersion: '2021-10-01' },
      initialTwin: { tags: { from: 'enrollment' } },
    });

  it('posts the documented AllocationRequest and obeys the hub, initial twin and payload it returns', async () => {
    const model = new DpsModel({ iotHubs: [hubConfig('toasters'), hubConfig('heatpumps')] });
    const reply = {
      iotHubHostName: 'heatpumps.azure-devices.net',
      initialTwin: { tags: { kind: 'heatpump' }, properties: { desired: { mode: 'eco' } } },
      payload: { site: 7 },
    };
    await withWebhook(
      () => ({ status: 200, json: reply }),
      async (url, seen) => {
        customGroup(model, url);
        const state = await provision(model, 'pump-1', { model: 'hp-2000' });
        expect(state).toMatchObject({
          status: 'assigned',
          assignedHub: 'heatpumps.azure-devices.net',
          deviceId: 'pump-1',
          payload: { site: 7 },
        });
        expect(model.hubDevice('heatpumps.azure-devices.net', 'pump-1')).toMatchObject({
          tags: { kind: 'heatpump' },
          properties: { desired: { mode: 'eco' } },
        });
        expect(seen[0]).toMatchObject({
          enrollmentGroup: { enrollmentGroupId: 'g', attestation: { type: 'symmetricKey' }, allocationPolicy: 'custom' },
          deviceRuntimeContext: { registrationId: 'pump-1', symmetricKey: {}, payload: { model: 'hp-2000' } },
          linkedHubs: ['toasters.azure-devices.net', 'heatpumps.azure-devices.net'],
        });
        expect(JSON.stringify(seen[0])).not.toContain(symmetricKeys(model.enrollmentGroup('g')!.attestation)!.primaryKey); // keys stay home
        await provision(model, 'pump-1');
        expect(seen[1].deviceRuntimeContext).toMatchObject({
          currentIotHubHostName: 'heatpumps.azure-devices.net',
          currentDeviceId: 'pump-1',
        });
      },
    );
  });

  it('fails the registration with 400207 when the webhook fails, picks a hub it was not offered, answers too much or redirects', async () => {
    const model = new DpsModel({ iotHubs: [hubConfig('a')] });
    let answer = { status: 500 } as { status: number; json?: unknown };
    await withWebhook(
      () => answer,
      async (url) => {
        customGroup(model, url);
        expect(await provision(model, 'c-1')).toMatchObject({
          status: 'failed',
          errorCode: 400207,
          errorMessage: 'Custom allocation failed with status code: 500',
        });
        answer = { status: 200, json: { iotHubHostName: 'elsewhere.azure-devices.net' } };
        expect(await provision(model, 'c-2')).toMatchObject({ status: 'failed', errorCode: 400207 });
        // An answer past 256 KiB is not read to its end; a redirect is not followed.
        answer = { status: 200, json: { iotHubHostName: 'a.azure-devices.net', payload: 'x'.repeat(300 * 1024) } };
        expect(await provision(model, 'c-3')).toMatchObject({
          status: 'failed',
          errorCode: 400207,
          errorMessage: 'Custom allocation failed: the webhook answer is too large',
        });
        answer = { status: 307, json: { iotHubHostName: 'a.azure-devices.net' } };
        expect(await provision(model, 'c-4')).toMatchObject({
          status: 'failed',
          errorMessage: 'Custom allocation failed with status code: 307',
        });
        expect(model.hubDevices('a.azure-devices.net')).toEqual([]);
      },
    );
  });
});

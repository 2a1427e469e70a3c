// The management API (what the portal and ARM do) and the emulated hubs behind the links:
// GET/PUT /resource (get-modify-put, masked keys, etag, validation), linking a hub so later
// registrations land there, unlinking one an enrollment lists, the hubs' shared access policies
// (rights checked on link, key renewal breaking the link until its connection string is
// updated), and the hub registry showing where a device landed with its initial twin.
// Devices register through the MQTT endpoint with our core, as in integration.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DpsEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { ProvisioningError } from '../src/errors.js';
import { deriveDeviceKey } from '../src/identity.js';
import { provisionDevice } from '../src/provisioner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { serviceCall } from './support/service-https.js';

const ID_SCOPE = '0ne000MGMT1';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const A = 'mg-hub-a.azure-devices.net';
const B = 'mg-hub-b.azure-devices.net';
const C = 'mg-hub-c.azure-devices.net';
const cs = (host: string, secret: string, policy = 'iothubowner') =>
  `HostName=${host};SharedAccessKeyName=${policy};SharedAccessKey=${secret}`;
const GROUP_KEY = key(20);
const V = '?api-version=2021-10-01';

let dps: DpsEmulator;

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-management-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [
        { connectionString: cs(A, key(1)), location: 'westus' },
        { connectionString: cs(B, key(2)), location: 'eastus', allocationWeight: 3 },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'mg-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: key(21) } },
          initialTwin: { tags: { site: 'lab' }, properties: { desired: { interval: 30 } } },
        },
      ],
    },
  });
  ({ dps } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

const call = (method: string, path: string, options: Parameters<typeof serviceCall>[3] = {}) => serviceCall(dps, method, path, options);

async function provision(
  registrationId: string,
  credentials: { deviceKey: string } = { deviceKey: deriveDeviceKey(GROUP_KEY, registrationId) },
) {
  const { assignment } = await provisionDevice(
    {
      idScope: ID_SCOPE,
      endpoint: dps.endpoint,
      registrationId,
      ...credentials,
      timeoutMs: 15_000,
      backoff: { minMs: 50, maxMs: 200, jitterMs: 10 },
    },
    { connect: createTlsConnect({ ca: dps.caPem }), clock: systemClock, log: () => {} },
  );
  return assignment;
}

async function provisionFailure(registrationId: string, deviceKey: string): Promise<ProvisioningError> {
  const error = await provision(registrationId, { deviceKey }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProvisioningError);
  return error as ProvisioningError;
}

/** get-modify-put, as az does: returns the PUT's reply. */
async function modify(change: (properties: any) => void) {
  const current = (await call('GET', '/resource')).json;
  change(current.properties);
  return call('PUT', '/resource', { body: current, headers: { 'if-match': `"${current.etag}"` } });
}

const armError = (code: string, message: RegExp | string) => ({
  error: {
    code,
    message: typeof message === 'string' ? expect.stringContaining(message) : expect.stringMatching(message),
    errorCode: expect.any(Number),
    trackingId: expect.any(String),
  },
});

describe('GET and PUT /resource', () => {
  it('shows the instance with masked keys and an etag', async () => {
    const res = await call('GET', '/resource');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      name: 'dps-emulator',
      properties: {
        idScope: ID_SCOPE,
        allocationPolicy: 'Hashed',
        serviceOperationsHostName: `127.0.0.1:${dps.service.endpoint.port}`,
        deviceProvisioningHostName: `127.0.0.1:${dps.endpoint.port}`,
        iotHubs: [
          {
            name: A,
            connectionString: `HostName=${A};SharedAccessKeyName=iothubowner;SharedAccessKey=****`,
            location: 'westus',
            allocationWeight: 1,
            applyAllocationPolicy: true,
          },
          {
            name: B,
            connectionString: `HostName=${B};SharedAccessKeyName=iothubowner;SharedAccessKey=****`,
            location: 'eastus',
            allocationWeight: 3,
            applyAllocationPolicy: true,
          },
        ],
      },
    });
    expect(res.headers.etag).toBe(`"${res.json.etag}"`);
    expect(JSON.stringify(res.json)).not.toContain(key(1));
  });

  it('replaces the policy and the hubs by get-modify-put, keeping masked keys', async () => {
    const res = await modify((p) => {
      p.allocationPolicy = 'geoLatency';
      p.iotHubs[1].allocationWeight = 7;
    });
    expect(res.status).toBe(200);
    expect(res.json.properties.allocationPolicy).toBe('GeoLatency');
    expect(dps.model.allocationPolicy).toBe('geoLatency');
    expect(dps.model.linkedHub(B)).toMatchObject({ allocationWeight: 7, connectionString: cs(B, key(2)) });
    expect((await modify((p) => (p.allocationPolicy = 'Hashed'))).status).toBe(200);
    expect(dps.model.allocationPolicy).toBe('hashed');
  });

  it('refuses bad changes with a clear ARM-style error and changes nothing', async () => {
    const before = (await call('GET', '/resource')).json;
    const put = (mutate: (p: any) => void, headers: Record<string, string> = {}) => {
      const body = structuredClone(before);
      mutate(body.properties);
      return call('PUT', '/resource', { body, headers });
    };
    const cases: Array<[string, Promise<{ status: number; json: any }>, number, RegExp | string]> = [
      ['custom as the default', put((p) => (p.allocationPolicy = 'custom')), 400, 'cannot be custom'],
      ['an unknown policy', put((p) => (p.allocationPolicy = 'roundRobin')), 400, 'must be one of'],
      ['weight 0', put((p) => (p.iotHubs[0].allocationWeight = 0)), 400, /iotHubs\[0\].*allocationWeight .* 1 to 1000/],
      ['weight 1001', put((p) => (p.iotHubs[1].allocationWeight = 1001)), 400, 'from 1 to 1000'],
      [
        'a connection string without a key name',
        put((p) => p.iotHubs.push({ connectionString: `HostName=${C};SharedAccessKey=${key(3)}` })),
        400,
        'lacks SharedAccessKeyName',
      ],
      ['a masked key for a hub not linked', put((p) => p.iotHubs.push({ connectionString: cs(C, '****') })), 400, 'masked key'],
      ['the same hub twice', put((p) => p.iotHubs.push({ ...p.iotHubs[0] })), 400, 'listed twice'],
      ['no properties', call('PUT', '/resource', { body: { name: 'x' } }), 400, 'properties'],
      ['invalid JSON', call('PUT', '/resource', { body: '{"properties":' }), 400, 'not valid JSON'],
      ['a stale etag', put(() => {}, { 'if-match': '"stale"' }), 412, 'etag'],
      ['DELETE', call('DELETE', '/resource'), 405, 'not supported'],
    ];
    for (const [what, reply, status, message] of cases) {
      const res = await reply;
      expect({ what, status: res.status, json: res.json }).toMatchObject({
        what,
        status,
        json: armError(expect.any(String) as never, message),
      });
    }
    expect((await call('GET', '/resource')).json.etag).toBe(before.etag);
  });
});

describe('linked hubs and registrations', () => {
  it('a newly linked hub takes later registrations; unlinking a hub an enrollment lists fails its registrations clearly', async () => {
    const linked = await modify((p) => {
      p.iotHubs.push({ connectionString: cs(C, key(3)), location: 'northeurope', allocationWeight: 1000 });
      p.iotHubs[0].applyAllocationPolicy = false;
      p.iotHubs[1].applyAllocationPolicy = false;
    });
    expect(linked.status).toBe(200);
    expect((await provision('mg-device-new-hub')).assignedHub).toBe(C);
    const hubs = (await call('GET', '/hubs')).json;
    expect(hubs).toContainEqual(expect.objectContaining({ name: C, linked: true, linkProblem: null, deviceCount: 1 }));

    const pinnedKey = key(30);
    const put = await call('PUT', `/enrollments/mg-pinned-c${V}`, {
      body: { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: pinnedKey } }, allocationPolicy: 'static', iotHubs: [C] },
    });
    expect(put.status).toBe(200);
    expect(
      (
        await modify((p) => {
          p.iotHubs = p.iotHubs.filter((h: { name: string }) => h.name !== C);
          for (const hub of p.iotHubs) hub.applyAllocationPolicy = true;
        })
      ).status,
    ).toBe(200);
    const error = await provisionFailure('mg-pinned-c', pinnedKey);
    expect(error).toMatchObject({ kind: 'failed', errorCode: 400004, message: expect.stringContaining(`${C}, which is no longer linked`) });
    expect([A, B]).toContain((await provision('mg-device-after-unlink')).assignedHub); // enrollments without hubs follow the set
    expect((await call('GET', '/hubs')).json).toContainEqual(expect.objectContaining({ name: C, linked: false }));
  });

  it('refuses a link whose policy lacks RegistryWrite or ServiceConnect, or whose key is wrong', async () => {
    const policies = (await call('GET', `/hubs/${A}/policies`)).json as Array<{ keyName: string; primaryKey: string; rights: string }>;
    expect(policies.map((p) => [p.keyName, p.rights])).toEqual(
      expect.arrayContaining([
        ['iothubowner', 'RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect'],
        ['registryRead', 'RegistryRead'],
        ['registryReadWrite', 'RegistryWrite'],
        ['service', 'ServiceConnect'],
      ]),
    );
    const policy = (name: string) => policies.find((p) => p.keyName === name)!;
    const cases: Array<[string, string]> = [
      [cs(A, policy('registryRead').primaryKey, 'registryRead'), 'lacks RegistryWrite and ServiceConnect'],
      [cs(A, policy('registryReadWrite').primaryKey, 'registryReadWrite'), 'lacks ServiceConnect'],
      [cs(A, key(99)), 'matches neither key'],
      [cs(A, key(1), 'nosuchpolicy'), "no shared access policy named 'nosuchpolicy'"],
    ];
    for (const [connectionString, message] of cases) {
      const res = await modify((p) => (p.iotHubs[0].connectionString = connectionString));
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject(armError('BadRequest', `iotHubs[0]: `));
      expect(res.json.error.message).toContain(message);
      expect(res.json.error.message).not.toContain(connectionString.split('SharedAccessKey=')[1]);
    }
    expect(dps.model.linkedHub(A)?.connectionString).toBe(cs(A, key(1)));
  });

  it('after a hub key is renewed, registrations to that hub fail until the link is updated', async () => {
    const deviceKey = key(31);
    await call('PUT', `/enrollments/mg-pinned-a${V}`, {
      body: { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: deviceKey } }, allocationPolicy: 'static', iotHubs: [A] },
    });
    expect((await provision('mg-pinned-a', { deviceKey })).assignedHub).toBe(A);

    const renewed = await call('POST', `/hubs/${A}/policies/iothubowner/renew-key?key=primary`);
    expect(renewed.status).toBe(200);
    expect(renewed.json).toMatchObject({ keyName: 'iothubowner', rights: expect.stringContaining('RegistryWrite') });
    expect(renewed.json.primaryKey).not.toBe(key(1));

    const error = await provisionFailure('mg-pinned-a', deviceKey);
    expect(error).toMatchObject({
      kind: 'failed',
      errorCode: 400006,
      message: expect.stringMatching(new RegExp(`linked IoT hub ${A} is out of date.*renewed`)),
    });
    expect((await call('GET', `/registrations/mg-pinned-a${V}`)).json).toMatchObject({ status: 'failed', errorCode: 400006 });
    expect((await call('GET', `/hubs/${A}`)).json.linkProblem).toContain('out of date');
    expect(JSON.stringify((await call('GET', `/hubs/${A}`)).json)).not.toContain(renewed.json.primaryKey);
    // The out-of-date link does not block other changes, and they do not repair it.
    expect((await modify((p) => (p.iotHubs[1].allocationWeight = 2))).status).toBe(200);
    expect((await provisionFailure('mg-pinned-a', deviceKey)).errorCode).toBe(400006);

    const index = (await call('GET', '/resource')).json.properties.iotHubs.findIndex((h: { name: string }) => h.name === A);
    const updated = await modify((p) => (p.iotHubs[index].connectionString = cs(A, renewed.json.primaryKey)));
    expect(updated.status).toBe(200);
    expect((await provision('mg-pinned-a', { deviceKey })).assignedHub).toBe(A);
    expect((await call('GET', `/registrations/mg-pinned-a${V}`)).json).toMatchObject({ status: 'assigned', assignedHub: A });
  });

  it('answers bad renew-key requests clearly', async () => {
    expect((await call('POST', `/hubs/${A}/policies/iothubowner/renew-key?key=tertiary`)).json).toMatchObject(
      armError('BadRequest', 'key=primary'),
    );
    expect((await call('POST', `/hubs/${A}/policies/nobody/renew-key?key=primary`)).status).toBe(404);
    expect((await call('GET', `/hubs/${A}/policies/iothubowner/renew-key?key=primary`)).status).toBe(405);
    expect((await call('GET', '/hubs/unknown.azure-devices.net/policies')).json).toMatchObject(armError('NotFound', 'not known'));
  });
});

describe('hub registries', () => {
  it('show the device identity DPS created, with the enrollment group initial twin', async () => {
    const assignment = await provision('mg-twin-device');
    const res = await call('GET', `/hubs/${assignment.assignedHub}/devices/mg-twin-device`);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      deviceId: 'mg-twin-device',
      registrationId: 'mg-twin-device',
      status: 'enabled',
      tags: { site: 'lab' },
      properties: { desired: { interval: 30 } },
      authentication: { type: 'sas', symmetricKey: { primaryKey: deriveDeviceKey(GROUP_KEY, 'mg-twin-device') } },
    });
    const list = (await call('GET', `/hubs/${assignment.assignedHub}/devices`)).json as Array<{ deviceId: string }>;
    expect(list.map((d) => d.deviceId)).toContain('mg-twin-device');
    expect((await call('GET', `/hubs/${assignment.assignedHub}/devices/nobody`)).json).toMatchObject(
      armError('NotFound', "no device 'nobody'"),
    );
    expect((await call('GET', `/hubs/${assignment.assignedHub}/devices/mg-twin-device`, { auth: null })).status).toBe(401);
  });
});

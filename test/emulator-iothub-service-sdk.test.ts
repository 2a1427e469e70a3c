// Microsoft's IoT Hub service client (azure-iothub) as the referee of the emulated hubs' service
// side (issue 10): our device online through the core's hub session (connectHub, goOnline, as
// `moddable-dps device` runs it), and Microsoft's Registry and Client driving it over IoT Hub's
// own service REST API, authenticated with the hub's own shared access policies.
//
// How azure-iothub reaches a local port (node_modules/azure-iothub/dist/registry.js, client.js,
// common-http/rest_api_client.js, http.js): Registry.fromConnectionString and
// Client.fromConnectionString take the hub's connection string (HostName=<hub>.azure-devices.net;
// SharedAccessKeyName=iothubowner;SharedAccessKey=...), sign sr=<hub host>&skn=<policy> with its
// key, and hand HostName to https.request as `host`, port 443. Their RestApiClient is the private
// `_restApiClient`, whose setOptions({ http: { agent } }) passes the agent to every request (the
// constructors set a keep-alive agent there; setting ours afterwards replaces it). The emulator's
// serviceClientAgent({ ca, connectTo: dps.service.endpoint }) dials the emulator's service port
// whatever host is named, while the request still names the hub: the TLS server name (the
// emulator answers with that hub's certificate, which the client checks against the hub's name)
// and the Host header (which picks the hub). Client.invokeDeviceMethod is HTTPS; the Client's
// AMQP transport (send, feedback, open) is never opened here: cloud-to-device messages over AMQP
// are not emulated.
import { Client, Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEmulator, serviceClientAgent } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { goOnline, type Online } from '../src/device.js';
import { isProvisioningError } from '../src/errors.js';
import type { JsonObject } from '../src/hub/messages.js';
import { connectHub, type HubSession } from '../src/hub/session.js';
import { deriveDeviceKey } from '../src/identity.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { until } from './support/until.js';

const ID_SCOPE = '0ne000SDKSV';
const HUB = 'sdk-service-hub.azure-devices.net';
const OWNER_KEY = Buffer.alloc(32, 41).toString('base64');
const GROUP_KEY = Buffer.alloc(32, 42).toString('base64');
const DEVICE_KEY = Buffer.alloc(32, 43).toString('base64');
const connectionString = (keyName: string, key: string) => `HostName=${HUB};SharedAccessKeyName=${keyName};SharedAccessKey=${key}`;

let fixture: TestEmulator;
let dps: DpsEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-iothub-service-sdk-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: [{ connectionString: connectionString('iothubowner', OWNER_KEY) }],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'sdk-service-line',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: GROUP_KEY } },
          initialTwin: { tags: { line: 'b' }, properties: { desired: { interval: 5 } } },
        },
      ],
    },
  });
  dps = fixture.dps;
});

afterAll(async () => {
  await fixture?.close();
});

const agent = () => serviceClientAgent({ ca: dps.caPem, connectTo: dps.service.endpoint });
type WithRest = { _restApiClient: { setOptions(options: { http: { agent: unknown } }): void } };

function registry(cs = connectionString('iothubowner', OWNER_KEY)): Registry {
  const made = Registry.fromConnectionString(cs);
  (made as unknown as WithRest)._restApiClient.setOptions({ http: { agent: agent() } });
  return made;
}

function serviceClient(cs = connectionString('iothubowner', OWNER_KEY)): Client {
  const made = Client.fromConnectionString(cs);
  (made as unknown as WithRest)._restApiClient.setOptions({ http: { agent: agent() } });
  return made;
}

function policyKey(keyName: string): string {
  return dps.model.iotHubs.hub(HUB)!.policies.find((p) => p.keyName === keyName)!.primaryKey;
}

/** What an SDK call rejected with: the SDK's error class name, the HTTP status and IoT Hub's ErrorCode. */
async function refusal(call: Promise<unknown>): Promise<{ name: string; status?: number; code?: string; message: string }> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e as Error & { response?: { statusCode: number; headers: Record<string, string> } },
  );
  if (error === undefined) throw new Error('the call succeeded');
  return {
    name: error.constructor.name,
    ...(error.response && { status: error.response.statusCode, code: error.response.headers['iothub-errorcode'] }),
    message: error.message,
  };
}

const connect = () => createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 });

interface Seen {
  desired: { patch: JsonObject; version: number }[];
  methods: { name: string; payload: unknown }[];
}

/** Our device, in the hub under `deviceId` with `deviceKey`, online through the core's hub session. */
async function online(deviceId: string, deviceKey: string): Promise<{ session: HubSession; seen: Seen }> {
  const seen: Seen = { desired: [], methods: [] };
  const session = await connectHub(
    {
      hub: HUB,
      deviceId,
      deviceKey,
      endpoint: dps.hubEndpoint,
      offlineTimeoutMs: 3000,
      onDesired: (patch, version) => seen.desired.push({ patch, version }),
      onMethod: (name, payload) => {
        seen.methods.push({ name, payload });
        return { status: 201, payload: { rebooting: true, asked: payload } };
      },
    },
    { connect: connect(), clock: systemClock },
  );
  return { session, seen };
}

describe("azure-iothub's Registry against an emulated hub", () => {
  it('creates a symmetric-key device our device then connects as; gets, lists, disables (its reconnect refused) and deletes it', async () => {
    const hub = registry();
    const created = await hub.create({
      deviceId: 'sdk-made-1',
      status: 'enabled',
      authentication: { symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: Buffer.alloc(32, 44).toString('base64') } },
    });
    expect(created.responseBody).toMatchObject({
      deviceId: 'sdk-made-1',
      status: 'enabled',
      connectionState: 'Disconnected',
      authentication: { type: 'sas', symmetricKey: { primaryKey: DEVICE_KEY } },
    });
    expect(await refusal(hub.create({ deviceId: 'sdk-made-1' }))).toMatchObject({
      name: 'DeviceAlreadyExistsError',
      status: 409,
      code: 'DeviceAlreadyExists',
    });

    const { session } = await online('sdk-made-1', DEVICE_KEY);
    try {
      expect((await hub.get('sdk-made-1')).responseBody).toMatchObject({ deviceId: 'sdk-made-1', connectionState: 'Connected' });
      const listed = (await hub.list()).responseBody.map((d) => d.deviceId);
      expect(listed).toContain('sdk-made-1');

      const device = (await hub.get('sdk-made-1')).responseBody;
      device.status = 'disabled';
      expect((await hub.update(device)).responseBody).toMatchObject({ deviceId: 'sdk-made-1', status: 'disabled' });
      const why = await session.ended;
      expect(why?.kind).toBe('unauthorized');
    } finally {
      session.close();
    }
    const refused = await online('sdk-made-1', DEVICE_KEY).then(
      ({ session: back }) => (back.close(), undefined),
      (error: unknown) => error,
    );
    expect(isProvisioningError(refused) && refused.kind).toBe('unauthorized');
    // The keys stayed what create set: an update without keys keeps them.
    expect((await hub.get('sdk-made-1')).responseBody.authentication?.symmetricKey?.primaryKey).toBe(DEVICE_KEY);

    await hub.delete('sdk-made-1');
    expect(await refusal(hub.get('sdk-made-1'))).toMatchObject({ name: 'DeviceNotFoundError', status: 404, code: 'DeviceNotFound' });
    expect(await refusal(hub.delete('sdk-made-1'))).toMatchObject({ name: 'DeviceNotFoundError', status: 404 });
    expect(dps.model.hubDevice(HUB, 'sdk-made-1')).toBeUndefined();
  });

  it('generates the keys of a device created without them, as IoT Hub does', async () => {
    const hub = registry();
    const made = (await hub.create({ deviceId: 'sdk-made-2' })).responseBody;
    const keys = made.authentication!.symmetricKey!;
    expect(Buffer.from(keys.primaryKey!, 'base64')).toHaveLength(32);
    expect(keys.secondaryKey).not.toBe(keys.primaryKey);
    const { session } = await online('sdk-made-2', keys.secondaryKey!);
    expect(session.isConnected).toBe(true);
    session.close();
  });

  it('refuses an update whose etag is stale (412) and X.509 identities (400)', async () => {
    const hub = registry();
    await hub.create({ deviceId: 'sdk-made-3' });
    const before = (await hub.get('sdk-made-3')).responseBody;
    await hub.update({ ...before, status: 'disabled' });
    // Registry.update always sends If-Match "*"; a client guarding with the etag it read is refused once the identity changed.
    expect(await putWithEtag('sdk-made-3', before.etag!)).toEqual({ status: 412, code: 'PreconditionFailed' });
    const now = (await hub.get('sdk-made-3')).responseBody;
    expect(now.etag).not.toBe(before.etag);
    expect(await putWithEtag('sdk-made-3', now.etag!)).toEqual({ status: 200, code: undefined });
    expect((await hub.get('sdk-made-3')).responseBody.status).toBe('enabled');
    expect(
      await refusal(hub.create({ deviceId: 'sdk-x509', authentication: { x509Thumbprint: { primaryThumbprint: 'AB'.repeat(20) } } })),
    ).toMatchObject({ name: 'ArgumentError', status: 400, code: 'ArgumentInvalid' });
  });
});

/** A PUT guarded by `etag`, through the SDK's own REST client (Registry.update always sends '*'). */
async function putWithEtag(deviceId: string, etag: string): Promise<{ status?: number; code?: string }> {
  const rest = (registry() as unknown as { _restApiClient: { executeApiCall: (...args: unknown[]) => void } })._restApiClient;
  return new Promise((resolve) =>
    rest.executeApiCall(
      'PUT',
      `/devices/${deviceId}?api-version=2021-04-12`,
      { 'Content-Type': 'application/json; charset=utf-8', 'If-Match': `"${etag}"` },
      { deviceId, status: 'enabled' },
      (error: (Error & { response?: { statusCode: number; headers: Record<string, string> } }) | null) =>
        resolve({ status: error?.response?.statusCode ?? 200, code: error?.response?.headers['iothub-errorcode'] }),
    ),
  );
}

/** A device of the enrollment group provisioned by DPS and online with its hub, as `moddable-dps device` does. */
async function provisionedOnline(registrationId: string): Promise<{ device: Online; seen: Seen }> {
  const seen: Seen = { desired: [], methods: [] };
  const device = await goOnline(
    {
      idScope: ID_SCOPE,
      registrationId,
      groupKey: GROUP_KEY,
      endpoint: dps.endpoint,
      hubEndpoint: dps.hubEndpoint,
      timeoutMs: 20_000,
      maxReprovisions: 0,
      session: {
        offlineTimeoutMs: 3000,
        onDesired: (patch, version) => seen.desired.push({ patch, version }),
        onMethod: (name, payload) => {
          seen.methods.push({ name, payload });
          return { status: 200, payload: { fan: 'on', asked: payload } };
        },
      },
    },
    { connect: connect(), clock: systemClock },
  );
  return { device, seen };
}

describe("azure-iothub's twins and direct methods, answered by our device", () => {
  it('reads the twin DPS created, updates tags and desired properties with its etag (our device sees the patch), refuses a stale etag', async () => {
    const { device, seen } = await provisionedOnline('sdk-twin-1');
    try {
      const deviceId = device.assignment.deviceId;
      expect(device.assignment.assignedHub).toBe(HUB);
      await device.session.updateReported({ firmware: '1.2.3' });
      const hub = registry();
      const { responseBody: twin } = await hub.getTwin(deviceId);
      expect(twin).toMatchObject({
        deviceId,
        status: 'enabled',
        connectionState: 'Connected',
        tags: { line: 'b' },
        properties: { desired: { interval: 5, $version: 1 }, reported: { firmware: '1.2.3' } },
      });

      // The identity DPS created holds the key our device derived from the group's.
      expect((await hub.get(deviceId)).responseBody.authentication?.symmetricKey?.primaryKey).toBe(
        deriveDeviceKey(GROUP_KEY, 'sdk-twin-1'),
      );

      const patch = { tags: { site: 'north' }, properties: { desired: { interval: 15, mode: 'eco' } } };
      const { responseBody: updated } = await hub.updateTwin(deviceId, patch, twin.etag);
      expect(updated).toMatchObject({
        tags: { line: 'b', site: 'north' },
        properties: { desired: { interval: 15, mode: 'eco', $version: 2 } },
      });
      expect(updated.etag).not.toBe(twin.etag);
      await until(() => seen.desired.some((d) => d.version === 2));
      expect(seen.desired.find((d) => d.version === 2)!.patch).toMatchObject({ interval: 15, mode: 'eco' });

      expect(await refusal(hub.updateTwin(deviceId, { tags: { site: 'south' } }, twin.etag))).toMatchObject({
        name: 'InvalidEtagError',
        status: 412,
        code: 'PreconditionFailed',
      });
      // The Twin object's own update (its etag, as Registry.getTwin gave it): null removes a desired property.
      const fresh = (await hub.getTwin(deviceId)).responseBody;
      await fresh.update({ properties: { desired: { mode: null } } }); // the Twin copies the answer into itself
      const again = fresh;
      expect(again.properties.desired).toMatchObject({ interval: 15, $version: 3 });
      expect(again.properties.desired).not.toHaveProperty('mode');
      await until(() => seen.desired.some((d) => d.version === 3));
      expect(dps.hubs.twin(HUB, deviceId)?.tags).toEqual({ line: 'b', site: 'north' });

      expect(await refusal(hub.getTwin('sdk-no-such-device'))).toMatchObject({ name: 'DeviceNotFoundError', status: 404 });
    } finally {
      device.session.close();
    }
  });

  it('invokes a direct method our device answers; a device not connected is 404 DeviceNotOnline', async () => {
    const { device, seen } = await provisionedOnline('sdk-method-1');
    const deviceId = device.assignment.deviceId;
    const client = serviceClient();
    try {
      const { result } = await client.invokeDeviceMethod(deviceId, {
        methodName: 'fan',
        payload: { speed: 3 },
        responseTimeoutInSeconds: 10,
      });
      expect(result).toEqual({ status: 200, payload: { fan: 'on', asked: { speed: 3 } } });
      expect(seen.methods).toEqual([{ name: 'fan', payload: { speed: 3 } }]);
    } finally {
      device.session.close();
    }
    await until(() => !dps.hubs.connected(HUB, deviceId));
    const offline = await refusal(client.invokeDeviceMethod(deviceId, { methodName: 'fan', payload: {} }));
    // azure-iothub names only DeviceNotFound and IotHubNotFound among the 404s; the status and IoT Hub's code say the rest.
    expect(offline).toMatchObject({ status: 404, code: 'DeviceNotOnline' });
    expect(await refusal(client.invokeDeviceMethod(deviceId, { methodName: 'fan', responseTimeoutInSeconds: 1 }))).toMatchObject({
      name: 'ArgumentError',
      status: 400,
      code: 'ArgumentInvalid',
    });
  });
});

describe("the hub's shared access policies", () => {
  it('each policy may do what its rights allow, and nothing else (401 UnauthorizedError)', async () => {
    await registry().create({ deviceId: 'sdk-rights-1' });
    const service = registry(connectionString('service', policyKey('service')));
    expect((await service.getTwin('sdk-rights-1')).responseBody.deviceId).toBe('sdk-rights-1');
    expect(await refusal(service.get('sdk-rights-1'))).toMatchObject({
      name: 'UnauthorizedError',
      status: 401,
      code: 'IotHubUnauthorizedAccess',
    });
    expect((await refusal(service.create({ deviceId: 'sdk-rights-2' }))).message).toMatch(/'service' .* lacks RegistryWrite/);

    const reader = registry(connectionString('registryRead', policyKey('registryRead')));
    expect((await reader.get('sdk-rights-1')).responseBody.deviceId).toBe('sdk-rights-1');
    expect((await reader.list()).responseBody.map((d) => d.deviceId)).toContain('sdk-rights-1');
    expect(await refusal(reader.updateTwin('sdk-rights-1', { tags: { a: 1 } }, '*'))).toMatchObject({ status: 401 });
    expect(await refusal(reader.delete('sdk-rights-1'))).toMatchObject({ status: 401 });
    expect(
      await refusal(
        serviceClient(connectionString('registryRead', policyKey('registryRead'))).invokeDeviceMethod('sdk-rights-1', { methodName: 'x' }),
      ),
    ).toMatchObject({ status: 401 });

    const writer = registry(connectionString('registryReadWrite', policyKey('registryReadWrite')));
    await writer.delete('sdk-rights-1');
    expect(dps.model.hubDevice(HUB, 'sdk-rights-1')).toBeUndefined();
  });

  it('a wrong key, a renewed key, a DPS service token and no token are refused; the current key works', async () => {
    const wrong = Buffer.alloc(32, 99).toString('base64');
    expect(await refusal(registry(connectionString('iothubowner', wrong)).list())).toMatchObject({
      name: 'UnauthorizedError',
      status: 401,
    });
    expect(await refusal(registry(connectionString('nosuchpolicy', OWNER_KEY)).list())).toMatchObject({ status: 401 });
    // The DPS service API's own connection string, pointed at the hub: its token is for the DPS host and policy.
    const dpsKey = /SharedAccessKey=([^;]+)/.exec(dps.service.connectionString)![1]!;
    expect(await refusal(registry(connectionString('provisioningserviceowner', dpsKey)).list())).toMatchObject({ status: 401 });

    const before = policyKey('registryReadWrite');
    const old = registry(connectionString('registryReadWrite', before));
    await old.list();
    const renewed = dps.model.iotHubs.renewKey(HUB, 'registryReadWrite', 'primary');
    expect(renewed.primaryKey).not.toBe(before);
    const stale = await refusal(old.list());
    expect(stale).toMatchObject({ status: 401 });
    expect(stale.message).toMatch(/renewed/);
    expect((await registry(connectionString('registryReadWrite', renewed.primaryKey)).list()).responseBody).toBeInstanceOf(Array);
    // The secondary key still signs.
    expect((await registry(connectionString('registryReadWrite', renewed.secondaryKey)).list()).responseBody).toBeInstanceOf(Array);

    const bare = await rawRequest('GET', '/devices?api-version=2021-04-12', {});
    expect(bare.status).toBe(401);
    expect(JSON.parse(bare.body)).toMatchObject({
      Message: expect.stringMatching(/^ErrorCode:IotHubUnauthorizedAccess;The Authorization header is missing/),
    });
    expect(bare.body).not.toContain(OWNER_KEY);
  });

  it("answers with the hub's own certificate, IoT Hub's error shape, and leaves the DPS service API where it was", async () => {
    const owner = (await import('azure-iothub')).SharedAccessSignature.create(
      HUB,
      'iothubowner',
      OWNER_KEY,
      `${Math.floor(Date.now() / 1000) + 600}`,
    ).toString();
    const missing = await rawRequest('GET', '/devices/none?api-version=2021-04-12', { authorization: owner });
    expect(missing.status).toBe(404);
    expect(missing.headers['iothub-errorcode']).toBe('DeviceNotFound');
    expect(JSON.parse(missing.body)).toEqual({
      Message: `ErrorCode:DeviceNotFound;The device none does not exist in ${HUB}`,
      ExceptionMessage: expect.stringMatching(/^Tracking ID:[0-9a-f]{32}-G:0-TimeStamp:\d\d\/\d\d\/\d{4} \d\d:\d\d:\d\d$/),
    });
    expect(missing.certificateNames).toContain(`DNS:${HUB}`);
    expect((await rawRequest('GET', '/devices', { authorization: owner })).status).toBe(400); // no api-version
    expect((await rawRequest('POST', '/devices?api-version=2021-04-12', { authorization: owner })).status).toBe(405);
    expect((await rawRequest('GET', '/enrollmentGroups/sdk-service-line?api-version=2021-10-01', { authorization: owner })).status).toBe(
      404,
    );
    const badJson = await rawRequest(
      'PUT',
      '/devices/sdk-bad?api-version=2021-04-12',
      { authorization: owner, 'content-type': 'application/json' },
      '{nope',
    );
    expect(badJson).toMatchObject({ status: 400 });
    expect(badJson.headers['iothub-errorcode']).toBe('ArgumentInvalid');
  });
});

/** One HTTPS request to the service port naming the hub (SNI and Host), as azure-iothub sends it. */
async function rawRequest(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string; certificateNames: string }> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: HUB,
        port: 443,
        path,
        method,
        headers: { ...headers, ...(body && { 'content-length': Buffer.byteLength(body) }) },
        agent: agent(),
      },
      (res) => {
        const chunks: Buffer[] = [];
        const certificateNames = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().subjectaltname ?? '';
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), certificateNames }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// DPS's HTTPS device API in the emulator (issue 12): Microsoft's HTTP transport provisions
// through it, it answers as the MQTT endpoint does (same RegistrationService, same SAS check),
// and it refuses bad input in DPS's error shape while it keeps serving.
//
// What Microsoft's client needed (node_modules/azure-iot-provisioning-device-http/dist/http.js and
// its azure-iot-http-base/dist/rest_api_client.js, http.js):
// - the port: RestApiClient hands provisioningHost to https.request as `host`, with no port, so
//   '127.0.0.1:<port>' fails name resolution (real DPS listens on 443). The emulator's
//   serviceClientAgent connects to the host and port named in `host` and trusts its CA;
// - the agent: the transport takes an azure-iot-http-base Http as its constructor argument, whose
//   setOptions({ http: { agent } }) passes the agent to every request (resolved here from the
//   transport package, which depends on its own copy).
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Http } from 'azure-iot-provisioning-device-http';
import { Mqtt } from 'azure-iot-provisioning-device-mqtt';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateCertificates } from '../emulator/certificates.js';
import { type DeviceHttpsEndpoint, parseRoute, startDeviceHttpsEndpoint } from '../emulator/device-https.js';
import { type DpsEmulator, type EndpointEvent, serviceClientAgent, startEmulator } from '../emulator/index.js';
import { symmetricKeys } from '../emulator/model-types.js';
import { RegistrationService } from '../emulator/registrations.js';
import { deriveDeviceKey } from '../src/identity.js';
import { dpsRegistrationSasToken } from '../src/sas.js';
import { rawExchange } from './support/raw-tls.js';

const requireFromHttp = createRequire(createRequire(import.meta.url).resolve('azure-iot-provisioning-device-http'));
const { Http: HttpBase } = requireFromHttp('azure-iot-http-base') as {
  Http: new () => { setOptions(options: { http: { agent: unknown } }): void };
};
const requireFromMqtt = createRequire(createRequire(import.meta.url).resolve('azure-iot-provisioning-device-mqtt'));
const { MqttBase } = requireFromMqtt('azure-iot-mqtt-base') as {
  MqttBase: new () => { setOptions(options: { ca: string }): void };
};

const ID_SCOPE = '0ne00000H77';
const API = 'api-version=2021-06-01';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const hubConnection = (host: string): string => `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key(200)}`;
const GROUP_KEY = key(7);
const DEVICE_KEY = key(9);
const HOUR = () => Math.floor(Date.now() / 1000) + 3600;
const twin = { tags: { room: 'lab' }, properties: { desired: { interval: 30 } } };
const individual = (registrationId: string, deviceId: string) => ({
  registrationId,
  deviceId,
  attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: key(10) } },
  allocationPolicy: 'static' as const,
  iotHubs: ['hub-b.azure-devices.net'],
  initialTwin: twin,
});

let emulator: DpsEmulator;
let stateDir: string;
const events: EndpointEvent[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'dps-emulator-https-'));
  emulator = await startEmulator({
    idScope: ID_SCOPE,
    stateDir,
    retryAfterSeconds: 1,
    assignmentDelayMs: 0,
    onEvent: (event) => events.push(event),
    config: {
      iotHubs: [
        { connectionString: hubConnection('hub-a.azure-devices.net'), location: 'westus', allocationWeight: 1 },
        { connectionString: hubConnection('hub-b.azure-devices.net'), location: 'eastus', allocationWeight: 3 },
      ],
      individualEnrollments: [
        individual('https-individual-1', 'thermostat-1'),
        individual('twin-over-mqtt', 'twin-device-m'),
        individual('twin-over-https', 'twin-device-h'),
        {
          registrationId: 'https-disabled-1',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: DEVICE_KEY, secondaryKey: key(10) } },
          provisioningStatus: 'disabled',
        },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'https-group',
          attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY, secondaryKey: key(8) } },
        },
      ],
    },
  });
});

afterAll(async () => {
  await emulator?.close();
  await rm(stateDir, { recursive: true, force: true });
});

interface RegistrationState {
  registrationId: string;
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
  etag: string;
  assignedHub: string;
  deviceId: string;
  status: string;
  substatus: string;
}

/** Microsoft's device client over its HTTP transport, pointed at the emulator's HTTPS endpoint. */
function provisionOverHttps(registrationId: string, deviceKey: string, port = emulator.httpsEndpoint.port): Promise<RegistrationState> {
  const base = new HttpBase();
  base.setOptions({ http: { agent: serviceClientAgent({ ca: emulator.caPem }) } });
  const client = ProvisioningDeviceClient.create(
    `127.0.0.1:${port}`,
    ID_SCOPE,
    new Http(base as never),
    // Two copies of azure-iot-common are installed: the types differ, the objects are compatible.
    new SymmetricKeySecurityClient(registrationId, deviceKey) as never,
  );
  return client.register() as unknown as Promise<RegistrationState>;
}

/** The same client over its MQTT transport, at the emulator's MQTT endpoint (as test/emulator-peer.test.ts). */
function provisionOverMqtt(registrationId: string, deviceKey: string): Promise<RegistrationState> {
  const base = new MqttBase();
  base.setOptions({ ca: emulator.caPem });
  const client = ProvisioningDeviceClient.create(
    `127.0.0.1:${emulator.endpoint.port}`,
    ID_SCOPE,
    new Mqtt(base as never),
    new SymmetricKeySecurityClient(registrationId, deviceKey) as never,
  );
  return client.register() as unknown as Promise<RegistrationState>;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One request on its own connection; `port` defaults to the emulator's HTTPS device endpoint. */
function send(
  method: string,
  path: string,
  options: { body?: string | Buffer; headers?: Record<string, string | number>; port?: number } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: options.port ?? emulator.httpsEndpoint.port,
        method,
        path,
        ca: emulator.caPem,
        agent: false,
        headers: { 'content-type': 'application/json; charset=utf-8', ...options.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const registerPath = (registrationId: string, scope = ID_SCOPE) => `/${scope}/registrations/${registrationId}/register?${API}`;
const pollPath = (registrationId: string, operationId: string) =>
  `/${ID_SCOPE}/registrations/${registrationId}/operations/${encodeURIComponent(operationId)}?${API}`;
const auth = (registrationId: string, deviceKey = DEVICE_KEY, expiry = HOUR(), scope = ID_SCOPE) => ({
  authorization: dpsRegistrationSasToken(scope, registrationId, deviceKey, expiry),
});
const groupDevice = (registrationId: string) => auth(registrationId, deriveDeviceKey(GROUP_KEY, registrationId));

/** DPS's error shape, exactly: {errorCode, trackingId, message, timestampUtc}. */
function expectDpsError(answer: Answer, status: number, errorCode?: number): void {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(answer.json).sort()).toEqual(['errorCode', 'message', 'timestampUtc', 'trackingId']);
  expect(Math.floor(answer.json.errorCode / 1000)).toBe(status);
  if (errorCode !== undefined) expect(answer.json.errorCode).toBe(errorCode);
  expect(answer.json.trackingId).toMatch(/^[0-9a-f-]{36}$/);
  expect(new Date(answer.json.timestampUtc).toISOString()).toBe(answer.json.timestampUtc);
}

describe("Microsoft's HTTP transport against the emulator", () => {
  it('listens on a port of its own, on the device endpoint host', () => {
    expect(emulator.httpsEndpoint.host).toBe(emulator.endpoint.host);
    const ports = [emulator.endpoint.port, emulator.httpsEndpoint.port, emulator.service.endpoint.port, emulator.hubEndpoint.port];
    expect(new Set(ports).size).toBe(4);
  });

  it('provisions an individual enrollment to its static hub, with its device ID and initial twin', async () => {
    const result = await provisionOverHttps('https-individual-1', DEVICE_KEY);
    expect(result).toMatchObject({
      registrationId: 'https-individual-1',
      assignedHub: 'hub-b.azure-devices.net',
      deviceId: 'thermostat-1',
      status: 'assigned',
      substatus: 'initialAssignment',
    });
    const device = emulator.model.hubDevice('hub-b.azure-devices.net', 'thermostat-1');
    expect(device?.tags).toEqual(twin.tags);
    expect(device?.properties.desired).toEqual(twin.properties.desired);
    expect(symmetricKeys(device?.authentication)?.primaryKey).toBe(DEVICE_KEY);
    expect(emulator.model.registration('https-individual-1')?.state).toEqual(result);
  });

  it('provisions through an enrollment group with the derived key (primary or secondary)', async () => {
    for (const [registrationId, groupKey] of [
      ['https-group-device-1', GROUP_KEY],
      ['https-group-device-2', key(8)],
    ] as const) {
      const result = await provisionOverHttps(registrationId, deriveDeviceKey(groupKey, registrationId));
      expect(['hub-a.azure-devices.net', 'hub-b.azure-devices.net']).toContain(result.assignedHub);
      expect(result.deviceId).toBe(registrationId);
      expect(emulator.model.registration(registrationId)?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'https-group' });
      expect(emulator.model.hubDevice(result.assignedHub, registrationId)).toBeDefined();
    }
  });

  it('refuses a wrong key with 401 (UnauthorizedError) and records nothing', async () => {
    const error = await provisionOverHttps('https-group-device-3', GROUP_KEY /* the group key itself */).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.name).toBe('UnauthorizedError');
    expect(error?.message).toMatch(/no valid SAS token/);
    expect(emulator.model.registration('https-group-device-3')).toBeUndefined();
  });

  it('reports a disabled enrollment as status disabled (the Node client surfaces it as an error)', async () => {
    const error = await provisionOverHttps('https-disabled-1', DEVICE_KEY).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/disabled/);
    expect(emulator.model.registration('https-disabled-1')?.state.status).toBe('disabled');
  });
});

describe('the same answers over HTTPS as over MQTT', () => {
  const ignoring = (state: RegistrationState, ...fields: (keyof RegistrationState)[]) =>
    Object.fromEntries(Object.entries(state).filter(([name]) => !fields.includes(name as keyof RegistrationState)));

  it('two devices of identical individual enrollments, one over each transport, get the same registration state and twin', async () => {
    const overMqtt = await provisionOverMqtt('twin-over-mqtt', DEVICE_KEY);
    const overHttps = await provisionOverHttps('twin-over-https', DEVICE_KEY);
    const varying = ['registrationId', 'deviceId', 'createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'etag'] as const;
    expect(ignoring(overHttps, ...varying)).toEqual(ignoring(overMqtt, ...varying));
    expect(Object.keys(overHttps).sort()).toEqual(Object.keys(overMqtt).sort());
    expect(overHttps.deviceId).toBe('twin-device-h');
    const m = emulator.model.hubDevice('hub-b.azure-devices.net', 'twin-device-m');
    const h = emulator.model.hubDevice('hub-b.azure-devices.net', 'twin-device-h');
    expect(h?.tags).toEqual(m?.tags);
    expect(h?.properties).toEqual(m?.properties);
  });

  it.each([
    ['MQTT, then HTTPS', 'same-device-1', provisionOverMqtt, provisionOverHttps],
    ['HTTPS, then MQTT', 'same-device-2', provisionOverHttps, provisionOverMqtt],
  ] as const)(
    'one group device registering over %s gets the same state (but its update time and etag)',
    async (_order, registrationId, first, second) => {
      const deviceKey = deriveDeviceKey(GROUP_KEY, registrationId);
      const before = await first(registrationId, deviceKey);
      const after = await second(registrationId, deviceKey);
      expect(ignoring(after, 'lastUpdatedDateTimeUtc', 'etag')).toEqual(ignoring(before, 'lastUpdatedDateTimeUtc', 'etag'));
      expect(after.etag).not.toBe(before.etag);
      expect(emulator.model.registration(registrationId)?.state).toEqual(after);
    },
  );
});

describe('the protocol, request by request', () => {
  it('register answers 202 assigning with retry-after; the poll answers 200 with the registration state', async () => {
    const registrationId = 'raw-device-1';
    const body = JSON.stringify({ registrationId, payload: { modelId: 'dtmi:com:example:Thermostat;1' } });
    const started = await send('PUT', registerPath(registrationId), { body, headers: groupDevice(registrationId) });
    expect(started.status).toBe(202);
    expect(started.headers['retry-after']).toBe('1');
    expect(started.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(Object.keys(started.json).sort()).toEqual(['operationId', 'status']);
    expect(started.json.status).toBe('assigning');
    expect(started.json.operationId).toMatch(/^4\.[0-9a-f]{16}\.[0-9a-f-]{36}$/);

    const done = await send('GET', pollPath(registrationId, started.json.operationId), { headers: groupDevice(registrationId) });
    expect(done.status).toBe(200);
    expect(done.headers['retry-after']).toBeUndefined();
    expect(done.json).toEqual({
      operationId: started.json.operationId,
      status: 'assigned',
      registrationState: emulator.model.registration(registrationId)?.state,
    });
    // The emulator's log hears of both, as of an MQTT device's requests.
    expect(events).toContainEqual({ type: 'request', registrationId, request: 'register', status: 202 });
    expect(events).toContainEqual({ type: 'request', registrationId, request: 'poll', status: 200 });
  });

  it('takes URL-encoded path segments, as the C SDK sends them', async () => {
    const registrationId = 'raw:device-2';
    const encoded = encodeURIComponent(registrationId);
    const started = await send('PUT', `/${ID_SCOPE}/registrations/${encoded}/register?${API}`, {
      body: JSON.stringify({ registrationId }),
      headers: groupDevice(registrationId),
    });
    expect(started.status, started.text).toBe(202);
    expect(parseRoute(`/${ID_SCOPE}/registrations/${encoded}/operations/4.ab%2Ecd`)).toEqual({
      type: 'poll',
      idScope: ID_SCOPE,
      registrationId,
      operationId: '4.ab.cd',
    });
  });

  it.each<[string, () => Record<string, string>, string?]>([
    ['no Authorization header', () => ({})],
    ['a token that is not a SAS token', () => ({ authorization: 'Bearer abc' })],
    ['the group key instead of the derived key', () => auth('bad-sas-1', GROUP_KEY)],
    ['an expired token', () => auth('bad-sas-1', deriveDeviceKey(GROUP_KEY, 'bad-sas-1'), Math.floor(Date.now() / 1000) - 10)],
    ["another device's token", () => groupDevice('bad-sas-2')],
    [
      'a token for another ID scope',
      () => auth('bad-sas-1', deriveDeviceKey(GROUP_KEY, 'bad-sas-1'), HOUR(), '0ne00000000'),
      '0ne00000000',
    ],
  ])('%s: 401 in DPS error shape, nothing recorded', async (_what, headers, scope) => {
    const answer = await send('PUT', registerPath('bad-sas-1', scope), { body: '{"registrationId":"bad-sas-1"}', headers: headers() });
    expectDpsError(answer, 401, 401002);
    expect(answer.text).not.toContain('sig=');
    expect(emulator.model.registration('bad-sas-1')).toBeUndefined();
  });

  it('a poll needs the SAS token too', async () => {
    const registrationId = 'raw-device-3';
    const started = await send('PUT', registerPath(registrationId), {
      body: JSON.stringify({ registrationId }),
      headers: groupDevice(registrationId),
    });
    expectDpsError(await send('GET', pollPath(registrationId, started.json.operationId)), 401, 401002);
  });

  it.each([
    ['not JSON', '{"registrationId":', 400000],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 400000],
    ['a JSON array', '["raw-device-4"]', 400000],
    ['no registrationId', '{"payload":{}}', 400000],
    ['an empty body', '', 400000],
    ["another registration's ID", '{"registrationId":"raw-device-5"}', 400001],
  ])('a register body that is %s: 400', async (_what, body, errorCode) => {
    expectDpsError(await send('PUT', registerPath('raw-device-4'), { body, headers: groupDevice('raw-device-4') }), 400, errorCode);
    expect(emulator.model.registration('raw-device-4')).toBeUndefined();
  });

  it("polls an unknown operation, or another device's: 404", async () => {
    expectDpsError(await send('GET', pollPath('raw-device-6', '4.0000.nope'), { headers: groupDevice('raw-device-6') }), 404, 404000);
    const started = await send('PUT', registerPath('raw-device-7'), {
      body: '{"registrationId":"raw-device-7"}',
      headers: groupDevice('raw-device-7'),
    });
    const theirs = await send('GET', pollPath('raw-device-6', started.json.operationId), { headers: groupDevice('raw-device-6') });
    expectDpsError(theirs, 404, 404000);
  });

  it.each([
    ['GET', registerPath('raw-device-8'), 'PUT'],
    ['POST', registerPath('raw-device-8'), 'PUT'],
    ['DELETE', pollPath('raw-device-8', '4.1.2'), 'GET'],
    ['PUT', pollPath('raw-device-8', '4.1.2'), 'GET'],
  ])('%s %s: 405, Allow: %s', async (method, path, allowed) => {
    const answer = await send(method, path, { headers: groupDevice('raw-device-8') });
    expectDpsError(answer, 405, 405000);
    expect(answer.headers.allow).toBe(allowed);
  });

  it.each([
    '/',
    `/${ID_SCOPE}`,
    `/${ID_SCOPE}/registrations/raw-device-9`,
    `/${ID_SCOPE}/registrations/raw-device-9/operations`,
    `/${ID_SCOPE}/registrations/raw-device-9/register/more`,
    `/${ID_SCOPE}/enrollments/raw-device-9/register`,
    `//registrations/raw-device-9/register`,
    '/enrollmentGroups/x',
  ])('%s: 404', async (path) => {
    expectDpsError(await send('PUT', `${path}?${API}`, { headers: groupDevice('raw-device-9') }), 404, 404010);
  });

  it('no api-version, or a path that is not valid URL encoding: 400', async () => {
    const headers = groupDevice('raw-device-10');
    const body = '{"registrationId":"raw-device-10"}';
    expectDpsError(await send('PUT', `/${ID_SCOPE}/registrations/raw-device-10/register`, { body, headers }), 400, 400011);
    expectDpsError(await send('PUT', `/${ID_SCOPE}/registrations/raw%zz/register?${API}`, { body, headers }), 400, 400000);
    expect(emulator.model.registration('raw-device-10')).toBeUndefined();
  });

  it('a body over 64 KiB: 413, whether declared or sent', async () => {
    const headers = groupDevice('raw-device-11');
    const big = JSON.stringify({ registrationId: 'raw-device-11', payload: 'x'.repeat(70 * 1024) });
    expectDpsError(await send('PUT', registerPath('raw-device-11'), { body: big, headers }), 413, 413000);
    const chunked = await send('PUT', registerPath('raw-device-11'), {
      body: big,
      headers: { ...headers, 'transfer-encoding': 'chunked' },
    });
    expectDpsError(chunked, 413, 413000);
    // Declared far over the limit (and never sent): answered at once, and the connection closes.
    const declared = await rawExchange(
      emulator.httpsEndpoint.port,
      emulator.caPem,
      `PUT ${registerPath('raw-device-11')} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{`,
    );
    expect(declared.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(declared.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(declared.text.slice(declared.text.indexOf('\r\n\r\n') + 4)).errorCode).toBe(413000);
    expect(emulator.model.registration('raw-device-11')).toBeUndefined();
  });

  it('bytes that are not HTTP, or headers too large: 400 and 431 in DPS error shape, then the connection closes', async () => {
    const garbage = await rawExchange(emulator.httpsEndpoint.port, emulator.caPem, '\u0000\u0001 not http at all\r\n\r\n');
    expect(garbage.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(garbage.text.slice(garbage.text.indexOf('\r\n\r\n') + 4)).errorCode).toBe(400000);
    const huge = await rawExchange(
      emulator.httpsEndpoint.port,
      emulator.caPem,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
    );
    expect(huge.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(huge.text.slice(huge.text.indexOf('\r\n\r\n') + 4)).errorCode).toBe(431000);
  });

  it("keeps serving after all of the above: Microsoft's client still provisions, over HTTPS and MQTT", async () => {
    const https = await provisionOverHttps('after-abuse-1', deriveDeviceKey(GROUP_KEY, 'after-abuse-1'));
    const mqtt = await provisionOverMqtt('after-abuse-2', deriveDeviceKey(GROUP_KEY, 'after-abuse-2'));
    expect(https.status).toBe('assigned');
    expect(mqtt.status).toBe('assigned');
  });
});

describe('start and stop', () => {
  it('a --https-port in use stops the start with EADDRINUSE, naming the port', async () => {
    const blocker = createNetServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const error = await startEmulator({ idScope: ID_SCOPE, stateDir, httpsPort: port }).then(
        async (started) => (await started.close(), undefined),
        (e: unknown) => e as NodeJS.ErrnoException & { port?: number },
      );
      expect(error?.code).toBe('EADDRINUSE');
      expect(error?.port).toBe(port);
    } finally {
      blocker.close();
    }
  });
});

describe('slow clients', () => {
  let endpoint: DeviceHttpsEndpoint;
  let service: RegistrationService;

  beforeAll(async () => {
    // A second endpoint on the emulator's model with short deadlines (startEmulator keeps the defaults: 10 s, 30 s).
    const certificates = await loadOrCreateCertificates({ stateDir });
    service = new RegistrationService(emulator.model, { retryAfterSeconds: 1, assignmentDelayMs: 0 });
    endpoint = await startDeviceHttpsEndpoint({
      idScope: ID_SCOPE,
      model: emulator.model,
      service,
      cert: certificates.serverCertPem + certificates.caPem,
      key: certificates.serverKeyPem,
      host: '127.0.0.1',
      port: 0,
      headersTimeoutMs: 400,
      requestTimeoutMs: 800,
    });
  });

  afterAll(async () => {
    service?.close();
    await endpoint?.close();
  });

  it('headers that never end: 408 in DPS error shape once the header timeout passes, and the connection closes', async () => {
    const started = Date.now();
    const answer = await rawExchange(endpoint.port, emulator.caPem, `PUT ${registerPath('slow-device-1')} HTTP/1.1\r\nHost: x\r\n`);
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4))).toMatchObject({ errorCode: 408000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a body that trickles: 408 once the request timeout passes, and nothing is registered', async () => {
    const registrationId = 'slow-device-2';
    const started = Date.now();
    const head =
      `PUT ${registerPath(registrationId)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Authorization: ${groupDevice(registrationId).authorization}\r\nContent-Length: 100\r\n\r\n{"registrationId":`;
    const answer = await rawExchange(endpoint.port, emulator.caPem, head, { trickle: ' ' });
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(emulator.model.registration(registrationId)).toBeUndefined();
  });

  it('serves the next client as before', async () => {
    expect((await provisionOverHttps('slow-device-3', deriveDeviceKey(GROUP_KEY, 'slow-device-3'), endpoint.port)).status).toBe('assigned');
  });
});

// The emulator's DPS service API, refereed by Microsoft's service client
// (azure-iot-provisioning-service): enrollment groups, individual enrollments and registrations
// after a device registered through the MQTT endpoint (our core, as in integration.test.ts).
// Plus what the client cannot show: SAS refusals, etags, api-version, bad input, restarts.
//
// What the client needed (node_modules/azure-iot-http-base/dist/http.js): it passes the
// connection string's HostName as `host` to https.request, which does not split off a port, so
// the test hands it serviceClientAgent() (emulator/service-agent.ts) through its RestApiClient's
// setOptions({ http: { agent } }); the agent connects to host:port and trusts the emulator's CA.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { ProvisioningServiceClient } from 'azure-iot-provisioning-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DpsEmulator, serviceClientAgent, startEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { provisionDevice } from '../src/provisioner.js';
import { buildSasToken } from '../src/sas.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';
import { rawExchange, rawJson } from './support/raw-tls.js';
import { serviceCall, serviceToken } from './support/service-https.js';

const ID_SCOPE = '0ne000SVC01';
const key = (fill: number): string => Buffer.alloc(32, fill).toString('base64');
const HUBS = ['svc-hub-a.azure-devices.net', 'svc-hub-b.azure-devices.net'];

let dps: DpsEmulator;

let fixture: TestEmulator;

beforeAll(async () => {
  fixture = await startTestEmulator('dps-service-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 0,
    config: {
      iotHubs: HUBS.map((host) => ({ connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key(1)}` })),
    },
  });
  ({ dps } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

function serviceClient(connectionString = dps.service.connectionString): ProvisioningServiceClient {
  const client = ProvisioningServiceClient.fromConnectionString(connectionString);
  (client as unknown as { _restApiClient: { setOptions(o: object): void } })._restApiClient.setOptions({
    http: { agent: serviceClientAgent({ ca: dps.caPem }) },
  });
  return client;
}

async function provision(registrationId: string, credentials: { groupKey: string } | { deviceKey: string }) {
  return provisionDevice(
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
}

const raw = serviceCall;

const dpsErrorShape = {
  errorCode: expect.any(Number),
  trackingId: expect.any(String),
  message: expect.any(String),
  timestampUtc: expect.any(String),
};

describe("Microsoft's service client against the emulator", () => {
  it('creates, reads, pages through, queries the registrations of, and deletes an enrollment group', async () => {
    const client = serviceClient();
    const groupKey = key(42);
    const created = await client.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'svc-group-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key(43) } },
      iotHubs: [HUBS[1]!],
      allocationPolicy: 'static',
      initialTwin: { tags: { line: 'one' }, properties: { desired: { telemetryInterval: 15 } } },
    } as never);
    expect(created.httpResponse.statusCode).toBe(200);
    expect(created.responseBody).toMatchObject({
      enrollmentGroupId: 'svc-group-1',
      provisioningStatus: 'enabled',
      allocationPolicy: 'static',
    });
    await client.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'svc-group-2', attestation: { type: 'symmetricKey' } } as never);

    const read = await client.getEnrollmentGroup('svc-group-1');
    expect(read.responseBody.attestation).toEqual({ type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: key(43) } });
    expect(read.responseBody.etag).toBe(created.responseBody.etag);

    // x-ms-max-item-count 1: one group per page, x-ms-continuation to the next. (The client's
    // promise form of Query.next() forgets the token unless it is passed back in.)
    const query = client.createEnrollmentGroupQuery({ query: 'SELECT * FROM enrollmentGroups' }, 1);
    const ids: string[] = [];
    for (let pages = 0; query.hasMoreResults; pages++) {
      expect(pages).toBeLessThan(3);
      const page = await query.next(query.continuationToken as unknown as string);
      expect((page.responseBody as unknown as unknown[]).length).toBeLessThanOrEqual(1);
      ids.push(...(page.responseBody as unknown as Array<{ enrollmentGroupId: string }>).map((g) => g.enrollmentGroupId));
    }
    expect(ids.sort()).toEqual(['svc-group-1', 'svc-group-2']);

    const assignment = (await provision('svc-device-1', { groupKey })).assignment;
    expect(assignment.assignedHub).toBe(HUBS[1]);
    const registrations = await client.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, 'svc-group-1').next();
    expect(registrations.responseBody).toEqual([
      expect.objectContaining({ registrationId: 'svc-device-1', status: 'assigned', assignedHub: HUBS[1], deviceId: 'svc-device-1' }),
    ]);
    const state = await client.getDeviceRegistrationState('svc-device-1');
    expect(state.responseBody).toMatchObject({ status: 'assigned', substatus: 'initialAssignment', assignedHub: HUBS[1] });

    await client.deleteDeviceRegistrationState('svc-device-1');
    await expect(client.getDeviceRegistrationState('svc-device-1')).rejects.toMatchObject({ response: { statusCode: 404 } });
    await client.deleteEnrollmentGroup('svc-group-1');
    await client.deleteEnrollmentGroup('svc-group-2');
    const gone = await client.getEnrollmentGroup('svc-group-1').then(
      () => undefined,
      (e: { response?: { statusCode: number }; responseBody?: string }) => e,
    );
    expect(gone?.response?.statusCode).toBe(404);
    expect(JSON.parse(gone!.responseBody!)).toMatchObject({ ...dpsErrorShape, errorCode: 404001 });
  });

  it('creates, reads, bulk-updates and deletes individual enrollments; the device registers with its own key', async () => {
    const client = serviceClient();
    const deviceKey = key(50);
    await client.createOrUpdateIndividualEnrollment({
      registrationId: 'svc-individual-1',
      deviceId: 'svc-thermostat-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: deviceKey, secondaryKey: key(51) } },
    } as never);
    const read = await client.getIndividualEnrollment('svc-individual-1');
    expect(read.responseBody).toMatchObject({ registrationId: 'svc-individual-1', deviceId: 'svc-thermostat-1' });
    const attestation = await client.getIndividualEnrollmentAttestationMechanism('svc-individual-1');
    expect(attestation.responseBody).toEqual({ type: 'symmetricKey', symmetricKey: { primaryKey: deviceKey, secondaryKey: key(51) } });

    // The client's promise form of runBulkEnrollmentOperation never settles (it checks the
    // caller's callback, which is then undefined): use the callback form.
    const bulk = await new Promise<{ isSuccessful: boolean; errors: unknown[] }>((resolve, reject) =>
      client.runBulkEnrollmentOperation(
        {
          mode: 'create',
          enrollments: [
            { registrationId: 'svc-bulk-1', attestation: { type: 'symmetricKey' } },
            { registrationId: 'svc-individual-1', attestation: { type: 'symmetricKey' } }, // exists: refused
            { registrationId: 'svc-bulk-2', attestation: { type: 'symmetricKey' }, allocationPolicy: 'static' }, // no hub: refused
          ],
        } as never,
        (error, result) => (error ? reject(error) : resolve(result as never)),
      ),
    );
    expect(bulk.isSuccessful).toBe(false);
    expect(bulk.errors).toEqual([
      { registrationId: 'svc-individual-1', errorCode: 409000, errorStatus: expect.stringContaining('already exists') },
      { registrationId: 'svc-bulk-2', errorCode: 400002, errorStatus: expect.stringContaining('exactly one IoT hub') },
    ]);
    const all = await client.createIndividualEnrollmentQuery({ query: '*' }).next();
    expect((all.responseBody as unknown as Array<{ registrationId: string }>).map((e) => e.registrationId).sort()).toEqual([
      'svc-bulk-1',
      'svc-individual-1',
    ]);

    const { assignment } = await provision('svc-individual-1', { deviceKey });
    expect(assignment.deviceId).toBe('svc-thermostat-1');
    expect(HUBS).toContain(assignment.assignedHub);

    await client.deleteIndividualEnrollment('svc-individual-1');
    await client.deleteIndividualEnrollment({ registrationId: 'svc-bulk-1' } as never);
    expect((await client.createIndividualEnrollmentQuery({ query: '*' }).next()).responseBody).toEqual([]);
  });

  it('refuses a stale etag with 412 and accepts the current one', async () => {
    const client = serviceClient();
    const first = (
      await client.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'svc-etag', attestation: { type: 'symmetricKey' } } as never)
    ).responseBody;
    const second = (await client.createOrUpdateEnrollmentGroup({ ...first, provisioningStatus: 'disabled' })).responseBody; // If-Match: first.etag
    expect(second.etag).not.toBe(first.etag);
    const stale = await client.createOrUpdateEnrollmentGroup({ ...first, provisioningStatus: 'enabled' }).then(
      () => undefined,
      (e: Error & { response?: { statusCode: number } }) => e,
    );
    expect(stale?.constructor.name).toBe('InvalidEtagError');
    expect(stale?.response?.statusCode).toBe(412);
    await expect(client.deleteEnrollmentGroup('svc-etag', first.etag!)).rejects.toMatchObject({ response: { statusCode: 412 } });
    expect((await client.getEnrollmentGroup('svc-etag')).responseBody.provisioningStatus).toBe('disabled');
    await client.deleteEnrollmentGroup('svc-etag', second.etag!);
  });
});

describe('authorization, api-version and bad input', () => {
  const sign = (overrides: { key?: string; keyName?: string; resource?: string; expiry?: number }) =>
    buildSasToken({
      resource: overrides.resource ?? `${dps.service.endpoint.host}:${dps.service.endpoint.port}`,
      key: overrides.key ?? dps.service.key,
      keyName: overrides.keyName ?? 'provisioningserviceowner',
      expiry: overrides.expiry ?? Math.floor(Date.now() / 1000) + 600,
    });
  const path = '/enrollmentGroups/query?api-version=2021-10-01';

  it.each([
    ['no Authorization header', null, /missing/],
    ['a token that is not a SAS', 'Bearer abc', /not a valid SharedAccessSignature/],
    ['a token signed with another key', () => sign({ key: key(99) }), /not signed with a key/],
    ['an expired token', () => sign({ expiry: Math.floor(Date.now() / 1000) - 5 }), /expired/],
    ['another policy name', () => sign({ keyName: 'enrollmentread' }), /names the policy 'enrollmentread'/],
    ['a token for another host', () => sign({ resource: 'other.azure-devices-provisioning.net' }), /not for this service/],
  ])('answers 401 with DPS error body for %s', async (_what, auth, message) => {
    const token = typeof auth === 'function' ? auth() : auth;
    const res = await raw(dps, 'POST', path, { body: '{"query":"*"}', auth: token });
    expect(res.status).toBe(401);
    expect(res.json).toMatchObject({ ...dpsErrorShape, errorCode: 401002, message: expect.stringMatching(message) });
  });

  it("answers 401 through Microsoft's client for a connection string with a wrong key", async () => {
    const wrong = dps.service.connectionString.replace(/SharedAccessKey=.*$/, `SharedAccessKey=${key(98)}`);
    const error = await serviceClient(wrong)
      .getEnrollmentGroup('x')
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(error?.constructor.name).toBe('UnauthorizedError');
  });

  it('accepts a token signed for the bare host name', async () => {
    const res = await raw(dps, 'POST', path, { body: '{"query":"*"}', auth: sign({ resource: dps.service.endpoint.host }) });
    expect(res.status).toBe(200);
  });

  it('refuses another api-version, or none, with 400', async () => {
    for (const query of ['?api-version=2019-03-31', '']) {
      const res = await raw(dps, 'GET', `/enrollmentGroups/x${query}`);
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ ...dpsErrorShape, errorCode: 400011, message: expect.stringContaining('2021-10-01') });
    }
  });

  it('answers bad input with DPS errors and keeps serving', async () => {
    const v = '?api-version=2021-10-01';
    const cases: Array<[string, string, string | undefined, number, number]> = [
      ['PUT', `/enrollmentGroups/bad-json${v}`, '{"enrollmentGroupId":', 400, 400010],
      ['PUT', `/enrollmentGroups/bad-static${v}`, '{"allocationPolicy":"static","attestation":{"type":"symmetricKey"}}', 400, 400002],
      ['PUT', `/enrollmentGroups/bad-hub${v}`, '{"iotHubs":["nowhere.azure-devices.net"]}', 400, 400002],
      ['PUT', `/enrollmentGroups/other-id${v}`, '{"enrollmentGroupId":"not-the-path"}', 400, 400000],
      [
        'PUT',
        `/enrollments/bad-key${v}`,
        '{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"not base64!"}}}',
        400,
        400002,
      ],
      ['PUT', `/enrollments/x509${v}`, '{"attestation":{"type":"x509"}}', 400, 400002],
      ['GET', `/enrollments/nobody${v}`, undefined, 404, 404001],
      ['DELETE', `/registrations/nobody${v}`, undefined, 404, 404001],
      ['POST', `/registrations/no-such-group/query${v}`, '{"query":"*"}', 404, 404001],
      ['POST', `/enrollmentGroups/query${v}`, '[]', 400, 400000],
      ['PATCH', `/enrollments/x${v}`, '{}', 405, 405000],
      ['GET', `/nothing-here${v}`, undefined, 404, 404010],
    ];
    for (const [method, url, body, status, errorCode] of cases) {
      const res = await raw(dps, method, url, body === undefined ? {} : { body });
      expect({ url, status: res.status, body: res.json }).toMatchObject({ url, status, body: { ...dpsErrorShape, errorCode } });
    }
    expect((await raw(dps, 'POST', `/enrollmentGroups/query${v}`, { body: '{"query":"*"}' })).status).toBe(200);
  });

  it('refuses deep and oversized bodies, survives garbage, and keeps serving', async () => {
    const deep = `{"enrollmentGroupId":"deep","initialTwin":{"tags":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    expect((await raw(dps, 'PUT', '/enrollmentGroups/deep?api-version=2021-10-01', { body: deep })).json).toMatchObject({
      errorCode: 400010,
      message: expect.stringContaining('deeper than 64'),
    });
    const huge = await raw(dps, 'PUT', '/enrollmentGroups/huge?api-version=2021-10-01', { body: `{"pad":"${'x'.repeat(300 * 1024)}"}` });
    expect(huge).toMatchObject({ status: 413, json: { errorCode: 413000 } });
    await new Promise<void>((resolve) => {
      const socket = connect({ host: dps.service.endpoint.host, port: dps.service.endpoint.port, ca: dps.caPem }, () =>
        socket.end('NOT HTTP AT ALL\r\n\r\n'),
      );
      socket.on('data', () => {});
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
    expect((await raw(dps, 'GET', '/resource')).status).toBe(200);
  });
});

describe('the service endpoint across restarts', () => {
  it('keeps its key in the state directory, takes a given key instead, and close() stops it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dps-service-restart-'));
    try {
      const one = await startEmulator({ idScope: ID_SCOPE, stateDir: dir });
      await one.close();
      const two = await startEmulator({ idScope: ID_SCOPE, stateDir: dir });
      expect(two.service.key).toBe(one.service.key);
      expect(two.service.connectionString).toBe(
        `HostName=127.0.0.1:${two.service.endpoint.port};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=${two.service.key}`,
      );
      expect((await raw(two, 'GET', '/resource')).status).toBe(200);
      await two.close();
      await expect(raw(two, 'GET', '/resource')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      const three = await startEmulator({ idScope: ID_SCOPE, stateDir: dir, serviceKey: key(77) });
      expect(three.service.key).toBe(key(77));
      expect((await raw(three, 'GET', '/resource')).status).toBe(200);
      await three.close();
      await expect(startEmulator({ idScope: ID_SCOPE, stateDir: dir, serviceKey: 'short' })).rejects.toThrow(/serviceKey/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('slow, idle, oversized and too many clients (issue 18): each is cut off or refused, and the API keeps serving', () => {
  let limited: TestEmulator;
  const limits = { headersTimeoutMs: 600, requestTimeoutMs: 1200, keepAliveTimeoutMs: 300, maxConnections: 3 };
  const port = () => limited.dps.service.endpoint.port;
  const authorization = () => serviceToken(limited.dps);

  beforeAll(async () => {
    limited = await startTestEmulator('dps-service-limits-', { idScope: ID_SCOPE, serviceLimits: limits });
  });
  afterAll(async () => {
    await limited?.close();
  });

  // Bounds below are generous (a shared 2-CPU machine): they check that a slow client is cut, not how fast.
  it('headers that arrive a byte at a time: 408 in DPS error shape once the header timeout passes', async () => {
    const answer = await rawExchange(port(), limited.dps.caPem, 'GET /resource HTTP/1.1\r\nHost: x\r\n', { trickle: 'X' });
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(rawJson(answer)).toMatchObject({ errorCode: 408000 });
    expect(answer.ms).toBeGreaterThanOrEqual(500);
    expect(answer.ms).toBeLessThan(4000);
  });

  it('a body that arrives a byte at a time: 408 once the request timeout passes, and nothing is stored', async () => {
    const head =
      'PUT /enrollmentGroups/slow-body?api-version=2021-10-01 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Authorization: ${authorization()}\r\nContent-Length: 1000\r\n\r\n{"enrollmentGroupId":`;
    const answer = await rawExchange(port(), limited.dps.caPem, head, { trickle: ' ' });
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer.ms).toBeGreaterThanOrEqual(1000);
    expect(answer.ms).toBeLessThan(5000);
    expect(limited.dps.model.enrollmentGroups().map((g) => g.enrollmentGroupId)).not.toContain('slow-body');
  });

  it('a body that keeps arriving after its 401: the 401 alone, no 408 written after it when the request timeout passes', async () => {
    const head =
      'PUT /enrollmentGroups/slow-401?api-version=2021-10-01 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      'Content-Length: 1000\r\n\r\n{"enrollmentGroupId":';
    const answer = await rawExchange(port(), limited.dps.caPem, head, { trickle: ' ' });
    expect(answer.text).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    expect(answer.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(answer.ms).toBeLessThan(5000);
  });

  it('a connection that never sends a request, or stays idle after one, is closed', async () => {
    const idle = await rawExchange(port(), limited.dps.caPem, '');
    expect(idle.text).toMatch(/^HTTP\/1\.1 408 /);
    const kept = await rawExchange(
      port(),
      limited.dps.caPem,
      `GET /resource HTTP/1.1\r\nHost: x\r\nAuthorization: ${authorization()}\r\n\r\n`,
    );
    expect(kept.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(kept.ms).toBeLessThan(4000); // closed by the keep-alive timeout, not by the test's guard
  });

  it('a 100 KB URL: 431 in DPS error shape, read by the client rather than a reset', async () => {
    const answer = await rawExchange(port(), limited.dps.caPem, `GET /enrollmentGroups/${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(answer.text).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(rawJson(answer)).toMatchObject({ errorCode: 431000, message: expect.stringMatching(/exceed 16384 bytes/) });
  });

  it('connections beyond the cap are closed as they come; once some go, new ones are served', async () => {
    const held = await Promise.all(
      Array.from({ length: limits.maxConnections }, () => {
        const socket = netConnect(port(), '127.0.0.1');
        socket.on('error', () => {});
        return new Promise<Socket>((resolve) => socket.once('connect', () => resolve(socket)));
      }),
    );
    try {
      const refused = await rawExchange(port(), limited.dps.caPem, 'GET /resource HTTP/1.1\r\nHost: x\r\n\r\n').catch((e: Error) => ({
        text: e.message,
        ms: 0,
      }));
      expect(refused.text).toBe('');
    } finally {
      for (const socket of held) socket.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await serviceCall(limited.dps, 'GET', '/resource')).status).toBe(200);
  });
});

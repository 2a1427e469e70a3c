// X.509 attestation beyond MQTT over TLS: the client certificate of DPS's HTTPS device API (a raw
// https request with cert and key, no Authorization header), and of MQTT over WebSockets, where the
// TLS connection is the HTTPS server's and the upgraded stream is handed to the DPS or hub
// endpoint (websocket.ts): the certificate must reach their checks. Then `device --cert --cert-key`
// online with its hub over both MQTT transports, and no private key in anything these paths print,
// log or throw.
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type IssuedCertificate, issueDeviceCertificate, type SigningCa, selfSignedDeviceCertificate } from '../cli/shared/certificates.js';
import type { DpsEmulator } from '../emulator/index.js';
import { nodeRandom, systemClock } from '../hosts/node/clock.js';
import { createWebSocketConnect } from '../hosts/node/ws-connect.js';
import { goOnline } from '../src/device.js';
import { ProvisioningError } from '../src/errors.js';
import { connectHub } from '../src/hub/session.js';
import { runCli } from './support/cli-runner.js';
import { startX509Emulator, type X509Emulator } from './support/x509-fixture.js';

const ID_SCOPE = '0ne000X509T';
const HUB = 'x509-transports-hub.azure-devices.net';

let fixture: X509Emulator;
let dps: DpsEmulator;
let intermediate: SigningCa;
let otherRoot: SigningCa;
let individual: IssuedCertificate;
/** Every private key these tests hand to a device or a CLI: none may appear in any output. */
const keys: string[] = [];
/** Everything the paths under test said: CLI output, errors, the emulator's events, the console. */
const said: string[] = [];

beforeAll(async () => {
  fixture = await startX509Emulator({
    name: 'x509-transports',
    idScope: ID_SCOPE,
    hub: HUB,
    individualId: 'xt-individual-1',
    groupId: 'xt-line',
  });
  ({ dps, intermediate, otherRoot, individual } = fixture);
  keys.push(fixture.root.key, intermediate.key, otherRoot.key, individual.key);
}, 60_000);

// What the process itself writes (a stray console.log in a path under test) is audited too.
const consoleSpies: Array<ReturnType<typeof vi.spyOn>> = [];
beforeAll(() => {
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    consoleSpies.push(vi.spyOn(console, method).mockImplementation((...args: unknown[]) => void said.push(args.map(String).join(' '))));
  }
});

afterEach(() => {
  said.push(...fixture.events.map((e) => JSON.stringify(e)));
});

afterAll(async () => {
  for (const spy of consoleSpies) spy.mockRestore();
  await fixture?.close();
});

/** A certificate for `registrationId` from the group's intermediate (the chain: leaf and intermediate). */
function issue(registrationId: string, ca: SigningCa = intermediate): IssuedCertificate {
  const issued = issueDeviceCertificate(ca, registrationId);
  keys.push(issued.key);
  return issued;
}

/** Everything an error carries: message, stack, JSON and inspect() with its cause chain. */
function errorText(error: unknown): string {
  return [String(error), (error as Error)?.stack ?? '', JSON.stringify(error) ?? '', inspect(error, { depth: 5 })].join('\n');
}

// ---- DPS's HTTPS device API ----

interface HttpsAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

/** One request on its own connection (no agent: no TLS session of another certificate reused). */
function dpsRequest(
  method: 'PUT' | 'GET',
  path: string,
  client: IssuedCertificate | undefined,
  body?: object,
  headers: Record<string, string> = {},
): Promise<HttpsAnswer> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: dps.httpsEndpoint.host,
        port: dps.httpsEndpoint.port,
        method,
        path: `${path}?api-version=2021-06-01`,
        ca: dps.caPem,
        agent: false,
        ...(client && { cert: client.cert, key: client.key }),
        headers: {
          ...headers,
          ...(text !== undefined && { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }),
        },
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (data += chunk));
        res.on('end', () => {
          said.push(data);
          resolve({ status: res.statusCode ?? 0, body: data ? JSON.parse(data) : {}, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

async function registerOverHttps(registrationId: string, client: IssuedCertificate | undefined): Promise<HttpsAnswer> {
  const base = `/${ID_SCOPE}/registrations/${registrationId}`;
  const first = await dpsRequest('PUT', `${base}/register`, client, { registrationId });
  if (first.status !== 202) return first;
  for (let i = 0; i < 20; i++) {
    const polled = await dpsRequest('GET', `${base}/operations/${first.body.operationId}`, client);
    if (polled.status !== 202) return polled;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('still assigning after 20 polls');
}

describe("DPS's HTTPS device API with a client certificate (no Authorization header)", () => {
  it('registers a group device whose certificate the enrolled intermediate issued: 202, then assigned; the hub identity is certificateAuthority', async () => {
    const answer = await registerOverHttps('xt-https-1', issue('xt-https-1'));
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      status: 'assigned',
      registrationState: { registrationId: 'xt-https-1', assignedHub: HUB, deviceId: 'xt-https-1', status: 'assigned' },
    });
    expect(dps.model.registration('xt-https-1')?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'xt-line' });
    expect(dps.model.hubDevice(HUB, 'xt-https-1')?.authentication).toEqual({ type: 'certificateAuthority' });
  });

  it("registers an individual enrollment by its certificate's thumbprint: a selfSigned identity", async () => {
    const answer = await registerOverHttps('xt-individual-1', individual);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ status: 'assigned', registrationState: { deviceId: 'xt-individual-1' } });
    expect(dps.model.hubDevice(HUB, 'xt-individual-1')?.authentication).toMatchObject({ type: 'selfSigned' });
  });

  it("refuses (401, DPS's error shape naming the certificate) a certificate of an unknown CA, one naming another ID, and no credentials at all", async () => {
    const unknownCa = await dpsRequest('PUT', `/${ID_SCOPE}/registrations/xt-https-2/register`, issue('xt-https-2', otherRoot), {
      registrationId: 'xt-https-2',
    });
    expect(unknownCa.status).toBe(401);
    expect(unknownCa.body).toMatchObject({ errorCode: 401002 });
    expect(String(unknownCa.body.message)).toMatch(/client certificate/);
    const mismatch = await dpsRequest('PUT', `/${ID_SCOPE}/registrations/xt-https-3/register`, issue('someone-else'), {
      registrationId: 'xt-https-3',
    });
    expect(mismatch.status).toBe(401);
    expect(String(mismatch.body.message)).toMatch(/CN/);
    const none = await dpsRequest('PUT', `/${ID_SCOPE}/registrations/xt-https-4/register`, undefined, { registrationId: 'xt-https-4' });
    expect(none.status).toBe(401);
    expect(String(none.body.message)).toMatch(/SAS token/);
    for (const id of ['xt-https-2', 'xt-https-3', 'xt-https-4']) expect(dps.model.registration(id)).toBeUndefined();
  });

  it('a SAS-shaped Authorization header does not stand in for a certificate of an X.509 enrollment', async () => {
    const answer = await dpsRequest(
      'PUT',
      `/${ID_SCOPE}/registrations/xt-individual-1/register`,
      undefined,
      { registrationId: 'xt-individual-1' },
      { authorization: `SharedAccessSignature sr=${ID_SCOPE}%2fregistrations%2fxt-individual-1&sig=AAAA&se=9999999999&skn=registration` },
    );
    expect(answer.status).toBe(401);
  });
});

// ---- MQTT over WebSockets ----

describe('MQTT over WebSockets with a client certificate: the HTTPS server’s TLS peer reaches the DPS and hub checks', () => {
  const online = (registrationId: string, client: IssuedCertificate) =>
    goOnline(
      {
        idScope: ID_SCOPE,
        registrationId,
        x509: true,
        endpoint: dps.httpsEndpoint,
        hubEndpoint: dps.httpsEndpoint,
        timeoutMs: 20_000,
        maxReprovisions: 0,
      },
      { connect: createWebSocketConnect({ ca: dps.caPem, clientCertificate: client, connectTimeoutMs: 5000 }), clock: systemClock },
    );

  it('a group device provisions and goes online with its hub, both over wss, by its certificate alone', async () => {
    const device = await online('xt-ws-1', issue('xt-ws-1'));
    try {
      expect(device.assignment).toMatchObject({ assignedHub: HUB, deviceId: 'xt-ws-1' });
      await device.session.sendTelemetry('{"over":"wss"}');
      expect(dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'xt-ws-1' && m.body === '{"over":"wss"}')).toBe(true);
    } finally {
      device.session.close();
    }
    expect(dps.model.registration('xt-ws-1')?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'xt-line' });
    expect(dps.model.hubDevice(HUB, 'xt-ws-1')?.authentication).toEqual({ type: 'certificateAuthority' });
  });

  it("DPS refuses over wss, for the certificate's own reason: an unknown CA, a CN that is not the ID", async () => {
    const refused = await online('xt-ws-2', issue('xt-ws-2', otherRoot)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ProvisioningError);
    expect(refused).toMatchObject({ kind: 'unauthorized' });
    said.push(errorText(refused));
    // 'cert-untrusted-ca', not 'no-credentials': the certificate reached the check.
    expect(fixture.lastRefusal('xt-ws-2')).toBe('cert-untrusted-ca');
    await expect(online('xt-ws-3', issue('someone-else-ws'))).rejects.toMatchObject({ kind: 'unauthorized' });
    expect(fixture.lastRefusal('xt-ws-3')).toBe('cert-cn-mismatch');
  });

  it('the hub over wss checks the certificate too: the enrolled one goes online, another with the same CN is refused', async () => {
    const other = selfSignedDeviceCertificate('xt-individual-1');
    keys.push(other.key);
    const hub = (client: IssuedCertificate) =>
      connectHub(
        { hub: HUB, deviceId: 'xt-individual-1', endpoint: dps.httpsEndpoint, requestTimeoutMs: 5000, offlineTimeoutMs: 2000 },
        {
          connect: createWebSocketConnect({ ca: dps.caPem, servername: HUB, clientCertificate: client, connectTimeoutMs: 5000 }),
          clock: systemClock,
          random: nodeRandom,
        },
      );
    // Registered over HTTPS above; make sure here in case this test runs alone.
    if (!dps.model.hubDevice(HUB, 'xt-individual-1')) expect((await registerOverHttps('xt-individual-1', individual)).status).toBe(200);
    const session = await hub(individual);
    try {
      await session.sendTelemetry('{"individual":"wss"}');
      expect(dps.hubs.telemetry(HUB).some((m) => m.deviceId === 'xt-individual-1' && m.body === '{"individual":"wss"}')).toBe(true);
    } finally {
      session.close();
    }
    const refused = await hub(other).catch((error: unknown) => error);
    expect(refused).toMatchObject({ kind: 'unauthorized' });
    said.push(errorText(refused));
  });
});

// ---- the CLI's device command ----

describe('device --cert --cert-key', () => {
  function files(name: string, issued: IssuedCertificate): string[] {
    const dir = join(fixture.dir, 'device-cli');
    mkdirSync(dir, { recursive: true });
    const cert = join(dir, `${name}.pem`);
    const key = join(dir, `${name}-key.pem`);
    writeFileSync(cert, issued.cert);
    writeFileSync(key, issued.key, { mode: 0o600 });
    return ['--cert', cert, '--cert-key', key];
  }

  const device = async (registrationId: string, issued: IssuedCertificate, ...more: string[]) => {
    const run = await runCli([
      'device',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      registrationId,
      ...files(registrationId, issued),
      '--ca',
      dps.caPath,
      '--msg-count',
      '1',
      '--msg-interval',
      '0',
      ...more,
    ]);
    said.push(run.stdout, run.stderr);
    return run;
  };

  it.each([
    ['mqtt', 'xt-cli-1', () => [`${dps.endpoint.host}:${dps.endpoint.port}`, `${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`]],
    [
      'mqtt-ws',
      'xt-cli-ws-1',
      () => [`${dps.httpsEndpoint.host}:${dps.httpsEndpoint.port}`, `${dps.httpsEndpoint.host}:${dps.httpsEndpoint.port}`],
    ],
  ] as const)(
    'over %s: provisioned through the X.509 group, online with its hub, its message received',
    async (transport, registrationId, endpoints) => {
      const [endpoint, hubEndpoint] = endpoints() as [string, string];
      const run = await device(
        registrationId,
        issue(registrationId),
        '--endpoint',
        endpoint,
        '--hub-endpoint',
        hubEndpoint,
        '--transport',
        transport,
      );
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain(`assignedHub: ${HUB}\ndeviceId: ${registrationId}\n`);
      expect(run.stdout).toContain('sent: 1 message');
      const messages = dps.hubs.telemetry(HUB).filter((m) => m.deviceId === registrationId);
      expect(messages.map((m) => JSON.parse(m.body))).toEqual([expect.objectContaining({ seq: 1, registrationId })]);
      expect(dps.hubs.twin(HUB, registrationId)?.properties.reported).toMatchObject({ registrationId });
      expect(dps.model.hubDevice(HUB, registrationId)?.authentication).toEqual({ type: 'certificateAuthority' });
    },
  );

  it('a certificate of an unknown CA: exit 3, unauthorized; a key that is not the certificate’s: exit 2; neither quotes the key', async () => {
    const refused = await device('xt-cli-2', issue('xt-cli-2', otherRoot), '--endpoint', `${dps.endpoint.host}:${dps.endpoint.port}`);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/unauthorized/);
    const mine = issue('xt-cli-3');
    const wrongKey = await device(
      'xt-cli-3',
      { cert: mine.cert, key: issue('xt-cli-3').key },
      '--endpoint',
      `${dps.endpoint.host}:${dps.endpoint.port}`,
    );
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toMatch(/--cert-key/);
  });
});

// ---- no private key anywhere ----

/** Whether `text` holds any 16 characters of the key's base64 body, or its DER as hex, or a PEM key block. */
function leaks(text: string, keyPem: string): string | undefined {
  if (/PRIVATE KEY/.test(text)) return 'a PEM private key marker';
  const body = keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const hex = Buffer.from(body, 'base64').toString('hex');
  for (let i = 0; i + 16 <= body.length; i += 8) if (text.includes(body.slice(i, i + 16))) return `base64 at ${i}`;
  for (let i = 0; i + 32 <= hex.length; i += 16) if (text.includes(hex.slice(i, i + 32))) return `hex at ${i}`;
  return undefined;
}

describe('no private key', () => {
  it('in any CLI output, error, emulator event, HTTPS answer or console line of the paths above', () => {
    said.push(...fixture.events.map((e) => JSON.stringify(e)));
    expect(keys.length).toBeGreaterThan(10);
    expect(said.join('').length).toBeGreaterThan(1000); // the audit saw the runs
    const all = said.join('\n');
    for (const key of keys) expect(leaks(all, key)).toBeUndefined();
    // The audit itself finds a key when there is one.
    expect(leaks(`x ${keys[4]!.split('\n')[3]} y`, keys[4]!)).toMatch(/base64/);
  });
});

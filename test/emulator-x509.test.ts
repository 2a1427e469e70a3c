// X.509 attestation end to end: the emulator's DPS and hub endpoints ask for a client certificate,
// check its CN, dates, thumbprint or chain to the enrollment's CA; `register --cert --cert-key`
// provisions through the Node host with it and `device` takes it online with its hub.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  type IssuedCertificate,
  issueDeviceCertificate,
  type SigningCa,
  selfSignedDeviceCertificate,
} from '../cli/shared/certificates.js';
import type { DpsEmulator, EndpointEvent } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { goOnline } from '../src/device.js';
import { runCli } from './support/cli-runner.js';
import { startTestEmulator, type TestEmulator } from './support/emulator-fixture.js';

const ID_SCOPE = '0ne000X5090';
const HUB = 'x509-hub.azure-devices.net';
const DAY = 86_400_000;

let fixture: TestEmulator;
let dps: DpsEmulator;
const events: EndpointEvent[] = [];

let root: SigningCa;
let intermediate: SigningCa;
let otherRoot: SigningCa;
let individual: IssuedCertificate;
let secondary: IssuedCertificate;

beforeAll(async () => {
  root = createCa('x509-test root');
  intermediate = createCa('x509-test line-1 intermediate', { issuer: root });
  otherRoot = createCa('x509-test unrelated root');
  individual = selfSignedDeviceCertificate('x509-individual-1');
  secondary = selfSignedDeviceCertificate('x509-individual-1');
  fixture = await startTestEmulator('dps-x509-', {
    idScope: ID_SCOPE,
    retryAfterSeconds: 1,
    assignmentDelayMs: 0,
    inMemory: true,
    onEvent: (event) => events.push(event),
    config: {
      iotHubs: [
        { connectionString: `HostName=${HUB};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(HUB).toString('base64')}` },
      ],
      individualEnrollments: [
        {
          registrationId: 'x509-individual-1',
          attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: individual.cert } } } },
        },
      ],
      enrollmentGroups: [
        {
          enrollmentGroupId: 'line-1',
          attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: intermediate.cert } } } },
        },
      ],
    },
  });
  dps = fixture.dps;
}, 60_000);

afterAll(async () => {
  await fixture?.close();
});

/** Files for --cert and --cert-key (and --ca), under the test's folder. */
function files(name: string, issued: IssuedCertificate): string[] {
  const cert = join(fixture.dir, `${name}.pem`);
  const key = join(fixture.dir, `${name}-key.pem`);
  writeFileSync(cert, issued.cert);
  writeFileSync(key, issued.key, { mode: 0o600 });
  return ['--cert', cert, '--cert-key', key];
}

async function register(registrationId: string, issued: IssuedCertificate, name = registrationId) {
  writeFileSync(join(fixture.dir, 'ca.pem'), dps.caPem);
  const run = await runCli([
    'register',
    '--id-scope',
    ID_SCOPE,
    '--registration-id',
    registrationId,
    ...files(name, issued),
    '--endpoint',
    `${dps.endpoint.host}:${dps.endpoint.port}`,
    '--ca',
    join(fixture.dir, 'ca.pem'),
    '--timeout',
    '20',
    '--json',
  ]);
  // No private key, in any form, on either stream.
  const keyBody = issued.key.split('\n').slice(1, 3).join('');
  expect(run.stdout + run.stderr).not.toContain(keyBody);
  expect(run.stdout + run.stderr).not.toContain('PRIVATE KEY');
  return run;
}

function lastRefusal(clientId: string): string | undefined {
  return events
    .filter((e) => e.type === 'refused' && e.clientId === clientId)
    .map((e) => (e as { reason: string }).reason)
    .pop();
}

describe('X.509 individual enrollments', () => {
  it('register --cert --cert-key provisions with the enrolled certificate; the hub identity is selfSigned with its thumbprint', async () => {
    const run = await register('x509-individual-1', individual);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ assignedHub: HUB, deviceId: 'x509-individual-1' });
    const device = dps.model.hubDevice(HUB, 'x509-individual-1');
    const enrolled = dps.model.individualEnrollment('x509-individual-1')!.attestation;
    expect(enrolled.type).toBe('x509');
    const thumbprint = enrolled.type === 'x509' ? enrolled.x509.clientCertificates?.primary.info?.sha256Thumbprint : undefined;
    expect(thumbprint).toMatch(/^[0-9A-F]{64}$/);
    expect(device?.authentication).toEqual({ type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprint } });
  });

  it('refuses another certificate with the same CN (not the enrolled thumbprint): exit 3', async () => {
    const run = await register('x509-individual-1', secondary, 'other-with-same-cn');
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/unauthorized/);
    expect(run.stderr).toMatch(/CN is the registration ID/);
    expect(lastRefusal('x509-individual-1')).toBe('cert-unknown');
  });

  it('refuses a certificate whose CN is not the registration ID', async () => {
    const run = await register('x509-individual-1', selfSignedDeviceCertificate('someone-else'), 'cn-mismatch');
    expect(run.code).toBe(3);
    expect(lastRefusal('x509-individual-1')).toBe('cert-cn-mismatch');
  });

  it('refuses an expired device certificate and one not valid yet', async () => {
    const expired = issueDeviceCertificate(intermediate, 'x509-expired-1', {
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    expect((await register('x509-expired-1', expired)).code).toBe(3);
    expect(lastRefusal('x509-expired-1')).toBe('cert-expired');
    const future = issueDeviceCertificate(intermediate, 'x509-future-1', { notBefore: new Date(Date.now() + DAY) });
    expect((await register('x509-future-1', future)).code).toBe(3);
    expect(lastRefusal('x509-future-1')).toBe('cert-not-yet-valid');
  });
});

describe('X.509 enrollment groups', () => {
  it('provisions a device whose certificate the group intermediate issued (chain sent), as a certificateAuthority identity', async () => {
    const device = issueDeviceCertificate(intermediate, 'line1-device-001');
    expect(device.cert.match(/BEGIN CERTIFICATE/g)).toHaveLength(2); // the leaf and the intermediate
    const run = await register('line1-device-001', device);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ assignedHub: HUB, deviceId: 'line1-device-001' });
    expect(dps.model.hubDevice(HUB, 'line1-device-001')?.authentication).toEqual({ type: 'certificateAuthority' });
    expect(dps.model.registration('line1-device-001')?.enrollment).toEqual({ kind: 'group', enrollmentGroupId: 'line-1' });
  });

  it('refuses a certificate issued by an unknown CA', async () => {
    const run = await register('line1-device-002', issueDeviceCertificate(otherRoot, 'line1-device-002'));
    expect(run.code).toBe(3);
    expect(lastRefusal('line1-device-002')).toBe('cert-untrusted-ca');
  });

  it('a disabled group: DPS answers disabled, exit 4', async () => {
    const group = dps.model.enrollmentGroup('line-1')!;
    dps.model.putEnrollmentGroup({ ...group, provisioningStatus: 'disabled' });
    try {
      const run = await register('line1-device-003', issueDeviceCertificate(intermediate, 'line1-device-003'));
      expect(run.code).toBe(4);
    } finally {
      dps.model.putEnrollmentGroup({ ...dps.model.enrollmentGroup('line-1')!, provisioningStatus: 'enabled' });
    }
  });

  it('a group referring to a CA certificate by name trusts it only once verified by proof of possession', async () => {
    const ca = createCa('x509-test referenced root');
    dps.model.certificates.put('line-2-root', ca.cert);
    dps.model.putEnrollmentGroup({
      enrollmentGroupId: 'line-2',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'line-2-root' } } },
    });
    const device = issueDeviceCertificate(ca, 'line2-device-001');
    expect((await register('line2-device-001', device)).code).toBe(3);
    expect(lastRefusal('line2-device-001')).toBe('cert-ca-not-verified');

    const { verificationCode } = dps.model.certificates.generateVerificationCode('line-2-root');
    // A proof signed by another key is refused; one signed by the CA's key verifies it.
    expect(() =>
      dps.model.certificates.verify(
        'line-2-root',
        issueDeviceCertificate(otherRoot, verificationCode!).cert, // a root issues the leaf alone
      ),
    ).toThrow(/not signed by the key/);
    const proof = issueDeviceCertificate(ca, verificationCode!).cert;
    expect(dps.model.certificates.verify('line-2-root', proof).isVerified).toBe(true);
    expect((await register('line2-device-001', device)).code).toBe(0);
  });
});

describe('X.509 devices with their hub', () => {
  it('goes online with the hub by the same certificate (no SAS token), for a group device and an individual one', async () => {
    for (const [registrationId, issued] of [
      ['line1-device-010', issueDeviceCertificate(intermediate, 'line1-device-010')],
      ['x509-individual-1', individual],
    ] as const) {
      const online = await goOnline(
        {
          idScope: ID_SCOPE,
          registrationId,
          x509: true,
          endpoint: dps.endpoint,
          hubEndpoint: dps.hubEndpoint,
          timeoutMs: 20_000,
          maxReprovisions: 0,
        },
        { connect: createTlsConnect({ ca: dps.caPem, clientCertificate: issued }), clock: systemClock },
      );
      try {
        expect(online.assignment.deviceId).toBe(registrationId);
        await online.session.sendTelemetry(JSON.stringify({ hello: 'x509' }));
        expect(dps.hubs.telemetry(HUB).some((m) => m.deviceId === registrationId)).toBe(true);
      } finally {
        online.session.close();
      }
    }
  });

  it('the hub refuses an X.509 identity presented with another certificate', async () => {
    // Same CN, not the enrolled thumbprint: DPS refuses it, and so does the hub for the selfSigned identity.
    await expect(
      goOnline(
        {
          idScope: ID_SCOPE,
          registrationId: 'x509-individual-1',
          x509: true,
          endpoint: dps.endpoint,
          hubEndpoint: dps.hubEndpoint,
          timeoutMs: 10_000,
          maxReprovisions: 0,
        },
        { connect: createTlsConnect({ ca: dps.caPem, clientCertificate: secondary }), clock: systemClock },
      ),
    ).rejects.toMatchObject({ kind: 'unauthorized' });
  });
});

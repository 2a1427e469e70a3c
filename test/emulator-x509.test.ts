// X.509 attestation end to end: the emulator's DPS and hub endpoints ask for a client certificate,
// check its CN, dates, thumbprint or chain to the enrollment's CA; `register --cert --cert-key`
// provisions through the Node host with it and `device` takes it online with its hub.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  type IssuedCertificate,
  issueDeviceCertificate,
  type SigningCa,
  selfSignedDeviceCertificate,
} from '../cli/shared/certificates.js';
import { signingCertificates } from '../emulator/auth.js';
import type { DpsEmulator, X509Attestation } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { goOnline } from '../src/device.js';
import { runCli } from './support/cli-runner.js';
import { startX509Emulator, type X509Emulator } from './support/x509-fixture.js';

const ID_SCOPE = '0ne000X5090';
const HUB = 'x509-hub.azure-devices.net';
const DAY = 86_400_000;

let fixture: X509Emulator;
let dps: DpsEmulator;
let root: SigningCa;
let intermediate: SigningCa;
let otherRoot: SigningCa;
let individual: IssuedCertificate;
let secondary: IssuedCertificate;

beforeAll(async () => {
  fixture = await startX509Emulator({ name: 'x509', idScope: ID_SCOPE, hub: HUB, individualId: 'x509-individual-1', groupId: 'line-1' });
  ({ dps, root, intermediate, otherRoot, individual } = fixture);
  secondary = selfSignedDeviceCertificate('x509-individual-1');
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
    expect(fixture.lastRefusal('x509-individual-1')).toBe('cert-unknown');
  });

  it('refuses a certificate whose CN is not the registration ID', async () => {
    const run = await register('x509-individual-1', selfSignedDeviceCertificate('someone-else'), 'cn-mismatch');
    expect(run.code).toBe(3);
    expect(fixture.lastRefusal('x509-individual-1')).toBe('cert-cn-mismatch');
  });

  it('refuses an expired device certificate and one not valid yet', async () => {
    const expired = issueDeviceCertificate(intermediate, 'x509-expired-1', {
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    expect((await register('x509-expired-1', expired)).code).toBe(3);
    expect(fixture.lastRefusal('x509-expired-1')).toBe('cert-expired');
    const future = issueDeviceCertificate(intermediate, 'x509-future-1', { notBefore: new Date(Date.now() + DAY) });
    expect((await register('x509-future-1', future)).code).toBe(3);
    expect(fixture.lastRefusal('x509-future-1')).toBe('cert-not-yet-valid');
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
    expect(fixture.lastRefusal('line1-device-002')).toBe('cert-untrusted-ca');
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
    expect(fixture.lastRefusal('line2-device-001')).toBe('cert-ca-not-verified');

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

describe("the CAs a connection's certificate is checked against", () => {
  it('are parsed once, not at every connection, and afresh once the certificate changes', () => {
    const group = (certificate: string) =>
      dps.model.putEnrollmentGroup({
        enrollmentGroupId: 'cache-check',
        attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate } } } },
      }).attestation as X509Attestation;
    try {
      const first = signingCertificates(dps.model, group(root.cert)).anchors;
      expect(signingCertificates(dps.model, group(root.cert)).anchors[0]).toBe(first[0]);
      const changed = signingCertificates(dps.model, group(otherRoot.cert)).anchors;
      expect(changed[0]!.fingerprint256).toBe(new X509Certificate(otherRoot.cert).fingerprint256);
    } finally {
      dps.model.deleteEnrollmentGroup('cache-check');
    }
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

describe('the dps commands for X.509 (the flags of az iot dps)', () => {
  const cli = (...args: string[]) => runCli([...args, '--service', dps.service.connectionString, '--ca', dps.caPath]);
  const pem = (name: string, text: string): string => {
    const path = join(fixture.dir, `${name}.pem`);
    writeFileSync(path, text);
    return path;
  };

  it('dps certificate: upload, generate a verification code, verify with a certificate the CA key signed; a group names it with --ca-name', async () => {
    const ca = createCa('x509-cli root');
    const created = await cli('dps', 'certificate', 'create', '--certificate-name', 'cli-root', '--path', pem('cli-root', ca.cert));
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^cli-root {2}not verified {2}CN=x509-cli root/);
    const group = await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-line', '--ca-name', 'cli-root');
    expect(group.code).toBe(0);
    expect(group.stdout).toContain('primary CA certificate: cli-root');
    expect(group.stdout).not.toContain('primaryKey');
    const device = issueDeviceCertificate(ca, 'cli-line-device-1');
    expect((await register('cli-line-device-1', device)).code).toBe(3); // not verified yet

    const code = await cli('dps', 'certificate', 'generate-verification-code', '--certificate-name', 'cli-root');
    expect(code.stdout).toMatch(/^[0-9A-F]{48}\n$/);
    const wrong = await cli(
      'dps',
      'certificate',
      'verify',
      '--name',
      'cli-root',
      '--path',
      pem('wrong-proof', issueDeviceCertificate(otherRoot, code.stdout.trim()).cert),
    );
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/not signed by the key of cli-root/);
    const proof = issueDeviceCertificate(ca, code.stdout.trim()).cert;
    const verified = await cli('dps', 'certificate', 'verify', '--name', 'cli-root', '--path', pem('proof', proof));
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/^cli-root {2}verified/);
    expect((await register('cli-line-device-1', device)).code).toBe(0);
  });

  it('dps enrollment create --attestation-type x509 --certificate-path; a group with the signing certificate by --certificate-path', async () => {
    const device = selfSignedDeviceCertificate('cli-individual-1');
    const created = await cli(
      'dps',
      'enrollment',
      'create',
      '--enrollment-id',
      'cli-individual-1',
      '--attestation-type',
      'x509',
      '--certificate-path',
      pem('cli-individual-1-cert', device.cert),
    );
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/primary device certificate: CN=cli-individual-1 \(SHA-256 [0-9A-F]{64}/);
    expect((await register('cli-individual-1', device)).code).toBe(0);

    const line3 = createCa('x509-cli line-3 intermediate', { issuer: root });
    const group = await cli(
      'dps',
      'enrollment-group',
      'create',
      '--enrollment-id',
      'cli-line-3',
      '--certificate-path',
      pem('line3', line3.cert),
    );
    expect(group.stdout).toContain('primary signing certificate: CN=x509-cli line-3 intermediate');
    expect((await register('cli-line3-device-1', issueDeviceCertificate(line3, 'cli-line3-device-1'))).code).toBe(0);
  });

  it('refuses what does not fit: a certificate without --attestation-type x509, --ca-name with a key, a CA name for an individual enrollment', async () => {
    const cert = pem('refusals', selfSignedDeviceCertificate('cli-individual-2').cert);
    const noType = await cli('dps', 'enrollment', 'create', '--enrollment-id', 'cli-individual-2', '--certificate-path', cert);
    expect(noType.code).toBe(2);
    expect(noType.stderr).toMatch(/--certificate-path needs --attestation-type x509/);
    const mixed = await cli(
      'dps',
      'enrollment-group',
      'create',
      '--enrollment-id',
      'cli-mixed',
      '--ca-name',
      'cli-root',
      '--primary-key',
      Buffer.alloc(32, 1).toString('base64'),
    );
    expect(mixed.code).toBe(2);
    const caName = await cli(
      'dps',
      'enrollment',
      'create',
      '--enrollment-id',
      'cli-individual-2',
      '--attestation-type',
      'x509',
      '--ca-name',
      'cli-root',
    );
    expect(caName.code).toBe(2);
    expect(caName.stderr).toMatch(/Unknown option '--ca-name'|ca-name/);
    const notCa = await cli('dps', 'enrollment-group', 'create', '--enrollment-id', 'cli-not-ca', '--certificate-path', cert);
    expect(notCa.code).toBe(2);
    expect(notCa.stderr).toMatch(/not a CA certificate/);
  });

  it('register refuses --cert without --cert-key, a key that belongs to another certificate, and --cert with --key (exit 2)', async () => {
    const device = selfSignedDeviceCertificate('cli-individual-3');
    const other = selfSignedDeviceCertificate('cli-individual-3');
    const base = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'cli-individual-3',
      '--endpoint',
      `${dps.endpoint.host}:${dps.endpoint.port}`,
    ];
    const [, cert] = files('cli-individual-3', device);
    const [, , , otherKey] = files('cli-individual-3-other', other);
    const noKey = await runCli([...base, '--cert', cert!]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/--cert needs --cert-key/);
    const mismatch = await runCli([...base, '--cert', cert!, '--cert-key', otherKey!]);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/does not belong to the device certificate/);
    expect(mismatch.stderr).not.toContain('PRIVATE KEY');
    const both = await runCli([
      ...base,
      '--cert',
      cert!,
      '--cert-key',
      otherKey!.replace('-other', ''),
      '--key',
      Buffer.alloc(32, 2).toString('base64'),
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/not more/);
  });
});

describe('factory --issue-certs', () => {
  it("issues each device an RSA 2048 certificate from the line's CA, writes cert and key (0600) and puts them in the partition; the device provisions with them", async () => {
    const out = join(fixture.dir, 'factory-out');
    const caCert = join(fixture.dir, 'line-ca.pem');
    const caKey = join(fixture.dir, 'line-ca-key.pem');
    writeFileSync(caCert, intermediate.cert);
    writeFileSync(caKey, intermediate.key, { mode: 0o600 });
    const run = await runCli([
      'factory',
      '--id-scope',
      ID_SCOPE,
      '--issue-certs',
      '--ca-cert',
      caCert,
      '--ca-key',
      caKey,
      '--count',
      '2',
      '--serial-start',
      '7',
      '--registration-id-template',
      'line1-{serial}',
      '--out',
      out,
    ]);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).not.toContain('PRIVATE KEY');
    expect(run.stdout + run.stderr).not.toContain(intermediate.key.split('\n')[1]);
    for (const id of ['line1-7', 'line1-8']) {
      const csv = readFileSync(join(out, `${id}.csv`), 'utf8');
      expect(csv).toContain(`cert,file,string,${join(out, `${id}-cert.pem`)}`);
      expect(csv).toContain(`certKey,file,string,${join(out, `${id}-key.pem`)}`);
      expect(csv).not.toContain('deviceKey');
      for (const file of [`${id}-cert.pem`, `${id}-key.pem`, `${id}.csv`]) expect(statSync(join(out, file)).mode & 0o777).toBe(0o600);
      const cert = new X509Certificate(readFileSync(join(out, `${id}-cert.pem`)));
      expect(cert.subject).toBe(`CN=${id}`);
      expect(cert.publicKey.asymmetricKeyDetails).toMatchObject({ modulusLength: 2048 });
      expect(cert.publicKey.asymmetricKeyType).toBe('rsa');
    }
    const manifest = readFileSync(join(out, 'manifest.csv'), 'utf8');
    expect(manifest.split('\n')[0]).toBe('registrationId,serial,mac,nvsCsv,certSha256');
    expect(manifest).not.toContain('PRIVATE KEY');
    const issued = { cert: readFileSync(join(out, 'line1-7-cert.pem'), 'utf8'), key: readFileSync(join(out, 'line1-7-key.pem'), 'utf8') };
    expect((await register('line1-7', issued, 'factory-line1-7')).code).toBe(0);
  });

  it("refuses --ca-cert without --issue-certs, --issue-certs with --group-key-file, and a key that is not the CA's (nothing written)", async () => {
    const out = join(fixture.dir, 'factory-refused');
    const caCert = join(fixture.dir, 'line-ca.pem');
    const otherKey = join(fixture.dir, 'other-ca-key.pem');
    writeFileSync(otherKey, otherRoot.key, { mode: 0o600 });
    const base = ['factory', '--id-scope', ID_SCOPE, '--count', '1', '--out', out];
    expect((await runCli([...base, '--group-key-file', otherKey, '--ca-cert', caCert])).stderr).toMatch(/--ca-cert is for --issue-certs/);
    expect((await runCli([...base, '--issue-certs', '--group-key-file', otherKey, '--ca-cert', caCert, '--ca-key', otherKey])).code).toBe(
      2,
    );
    const mismatch = await runCli([...base, '--issue-certs', '--ca-cert', caCert, '--ca-key', otherKey]);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/does not belong to the CA certificate/);
    expect(mismatch.stderr).not.toContain('PRIVATE KEY');
    expect(existsSync(out)).toBe(false);
  });
});

describe('fleet --ca-cert --ca-key', () => {
  it('provisions and connects devices with certificates issued on the fly by the group CA', async () => {
    const caCert = join(fixture.dir, 'fleet-ca.pem');
    const caKey = join(fixture.dir, 'fleet-ca-key.pem');
    writeFileSync(caCert, intermediate.cert);
    writeFileSync(caKey, intermediate.key, { mode: 0o600 });
    writeFileSync(join(fixture.dir, 'ca.pem'), dps.caPem);
    const run = await runCli([
      'fleet',
      '--id-scope',
      ID_SCOPE,
      '--ca-cert',
      caCert,
      '--ca-key',
      caKey,
      '--count',
      '4',
      '--concurrency',
      '2',
      '--prefix',
      'line1-fleet-',
      '--endpoint',
      `${dps.endpoint.host}:${dps.endpoint.port}`,
      '--ca',
      join(fixture.dir, 'ca.pem'),
      '--connect',
      '--hub-endpoint',
      `${dps.hubEndpoint.host}:${dps.hubEndpoint.port}`,
      '--msg-count',
      '1',
      '--json',
      '--quiet',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report).toMatchObject({ succeeded: 4, failed: 0, tlsSessionResumption: false, connect: { connected: 4 } });
    expect(run.stdout).not.toContain('PRIVATE KEY');
    expect(dps.model.hubDevice(HUB, 'line1-fleet-3')?.authentication).toEqual({ type: 'certificateAuthority' });
    const withKey = await runCli([
      'fleet',
      '--id-scope',
      ID_SCOPE,
      '--ca-cert',
      caCert,
      '--ca-key',
      caKey,
      '--group-key',
      'x',
      '--count',
      '1',
    ]);
    expect(withKey.code).toBe(2);
    expect((await runCli(['fleet', '--id-scope', ID_SCOPE, '--ca-cert', caCert, '--count', '1'])).stderr).toMatch(
      /--ca-cert and --ca-key together/,
    );
  });
});

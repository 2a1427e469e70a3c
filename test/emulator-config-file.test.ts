// The emulator's config file: the shipped example loads as is, and every kind of mistake is
// refused with the file, the JSON pointer of the bad field and a reason, never a key.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigFileError, loadConfigFile, parseConfigFile, syntaxErrorAt } from '../emulator/config-file.js';
import { DpsModel } from '../emulator/model.js';
import { symmetricKeys } from '../emulator/model-types.js';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'emulator.json');
const KEY = Buffer.from('config-file-test-key-0123456789abcdef').toString('base64');
const hub = (name: string, extra: Record<string, unknown> = {}) => ({
  connectionString: `HostName=${name}.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`,
  ...extra,
});
const group = (id: string, extra: Record<string, unknown> = {}) => ({
  enrollmentGroupId: id,
  attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
  ...extra,
});

const dir = mkdtempSync(join(tmpdir(), 'dps-config-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refusal(json: unknown): ConfigFileError {
  try {
    parseConfigFile(typeof json === 'string' ? json : JSON.stringify(json), 'site.json');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigFileError);
    return error as ConfigFileError;
  }
  throw new Error('the config was accepted');
}

describe('the example config (examples/emulator.json)', () => {
  it('loads, and seeds a model with three weighted hubs and one enrollment group', async () => {
    const { idScope, config } = await loadConfigFile(EXAMPLE);
    expect(idScope).toBe('0ne00DEMO01');
    const model = new DpsModel(config);
    expect(model.linkedHubs().map((h) => [h.hostName, h.allocationWeight, h.location])).toEqual([
      ['demo-hub-1.azure-devices.net', 1, 'westus'],
      ['demo-hub-2.azure-devices.net', 2, 'eastus'],
      ['demo-hub-3.azure-devices.net', 7, 'westeurope'],
    ]);
    expect(model.allocationPolicy).toBe('hashed');
    expect(model.enrollmentGroups().map((g) => g.enrollmentGroupId)).toEqual(['demo-group']);
    expect(model.latency.westus?.eastus).toBe(70);
  });

  it('accepts an enrollment pasted from the service API, read-only fields and all', () => {
    const { config } = parseConfigFile(
      JSON.stringify({
        iotHubs: [hub('a', { name: 'a.azure-devices.net' })],
        enrollmentGroups: [
          group('g', { etag: 'abc', createdDateTimeUtc: '2026-01-01T00:00:00Z', lastUpdatedDateTimeUtc: '2026-01-01T00:00:00Z' }),
        ],
      }),
      'x.json',
    );
    expect(symmetricKeys(new DpsModel(config).enrollmentGroup('g')?.attestation)?.primaryKey).toBe(KEY);
  });

  it('accepts an empty object (no hubs, no enrollments) and a byte order mark', () => {
    expect(parseConfigFile('\uFEFF{}', 'x.json')).toEqual({ config: {} });
  });
});

describe('refusals name the file and the JSON pointer of the bad field', () => {
  const cases: [string, unknown, string, RegExp][] = [
    ['not JSON', '{\n  "iotHubs": [,]\n}', '', /^not valid JSON \(line 2, column 15: unexpected ","\)$/],
    ['a missing comma', '{\n  "idScope": "a"\n  "iotHubs": []\n}', '', /^not valid JSON \(line 3, column 3: unexpected "\\""\)$/],
    ['a truncated file', '{"iotHubs": [', '', /^not valid JSON \(line 1, column 14: unexpected end of file\)$/],
    ['a trailing comma', '{"iotHubs": [],}', '', /line 1, column 16: unexpected "}"/],
    ['not an object', [], '', /must be a JSON object/],
    ['an unknown top-level field', { iotHub: [] }, '/iotHub', /unknown field/],
    ['a near miss in case', { IotHubs: [] }, '/IotHubs', /did you mean "iotHubs"/],
    ['a bad ID scope', { idScope: 'has space' }, '/idScope', /alphanumeric/],
    ['custom as the instance policy', { allocationPolicy: 'custom' }, '/allocationPolicy', /cannot be custom/],
    ['an unknown policy', { allocationPolicy: 'evenly' }, '/allocationPolicy', /one of hashed, geoLatency, static; got "evenly"/],
    ['iotHubs not a list', { iotHubs: {} }, '/iotHubs', /JSON array/],
    ['a hub without a connection string', { iotHubs: [{ location: 'westus' }] }, '/iotHubs/0', /connectionString is missing/],
    [
      'a connection string without a key',
      { iotHubs: [{ connectionString: 'HostName=a.azure-devices.net;SharedAccessKeyName=x' }] },
      '/iotHubs/0/connectionString',
      /lacks SharedAccessKey/,
    ],
    ['a weight of 0', { iotHubs: [hub('a'), hub('b', { allocationWeight: 0 })] }, '/iotHubs/1/allocationWeight', /1 to 1000.*got 0/],
    ['a weight of 1001', { iotHubs: [hub('a', { allocationWeight: 1001 })] }, '/iotHubs/0/allocationWeight', /got 1001/],
    ['a fractional weight', { iotHubs: [hub('a', { allocationWeight: 1.5 })] }, '/iotHubs/0/allocationWeight', /whole number/],
    [
      'apply as a string',
      { iotHubs: [hub('a', { applyAllocationPolicy: 'yes' })] },
      '/iotHubs/0/applyAllocationPolicy',
      /true, false or null/,
    ],
    ['a name that is not the host', { iotHubs: [hub('a', { name: 'b.azure-devices.net' })] }, '/iotHubs/0/name', /HostName/],
    ['a hub listed twice', { iotHubs: [hub('a'), hub('A')] }, '/iotHubs/1', /listed twice/],
    ['an unknown hub field', { iotHubs: [hub('a', { weight: 2 })] }, '/iotHubs/0/weight', /unknown field/],
    ['a negative latency', { latency: { westus: { 'east/us': -1 } } }, '/latency/westus/east~1us', /non-negative/],
    [
      'a group without an ID',
      { enrollmentGroups: [{ attestation: { type: 'symmetricKey' } }] },
      '/enrollmentGroups/0/enrollmentGroupId',
      /missing/,
    ],
    ['a bad group ID', { enrollmentGroups: [group('has space')] }, '/enrollmentGroups/0', /enrollmentGroupId/],
    ['a group listed twice', { enrollmentGroups: [group('g'), group('G')] }, '/enrollmentGroups/1/enrollmentGroupId', /listed twice/],
    [
      'tpm attestation',
      { enrollmentGroups: [group('g', { attestation: { type: 'tpm' } })] },
      '/enrollmentGroups/0/attestation/type',
      /symmetricKey and x509 attestation only/,
    ],
    [
      'x509 attestation without certificates',
      { enrollmentGroups: [group('g', { attestation: { type: 'x509' } })] },
      '/enrollmentGroups/0',
      /x509 attestation needs an x509 object/,
    ],
    [
      'x509 attestation with a certificate that is not one',
      {
        enrollmentGroups: [
          group('g', { attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: 'nope' } } } } }),
        ],
      },
      '/enrollmentGroups/0',
      /signingCertificates\.primary: not a certificate/,
    ],
    ['a CA certificate that is not one', { certificates: [{ name: 'ca', certificate: 'nope' }] }, '/certificates/0', /not a certificate/],
    [
      'a key that is not base64',
      { enrollmentGroups: [group('g', { attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'not base64!' } } })] },
      '/enrollmentGroups/0/attestation/symmetricKey/primaryKey',
      /base64/,
    ],
    [
      'a bad status',
      { enrollmentGroups: [group('g', { provisioningStatus: 'on' })] },
      '/enrollmentGroups/0/provisioningStatus',
      /enabled or disabled/,
    ],
    [
      'an enrollment naming an unlinked hub',
      { iotHubs: [hub('a')], enrollmentGroups: [group('g', { iotHubs: ['a.azure-devices.net', 'b.azure-devices.net'] })] },
      '/enrollmentGroups/0/iotHubs/1',
      /not one of the iotHubs linked in this file/,
    ],
    [
      'static without a hub',
      { iotHubs: [hub('a'), hub('b')], enrollmentGroups: [group('g', { allocationPolicy: 'static' })] },
      '/enrollmentGroups/0',
      /static allocation policy, so it must list exactly one IoT hub/,
    ],
    [
      'custom without a webhook',
      { enrollmentGroups: [group('g', { allocationPolicy: 'custom' })] },
      '/enrollmentGroups/0',
      /customAllocationDefinition/,
    ],
    [
      'a non-boolean reprovision flag',
      { enrollmentGroups: [group('g', { reprovisionPolicy: { updateHubAssignment: 'no' } })] },
      '/enrollmentGroups/0/reprovisionPolicy/updateHubAssignment',
      /true or false/,
    ],
    ['an individual enrollment without its ID', { individualEnrollments: [{}] }, '/individualEnrollments/0/registrationId', /missing/],
    [
      'a bad device ID',
      { individualEnrollments: [{ registrationId: 'dev-1', deviceId: 'no spaces allowed' }] },
      '/individualEnrollments/0',
      /deviceId/,
    ],
  ];
  it.each(cases)('%s', (_what, json, pointer, reason) => {
    const error = refusal(json);
    expect(error.pointer).toBe(pointer);
    expect(error.reason).toMatch(reason);
    expect(error.message).toBe(`site.json${pointer ? ` at ${pointer}` : ''}: ${error.reason}`);
    expect(error.message).not.toContain(KEY);
  });

  it('refuses what the service API refuses, for the same reason: one set of rules (validation.ts)', () => {
    const model = new DpsModel({ iotHubs: [hub('a')] });
    const serviceRefusal = (change: () => void): { pointer?: string; reason?: string; message: string } => {
      try {
        change();
      } catch (error) {
        return error as { pointer?: string; reason?: string; message: string };
      }
      throw new Error('not refused');
    };
    const pairs: [unknown, () => void][] = [
      [{ iotHubs: [hub('b', { allocationWeight: 0 })] }, () => model.linkHub(hub('b', { allocationWeight: 0 }) as never)],
      [{ iotHubs: [hub('b', { applyAllocationPolicy: 'yes' })] }, () => model.linkHub(hub('b', { applyAllocationPolicy: 'yes' }) as never)],
      [{ latency: { westus: { eastus: -1 } } }, () => model.setLatency({ westus: { eastus: -1 } })],
      [{ allocationPolicy: 'custom' }, () => model.setAllocationPolicy('custom')],
      [
        { enrollmentGroups: [group('g', { provisioningStatus: 'on' })] },
        () => model.putEnrollmentGroup(group('g', { provisioningStatus: 'on' }) as never),
      ],
    ];
    for (const [json, change] of pairs) {
      const file = refusal(json);
      const service = serviceRefusal(change);
      expect(service.reason, JSON.stringify(json)).toBe(file.reason);
      expect(file.pointer.endsWith(service.pointer!), `${file.pointer} ends with ${service.pointer}`).toBe(true);
      expect(service.message).toContain(file.reason);
    }
    // The service API's PUT of the whole list names the entry too.
    const listed = serviceRefusal(() => model.replaceLinkedHubs([hub('a'), hub('b', { allocationWeight: 1001 })] as never));
    expect(listed).toMatchObject({
      pointer: '/1/allocationWeight',
      message: expect.stringMatching(/^iotHubs\[1\]: .*1 to 1000.*got 1001/),
    });
  });

  it('never repeats a key, even one in a malformed document', () => {
    const secret = 'c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=';
    const broken = `{"iotHubs":[{"connectionString":"HostName=a.azure-devices.net;SharedAccessKeyName=x;SharedAccessKey=${secret}" "location":"westus"}]}`;
    expect(refusal(broken).message).not.toContain(secret);
    expect(
      refusal({ iotHubs: [{ connectionString: `HostName=a;SharedAccessKeyName=x;SharedAccessKey=${secret}` }] }).message,
    ).not.toContain(secret);
  });

  it('finds the place of a JSON syntax error exactly when JSON.parse refuses the text', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => syntaxErrorAt(JSON.stringify(value, null, 1)) === -1));
    const almostJson = fc.oneof(fc.json(), fc.string({ unit: fc.constantFrom(...'{}[]:,"\\ 0-1.e+truefalsnul\n') }));
    fc.assert(
      fc.property(almostJson, fc.nat(), (text, cut) => {
        const sample = text.slice(0, cut % (text.length + 1));
        let valid = true;
        try {
          JSON.parse(sample);
        } catch {
          valid = false;
        }
        return valid ? syntaxErrorAt(sample) === -1 : syntaxErrorAt(sample) >= 0;
      }),
    );
  });

  it('reports a file that cannot be read', async () => {
    const missing = join(dir, 'missing.json');
    await expect(loadConfigFile(missing)).rejects.toThrow(`${missing}: cannot read the config file: no such file`);
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ iotHubs: [hub('a', { allocationWeight: 0 })] }));
    await expect(loadConfigFile(file)).rejects.toMatchObject({ file, pointer: '/iotHubs/0/allocationWeight' });
  });

  it('the example file is the one documented (still valid JSON after edits)', () => {
    expect(() => JSON.parse(readFileSync(EXAMPLE, 'utf8'))).not.toThrow();
  });
});

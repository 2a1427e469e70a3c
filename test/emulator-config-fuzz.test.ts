// Tables keyed by user text (latency rows and columns, hub locations, enrollment IDs, twin tags)
// never reach Object.prototype. A property: arbitrary config files, their keys drawn mostly from
// __proto__, constructor, prototype and other Object.prototype names, load or are refused with a
// ConfigFileError, and neither loading, seeding a model nor allocating by geoLatency changes
// Object.prototype, Object or Function.prototype. Then the refusals themselves, in the config
// file (with the JSON pointer) and in the service API (400 in DPS's or ARM's error shape).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allocateHub } from '../emulator/allocation.js';
import { ConfigFileError, parseConfigFile } from '../emulator/config-file.js';
import { type DpsEmulator, startEmulator } from '../emulator/index.js';
import { DpsModel } from '../emulator/model.js';
import { serviceCall } from './support/service-https.js';

const KEY = Buffer.from('config-fuzz-test-key-0123456789abcdef').toString('base64');
const cs = (host: string) => `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`;
const HOSTILE = [
  '__proto__',
  'constructor',
  'prototype',
  '__PROTO__',
  'Constructor',
  'PROTOTYPE',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
];

/** What a polluted prototype would change: the own properties (and their values) of the built-ins a plain object reaches. */
function snapshot(): Map<string, unknown> {
  const state = new Map<string, unknown>();
  for (const [label, target] of [
    ['Object.prototype', Object.prototype],
    ['Object', Object],
    ['Function.prototype', Function.prototype],
  ] as const) {
    for (const name of Reflect.ownKeys(target)) {
      const descriptor = Object.getOwnPropertyDescriptor(target, name)!;
      state.set(`${label}.${String(name)}`, descriptor.value ?? descriptor.get);
    }
  }
  return state;
}

function expectUnchanged(before: Map<string, unknown>): void {
  const after = snapshot();
  expect([...after.keys()].filter((name) => !before.has(name))).toEqual([]);
  for (const [name, value] of before) expect(after.get(name), name).toBe(value);
  expect(Object.getPrototypeOf({})).toBe(Object.prototype);
}

// ---- generators: plain objects whose own keys may be __proto__ (as JSON.parse makes them) ----

const name = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.constantFrom('westus', 'eastus') },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);
/** Object.fromEntries defines own properties, so a '__proto__' entry is an own key, not the prototype. */
const table = <T>(value: fc.Arbitrary<T>) =>
  fc.array(fc.tuple(name, value), { maxLength: 4 }).map((entries) => Object.fromEntries(entries));
const json = fc.jsonValue({ maxDepth: 2 });
const milliseconds = fc.oneof(fc.nat(500), fc.constantFrom(-1, 'fast', null));
const latency = fc.oneof(
  { weight: 4, arbitrary: table(fc.oneof({ weight: 4, arbitrary: table(milliseconds) }, { weight: 1, arbitrary: json })) },
  { weight: 1, arbitrary: json },
);
const hubs = fc.uniqueArray(fc.constantFrom('fuzz-a.azure-devices.net', 'fuzz-b.azure-devices.net', 'fuzz-c.azure-devices.net'), {
  minLength: 1,
  maxLength: 3,
});
const withExtra = <T extends object>(value: fc.Arbitrary<T>) =>
  fc
    .tuple(value, fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: table(json) }))
    .map(([fields, extra]) => ({ ...extra, ...fields }));
const enrollmentId = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.constantFrom('line-1', 'line-2', 'dev-1') },
);
const twin = fc.record({ tags: table(json), properties: fc.record({ desired: table(json) }) }, { requiredKeys: [] });
const enrollmentFields = fc.record({ attestation: fc.constant({ type: 'symmetricKey' }), initialTwin: twin }, { requiredKeys: [] });

const config = fc
  .record({
    hubs,
    locations: fc.array(fc.option(name, { nil: undefined }), { minLength: 3, maxLength: 3 }),
    latency: fc.option(latency, { nil: undefined }),
    groups: fc.array(fc.tuple(enrollmentId, enrollmentFields), { maxLength: 3 }),
    individuals: fc.array(fc.tuple(enrollmentId, enrollmentFields), { maxLength: 3 }),
    top: fc.oneof({ weight: 4, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: table(json) }),
  })
  .chain(({ hubs: hosts, locations, latency: table, groups, individuals, top }) =>
    fc
      .tuple(
        fc.tuple(
          ...hosts.map((host, i) =>
            withExtra(fc.constant({ connectionString: cs(host), ...(locations[i] !== undefined && { location: locations[i] }) })),
          ),
        ),
        fc.tuple(...groups.map(([id, fields]) => withExtra(fc.constant({ enrollmentGroupId: id, ...fields })))),
        fc.tuple(...individuals.map(([id, fields]) => withExtra(fc.constant({ registrationId: id, ...fields })))),
      )
      .map(([iotHubs, enrollmentGroups, individualEnrollments]) => ({
        ...top,
        iotHubs,
        ...(table !== undefined && { latency: table }),
        enrollmentGroups,
        individualEnrollments,
      })),
  );

describe('config files keyed by hostile names', () => {
  it('load or are refused with a ConfigFileError, and never change Object.prototype', () => {
    const before = snapshot();
    let loaded = 0;
    fc.assert(
      fc.property(config, fc.constantFrom(...HOSTILE, 'westus', 'eastus', ''), (doc, region) => {
        const text = JSON.stringify(doc);
        try {
          const { config: seed } = parseConfigFile(text, 'fuzz.json');
          // What startEmulator does with a loaded file, then what a geoLatency registration does.
          const model = new DpsModel(seed);
          for (const row of Object.values(model.latency)) expect(Object.getPrototypeOf(row)).toBeNull();
          allocateHub({
            registrationId: 'dev-1',
            policy: 'geoLatency',
            linkedHubs: model.linkedHubs(),
            deviceRegion: region,
            latency: model.latency,
          });
          loaded++;
        } catch (error) {
          if (!(error instanceof ConfigFileError)) throw error;
          expect(error.reason.length).toBeGreaterThan(0);
        }
        expectUnchanged(before);
      }),
      { numRuns: 300 },
    );
    expect(loaded).toBeGreaterThan(0); // the generator also makes valid files, so the model's side is exercised
  });
});

describe('__proto__, constructor and prototype are refused as names', () => {
  const hub = (extra: Record<string, unknown> = {}) => ({ connectionString: cs('fuzz-a.azure-devices.net'), ...extra });
  const cases: [string, string, string][] = [
    ['a latency row', '{"latency": {"__proto__": {"westus": 5}}}', '/latency/__proto__'],
    ['a latency column', '{"latency": {"westus": {"constructor": 5}}}', '/latency/westus/constructor'],
    ['a latency row in capitals', '{"latency": {"PROTOTYPE": {"westus": 5}}}', '/latency/PROTOTYPE'],
    ['a hub location', JSON.stringify({ iotHubs: [hub({ location: 'Constructor' })] }), '/iotHubs/0/location'],
    [
      'an enrollment group ID',
      JSON.stringify({ enrollmentGroups: [{ enrollmentGroupId: 'prototype' }] }),
      '/enrollmentGroups/0/enrollmentGroupId',
    ],
    [
      'a registration ID',
      JSON.stringify({ individualEnrollments: [{ registrationId: 'constructor' }] }),
      '/individualEnrollments/0/registrationId',
    ],
  ];
  it.each(cases)('in the config file: %s', (_what, text, pointer) => {
    const before = snapshot();
    let refused: unknown;
    try {
      parseConfigFile(text, 'site.json');
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ConfigFileError);
    expect(refused).toMatchObject({ pointer, reason: expect.stringContaining('reserved name') });
    expectUnchanged(before);
  });

  it('in the model, whoever calls it', () => {
    const before = snapshot();
    const model = new DpsModel();
    expect(() => model.setLatency(JSON.parse('{"westus": {"__proto__": 1}}'))).toThrow(/reserved name/);
    expect(() => model.setLatency({ constructor: { westus: 1 } } as never)).toThrow(/reserved name/);
    expect(() => model.linkHub({ connectionString: cs('fuzz-a.azure-devices.net'), location: '__proto__' })).toThrow(/reserved name/);
    expect(() => model.putEnrollmentGroup({ enrollmentGroupId: 'Prototype' } as never)).toThrow(/reserved name/);
    model.setLatency({ westus: { eastus: 70 } });
    expect(model.latency.westus?.eastus).toBe(70);
    expect(model.latency.constructor).toBeUndefined(); // a null-prototype copy: no inherited names
    expectUnchanged(before);
  });
});

describe('the service API refuses them with a 400', () => {
  let dps: DpsEmulator;
  let stateDir: string;
  const A = 'fuzz-svc-a.azure-devices.net';
  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'dps-config-fuzz-'));
    dps = await startEmulator({
      idScope: '0ne000PROTO',
      stateDir,
      retryAfterSeconds: 0,
      config: { iotHubs: [{ connectionString: cs(A), location: 'westus' }] },
    });
  });
  afterAll(async () => {
    await dps?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  const api = '?api-version=2021-10-01';

  it('enrollment group and enrollment IDs, in DPS error shape', async () => {
    const before = snapshot();
    for (const path of ['/enrollmentGroups/constructor', '/enrollmentGroups/Prototype', '/enrollments/constructor']) {
      const reply = await serviceCall(dps, 'PUT', `${path}${api}`, { body: { attestation: { type: 'symmetricKey' } } });
      expect(reply.status, path).toBe(400);
      expect(reply.json).toMatchObject({
        errorCode: 400002,
        trackingId: expect.any(String),
        message: expect.stringContaining('reserved name'),
      });
    }
    const bulk = await serviceCall(dps, 'POST', `/enrollments${api}`, {
      body: { mode: 'create', enrollments: [{ registrationId: 'prototype', attestation: { type: 'symmetricKey' } }] },
    });
    expect(bulk.json).toMatchObject({ isSuccessful: false, errors: [{ registrationId: 'prototype', errorCode: 400002 }] });
    expect(dps.model.enrollmentGroups()).toEqual([]);
    expect(dps.model.individualEnrollments()).toEqual([]);
    expectUnchanged(before);
  });

  it('a linked hub location, in ARM error shape; twin tags with such names stay plain data', async () => {
    const before = snapshot();
    const resource = (await serviceCall(dps, 'GET', '/resource')).json;
    resource.properties.iotHubs[0].location = '__proto__';
    const put = await serviceCall(dps, 'PUT', '/resource', { body: resource });
    expect(put.status).toBe(400);
    expect(put.json).toMatchObject({ error: { code: 'BadRequest', errorCode: 400002, message: expect.stringContaining('reserved name') } });
    expect(dps.model.linkedHub(A)?.location).toBe('westus');

    // Tag names are the user's data (DPS stores them as given): a __proto__ tag is an own key, not a prototype.
    const body = '{"attestation": {"type": "symmetricKey"}, "initialTwin": {"tags": {"__proto__": {"polluted": 1}, "line": "one"}}}';
    const created = await serviceCall(dps, 'PUT', `/enrollmentGroups/tagged${api}`, { body });
    expect(created.status).toBe(200);
    const tags = dps.model.enrollmentGroup('tagged')!.initialTwin!.tags!;
    expect(Object.hasOwn(tags, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(tags)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expectUnchanged(before);
  });
});

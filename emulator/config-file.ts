// The emulator's config file: infrastructure as code for a local DPS. The JSON is shaped like the
// properties of the provisioningServices ARM resource (iotHubs, allocationPolicy) plus the
// enrollments in the service API's JSON shape, an optional latency table and the ID scope:
//
//   { "idScope": "0ne00DEMO01", "allocationPolicy": "hashed",
//     "iotHubs": [{ "connectionString": "HostName=...;SharedAccessKeyName=...;SharedAccessKey=...",
//                   "location": "westus", "allocationWeight": 2, "applyAllocationPolicy": true }],
//     "enrollmentGroups": [{ "enrollmentGroupId": "line-1", "attestation": { "type": "symmetricKey",
//                            "symmetricKey": { "primaryKey": "...", "secondaryKey": "..." } } }],
//     "individualEnrollments": [], "latency": { "westus": { "eastus": 70 } } }
//
// Every refusal is a ConfigFileError naming the file and the JSON pointer (RFC 6901) of the bad
// field. Messages never repeat a key or a connection string.
import { readFile } from 'node:fs/promises';
import { DpsError, InvalidField } from './dps-errors.js';
import { DpsModel } from './model.js';
import type { ModelConfig } from './model-types.js';
import { escapePointer, isReservedName, lowerFirst, parseConnectionString, reserved } from './validation.js';

export interface EmulatorConfigFile {
  /** The instance's ID scope, when the file names one. */
  idScope?: string;
  /** The model's seed, validated: startEmulator({ config }) accepts it as is. */
  config: ModelConfig;
}

export class ConfigFileError extends Error {
  override readonly name = 'ConfigFileError';
  /** The file as the user named it. */
  readonly file: string;
  /** JSON pointer of the offending value ('' is the whole document). */
  readonly pointer: string;
  /** What is wrong, without the file and pointer. */
  readonly reason: string;
  constructor(file: string, pointer: string, reason: string) {
    super(`${file}${pointer ? ` at ${pointer}` : ''}: ${reason}`);
    this.file = file;
    this.pointer = pointer;
    this.reason = reason;
  }
}

const TOP_FIELDS = [
  '$schema',
  'idScope',
  'allocationPolicy',
  'iotHubs',
  'enrollmentGroups',
  'individualEnrollments',
  'latency',
  'certificates',
];
const CERTIFICATE_FIELDS = ['name', 'certificate', 'isVerified'];
const HUB_FIELDS = ['connectionString', 'location', 'allocationWeight', 'applyAllocationPolicy', 'name'];
const ENROLLMENT_FIELDS = [
  'attestation',
  'provisioningStatus',
  'reprovisionPolicy',
  'allocationPolicy',
  'iotHubs',
  'initialTwin',
  'capabilities',
  'customAllocationDefinition',
  // read-only fields of the service API's shape, accepted so an exported enrollment pastes in
  'etag',
  'createdDateTimeUtc',
  'lastUpdatedDateTimeUtc',
];
const GROUP_FIELDS = ['enrollmentGroupId', ...ENROLLMENT_FIELDS];
const INDIVIDUAL_FIELDS = ['registrationId', 'deviceId', ...ENROLLMENT_FIELDS];

/** Read and validate a config file. */
export async function loadConfigFile(path: string): Promise<EmulatorConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : (code ?? 'unreadable');
    throw new ConfigFileError(path, '', `cannot read the config file: ${why}`);
  }
  return parseConfigFile(text, path);
}

/** Validate a config file's text; `file` names it in errors. */
export function parseConfigFile(text: string, file: string): EmulatorConfigFile {
  let json: unknown;
  try {
    json = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch {
    // V8's message may quote the text around the error, which can hold a key: find the place ourselves.
    const at = syntaxErrorAt(text.replace(/^\uFEFF/, ''));
    const what =
      at < 0 ? '' : at >= text.length ? ': unexpected end of file' : `: unexpected ${JSON.stringify(text.replace(/^\uFEFF/, '')[at])}`;
    throw new ConfigFileError(file, '', `not valid JSON${at < 0 ? '' : ` (${lineColumn(text.replace(/^\uFEFF/, ''), at)}${what})`}`);
  }
  return checkConfig(json, file);
}

/** Validate an already parsed config document. */
export function checkConfig(json: unknown, file: string): EmulatorConfigFile {
  const fail = (pointer: string, reason: string): never => {
    throw new ConfigFileError(file, pointer, reason);
  };
  const root = object(json, '', 'the config must be a JSON object', fail);
  onlyFields(root, '', TOP_FIELDS, fail);

  const out: EmulatorConfigFile = { config: {} };
  if (root.idScope !== undefined) {
    if (typeof root.idScope !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(root.idScope)) {
      fail('/idScope', 'the ID scope must be a non-empty alphanumeric string, e.g. 0ne00DEMO01');
    }
    out.idScope = root.idScope as string;
  }

  // Build a model step by step: the model applies the rules (validation.ts, as for the service
  // API), and each refusal is reported at the item that caused it, at the field when the rule
  // names one (InvalidField). The structure of the file (its fields, lists, duplicates) is
  // checked here.
  const model = new DpsModel();
  const apply = (pointer: string, change: () => void): void => {
    try {
      change();
    } catch (error) {
      if (error instanceof InvalidField) fail(`${pointer}${error.pointer}`, error.reason);
      if (error instanceof DpsError) fail(pointer, lowerFirst(error.message));
      throw error;
    }
  };

  if (root.allocationPolicy !== undefined) {
    const policy = root.allocationPolicy;
    apply('/allocationPolicy', () => model.setAllocationPolicy(policy as 'hashed'));
    out.config.allocationPolicy = policy as 'hashed';
  }

  if (root.iotHubs !== undefined) {
    const hubs = array(root.iotHubs, '/iotHubs', 'a list of linked hubs', fail);
    out.config.iotHubs = hubs.map((hub, i) => {
      const at = `/iotHubs/${i}`;
      const h = object(hub, at, 'a linked hub must be an object with a connectionString', fail);
      onlyFields(h, at, HUB_FIELDS, fail);
      if (h.connectionString === undefined) fail(at, 'the connectionString is missing');
      let hostName = '';
      apply(`${at}/connectionString`, () => (hostName = parseConnectionString(h.connectionString).hostName));
      if (h.name !== undefined && (typeof h.name !== 'string' || h.name.toLowerCase() !== hostName)) {
        fail(`${at}/name`, `the name must be the connection string's HostName (${hostName}), or left out`);
      }
      if (model.linkedHub(hostName)) fail(at, `the IoT hub ${hostName} is listed twice`);
      const { name: _readOnly, ...config } = h;
      apply(at, () => model.linkHub(config as never));
      return config as never;
    });
  }

  if (root.latency !== undefined) {
    apply('/latency', () => model.setLatency(root.latency as never));
    out.config.latency = root.latency as never;
  }

  if (root.certificates !== undefined) {
    const certificates = array(root.certificates, '/certificates', 'a list of CA certificates ({name, certificate, isVerified})', fail);
    certificates.forEach((item, i) => {
      const at = `/certificates/${i}`;
      const c = object(item, at, 'a CA certificate must be {"name": ..., "certificate": "<PEM>", "isVerified": true|false}', fail);
      onlyFields(c, at, CERTIFICATE_FIELDS, fail);
      if (model.certificates.get(String(c.name))) fail(`${at}/name`, `${JSON.stringify(c.name)} is listed twice`);
      apply(at, () => model.certificates.put(c.name, c.certificate, c.isVerified));
    });
    out.config.certificates = certificates as never;
  }

  const enrollments = (field: 'enrollmentGroups' | 'individualEnrollments'): Record<string, unknown>[] | undefined => {
    if (root[field] === undefined) return undefined;
    const group = field === 'enrollmentGroups';
    const idField = group ? 'enrollmentGroupId' : 'registrationId';
    const items = array(root[field], `/${field}`, group ? 'a list of enrollment groups' : 'a list of individual enrollments', fail);
    const seen = new Set<string>();
    return items.map((item, i) => {
      const at = `/${field}/${i}`;
      const e = object(item, at, `an enrollment must be an object with a${group ? 'n enrollmentGroupId' : ' registrationId'}`, fail);
      onlyFields(e, at, group ? GROUP_FIELDS : INDIVIDUAL_FIELDS, fail);
      const id = e[idField];
      if (typeof id !== 'string' || id === '') fail(`${at}/${idField}`, `the ${idField} is missing`);
      if (isReservedName(id as string)) fail(`${at}/${idField}`, reserved(`an ${idField}`));
      if (seen.has((id as string).toLowerCase()))
        fail(`${at}/${idField}`, `${JSON.stringify(id)} is listed twice (IDs are case-insensitive)`);
      seen.add((id as string).toLowerCase());
      const { etag: _e, createdDateTimeUtc: _c, lastUpdatedDateTimeUtc: _u, ...input } = e;
      apply(at, () => (group ? model.putEnrollmentGroup(input as never) : model.putIndividualEnrollment(input as never)));
      return input;
    });
  };
  const groups = enrollments('enrollmentGroups');
  if (groups) out.config.enrollmentGroups = groups as never;
  const individuals = enrollments('individualEnrollments');
  if (individuals) out.config.individualEnrollments = individuals as never;
  return out;
}

function object(value: unknown, pointer: string, what: string, fail: (pointer: string, reason: string) => never): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(pointer, what);
  return value as Record<string, unknown>;
}

function array(value: unknown, pointer: string, what: string, fail: (pointer: string, reason: string) => never): unknown[] {
  if (!Array.isArray(value)) fail(pointer, `must be ${what} (a JSON array)`);
  return value as unknown[];
}

function onlyFields(
  value: Record<string, unknown>,
  pointer: string,
  allowed: readonly string[],
  fail: (pointer: string, reason: string) => never,
): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const near = allowed.find((a) => a.toLowerCase() === key.toLowerCase());
    fail(
      `${pointer}/${escapePointer(key)}`,
      near
        ? `unknown field: did you mean "${near}"?`
        : `unknown field; expected one of ${allowed.filter((a) => !a.startsWith('$')).join(', ')}`,
    );
  }
}

/** Offset of the first JSON syntax error (RFC 8259), or -1 when none is found. */
export function syntaxErrorAt(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw new JsonSyntaxError(i);
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = () => {
    i++; // the opening quote
    while (i < text.length) {
      const c = text[i]!;
      if (c === '"') return void i++;
      if (c < ' ') fail();
      if (c !== '\\') {
        i++;
        continue;
      }
      i++;
      if (text[i] === 'u') {
        if (!/^[0-9A-Fa-f]{4}$/.test(text.slice(i + 1, i + 5))) fail();
        i += 5;
      } else if (text[i] !== undefined && '"\\/bfnrt'.includes(text[i]!)) i++;
      else fail();
    }
    fail();
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === '{') {
          space();
          if (text[i] !== '"') fail();
          string();
          space();
          if (text[i] !== ':') fail();
          i++;
        }
        value();
        space();
        if (text[i] === ',') i++;
        else if (text[i] === close) return void i++;
        else fail();
      }
    }
    if (c === '"') return string();
    const number = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    number.lastIndex = i;
    if (number.test(text)) return void (i = number.lastIndex);
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, i)) return void (i += word.length);
    fail();
  };
  try {
    value();
    space();
    return i < text.length ? i : -1;
  } catch (error) {
    if (error instanceof JsonSyntaxError) return error.offset;
    return -1; // nesting too deep for the stack: no position
  }
}

class JsonSyntaxError {
  constructor(readonly offset: number) {}
}

function lineColumn(text: string, position: number): string {
  const before = text.slice(0, position).split('\n');
  return `line ${before.length}, column ${before[before.length - 1]!.length + 1}`;
}

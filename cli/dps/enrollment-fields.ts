// What `dps enrollment` and `dps enrollment-group` share: the flags that set an enrollment's
// fields (az's names), how create builds an enrollment from them and update changes the one it
// read, the queries that page through a collection, and how an enrollment is printed.
import { ProvisioningError } from '../../src/errors.js';
import type { DpsServiceClient } from '../service/client.js';
import { type Flags, type Io, optionalSecretFlag, printJson, type Values } from '../service/flags.js';
import { jsonFlag, readCertificateFile } from '../shared/args.js';

interface ReprovisionPolicy {
  updateHubAssignment: boolean;
  migrateDeviceData: boolean;
}

/** An enrollment group or an individual enrollment, in the service API's shape. */
export interface Enrollment {
  enrollmentGroupId?: string;
  registrationId?: string;
  deviceId?: string;
  attestation?: { type: string; symmetricKey?: { primaryKey?: string; secondaryKey?: string }; x509?: X509Fields };
  provisioningStatus?: string;
  allocationPolicy?: string;
  iotHubs?: string[];
  initialTwin?: { tags?: unknown; properties?: { desired?: unknown } };
  reprovisionPolicy?: ReprovisionPolicy;
  customAllocationDefinition?: { webhookUrl?: string; apiVersion?: string };
  etag?: string;
  [field: string]: unknown;
}

interface CertificateWithInfo {
  certificate?: string;
  info?: { subjectName?: string; sha256Thumbprint?: string; notAfterUtc?: string };
}

/** The service API's x509 attestation (azure-iot-provisioning-service X509Attestation). */
interface X509Fields {
  clientCertificates?: { primary?: CertificateWithInfo; secondary?: CertificateWithInfo };
  signingCertificates?: { primary?: CertificateWithInfo; secondary?: CertificateWithInfo };
  caReferences?: { primary?: string; secondary?: string };
}

/** az's X.509 flags of create: certificate files (PEM), or CA certificate names (groups). */
export const X509_FLAGS = {
  'certificate-path': { type: 'string' },
  'secondary-certificate-path': { type: 'string' },
} as const satisfies Flags;
export const CA_NAME_FLAGS = {
  'ca-name': { type: 'string' },
  'secondary-ca-name': { type: 'string' },
} as const satisfies Flags;

/**
 * X.509 attestation from az's flags, or undefined when none is given: an individual enrollment's
 * device certificates (--certificate-path, --secondary-certificate-path), a group's signing
 * certificates (the same flags: a root or intermediate CA) or CA certificate names (--ca-name,
 * --secondary-ca-name, certificates uploaded and verified with 'dps certificate'). Key flags with
 * them are refused.
 */
export function x509FromFlags(values: Values, kind: 'individual' | 'group'): Enrollment['attestation'] | undefined {
  const paths = [values['certificate-path'], values['secondary-certificate-path']];
  const names = [values['ca-name'], values['secondary-ca-name']];
  const given = [...paths, ...names].some((v) => v !== undefined);
  if (!given) return undefined;
  const keys = ['primary-key', 'primary-key-file', 'secondary-key', 'secondary-key-file'].filter((f) => values[f] !== undefined);
  if (keys.length > 0) {
    throw new ProvisioningError('invalid-input', `--${keys[0]} is for symmetric key attestation; X.509 attestation takes certificates`);
  }
  const byPath = paths.some((v) => v !== undefined);
  const byName = names.some((v) => v !== undefined);
  if (byPath && byName) throw new ProvisioningError('invalid-input', 'Give --certificate-path or --ca-name, not both');
  if (byName) {
    if (typeof names[0] !== 'string' || names[0] === '')
      throw new ProvisioningError('invalid-input', '--secondary-ca-name needs --ca-name');
    return {
      type: 'x509',
      x509: { caReferences: { primary: names[0], ...(typeof names[1] === 'string' && names[1] !== '' && { secondary: names[1] }) } },
    };
  }
  if (typeof paths[0] !== 'string' || paths[0] === '') {
    throw new ProvisioningError('invalid-input', '--secondary-certificate-path needs --certificate-path');
  }
  const read = (path: string, flag: string) => ({ certificate: readCertificateFile(path, flag) });
  const certificates = {
    primary: read(paths[0], '--certificate-path'),
    ...(typeof paths[1] === 'string' && { secondary: read(paths[1], '--secondary-certificate-path') }),
  };
  return {
    type: 'x509',
    x509: kind === 'individual' ? { clientCertificates: certificates } : { signingCertificates: certificates },
  };
}

/** The flags of create and update that set a field (the ID flags are the command's own). */
export const FIELD_FLAGS = {
  'primary-key': { type: 'string' },
  'primary-key-file': { type: 'string' },
  'secondary-key': { type: 'string' },
  'secondary-key-file': { type: 'string' },
  'allocation-policy': { type: 'string' },
  'iot-hubs': { type: 'string' },
  'provisioning-status': { type: 'string' },
  'initial-twin-tags': { type: 'string' },
  'initial-twin-properties': { type: 'string' },
  'reprovision-policy': { type: 'string' },
  'webhook-url': { type: 'string' },
  'api-version': { type: 'string' },
} as const satisfies Flags;

const FIELD_NAMES = Object.keys(FIELD_FLAGS).filter((flag) => !flag.endsWith('-file'));

const REPROVISION: Record<string, ReprovisionPolicy> = {
  reprovisionandmigratedata: { updateHubAssignment: true, migrateDeviceData: true },
  reprovisionandresetdata: { updateHubAssignment: true, migrateDeviceData: false },
  never: { updateHubAssignment: false, migrateDeviceData: true },
};

const DEFAULT_API_VERSION = '2021-10-01';

/** A new enrollment from the flags: keys not given are generated by DPS. */
export function enrollmentFromFlags(base: Enrollment, values: Values): Enrollment {
  const primaryKey = optionalSecretFlag(values, 'primary-key');
  const secondaryKey = optionalSecretFlag(values, 'secondary-key');
  const enrollment: Enrollment = {
    ...base,
    attestation: { type: 'symmetricKey', symmetricKey: { ...(primaryKey && { primaryKey }), ...(secondaryKey && { secondaryKey }) } },
  };
  applyFields(enrollment, values);
  return enrollment;
}

/**
 * The enrollment as read, changed by the flags given (as az's update does): a key given replaces
 * that key only, initial twin tags or properties replace that part only, the rest is kept. At
 * least one change is required: an update that changes nothing is refused rather than done.
 */
export function updatedEnrollment(current: Enrollment, values: Values, extra: readonly string[] = []): Enrollment {
  requireChange(values, extra);
  const enrollment: Enrollment = structuredClone(current);
  const primaryKey = optionalSecretFlag(values, 'primary-key');
  const secondaryKey = optionalSecretFlag(values, 'secondary-key');
  if (primaryKey || secondaryKey) {
    const keys = enrollment.attestation?.symmetricKey ?? {};
    enrollment.attestation = {
      type: 'symmetricKey',
      symmetricKey: { ...keys, ...(primaryKey && { primaryKey }), ...(secondaryKey && { secondaryKey }) },
    };
  }
  applyFields(enrollment, values);
  return enrollment;
}

/** Refuses an update without a flag that changes a field (`extra`: the command's own, e.g. device-id). */
export function requireChange(values: Values, extra: readonly string[] = []): void {
  const names = [...FIELD_NAMES, ...extra];
  if (!names.some((flag) => values[flag] !== undefined || values[`${flag}-file`] !== undefined)) {
    throw new ProvisioningError('invalid-input', `Nothing to update: give at least one of ${names.map((f) => `--${f}`).join(', ')}`);
  }
}

/** Everything but the keys, into `enrollment` (twin parts not given are kept). */
function applyFields(enrollment: Enrollment, values: Values): void {
  const status = values['provisioning-status'];
  if (typeof status === 'string') {
    if (status !== 'enabled' && status !== 'disabled')
      throw new ProvisioningError('invalid-input', '--provisioning-status must be enabled or disabled');
    enrollment.provisioningStatus = status;
  }
  if (typeof values['allocation-policy'] === 'string') enrollment.allocationPolicy = values['allocation-policy'];
  if (typeof values['iot-hubs'] === 'string') enrollment.iotHubs = values['iot-hubs'].split(/[,\s]+/).filter(Boolean);
  const tags = jsonFlag(values['initial-twin-tags'] as string | undefined, '--initial-twin-tags');
  const desired = jsonFlag(values['initial-twin-properties'] as string | undefined, '--initial-twin-properties');
  if (tags !== undefined || desired !== undefined) {
    const twin = enrollment.initialTwin ?? {};
    enrollment.initialTwin = {
      ...((tags ?? twin.tags) !== undefined && { tags: tags ?? twin.tags }),
      ...((desired ?? twin.properties?.desired) !== undefined && { properties: { desired: desired ?? twin.properties?.desired } }),
    };
  }
  const reprovision = values['reprovision-policy'];
  if (typeof reprovision === 'string') {
    const policy = Object.hasOwn(REPROVISION, reprovision.toLowerCase()) ? REPROVISION[reprovision.toLowerCase()] : undefined;
    if (!policy)
      throw new ProvisioningError(
        'invalid-input',
        '--reprovision-policy must be reprovisionandmigratedata, reprovisionandresetdata or never',
      );
    enrollment.reprovisionPolicy = { ...policy };
  }
  const webhookUrl = values['webhook-url'];
  const apiVersion = values['api-version'];
  if (typeof webhookUrl === 'string') {
    enrollment.customAllocationDefinition = {
      webhookUrl,
      apiVersion: typeof apiVersion === 'string' ? apiVersion : (enrollment.customAllocationDefinition?.apiVersion ?? DEFAULT_API_VERSION),
    };
  } else if (typeof apiVersion === 'string') {
    if (!enrollment.customAllocationDefinition?.webhookUrl)
      throw new ProvisioningError('invalid-input', '--api-version goes with --webhook-url (the custom allocation webhook)');
    enrollment.customAllocationDefinition = { ...enrollment.customAllocationDefinition, apiVersion };
  }
}

/** --top: a whole number of at least 1; absent, everything. */
export function top(values: Values): number {
  const text = values.top;
  if (text === undefined) return Infinity;
  if (typeof text !== 'string' || !/^\d{1,6}$/.test(text) || Number(text) < 1)
    throw new ProvisioningError('invalid-input', '--top must be a whole number of at least 1');
  return Number(text);
}

/** Every item of a service API query (POST <path> {"query": "*"}), page by page, up to `limit`. */
export async function queryAll<T>(client: DpsServiceClient, path: string, limit = Infinity): Promise<T[]> {
  const items: T[] = [];
  let continuation: string | undefined;
  do {
    const reply = await client.call('POST', path, {
      body: { query: '*' },
      headers: { 'x-ms-max-item-count': '100', ...(continuation ? { 'x-ms-continuation': continuation } : {}) },
    });
    if (!Array.isArray(reply.body)) throw new ProvisioningError('protocol', `the answer to the query ${path} is not a list`);
    items.push(...(reply.body as T[]));
    const next = reply.headers['x-ms-continuation'];
    continuation = typeof next === 'string' && next !== '' ? next : undefined;
  } while (continuation && items.length < limit);
  return items.slice(0, limit === Infinity ? undefined : limit);
}

/** The If-Match of a delete: --etag as given. */
export function etagHeader(values: Values): { headers?: Record<string, string> } {
  return typeof values.etag === 'string' && values.etag !== '' ? { headers: { 'if-match': values.etag } } : {};
}

export function withoutKeys(enrollment: Enrollment): Enrollment {
  return enrollment.attestation ? { ...enrollment, attestation: { type: enrollment.attestation.type } } : enrollment;
}

/** az's name for a reprovision policy. */
function reprovisionName(policy: ReprovisionPolicy | undefined): string {
  if (!policy) return 'reprovisionandmigratedata';
  if (!policy.updateHubAssignment) return 'never';
  return policy.migrateDeviceData ? 'reprovisionandmigratedata' : 'reprovisionandresetdata';
}

/** One line: ID, status, the individual enrollment's device ID, policy and hubs. */
export function summary(enrollment: Enrollment): string {
  const hubs = enrollment.iotHubs?.length ? enrollment.iotHubs.join(',') : 'all linked hubs';
  const id = enrollment.enrollmentGroupId ?? enrollment.registrationId;
  const device = enrollment.registrationId !== undefined ? `  deviceId ${enrollment.deviceId ?? enrollment.registrationId}` : '';
  return `${id}  ${enrollment.provisioningStatus ?? 'enabled'}${device}  allocationPolicy ${enrollment.allocationPolicy ?? '(instance default)'}  iotHubs ${hubs}\n`;
}

/** A list, one summary line each (never keys), or JSON. */
export function printList(io: Io, asJson: boolean, enrollments: Enrollment[], none: string): void {
  const shown = enrollments.map(withoutKeys);
  if (asJson) printJson(io, shown);
  else io.stdout(shown.length === 0 ? `${none}\n` : shown.map(summary).join(''));
}

/**
 * One enrollment: its summary, initial twin, reprovision policy, and keys when it holds them (the
 * webhook URL, which may carry a function key, only in --json, as the whole enrollment).
 */
export function printEnrollment(io: Io, asJson: boolean, enrollment: Enrollment): void {
  if (asJson) return printJson(io, enrollment);
  const keys = enrollment.attestation?.symmetricKey;
  const x509 = enrollment.attestation?.x509;
  io.stdout(
    summary(enrollment) +
      (enrollment.initialTwin !== undefined ? `initialTwin: ${JSON.stringify(enrollment.initialTwin)}\n` : '') +
      `reprovisionPolicy: ${reprovisionName(enrollment.reprovisionPolicy)}\n` +
      (keys?.primaryKey ? `primaryKey: ${keys.primaryKey}\nsecondaryKey: ${keys.secondaryKey}\n` : '') +
      (x509 ? describeX509(x509) : ''),
  );
}

/** A required ID that az lets you name more than one way (--enrollment-id or --group-id): one of them. */
export function idFlag(values: Values, names: readonly string[]): string {
  const given = names.filter((name) => values[name] !== undefined);
  if (given.length > 1) throw new ProvisioningError('invalid-input', `Give ${names.map((n) => `--${n}`).join(' or ')}, not both`);
  const value = given.length === 1 ? values[given[0]!] : undefined;
  if (typeof value !== 'string' || value === '') throw new ProvisioningError('invalid-input', `Missing --${names[0]}`);
  return value;
}

/** X.509 attestation, one line each: the certificates' subjects and thumbprints, or the CA names. */
function describeX509(x509: X509Fields): string {
  const lines: string[] = [];
  const certificates = x509.clientCertificates ?? x509.signingCertificates;
  const what = x509.clientCertificates ? 'device certificate' : 'signing certificate';
  for (const slot of ['primary', 'secondary'] as const) {
    const info = certificates?.[slot]?.info;
    if (info) lines.push(`${slot} ${what}: ${info.subjectName} (SHA-256 ${info.sha256Thumbprint}, until ${info.notAfterUtc})`);
    const name = x509.caReferences?.[slot];
    if (name) lines.push(`${slot} CA certificate: ${name}`);
  }
  return lines.map((line) => `${line}\n`).join('');
}

// Checking what goes into the model: linked hubs, policies, the latency table, enrollments. The
// one place for these rules: the service API (through the model) and the config file (through
// the model as well, config-file.ts) refuse the same values with the same reason. Every refusal
// is a DpsError(400) whose message names the field and the rule, never a key; a refused field is
// an InvalidField with the JSON pointer of the field within the object checked. Etags are made
// and checked (If-Match, 412) here too, for every resource that has one.
import { randomBytes, randomUUID } from 'node:crypto';
import { validateRegistrationId } from '../src/identity.js';
import { type ConnectionStringFields, splitConnectionString } from './connection-string.js';
import { DpsError, ErrorCodes, InvalidField, invalidConfiguration } from './dps-errors.js';
import type {
  AllocationPolicy,
  Attestation,
  CustomAllocationDefinition,
  EnrollmentInput,
  InitialTwin,
  LatencyTable,
  LinkedHub,
  LinkedHubConfig,
  SymmetricKeyAttestation,
  X509Attestation,
  X509CertificateWithInfo,
} from './model-types.js';
import { ALLOCATION_POLICIES } from './model-types.js';
import { certificateInfo, parseCertificate, toPem } from './x509.js';

/** Parse an IoT Hub connection string; HostName, SharedAccessKeyName and SharedAccessKey are required. */
export function parseConnectionString(text: unknown): ConnectionStringFields {
  if (typeof text !== 'string' || text.trim() === '') throw invalidConfiguration('The linked hub connection string is empty');
  const fields = splitConnectionString(text);
  if ('problem' in fields) throw invalidConfiguration(`The linked hub connection string ${fields.problem}`);
  const { hostName, sharedAccessKeyName, sharedAccessKey } = fields;
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$/.test(hostName)) {
    throw invalidConfiguration(`The linked hub HostName '${hostName.slice(0, 80)}' is not a host name`);
  }
  if (!isBase64Key(sharedAccessKey)) {
    throw invalidConfiguration('The linked hub SharedAccessKey is not base64');
  }
  return { hostName: hostName.toLowerCase(), sharedAccessKeyName, sharedAccessKey };
}

export function validateLinkedHub(config: LinkedHubConfig): LinkedHub {
  if (config === null || typeof config !== 'object') throw invalidConfiguration('A linked hub must be an object');
  let parsed: ConnectionStringFields;
  try {
    parsed = parseConnectionString(config.connectionString);
  } catch (error) {
    throw new InvalidField('/connectionString', lowerFirst((error as Error).message), (error as Error).message);
  }
  const hub = parsed.hostName;
  const weight = config.allocationWeight ?? 1;
  if (!Number.isInteger(weight) || weight < 1 || weight > 1000) {
    throw refuse(
      '/allocationWeight',
      `The allocationWeight of ${hub}`,
      `must be a whole number from 1 to 1000, or null for 1${shown(weight)}`,
    );
  }
  const apply = config.applyAllocationPolicy ?? true;
  if (typeof apply !== 'boolean') {
    throw refuse(
      '/applyAllocationPolicy',
      `The applyAllocationPolicy of ${hub}`,
      `must be true, false or null (null means true)${shown(apply)}`,
    );
  }
  const location = config.location ?? '';
  if (typeof location !== 'string') throw refuse('/location', `The location of ${hub}`, 'must be a region name, e.g. westus');
  if (isReservedName(location)) throw refuse('/location', `The location of ${hub} '${location}'`, reserved('a region name'));
  return {
    name: hub,
    hostName: hub,
    connectionString: config.connectionString,
    sharedAccessKeyName: parsed.sharedAccessKeyName,
    location: location.toLowerCase(),
    allocationWeight: weight,
    applyAllocationPolicy: apply,
  };
}

export function validateAllocationPolicy(policy: unknown, what: string): AllocationPolicy {
  if (typeof policy !== 'string' || !(ALLOCATION_POLICIES as readonly string[]).includes(policy)) {
    throw refuse('', what, `must be one of ${ALLOCATION_POLICIES.join(', ')}${shown(policy)}`);
  }
  return policy as AllocationPolicy;
}

export function validateInstancePolicy(policy: unknown): AllocationPolicy {
  const what = "The instance's allocationPolicy";
  if (policy === 'custom') throw refuse('', what, 'cannot be custom: set custom on an enrollment instead');
  const allowed = ALLOCATION_POLICIES.filter((p) => p !== 'custom');
  if (typeof policy !== 'string' || !(allowed as readonly string[]).includes(policy)) {
    throw refuse('', what, `must be one of ${allowed.join(', ')}${shown(policy)}`);
  }
  return policy as AllocationPolicy;
}

/**
 * The latency table, { "<from region>": { "<to region>": <milliseconds> } }, as null-prototype
 * objects keyed in lower case (region names are user text: no lookup may reach Object.prototype).
 */
export function validateLatency(table: unknown): LatencyTable {
  if (table === null || typeof table !== 'object' || Array.isArray(table)) {
    throw refuse('', 'The latency table', 'must be { "<from region>": { "<to region>": <milliseconds> } }');
  }
  const out: LatencyTable = Object.create(null);
  for (const [from, row] of Object.entries(table)) {
    const at = `/${escapePointer(from)}`;
    if (isReservedName(from)) throw refuse(at, `The latency table's region '${from}'`, reserved('a region name'));
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      throw refuse(at, `The latency row for ${from}`, 'must be { "<to region>": <milliseconds> }');
    }
    const target: Record<string, number> = (out[from.toLowerCase()] ??= Object.create(null));
    for (const [to, ms] of Object.entries(row)) {
      if (isReservedName(to))
        throw refuse(`${at}/${escapePointer(to)}`, `The latency row for ${from} names '${to}'`, reserved('a region name'));
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
        throw refuse(
          `${at}/${escapePointer(to)}`,
          `The latency from ${from} to ${to}`,
          `must be a non-negative number of milliseconds${shown(ms)}`,
        );
      }
      target[to.toLowerCase()] = ms;
    }
  }
  return out;
}

/** Enrollment group IDs: DPS allows alphanumerics and - . _ : up to 128 characters (checked like registration IDs). */
export function validateEnrollmentGroupId(id: unknown): string {
  if (typeof id !== 'string') throw invalidConfiguration('The enrollmentGroupId is missing');
  return checkedId(id, 'enrollmentGroupId');
}

export function validateEnrollmentRegistrationId(id: unknown): string {
  if (typeof id !== 'string') throw invalidConfiguration('The registrationId is missing');
  return checkedId(id, 'registrationId');
}

function checkedId(id: string, field: string): string {
  try {
    validateRegistrationId(id.toLowerCase());
  } catch (error) {
    throw invalidConfiguration(`The ${field}: ${(error as Error).message}`);
  }
  if (isReservedName(id)) throw invalidConfiguration(`The ${field} '${id}' is a reserved name (${RESERVED_NAMES.join(', ')} are refused)`);
  return id;
}

/**
 * Names refused for anything a table is keyed by (enrollment group IDs, registration IDs, region
 * names), in any case: as a plain object's key they reach Object.prototype. The model keeps its
 * tables in Maps and null-prototype objects as well; refusing the names keeps them out of every
 * copy a caller makes (JSON, spread, structuredClone).
 */
export const RESERVED_NAMES: readonly string[] = ['__proto__', 'constructor', 'prototype'];

export function isReservedName(name: string): boolean {
  return RESERVED_NAMES.includes(name.toLowerCase());
}

export interface EnrollmentFieldsChecked {
  attestation: Attestation;
  provisioningStatus: 'enabled' | 'disabled';
  allocationPolicy?: AllocationPolicy;
  iotHubs?: string[];
  initialTwin?: InitialTwin;
  reprovisionPolicy: { updateHubAssignment: boolean; migrateDeviceData: boolean };
  customAllocationDefinition?: CustomAllocationDefinition;
  capabilities?: { iotEdge: boolean };
}

/**
 * Check the fields every enrollment has. `linkedHubs` are the host names linked now: an
 * enrollment may only list linked hubs. `previous` supplies keys when an update omits them.
 */
export function validateEnrollmentFields(
  input: EnrollmentInput<object>,
  linkedHubs: ReadonlySet<string>,
  what: string,
  previous?: Attestation,
  kind: 'group' | 'individual' = 'group',
): EnrollmentFieldsChecked {
  checkAttestationShape(input.attestation, what);
  const attestation =
    input.attestation?.type === 'x509'
      ? checkX509Attestation(input.attestation.x509, what, kind)
      : checkAttestation(input.attestation, previous?.type === 'symmetricKey' ? previous : undefined);
  const status = input.provisioningStatus ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') {
    throw refuse('/provisioningStatus', `The provisioningStatus of ${what}`, `must be enabled or disabled${shown(status)}`);
  }
  const reprovision = input.reprovisionPolicy as unknown;
  if (reprovision !== undefined && reprovision !== null && (typeof reprovision !== 'object' || Array.isArray(reprovision))) {
    throw refuse(
      '/reprovisionPolicy',
      `The reprovisionPolicy of ${what}`,
      'must be { "updateHubAssignment": true|false, "migrateDeviceData": true|false }',
    );
  }
  const out: EnrollmentFieldsChecked = {
    attestation,
    provisioningStatus: status,
    reprovisionPolicy: {
      updateHubAssignment: checkBoolean(input.reprovisionPolicy?.updateHubAssignment, true, what, 'updateHubAssignment'),
      migrateDeviceData: checkBoolean(input.reprovisionPolicy?.migrateDeviceData, true, what, 'migrateDeviceData'),
    },
  };
  const raw = input as Record<string, unknown>;
  if (raw.allocationPolicy !== undefined && raw.allocationPolicy !== null) {
    try {
      out.allocationPolicy = validateAllocationPolicy(raw.allocationPolicy, `The allocationPolicy of ${what}`);
    } catch (error) {
      const e = error as InvalidField;
      throw new InvalidField('/allocationPolicy', e.reason, e.message);
    }
  }
  if (raw.iotHubs !== undefined && raw.iotHubs !== null) {
    const notList = `The iotHubs of ${what} must be a list of host names`;
    if (!Array.isArray(raw.iotHubs))
      throw new InvalidField('/iotHubs', "must be a list of linked hubs' host names (a JSON array)", notList);
    const other = raw.iotHubs.findIndex((h) => typeof h !== 'string');
    if (other >= 0) throw new InvalidField(`/iotHubs/${other}`, 'must be a host name', notList);
    const given = raw.iotHubs as string[];
    const first = given.findIndex((h) => !linkedHubs.has(h.toLowerCase()));
    if (first >= 0) {
      const unlinked = [...new Set(given.map((h) => h.toLowerCase()).filter((h) => !linkedHubs.has(h)))];
      // The reason is what the config file reports, where the linked hubs are the file's.
      throw new InvalidField(
        `/iotHubs/${first}`,
        `${JSON.stringify(given[first])} is not one of the iotHubs linked in this file`,
        `The iotHubs of ${what} name hubs that are not linked: ${unlinked.join(', ')}`,
      );
    }
    const hubs = [...new Set(given.map((h) => h.toLowerCase()))];
    if (hubs.length > 0) out.iotHubs = hubs;
  }
  if (out.allocationPolicy === 'static' && out.iotHubs?.length !== 1) {
    throw invalidConfiguration(`${what} uses the static allocation policy, so it must list exactly one IoT hub`);
  }
  if (raw.initialTwin !== undefined && raw.initialTwin !== null) out.initialTwin = checkTwin(raw.initialTwin, what);
  const custom = raw.customAllocationDefinition as Partial<CustomAllocationDefinition> | undefined | null;
  if (custom !== undefined && custom !== null) {
    if (typeof custom.webhookUrl !== 'string' || !/^https?:\/\//.test(custom.webhookUrl)) {
      throw invalidConfiguration(`The customAllocationDefinition of ${what} needs a webhookUrl (http or https)`);
    }
    out.customAllocationDefinition = { webhookUrl: custom.webhookUrl, apiVersion: String(custom.apiVersion ?? '2021-10-01') };
  }
  if (out.allocationPolicy === 'custom' && !out.customAllocationDefinition) {
    throw invalidConfiguration(`${what} uses the custom allocation policy, so it needs a customAllocationDefinition`);
  }
  const capabilities = raw.capabilities as { iotEdge?: unknown } | undefined | null;
  if (capabilities) out.capabilities = { iotEdge: capabilities.iotEdge === true };
  return out;
}

/**
 * The attestation's shape: an object of a type the emulator supports, and any symmetric key given
 * base64 of 16 to 64 bytes (one left out, null or empty is generated, or kept on an update).
 */
function checkAttestationShape(attestation: unknown, what: string): void {
  if (attestation === undefined || attestation === null) return;
  const only = `${what}: the emulator supports symmetricKey and x509 attestation only`;
  if (typeof attestation !== 'object' || Array.isArray(attestation)) {
    throw new InvalidField(
      '/attestation',
      'must be { "type": "symmetricKey", "symmetricKey": { "primaryKey": ..., "secondaryKey": ... } }',
      only,
    );
  }
  const { type, symmetricKey } = attestation as Record<string, unknown>;
  if (type !== 'symmetricKey' && type !== 'x509') {
    throw new InvalidField('/attestation/type', `the emulator supports symmetricKey and x509 attestation only${shown(type)}`, only);
  }
  if (symmetricKey === undefined || symmetricKey === null) return;
  if (typeof symmetricKey !== 'object' || Array.isArray(symmetricKey)) {
    throw refuse('/attestation/symmetricKey', `The symmetricKey of ${what}`, 'must be { "primaryKey": ..., "secondaryKey": ... }');
  }
  for (const name of ['primaryKey', 'secondaryKey']) {
    const key = (symmetricKey as Record<string, unknown>)[name];
    if (key !== undefined && key !== null && key !== '' && (typeof key !== 'string' || !isBase64Key(key))) {
      throw new InvalidField(
        `/attestation/symmetricKey/${name}`,
        'must be base64 of 16 to 64 bytes (leave it out to have one generated)',
        `${what}: a symmetric key is not base64 (16 to 64 bytes)`,
      );
    }
  }
}

/** Symmetric-key attestation (its shape checked): the keys given, else the previous ones, else new ones. */
function checkAttestation(
  attestation: EnrollmentInput<object>['attestation'],
  previous?: SymmetricKeyAttestation,
): SymmetricKeyAttestation {
  const given = (attestation?.type === 'symmetricKey' && attestation.symmetricKey) || {};
  const primaryKey = given.primaryKey || previous?.symmetricKey.primaryKey || generateKey();
  const secondaryKey = given.secondaryKey || previous?.symmetricKey.secondaryKey || generateKey();
  return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
}

/**
 * X.509 attestation as azure-iot-provisioning-service sends it: an individual enrollment gives
 * clientCertificates (the device's own), a group signingCertificates (PEM, trusted as given) or
 * caReferences (names in the certificate store, checked when a device registers, as DPS does).
 * Each certificate is kept as PEM with the info DPS reports.
 */
function checkX509Attestation(x509: unknown, what: string, kind: 'group' | 'individual'): X509Attestation {
  if (x509 === null || typeof x509 !== 'object' || Array.isArray(x509)) {
    throw invalidConfiguration(`${what}: x509 attestation needs an x509 object`);
  }
  const given = x509 as Record<string, unknown>;
  const pairs = ['clientCertificates', 'signingCertificates', 'caReferences'].filter((f) => given[f] !== undefined && given[f] !== null);
  if (pairs.length !== 1) {
    throw invalidConfiguration(`${what}: x509 attestation needs exactly one of clientCertificates, signingCertificates, caReferences`);
  }
  const field = pairs[0]!;
  if (kind === 'individual' && field !== 'clientCertificates') {
    throw invalidConfiguration(`${what}: an individual enrollment's x509 attestation takes clientCertificates (the device's own)`);
  }
  if (kind === 'group' && field === 'clientCertificates') {
    throw invalidConfiguration(
      `${what}: an enrollment group's x509 attestation takes signingCertificates or caReferences, not clientCertificates`,
    );
  }
  const value = given[field] as Record<string, unknown>;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalidConfiguration(`${what}: x509.${field} must be an object`);
  if (field === 'caReferences') {
    const name = (v: unknown, slot: string): string | undefined => {
      if (v === undefined || v === null || v === '') return undefined;
      if (typeof v !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(v)) {
        throw invalidConfiguration(`${what}: x509.caReferences.${slot} must be a certificate name (letters, digits, - . _)`);
      }
      return v;
    };
    const primary = name(value.primary, 'primary');
    if (!primary) throw invalidConfiguration(`${what}: x509.caReferences needs a primary certificate name`);
    const secondary = name(value.secondary, 'secondary');
    return { type: 'x509', x509: { caReferences: { primary, ...(secondary && { secondary }) } } };
  }
  const one = (v: unknown, slot: string): X509CertificateWithInfo | undefined => {
    if (v === undefined || v === null) return undefined;
    const at = `${what}: x509.${field}.${slot}`;
    const certificate = parseCertificate((v as { certificate?: unknown }).certificate, at);
    if (field === 'signingCertificates' && !certificate.ca)
      throw invalidConfiguration(`${at}: not a CA certificate (basicConstraints CA:TRUE)`);
    return { certificate: toPem(certificate), info: certificateInfo(certificate) };
  };
  const primary = one(value.primary, 'primary');
  if (!primary) throw invalidConfiguration(`${what}: x509.${field} needs a primary certificate`);
  const secondary = one(value.secondary, 'secondary');
  const certificates = { primary, ...(secondary && { secondary }) };
  return {
    type: 'x509',
    x509: field === 'clientCertificates' ? { clientCertificates: certificates } : { signingCertificates: certificates },
  };
}

function checkTwin(twin: unknown, what: string): InitialTwin {
  const t = twin as { tags?: unknown; properties?: { desired?: unknown } };
  const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!plain(t) || (t.tags !== undefined && !plain(t.tags)) || (t.properties !== undefined && !plain(t.properties))) {
    throw invalidConfiguration(`The initialTwin of ${what} must be {tags: {...}, properties: {desired: {...}}}`);
  }
  const desired = t.properties?.desired;
  if (desired !== undefined && !plain(desired)) {
    throw invalidConfiguration(`The initialTwin desired properties of ${what} must be an object`);
  }
  return structuredClone({ ...(t.tags ? { tags: t.tags } : {}), ...(desired ? { properties: { desired } } : {}) });
}

function checkBoolean(value: unknown, fallback: boolean, what: string, field: string): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') {
    throw refuse(`/reprovisionPolicy/${field}`, `The reprovisionPolicy.${field} of ${what}`, `must be true or false${shown(value)}`);
  }
  return value;
}

/** A symmetric key as DPS generates it: 64 random bytes, base64. */
export function generateKey(): string {
  return randomBytes(64).toString('base64');
}

/** DPS accepts keys of 16 to 64 bytes. */
export function isBase64Key(text: string): boolean {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return false;
  const bytes = Buffer.from(text, 'base64').length;
  return bytes >= 16 && bytes <= 64;
}

/** An etag in DPS's style: base64 of a quoted UUID. */
export function newEtag(): string {
  return Buffer.from(`"${randomUUID()}"`).toString('base64');
}

/**
 * RFC 7232 If-Match, quoted, weak (W/"...") or bare: absent passes; '*' needs an existing resource
 * (`current` defined); otherwise the etags must match, else 412 naming `what` ("the current ...").
 */
export function checkEtag(current: string | undefined, ifMatch: string | undefined, what: string): void {
  if (ifMatch === undefined || ifMatch === '') return;
  const wanted = ifMatch.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
  if (wanted === '*' ? current === undefined : current !== wanted) {
    throw new DpsError(412, ErrorCodes.preconditionFailed, `The etag does not match the current ${what}: read it again, then change it`);
  }
}

/** An InvalidField: `what` names the field for the message, `reason` says what is wrong ("must be ..."). */
function refuse(pointer: string, what: string, reason: string): InvalidField {
  return new InvalidField(pointer, reason, `${what} ${reason}`);
}

/** Why __proto__, constructor or prototype is refused where `what` is expected. */
export function reserved(what: string): string {
  return `${RESERVED_NAMES.join(', ')} are reserved names, refused as ${what}`;
}

/** A value worth repeating in a message: short and plainly not a key. */
export function shown(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return `; got ${JSON.stringify(value)}`;
  if (typeof value === 'string' && /^[A-Za-z0-9 ._:-]{0,64}$/.test(value)) return `; got "${value}"`;
  return '';
}

/** A key as a JSON pointer segment (RFC 6901). */
export function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** "The linked hub ..." → "the linked hub ...": a message as a reason after a pointer. */
export function lowerFirst(message: string): string {
  return /^The [a-z]/.test(message) ? `t${message.slice(1)}` : message;
}

// Checking what goes into the model: linked hubs, policies, enrollments. Every refusal is a
// DpsError(400) whose message names the field and the rule, never a key.
import { randomBytes, randomUUID } from 'node:crypto';
import { validateRegistrationId } from '../src/identity.js';
import { type ConnectionStringFields, splitConnectionString } from './connection-string.js';
import { invalidConfiguration } from './dps-errors.js';
import type {
  AllocationPolicy,
  CustomAllocationDefinition,
  EnrollmentInput,
  InitialTwin,
  LinkedHub,
  LinkedHubConfig,
  SymmetricKeyAttestation,
} from './model-types.js';
import { ALLOCATION_POLICIES } from './model-types.js';

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
  const parsed = parseConnectionString(config.connectionString);
  const weight = config.allocationWeight ?? 1;
  if (!Number.isInteger(weight) || weight < 1 || weight > 1000) {
    throw invalidConfiguration(`The allocationWeight of ${parsed.hostName} must be a whole number from 1 to 1000 (or null for 1)`);
  }
  const apply = config.applyAllocationPolicy ?? true;
  if (typeof apply !== 'boolean') {
    throw invalidConfiguration(`The applyAllocationPolicy of ${parsed.hostName} must be true, false or null`);
  }
  const location = config.location ?? '';
  if (typeof location !== 'string') throw invalidConfiguration(`The location of ${parsed.hostName} must be a region name`);
  checkRegion(location, `The location of ${parsed.hostName}`);
  return {
    name: parsed.hostName,
    hostName: parsed.hostName,
    connectionString: config.connectionString,
    sharedAccessKeyName: parsed.sharedAccessKeyName,
    location: location.toLowerCase(),
    allocationWeight: weight,
    applyAllocationPolicy: apply,
  };
}

export function validateAllocationPolicy(policy: unknown, what: string): AllocationPolicy {
  if (typeof policy !== 'string' || !(ALLOCATION_POLICIES as readonly string[]).includes(policy)) {
    throw invalidConfiguration(`${what} must be one of ${ALLOCATION_POLICIES.join(', ')}`);
  }
  return policy as AllocationPolicy;
}

export function validateInstancePolicy(policy: unknown): AllocationPolicy {
  const checked = validateAllocationPolicy(policy, "The instance's allocationPolicy");
  if (checked === 'custom') {
    throw invalidConfiguration("The instance's allocationPolicy cannot be custom: set custom on an enrollment instead");
  }
  return checked;
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

/** A region name (a linked hub's location, a latency table's row or column): any text but a reserved name. */
export function checkRegion(region: string, what: string): string {
  if (isReservedName(region))
    throw invalidConfiguration(`${what} '${region}' is a reserved name, not a region (${RESERVED_NAMES.join(', ')} are refused)`);
  return region;
}

export interface EnrollmentFieldsChecked {
  attestation: SymmetricKeyAttestation;
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
  previous?: SymmetricKeyAttestation,
): EnrollmentFieldsChecked {
  const attestation = checkAttestation(input.attestation, what, previous);
  const status = input.provisioningStatus ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') {
    throw invalidConfiguration(`The provisioningStatus of ${what} must be enabled or disabled`);
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
    out.allocationPolicy = validateAllocationPolicy(raw.allocationPolicy, `The allocationPolicy of ${what}`);
  }
  if (raw.iotHubs !== undefined && raw.iotHubs !== null) {
    if (!Array.isArray(raw.iotHubs) || raw.iotHubs.some((h) => typeof h !== 'string')) {
      throw invalidConfiguration(`The iotHubs of ${what} must be a list of host names`);
    }
    const hubs = [...new Set((raw.iotHubs as string[]).map((h) => h.toLowerCase()))];
    const unlinked = hubs.filter((h) => !linkedHubs.has(h));
    if (unlinked.length > 0) {
      throw invalidConfiguration(`The iotHubs of ${what} name hubs that are not linked: ${unlinked.join(', ')}`);
    }
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

function checkAttestation(
  attestation: EnrollmentInput<object>['attestation'],
  what: string,
  previous?: SymmetricKeyAttestation,
): SymmetricKeyAttestation {
  if (attestation !== undefined && attestation !== null && attestation.type !== 'symmetricKey') {
    throw invalidConfiguration(`${what}: the emulator supports symmetricKey attestation only`);
  }
  const given = attestation?.symmetricKey ?? {};
  const primaryKey = given.primaryKey || previous?.symmetricKey.primaryKey || generateKey();
  const secondaryKey = given.secondaryKey || previous?.symmetricKey.secondaryKey || generateKey();
  for (const key of [primaryKey, secondaryKey]) {
    if (!isBase64Key(key)) throw invalidConfiguration(`${what}: a symmetric key is not base64 (16 to 64 bytes)`);
  }
  return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
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
  if (typeof value !== 'boolean') throw invalidConfiguration(`The reprovisionPolicy.${field} of ${what} must be true or false`);
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

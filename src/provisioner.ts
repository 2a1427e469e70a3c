// The top of the core: resolve the device's identity and key, reuse a stored assignment that
// matches it, otherwise register with DPS and store what DPS assigned.

import { DEFAULT_TIMEOUT_MS, DPS_GLOBAL_ENDPOINT, type RegisterOptions, type RegisterPorts, registerDevice } from './dps/flow.js';
import { isHostName, isNestedDeeper, MAX_JSON_DEPTH } from './dps/messages.js';
import { isProvisioningError, ProvisioningError } from './errors.js';
import { buildRegistrationId, deriveDeviceKey, type HardwareIdentity, isDeviceId, validateRegistrationId } from './identity.js';
import type { Endpoint, Log, Store } from './ports.js';

export interface DeviceConfig extends Omit<RegisterOptions, 'registrationId' | 'deviceKey'> {
  /** Given outright (e.g. written at the factory); otherwise built from the template. */
  registrationId?: string;
  /** Such as '{serial}-{mac}', filled with `identity`. */
  registrationIdTemplate?: string;
  identity?: HardwareIdentity;
  /** The device's own key (individual enrollment). Exactly one of deviceKey, groupKey and x509. */
  deviceKey?: string;
  /** The enrollment group's key: the device key is derived from it and the registration ID. */
  groupKey?: string;
  /**
   * X.509 attestation instead of a key: the host's Connect presents the device certificate (its
   * CN the registration ID) and key in the TLS handshake; no SAS token is sent. Exactly one of
   * deviceKey, groupKey and x509.
   */
  x509?: boolean;
  /** Provision even when a matching assignment is stored. */
  force?: boolean;
  /** Store key of the assignment record (default 'assignment'). */
  storeKey?: string;
  /**
   * A store that cannot be read or written fails the provisioning with the store's error (kind
   * 'storage', or 'timeout') instead of being reported as 'store-unreadable' / 'store-failed'.
   */
  storeRequired?: boolean;
}

export interface ProvisionerPorts extends RegisterPorts {
  store?: Store;
}

/** What the device keeps between boots. */
export interface Assignment {
  assignedHub: string;
  deviceId: string;
  registrationId: string;
  idScope: string;
  /** The DPS endpoint as host:port. */
  endpoint: string;
  substatus?: string;
  payload?: unknown;
  /** ISO 8601 time of the assignment, from the device clock. */
  provisionedAt: string;
}

export interface ProvisionResult {
  assignment: Assignment;
  /** True when the stored assignment was reused and DPS was not contacted. */
  fromCache: boolean;
}

export const DEFAULT_STORE_KEY = 'assignment';
const RECORD_VERSION = 1;

/** The registration ID this configuration stands for: given outright, or built from the template. */
export function resolveRegistrationId(config: Pick<DeviceConfig, 'registrationId' | 'registrationIdTemplate' | 'identity'>): string {
  if (config.registrationId) return validateRegistrationId(config.registrationId);
  if (config.registrationIdTemplate) return buildRegistrationId(config.registrationIdTemplate, config.identity ?? {});
  throw new ProvisioningError('invalid-input', 'Give a registration ID or a registration ID template');
}

/** The device's own key: the given device key, or the one derived from the group key; undefined with X.509. */
export function resolveDeviceKey(
  config: Pick<DeviceConfig, 'deviceKey' | 'groupKey' | 'x509'>,
  registrationId: string,
): string | undefined {
  checkKeyChoice(config);
  if (config.x509) return undefined;
  return config.groupKey ? deriveDeviceKey(config.groupKey, registrationId) : config.deviceKey!;
}

/** Exactly one of the device key, the group key and X.509. */
function checkKeyChoice(config: Pick<DeviceConfig, 'deviceKey' | 'groupKey' | 'x509'>): void {
  const given = [config.deviceKey, config.groupKey, config.x509].filter(Boolean).length;
  if (given > 1) {
    throw new ProvisioningError('invalid-input', 'Give one of a device key, a group key or an X.509 certificate, not more');
  }
  if (given === 0) {
    throw new ProvisioningError(
      'invalid-input',
      'Give a device key (individual enrollment), a group key (enrollment group) or an X.509 device certificate',
    );
  }
}

export function formatEndpoint(endpoint: Endpoint): string {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return `${host}:${endpoint.port}`.toLowerCase();
}

export async function provisionDevice(config: DeviceConfig, ports: ProvisionerPorts): Promise<ProvisionResult> {
  const registrationId = resolveRegistrationId(config);
  checkKeyChoice(config);
  const endpoint = config.endpoint ?? DPS_GLOBAL_ENDPOINT;
  const identity = { idScope: config.idScope, registrationId, endpoint: formatEndpoint(endpoint) };
  const storeKey = config.storeKey ?? DEFAULT_STORE_KEY;
  const log = ports.log ?? (() => {});
  // timeoutMs bounds the whole call: the time the store took comes off the registration's.
  const deadline = ports.clock.now() + (config.timeoutMs ?? DEFAULT_TIMEOUT_MS);

  if (ports.store && !config.force) {
    const stored = await loadAssignment(ports.store, storeKey, log, config.storeRequired);
    if (stored && matches(stored, identity)) {
      log({ type: 'cached', assignedHub: stored.assignedHub, deviceId: stored.deviceId });
      return { assignment: stored, fromCache: true };
    }
  }

  // Derived only now: a cached boot needs no key (an HMAC saved on every boot of a device).
  const deviceKey = resolveDeviceKey(config, registrationId);
  const timeoutMs = Math.max(0, deadline - ports.clock.now());
  const result = await registerDevice(
    { ...config, registrationId, ...(deviceKey !== undefined && { deviceKey }), endpoint, timeoutMs },
    ports,
  );
  const assignment: Assignment = {
    assignedHub: result.assignedHub,
    deviceId: result.deviceId,
    registrationId,
    idScope: config.idScope,
    endpoint: identity.endpoint,
    ...(result.substatus !== undefined && { substatus: result.substatus }),
    ...(result.payload !== undefined && { payload: result.payload }),
    provisionedAt: new Date(ports.clock.now()).toISOString(),
  };
  if (ports.store) {
    try {
      await ports.store.set(storeKey, JSON.stringify({ version: RECORD_VERSION, ...assignment }));
      log({ type: 'stored', key: storeKey });
    } catch (error) {
      if (config.storeRequired) throw asStoreError(error);
      // The device is provisioned; failing to remember it costs a registration next boot, not the result.
      log({ type: 'store-failed', message: isProvisioningError(error) || error instanceof Error ? error.message : String(error) });
    }
  }
  return { assignment, fromCache: false };
}

/**
 * The stored assignment, or undefined when there is none or it cannot be read (reported; thrown
 * only when the store is `required`).
 */
export async function loadAssignment(store: Store, key: string, log: Log = () => {}, required = false): Promise<Assignment | undefined> {
  let text: string | undefined;
  try {
    text = await store.get(key);
  } catch (error) {
    if (required) throw asStoreError(error);
    log({ type: 'store-unreadable', message: error instanceof Error ? error.message : String(error) });
    return undefined;
  }
  if (text === undefined) return undefined;
  const assignment = parseAssignment(text);
  if (!assignment) log({ type: 'store-unreadable', message: `The stored assignment under "${key}" is not a valid record` });
  return assignment;
}

/** Parse a stored record strictly; anything unexpected yields undefined. */
export function parseAssignment(text: string): Assignment | undefined {
  // What DPS may send nests at most MAX_JSON_DEPTH levels: a deeper record was not written by us.
  if (typeof text !== 'string' || isNestedDeeper(text, MAX_JSON_DEPTH)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  if (record.version !== RECORD_VERSION) return undefined;
  for (const field of ['assignedHub', 'deviceId', 'registrationId', 'idScope', 'endpoint', 'provisionedAt'] as const) {
    if (typeof record[field] !== 'string' || record[field] === '') return undefined;
  }
  // What parseResponseBody would refuse from DPS is refused from the store too: the file may have been edited.
  if (!isHostName(record.assignedHub) || !isDeviceId(record.deviceId)) return undefined;
  if (record.substatus !== undefined && typeof record.substatus !== 'string') return undefined;
  return {
    assignedHub: record.assignedHub as string,
    deviceId: record.deviceId as string,
    registrationId: record.registrationId as string,
    idScope: record.idScope as string,
    endpoint: record.endpoint as string,
    ...(record.substatus !== undefined && { substatus: record.substatus as string }),
    ...(record.payload !== undefined && { payload: record.payload }),
    provisionedAt: record.provisionedAt as string,
  };
}

function matches(stored: Assignment, identity: { idScope: string; registrationId: string; endpoint: string }): boolean {
  return (
    stored.idScope.toLowerCase() === identity.idScope.toLowerCase() &&
    stored.registrationId === identity.registrationId &&
    stored.endpoint.toLowerCase() === identity.endpoint
  );
}

/** A store's failure as the ProvisioningError it is, or as one of kind 'storage'. */
function asStoreError(error: unknown): ProvisioningError {
  if (isProvisioningError(error)) return error;
  return new ProvisioningError('storage', `The store failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

// What a host gives the IoT Hub session, its defaults, and the checks made before any traffic.
import type { BackoffPolicy } from '../dps/machine.js';
import { ProvisioningError } from '../errors.js';
import type { Clock, Connect, Endpoint, HubLog, Random } from '../ports.js';
import type { JsonObject } from './messages.js';
import type { MethodHandler } from './methods.js';
import { hubSasToken, hubUsername, type MessageProperties } from './topics.js';

export interface HubSessionOptions {
  /** The IoT hub host name (DPS's assignedHub); it is named in the username and the SAS token. */
  hub: string;
  deviceId: string;
  /**
   * The device's symmetric key (base64). A secret. Absent: X.509, the device authenticates with
   * the client certificate its host's Connect presents; CONNECT carries no password and nothing
   * needs renewing.
   */
  deviceKey?: string;
  /** Where to connect (default <hub>:<port>), e.g. a local emulator; the credentials still name `hub`. */
  endpoint?: Endpoint;
  /** The hub's port when `endpoint` is not given: 8883 for MQTT (the default), 443 for MQTT over WebSockets. */
  port?: number;
  /** An IoT Plug and Play model ID (DTMI), sent in the username as IoT Central expects. */
  modelId?: string;
  /** SAS token lifetime (default 3600 s, 60 s to one day); the session reconnects at 80 % of it. */
  sasTtlSeconds?: number;
  /** TLS + CONNACK, each twin request and each telemetry PUBACK must complete within this (default 30 s). */
  requestTimeoutMs?: number;
  /** Unable to connect for this long (default 5 minutes), the session ends with the last error. */
  offlineTimeoutMs?: number;
  backoff?: Partial<BackoffPolicy>;
  keepAliveSeconds?: number;
  maxPacketSize?: number;
  /** Cloud-to-device messages larger than this are dropped (default 64 KiB, IoT Hub's own limit). */
  maxC2dBytes?: number;
  /**
   * Desired properties, newer versions only, in order. After each (re)connect the whole desired
   * section arrives once as a patch when its version is newer than the last applied; so does it
   * when a patch reveals a missed version (the twin is fetched again instead of applying it).
   * A full section as a patch does not remove properties deleted meanwhile.
   */
  onDesired?(patch: JsonObject, version: number): void;
  /** Direct method calls. Without it, methods are not subscribed. */
  onMethod?: MethodHandler;
  /** Cloud-to-device messages. Without it, C2D is not subscribed (the hub keeps them queued). */
  onC2D?(body: Uint8Array, properties: MessageProperties): void;
}

export interface HubPorts {
  connect: Connect;
  clock: Clock;
  log?: HubLog;
  random?: Random;
}

export const HUB_PORT = 8883;
export const DEFAULT_HUB_SAS_TTL_SECONDS = 3600;
/** The token is renewed (by reconnecting) once this share of its lifetime has passed. */
export const RENEW_AT = 0.8;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_OFFLINE_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_HUB_BACKOFF: BackoffPolicy = { minMs: 1000, maxMs: 60_000, jitterMs: 1000 };
/** IoT Hub's limits: device-to-cloud messages 256 KB, cloud-to-device messages 64 KB (iot-hub-devguide-quotas-throttling). */
export const MAX_TELEMETRY_BYTES = 256 * 1024;
export const DEFAULT_MAX_C2D_BYTES = 64 * 1024;

export type ResolvedOptions = HubSessionOptions & {
  endpoint: Endpoint;
  sasTtlSeconds: number;
  requestTimeoutMs: number;
  offlineTimeoutMs: number;
  backoff: BackoffPolicy;
  maxC2dBytes: number;
};

/** The options with their defaults. Throws `invalid-input` for bad names, a key that is not base64, or limits out of range. */
export function resolveOptions(options: HubSessionOptions): ResolvedOptions {
  hubUsername(options.hub, options.deviceId, options.modelId);
  if (options.deviceKey !== undefined) hubSasToken(options.hub, options.deviceId, options.deviceKey, 0);
  const resolved: ResolvedOptions = {
    ...options,
    endpoint: options.endpoint ?? { host: options.hub, port: options.port ?? HUB_PORT },
    sasTtlSeconds: options.sasTtlSeconds ?? DEFAULT_HUB_SAS_TTL_SECONDS,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    offlineTimeoutMs: options.offlineTimeoutMs ?? DEFAULT_OFFLINE_TIMEOUT_MS,
    backoff: { ...DEFAULT_HUB_BACKOFF, ...options.backoff },
    maxC2dBytes: options.maxC2dBytes ?? DEFAULT_MAX_C2D_BYTES,
  };
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 1 && options.port <= 65535)) {
    throw invalid('The hub port must be a whole number from 1 to 65535');
  }
  if (!Number.isInteger(resolved.sasTtlSeconds) || resolved.sasTtlSeconds < 60 || resolved.sasTtlSeconds > 86_400) {
    throw invalid('The SAS lifetime must be a whole number of seconds from 60 to 86400');
  }
  for (const name of ['requestTimeoutMs', 'offlineTimeoutMs', 'maxC2dBytes'] as const) {
    if (!(Number.isSafeInteger(resolved[name]) && resolved[name] > 0 && resolved[name] <= 2_147_483_647))
      throw invalid(`${name} must be a positive whole number`);
  }
  return resolved;
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

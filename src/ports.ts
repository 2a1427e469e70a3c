// The services a host hands the core. The core touches no platform API itself:
// Node (hosts/node), Moddable (hosts/moddable) and the tests each implement these.

/** Where to open a connection. TLS, its trust anchors and SNI are the host's business. */
export interface Endpoint {
  host: string;
  port: number;
}

/** What the core hears from an open connection. */
export interface ConnectionHandlers {
  /** Bytes arrived, in any split: one packet may come in pieces, or several in one chunk. */
  onData(data: Uint8Array): void;
  /** The connection ended. `error` is absent for an orderly close. Called at most once. */
  onClose(error?: Error): void;
}

/** An open byte stream, usually TLS. */
export interface Connection {
  /** Queue bytes for sending. The core never reuses a buffer it has written. */
  write(data: Uint8Array): void;
  /** Close; `onClose` follows (possibly synchronously). Safe to call more than once. */
  close(): void;
}

/**
 * Open a connection to `endpoint`. Resolves once the stream is ready for MQTT (after the TLS
 * handshake); rejects with a `ProvisioningError` of kind `network` or `tls` otherwise.
 */
export type Connect = (endpoint: Endpoint, handlers: ConnectionHandlers) => Promise<Connection>;

/** Time. `now()` is wall-clock milliseconds since the Unix epoch (SAS expiry depends on it). */
export interface Clock {
  now(): number;
  /** Call `callback` once after `ms` milliseconds; returns a function that cancels it. */
  setTimer(callback: () => void, ms: number): () => void;
}

/** Persistent key/value storage for small records (a file on Node, Preference on Moddable). */
export interface Store {
  /** The stored value, or undefined when there is none. Throws when the medium fails. */
  get(key: string): Promise<string | undefined>;
  /** Replace the value atomically: after a crash the old or the new value is there, never a mix. */
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Progress events. None carries a key, a signature or a token: hosts may print all of them. */
export type ProvisioningEvent =
  | { type: 'cached'; assignedHub: string; deviceId: string }
  | { type: 'store-unreadable'; message: string }
  | { type: 'connecting'; host: string; port: number; attempt: number }
  | { type: 'connected'; host: string; port: number }
  | { type: 'registering'; registrationId: string }
  | { type: 'assigning'; operationId: string; attempt: number; waitMs: number }
  // attempt: the n-th connection (connecting), the n-th poll (assigning), the n-th retry of the
  // flow, counted across connections (retrying, reconnecting).
  | { type: 'retrying'; reason: string; attempt: number; waitMs: number }
  | { type: 'reconnecting'; reason: string; attempt: number; waitMs: number }
  | { type: 'assigned'; assignedHub: string; deviceId: string }
  | { type: 'stored'; key: string }
  | { type: 'store-failed'; message: string };

export type Log = (event: ProvisioningEvent) => void;

/**
 * IoT Hub session events (src/hub/session.ts). None carries a key, a signature or a token; the
 * texts come from the core's own errors and validated names (hosts still print them escaped).
 * attempt: the n-th connection (hub-connecting), the n-th consecutive failure (hub-disconnected).
 */
export type HubEvent =
  | { type: 'hub-connecting'; host: string; port: number; attempt: number }
  | { type: 'hub-connected'; host: string; port: number }
  | { type: 'hub-twin'; desiredVersion: number; reportedVersion: number }
  | { type: 'hub-desired'; version: number }
  | { type: 'hub-reported'; version: number }
  | { type: 'hub-telemetry'; bytes: number }
  | { type: 'hub-method'; name: string; status: number }
  | { type: 'hub-c2d'; bytes: number }
  /** The SAS token expires at `expiresAt` (ms since the epoch): reconnecting with a fresh one. */
  | { type: 'hub-renewing'; expiresAt: number }
  /** The connection ended or could not be opened; the next attempt follows in `waitMs`. */
  | { type: 'hub-disconnected'; reason: string; attempt: number; waitMs: number }
  /** Something the hub sent was dropped: a malformed or unexpected message, or an answer to no request. */
  | { type: 'hub-ignored'; reason: string };

export type HubLog = (event: HubEvent) => void;

/** Uniform random number in [0, 1). Jitter and correlation ids; not for secrets. */
export type Random = () => number;

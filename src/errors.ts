// Every failure the core reports is a ProvisioningError with a kind a program can switch on
// and a message a person can act on. Messages never contain keys, signatures or tokens.

export type ErrorKind =
  /** Bad configuration or arguments, found before any network traffic. */
  | 'invalid-input'
  /** DPS or the broker refused the credentials (CONNACK 4/5, res/401). */
  | 'unauthorized'
  /** The enrollment or registration is disabled. */
  | 'disabled'
  /** DPS answered `failed` (e.g. a custom allocation webhook error) or a 4xx that retrying won't fix. */
  | 'failed'
  /** Throttled (429) until the deadline passed. */
  | 'throttled'
  /** DPS kept answering 5xx (or CONNACK 3, server unavailable) until the deadline passed. */
  | 'server'
  /** The connection failed, dropped, or went silent. */
  | 'network'
  /** TLS failed: most often the server certificate is not trusted. */
  | 'tls'
  /** The peer broke the MQTT or DPS protocol (malformed packet, oversized packet, bad JSON). */
  | 'protocol'
  /** The overall deadline passed. */
  | 'timeout'
  /** Persistent storage failed. */
  | 'storage';

/** What a failure carries besides its kind and message: the one shape of these details in the core. */
export interface ErrorDetails {
  /** DPS's six-digit errorCode, when DPS sent one. */
  errorCode?: number;
  /** DPS's trackingId, for a support request. */
  trackingId?: string;
  /** The response status (HTTP-like) or CONNACK return code that led here. */
  status?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

export class ProvisioningError extends Error {
  readonly kind: ErrorKind;
  readonly errorCode: number | undefined;
  readonly trackingId: string | undefined;
  readonly status: number | undefined;
  // A field (defined on the instance), not `this.name = ...` in the constructor: on Moddable XS
  // the preloaded Error.prototype is frozen, and assigning over its read-only `name` throws.
  override readonly name = 'ProvisioningError';

  constructor(kind: ErrorKind, message: string, details: ErrorDetails = {}) {
    super(message);
    this.kind = kind;
    this.errorCode = details.errorCode;
    this.trackingId = details.trackingId;
    this.status = details.status;
    if (details.cause !== undefined) (this as { cause?: unknown }).cause = details.cause;
  }

  /** The same failure (kind, errorCode, trackingId, status) told with another message. */
  rephrase(message: string): ProvisioningError {
    return new ProvisioningError(this.kind, message, detailsOf(this));
  }
}

/** The errorCode, trackingId and status that are set, and nothing else (no cause). */
export function detailsOf(details: ErrorDetails): ErrorDetails {
  const out: ErrorDetails = {};
  if (details.errorCode !== undefined) out.errorCode = details.errorCode;
  if (details.trackingId !== undefined) out.trackingId = details.trackingId;
  if (details.status !== undefined) out.status = details.status;
  return out;
}

export function isProvisioningError(value: unknown): value is ProvisioningError {
  return value instanceof ProvisioningError;
}

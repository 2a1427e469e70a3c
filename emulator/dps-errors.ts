// DPS's error shape, shared by the device endpoints (MQTT response bodies, the HTTPS device API)
// and the service API: {"errorCode":<6 digits>,"trackingId":"<uuid>","message":"...","timestampUtc":"..."}.
// The six-digit code starts with the HTTP-like status (azure-sdk-for-c parses 401002 as status
// 401, sdk/tests/iot/provisioning/test_az_iot_provisioning_client_parser.c).
//
// Which codes are DPS's own and which are this emulator's choice:
//   401002  unauthorized: seen from DPS (azure-sdk-for-c parser test vector above).
//   400207  custom allocation webhook failed: seen from DPS (same test file, the "failed" vector).
//   404201/404202: DPS sends these for two not-found cases of the service API
//           (MicrosoftDocs/azure-docs#57082); their exact meanings are not documented, so the
//           emulator does not use them.
//   Every other code here is <status>000 + a small number chosen by the emulator: the status
//   (the first three digits) is faithful, the last three are not DPS's. Clients must switch on
//   the status, which is what both Microsoft SDKs do.
import { randomUUID } from 'node:crypto';

export const ErrorCodes = {
  /** The request body is not JSON or not the expected shape. */
  badRequest: 400000,
  /** The body's registrationId differs from the connection's. */
  registrationIdMismatch: 400001,
  /** A model change was refused (bad weight, bad connection string, static without a hub, ...). */
  invalidConfiguration: 400002,
  /** No linked hub can take the device (none eligible under the policy). */
  noHubAvailable: 400003,
  /** The enrollment lists a hub that is no longer linked. */
  hubNotLinked: 400004,
  /** The policy is not implemented by the emulator (yet). */
  policyNotSupported: 400005,
  /** Custom allocation webhook failed (DPS's code). */
  customAllocationFailed: 400207,
  /** Credentials refused (DPS's code). */
  unauthorized: 401002,
  /** The operation id is unknown to this registration (or has expired). */
  operationNotFound: 404000,
  /** An enrollment, enrollment group, registration or linked hub does not exist. */
  notFound: 404001,
  /** Creating something that exists already. */
  conflict: 409000,
  /** If-Match did not match the current etag. */
  preconditionFailed: 412000,
  /** Throttled (fault injection). */
  throttled: 429000,
  /** Internal error (fault injection, or a bug). */
  internal: 500000,
} as const;

/** A refusal the emulator reports to a client in DPS's error shape. */
export class DpsError extends Error {
  readonly status: number;
  readonly errorCode: number;
  constructor(status: number, errorCode: number, message: string) {
    super(message);
    this.name = 'DpsError';
    this.status = status;
    this.errorCode = errorCode;
  }
}

export interface DpsErrorBody {
  errorCode: number;
  trackingId: string;
  message: string;
  timestampUtc: string;
}

export function errorBody(errorCode: number, message: string, now: Date = new Date()): DpsErrorBody {
  return { errorCode, trackingId: randomUUID(), message, timestampUtc: now.toISOString() };
}

/** The code for a status when nothing more specific applies (429 → 429000, 503 → 503000). */
export function genericErrorCode(status: number): number {
  return status * 1000;
}

/**
 * A refused field (validation.ts): `pointer` (RFC 6901) says where it is in the object checked,
 * `reason` what is wrong with it ("must be ..."); the message names the field and the reason.
 * The config file reports the pointer within the file, the service API the message.
 */
export class InvalidField extends DpsError {
  constructor(
    readonly pointer: string,
    readonly reason: string,
    message: string,
  ) {
    super(400, ErrorCodes.invalidConfiguration, message);
  }
}

export function invalidConfiguration(message: string): DpsError {
  return new DpsError(400, ErrorCodes.invalidConfiguration, message);
}

export function notFound(message: string): DpsError {
  return new DpsError(404, ErrorCodes.notFound, message);
}

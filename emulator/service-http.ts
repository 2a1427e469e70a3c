// HTTP plumbing for the service API: the request as the routes see it, bounded JSON bodies, a
// follower's long poll of a log, and the two error shapes:
//   DPS service API (/enrollments, /enrollmentGroups, /registrations): DPS's own
//     {"errorCode":<6 digits>,"trackingId":"<uuid>","message":"...","timestampUtc":"..."}
//   management (/resource, /hubs): ARM's envelope, with DPS's code and trackingId inside
//     {"error":{"code":"BadRequest","message":"...","errorCode":400002,"trackingId":"<uuid>"}}
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isNestedDeeper, MAX_JSON_DEPTH } from '../src/dps/messages.js';
import { DpsError, ErrorCodes, errorBody, genericErrorCode } from './dps-errors.js';
import { BodyTooLargeError, readBoundedBody } from './http-body.js';

/** Codes the service API adds (the emulator's choice: <status>000 + n, see dps-errors.ts). */
export const ServiceErrorCodes = {
  /** The request body is not JSON. */
  invalidJson: 400010,
  /** api-version missing or not 2021-10-01. */
  apiVersion: 400011,
  /** No such route. */
  noRoute: 404010,
  /** A known path with a method it does not take. */
  methodNotAllowed: 405000,
  /** The body exceeds the limit. */
  tooLarge: 413000,
} as const;

export const MAX_BODY_BYTES = 256 * 1024;
/** The longest a follower's request waits for the next entry of a log. */
const MAX_WAIT_SECONDS = 60;

export interface ServiceRequest {
  method: string;
  /** Path segments, URL-decoded (the first is the collection, e.g. 'enrollmentGroups'). */
  segments: string[];
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** The parsed JSON body; undefined when there was none. */
  body: unknown;
}

export interface ServiceResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type ErrorShape = 'dps' | 'arm';

/** What readRequest reads: an HTTP request, or one made in-process (the web console's) with its body as bytes. */
export type RequestSource = Pick<IncomingMessage, 'url' | 'method' | 'headers'> & AsyncIterable<Uint8Array>;

/** Read the body (at most MAX_BODY_BYTES) and parse it as JSON when there is one. */
export async function readRequest(req: RequestSource): Promise<ServiceRequest> {
  const url = new URL(req.url ?? '/', 'https://emulator.invalid');
  let segments: string[];
  try {
    segments = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
  } catch {
    throw new DpsError(400, ErrorCodes.badRequest, 'The request path is not valid URL encoding');
  }
  // Past the limit the rest is read and dropped, so the client gets its 413 instead of a reset;
  // past four times the limit the connection is cut.
  let text: string;
  try {
    text = (await readBoundedBody(req, MAX_BODY_BYTES, { drainBytes: 4 * MAX_BODY_BYTES })).toString('utf8');
  } catch (error) {
    throw error instanceof BodyTooLargeError
      ? new DpsError(413, ServiceErrorCodes.tooLarge, `The request body exceeds ${MAX_BODY_BYTES} bytes`)
      : error;
  }
  let body: unknown;
  if (text.trim() !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      throw new DpsError(400, ServiceErrorCodes.invalidJson, 'The request body is not valid JSON');
    }
    // Deeper JSON is refused, as the core refuses it from DPS: storing and serialising it would overflow the stack.
    if (isNestedDeeper(text, MAX_JSON_DEPTH)) {
      throw new DpsError(400, ServiceErrorCodes.invalidJson, `The request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
  }
  return { method: (req.method ?? 'GET').toUpperCase(), segments, query: url.searchParams, headers: req.headers, body };
}

export function send(res: ServerResponse, response: ServiceResponse): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | number> = { ...(response.headers ?? {}) };
  let payload = '';
  if (response.body !== undefined) {
    payload = JSON.stringify(response.body);
    headers['content-type'] = 'application/json; charset=utf-8';
  }
  headers['content-length'] = Buffer.byteLength(payload);
  res.writeHead(response.status, headers);
  res.end(payload);
}

/** An error as a response in the shape of its plane. Anything that is not a DpsError is a 500 that says nothing more. */
export function errorResponse(error: unknown, shape: ErrorShape, now: Date = new Date()): ServiceResponse {
  const known = error instanceof DpsError;
  const status = known ? error.status : 500;
  const errorCode = known ? error.errorCode : ErrorCodes.internal;
  const message = known ? error.message : 'Internal error in the emulator';
  const dps = errorBody(errorCode, message, now);
  if (shape === 'dps') return { status, body: dps };
  return { status, body: { error: { code: armCode(status), message, errorCode, trackingId: dps.trackingId } } };
}

export function dpsError(status: number, message: string, errorCode: number = genericErrorCode(status)): DpsError {
  return new DpsError(status, errorCode, message);
}

function armCode(status: number): string {
  const names: Record<number, string> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    404: 'NotFound',
    405: 'MethodNotAllowed',
    409: 'Conflict',
    412: 'PreconditionFailed',
    413: 'RequestEntityTooLarge',
    504: 'GatewayTimeout',
  };
  return names[status] ?? 'InternalServerError';
}

/**
 * A log read by a follower, GET ...[?from=<n>][&waitSeconds=<0-60>]: what `logged` keeps from
 * sequence number n on, oldest first; when there is none yet, the next entry from n on that
 * `onEntry` reports within s seconds, else none. A follower asks again with from = the last
 * sequenceNumber + 1.
 */
export async function followLog<T extends { sequenceNumber: number }>(
  request: ServiceRequest,
  logged: (from: number) => T[],
  onEntry: (listener: (entry: T) => void) => () => void,
): Promise<ServiceResponse> {
  const from = wholeNumber(request, 'from', Number.MAX_SAFE_INTEGER);
  const waitMs = wholeNumber(request, 'waitSeconds', MAX_WAIT_SECONDS) * 1000;
  const kept = logged(from);
  if (kept.length > 0 || waitMs === 0) return { status: 200, body: kept };
  const next = await new Promise<T[]>((resolve) => {
    const timer = setTimeout(() => {
      stop();
      resolve([]);
    }, waitMs);
    timer.unref(); // a follower left waiting does not keep a closing emulator alive
    const stop = onEntry((entry) => {
      if (entry.sequenceNumber < from) return;
      clearTimeout(timer);
      stop();
      resolve([entry]);
    });
  });
  return { status: 200, body: next };
}

function wholeNumber(request: ServiceRequest, name: string, max: number): number {
  const text = request.query.get(name);
  if (text === null) return 0;
  if (!/^\d{1,16}$/.test(text) || Number(text) > max) throw dpsError(400, `${name} must be a whole number from 0 to ${max}`);
  return Number(text);
}

/** Plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The If-Match header, when given once. */
export function ifMatch(request: ServiceRequest): string | undefined {
  const value = request.headers['if-match'];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export function noRoute(request: ServiceRequest): DpsError {
  return dpsError(404, `No such resource: ${request.method} /${request.segments.join('/').slice(0, 200)}`, ServiceErrorCodes.noRoute);
}

export function notAllowed(request: ServiceRequest): DpsError {
  return dpsError(
    405,
    `${request.method} is not supported on /${request.segments.join('/').slice(0, 200)}`,
    ServiceErrorCodes.methodNotAllowed,
  );
}

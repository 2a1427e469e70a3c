// DPS message bodies: the register request a device sends and the responses DPS returns.
// Field names from the DPS device REST API (DeviceRegistrationResult, RegistrationOperationStatus)
// as azure-sdk-for-c parses them (sdk/src/azure/iot/az_iot_provisioning_client.c).
import { utf8Decode, utf8Encode } from '../bytes.js';
import { type ErrorDetails, ProvisioningError } from '../errors.js';
import { isDeviceId, validateRegistrationId } from '../identity.js';
import { printable } from '../text.js';

export type RegistrationStatus = 'unassigned' | 'assigning' | 'assigned' | 'failed' | 'disabled';
export const REGISTRATION_STATUSES: readonly RegistrationStatus[] = ['unassigned', 'assigning', 'assigned', 'failed', 'disabled'];

export interface RegistrationState {
  registrationId: string;
  assignedHub?: string;
  deviceId?: string;
  status: RegistrationStatus;
  substatus?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
  payload?: unknown;
  errorCode?: number;
  errorMessage?: string;
}

export type DpsResponse =
  | {
      kind: 'operation';
      status: number;
      operationId: string;
      registrationStatus: RegistrationStatus;
      registrationState?: RegistrationState;
    }
  | { kind: 'error'; status: number; errorCode?: number; trackingId?: string; message?: string; operationId?: string };

export const DEFAULT_MAX_BODY_BYTES = 16 * 1024;
/** Longest operation ID accepted (real ones are ~60 characters). */
const MAX_OPERATION_ID_LENGTH = 256;
/**
 * Texts from the server (error messages, tracking IDs) are cut to this length and their control
 * characters escaped (see text.ts) before they reach our errors: hosts print those.
 */
const MAX_SERVER_MESSAGE_LENGTH = 500;
/**
 * Deepest nesting of arrays and objects accepted in a body, as azure-sdk-for-c's JSON reader
 * (_az_MAX_JSON_STACK_SIZE, sdk/core/core/src/az_json_private.h). Deeper values could not be
 * serialised again (JSON.stringify recurses: ~5000 levels overflow Node's stack) to be stored or
 * printed, and parsing them strains a device's small stack.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Largest register request DPS takes: "Maximum size of message: 96 KB, not adjustable" (DPS quotas
 * and limits, learn.microsoft.com/azure/iot-dps/about-iot-dps#quotas-and-limits). The client
 * counts the whole MQTT PUBLISH packet (topic and body) against it, in KiB to be safe. The local
 * emulator's own limit is lower (64 KiB per MQTT packet).
 */
export const DPS_MAX_MESSAGE_BYTES = 96 * 1024;

/**
 * '{"registrationId":"<id>"}', plus '"payload":<JSON>' when `payload` is not undefined. UTF-8 bytes.
 * The payload nests at most MAX_JSON_DEPTH - 1 levels, so that the body stays within MAX_JSON_DEPTH.
 */
export function registerRequestBody(registrationId: string, payload?: unknown): Uint8Array {
  validateRegistrationId(registrationId);
  if (payload === undefined) return utf8Encode(JSON.stringify({ registrationId }));
  const deepest = MAX_JSON_DEPTH - 1;
  if (nestsDeeper(payload, deepest)) {
    throw new ProvisioningError(
      'invalid-input',
      `The registration payload nests arrays and objects deeper than ${deepest} levels: the register body may nest at most ${MAX_JSON_DEPTH} (azure-sdk-for-c's JSON limit)`,
    );
  }
  let payloadJson: string | undefined;
  try {
    payloadJson = JSON.stringify(payload);
  } catch {
    payloadJson = undefined;
  }
  if (payloadJson === undefined) {
    throw new ProvisioningError('invalid-input', 'The registration payload cannot be converted to JSON (a cycle, a BigInt or a function?)');
  }
  return utf8Encode(`{"registrationId":${JSON.stringify(registrationId)},"payload":${payloadJson}}`);
}

/**
 * Parse a DPS response body for the status its topic carried.
 * - 2xx: strict. Must be a JSON object with a string `operationId` (non-empty unless the status
 *   is final: azure-sdk-for-c's own "disabled" example sends "") and a known `status`; a
 *   `registrationState`, when present, must be an object with typed fields. Otherwise `protocol`.
 * - any other status: lenient. Servers send error bodies that are empty or not JSON; those
 *   still yield kind 'error' with the status. Known fields are taken when well-typed.
 * Bodies over `maxBytes` (default 16 KiB) are refused as `protocol` whatever the status.
 */
export function parseResponseBody(status: number, body: Uint8Array, maxBytes = DEFAULT_MAX_BODY_BYTES): DpsResponse {
  checkSize(body, maxBytes, 'response');
  if (status < 200 || status > 299) return parseErrorBody(status, body);
  const json = parseJsonObject(body, maxBytes, 'response');
  const details = { status, ...errorDetails(json) };
  const registrationStatus = json.status;
  if (!isRegistrationStatus(registrationStatus)) {
    throw protocol(
      json.status === undefined
        ? `DPS answered ${status} without a registration status`
        : `DPS answered ${status} with an unknown registration status`,
      details,
    );
  }
  const operationId = json.operationId;
  if (typeof operationId !== 'string') throw protocol(`DPS answered ${status} without an operationId`, details);
  const final = registrationStatus !== 'assigning' && registrationStatus !== 'unassigned';
  if ((!final && operationId.length === 0) || !isPrintableAscii(operationId, MAX_OPERATION_ID_LENGTH)) {
    throw protocol(`DPS answered ${status} with an unusable operationId`, details);
  }
  const response: DpsResponse = { kind: 'operation', status, operationId, registrationStatus };
  if (json.registrationState !== undefined && json.registrationState !== null) {
    response.registrationState = parseRegistrationState(json.registrationState, registrationStatus, details);
  }
  return response;
}

export function isRegistrationStatus(value: unknown): value is RegistrationStatus {
  return typeof value === 'string' && (REGISTRATION_STATUSES as readonly string[]).includes(value);
}

function parseRegistrationState(value: unknown, fallbackStatus: RegistrationStatus, details: ErrorDetails): RegistrationState {
  if (!isObject(value)) throw protocol('DPS sent a registrationState that is not an object', details);
  const bad = (field: string) => protocol(`DPS sent a registrationState with an invalid ${field}`, details);
  if (typeof value.registrationId !== 'string') throw bad('registrationId');
  let status = fallbackStatus;
  if (value.status !== undefined && value.status !== null) {
    if (!isRegistrationStatus(value.status)) throw bad('status');
    status = value.status;
  }
  const state: RegistrationState = { registrationId: value.registrationId, status };
  for (const field of [
    'assignedHub',
    'deviceId',
    'substatus',
    'createdDateTimeUtc',
    'lastUpdatedDateTimeUtc',
    'etag',
    'errorMessage',
  ] as const) {
    const v = value[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw bad(field);
    state[field] = v;
  }
  // As azure-sdk-for-c: a hub without a device ID (or the reverse) is not a usable assignment.
  if ((state.assignedHub === undefined) !== (state.deviceId === undefined)) {
    throw protocol('DPS sent an assigned hub without a device ID, or a device ID without a hub', details);
  }
  // The device connects to the hub, and stores and prints both: nothing else may pass for them.
  if (state.assignedHub !== undefined && !isHostName(state.assignedHub)) {
    throw protocol('DPS sent an assignedHub that is not a DNS host name', details);
  }
  if (state.deviceId !== undefined && !isDeviceId(state.deviceId)) {
    throw protocol("DPS sent a deviceId that IoT Hub does not allow (up to 128 of A-Z a-z 0-9 - . % _ * ? ! ( ) , : = @ $ ')", details);
  }
  if (state.errorMessage !== undefined) state.errorMessage = clip(state.errorMessage);
  if (value.errorCode !== undefined && value.errorCode !== null) {
    if (!Number.isSafeInteger(value.errorCode)) throw bad('errorCode');
    state.errorCode = value.errorCode as number;
  }
  if (value.payload !== undefined && value.payload !== null) state.payload = value.payload;
  return state;
}

function parseErrorBody(status: number, body: Uint8Array): DpsResponse {
  const response: DpsResponse = { kind: 'error', status };
  let json: unknown;
  try {
    const text = utf8Decode(body);
    if (isNestedDeeper(text, MAX_JSON_DEPTH)) return response;
    json = JSON.parse(text);
  } catch {
    return response;
  }
  if (!isObject(json)) return response;
  Object.assign(response, errorDetails(json));
  if (typeof json.message === 'string' && json.message.length > 0) response.message = clip(json.message);
  if (typeof json.operationId === 'string' && isPrintableAscii(json.operationId, MAX_OPERATION_ID_LENGTH) && json.operationId.length > 0) {
    response.operationId = json.operationId;
  }
  return response;
}

/** errorCode (a number, or digits in a string) and trackingId, when well-typed. */
function errorDetails(json: Record<string, unknown>): { errorCode?: number; trackingId?: string } {
  const out: { errorCode?: number; trackingId?: string } = {};
  const code = json.errorCode;
  if (typeof code === 'number' && Number.isSafeInteger(code)) out.errorCode = code;
  else if (typeof code === 'string' && /^\d{1,9}$/.test(code)) out.errorCode = Number(code);
  if (typeof json.trackingId === 'string' && json.trackingId.length > 0) out.trackingId = clip(json.trackingId);
  return out;
}

function parseJsonObject(body: Uint8Array, maxBytes: number, what: string): Record<string, unknown> {
  checkSize(body, maxBytes, what);
  let text: string;
  try {
    text = utf8Decode(body);
  } catch {
    throw protocol(`The DPS ${what} body is not valid UTF-8`);
  }
  if (isNestedDeeper(text, MAX_JSON_DEPTH)) throw protocol(`The DPS ${what} body nests deeper than ${MAX_JSON_DEPTH} levels`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw protocol(`The DPS ${what} body is not valid JSON`);
  }
  if (!isObject(json)) throw protocol(`The DPS ${what} body is not a JSON object`);
  return json;
}

/**
 * Whether a value nests arrays and objects more than `maxDepth` levels. Walked without recursion
 * and no deeper than that, so a deep value cannot overflow the stack; an object shared by several
 * parents is walked again only when reached deeper. A cycle answers false: JSON.stringify names it.
 */
function nestsDeeper(value: unknown, maxDepth: number): boolean {
  const reached = new Map<object, number>();
  const ancestors = new Set<object>();
  const pending: { item: unknown; depth: number; leave?: object }[] = [{ item: value, depth: 0 }];
  while (pending.length > 0) {
    const { item, depth, leave } = pending.pop()!;
    if (leave !== undefined) {
      ancestors.delete(leave);
      continue;
    }
    if (typeof item !== 'object' || item === null) continue;
    if (ancestors.has(item)) return false;
    if ((reached.get(item) ?? -1) >= depth) continue;
    if (depth + 1 > maxDepth) return true;
    reached.set(item, depth);
    ancestors.add(item);
    pending.push({ item: undefined, depth, leave: item });
    for (const child of Array.isArray(item) ? item : Object.values(item)) pending.push({ item: child, depth: depth + 1 });
  }
  return false;
}

/** Whether JSON `text` nests arrays and objects more than `maxDepth` levels (checked before parsing; strings skipped). */
export function isNestedDeeper(text: string, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

function checkSize(body: Uint8Array, maxBytes: number, what: string): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new ProvisioningError('invalid-input', 'The body size limit must be a whole, non-negative number of bytes');
  }
  if (body.length > maxBytes) {
    throw protocol(`The DPS ${what} body is ${body.length} bytes, over the ${maxBytes}-byte limit`);
  }
}

/**
 * Whether `name` is a DNS host name (RFC 1123 section 2.1, as IoT Hub names are): dot-separated
 * labels of 1-63 letters, digits and hyphens, none starting or ending with a hyphen, 253
 * characters at most; no port, path, space or trailing dot.
 */
export function isHostName(name: unknown): name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 253) return false;
  // Label lengths are counted, not left to a bounded quantifier: XS (as @agoric/xsnap builds it)
  // does not enforce one inside an optional group (/^a(?:[a-]{0,2}a)?$/ matches 'aaaaa').
  return name.split('.').every((label) => label.length <= 63 && /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/.test(label));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPrintableAscii(text: string, maxLength: number): boolean {
  return text.length <= maxLength && /^[\x21-\x7e]*$/.test(text);
}

function clip(text: string): string {
  const shown = printable(text);
  return shown.length <= MAX_SERVER_MESSAGE_LENGTH ? shown : `${shown.slice(0, MAX_SERVER_MESSAGE_LENGTH)}…`;
}

function protocol(message: string, details: ErrorDetails = {}): ProvisioningError {
  return new ProvisioningError('protocol', message, details);
}

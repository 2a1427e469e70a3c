// DPS over MQTT: the username and the topics, built and parsed by pure functions.
// Shapes from azure-sdk-for-c (sdk/src/azure/iot/az_iot_provisioning_client.c) and the Node SDK
// (azure-iot-provisioning-device-mqtt, dist/mqtt.js); both sides here (device and emulator).
import { ProvisioningError } from '../errors.js';
import { validateIdScope, validateRegistrationId } from '../identity.js';

export const DPS_API_VERSION = '2019-03-31';
export const RESPONSE_SUBSCRIBE_TOPIC = '$dps/registrations/res/#';

const RESPONSE_PREFIX = '$dps/registrations/res/';
const REGISTER_PREFIX = '$dps/registrations/PUT/iotdps-register/';
const POLL_PREFIX = '$dps/registrations/GET/iotdps-get-operationstatus/';
/** A request id we send: URL-safe without encoding (e.g. '1', a UUID, 'a3f.12'). */
const RID = /^[A-Za-z0-9._~-]{1,64}$/;
/** retry-after is whole seconds; nine digits is ~31 years, plenty for any real server. */
const RETRY_AFTER = /^\d{1,9}$/;

/** '<idScope>/registrations/<registrationId>/api-version=2019-03-31[&ClientVersion=<url-encoded>]' */
export function dpsUsername(idScope: string, registrationId: string, clientVersion?: string): string {
  validateIdScope(idScope);
  validateRegistrationId(registrationId);
  let username = `${idScope}/registrations/${registrationId}/api-version=${DPS_API_VERSION}`;
  if (clientVersion !== undefined && clientVersion !== '') {
    username += `&ClientVersion=${encode(clientVersion, 'The client version')}`;
  }
  return username;
}

export interface DpsUsername {
  idScope: string;
  /** As sent: not checked against our lower-case rule (other clients may send any case). */
  registrationId: string;
  apiVersion: string;
  clientVersion?: string;
}

/**
 * The server side: split a DPS MQTT username. Returns undefined when it is not of the form
 * '<idScope>/registrations/<registrationId>/api-version=<version>[&<name>=<value>...]';
 * throws `protocol` for bad URL encoding or a repeated parameter in the tail.
 */
export function parseDpsUsername(username: string): DpsUsername | undefined {
  if (typeof username !== 'string') return undefined;
  const match = /^([^/]+)\/registrations\/([^/]+)\/api-version=([^&]*)(?:&(.*))?$/.exec(username);
  if (!match || !match[3]) return undefined;
  const parsed: DpsUsername = { idScope: match[1]!, registrationId: match[2]!, apiVersion: match[3] };
  const clientVersion = parseQuery(match[4] ?? '').get('ClientVersion');
  if (clientVersion !== undefined) parsed.clientVersion = clientVersion;
  return parsed;
}

/** '$dps/registrations/PUT/iotdps-register/?$rid=<rid>' */
export function registerTopic(rid: string): string {
  return `${REGISTER_PREFIX}?$rid=${checkRid(rid)}`;
}

/** '$dps/registrations/GET/iotdps-get-operationstatus/?$rid=<rid>&operationId=<operationId, URL-encoded>' */
export function pollTopic(rid: string, operationId: string): string {
  if (typeof operationId !== 'string' || operationId.length === 0) {
    throw new ProvisioningError('invalid-input', 'The operation ID to poll is empty');
  }
  return `${POLL_PREFIX}?$rid=${checkRid(rid)}&operationId=${encode(operationId, 'The operation ID')}`;
}

export interface ResponseTopic {
  status: number;
  rid?: string;
  retryAfterSeconds?: number;
}

/**
 * Parse '$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<seconds>]' (parameters in any
 * order, unknown ones ignored, values URL-decoded). Returns undefined for a topic that is not a
 * DPS response topic; throws `protocol` for one that is but is malformed: a status that is not
 * three digits from 100 to 599, text after the status other than '/?<query>', a repeated or
 * non-numeric retry-after, a repeated $rid, bad URL encoding.
 */
export function parseResponseTopic(topic: string): ResponseTopic | undefined {
  if (typeof topic !== 'string' || !topic.startsWith(RESPONSE_PREFIX)) return undefined;
  const rest = topic.slice(RESPONSE_PREFIX.length);
  const slash = rest.indexOf('/');
  const statusText = slash === -1 ? rest : rest.slice(0, slash);
  if (!/^[1-5]\d\d$/.test(statusText)) {
    throw malformed('a DPS response topic has no valid status (three digits, 100-599)');
  }
  const result: ResponseTopic = { status: Number(statusText) };
  if (slash === -1) return result;
  const tail = rest.slice(slash + 1);
  if (tail === '') return result;
  if (!tail.startsWith('?')) throw malformed("a DPS response topic has text after the status that is not '/?<parameters>'");
  const params = parseQuery(tail.slice(1));
  const rid = params.get('$rid');
  if (rid !== undefined) result.rid = rid;
  const retryAfter = params.get('retry-after');
  if (retryAfter !== undefined) {
    if (!RETRY_AFTER.test(retryAfter)) throw malformed('a DPS response topic has a retry-after that is not whole seconds');
    result.retryAfterSeconds = Number(retryAfter);
  }
  return result;
}

export type RequestTopic = { type: 'register'; rid: string } | { type: 'poll'; rid: string; operationId: string };

/**
 * The server side: parse a device's request topic. Returns undefined for a topic that is not a
 * DPS register or poll request; throws `protocol` for one that is but lacks $rid (or, for a
 * poll, operationId), repeats one, or has bad URL encoding. Values come back URL-decoded.
 */
export function parseRequestTopic(topic: string): RequestTopic | undefined {
  if (typeof topic !== 'string') return undefined;
  let type: 'register' | 'poll';
  let rest: string;
  if (topic.startsWith(REGISTER_PREFIX)) {
    type = 'register';
    rest = topic.slice(REGISTER_PREFIX.length);
  } else if (topic.startsWith(POLL_PREFIX)) {
    type = 'poll';
    rest = topic.slice(POLL_PREFIX.length);
  } else {
    return undefined;
  }
  if (!rest.startsWith('?')) throw malformed("a DPS request topic has no '?<parameters>'");
  const params = parseQuery(rest.slice(1));
  const rid = params.get('$rid');
  if (!rid) throw malformed('a DPS request topic has no $rid');
  if (type === 'register') return { type, rid };
  const operationId = params.get('operationId');
  if (!operationId) throw malformed('a DPS poll request topic has no operationId');
  return { type, rid, operationId };
}

/** The server side: '$dps/registrations/res/<status>/?$rid=<rid, URL-encoded>[&retry-after=<seconds>]' */
export function responseTopic(status: number, rid: string, retryAfterSeconds?: number): string {
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new ProvisioningError('invalid-input', 'A DPS response status must be a whole number from 100 to 599');
  }
  if (typeof rid !== 'string' || rid.length === 0) {
    throw new ProvisioningError('invalid-input', 'A DPS response needs the request id ($rid) it answers');
  }
  let topic = `${RESPONSE_PREFIX}${status}/?$rid=${encode(rid, 'The request id')}`;
  if (retryAfterSeconds !== undefined) {
    if (!Number.isInteger(retryAfterSeconds) || retryAfterSeconds < 0 || retryAfterSeconds > 999_999_999) {
      throw new ProvisioningError('invalid-input', 'retry-after must be a whole, non-negative number of seconds');
    }
    topic += `&retry-after=${retryAfterSeconds}`;
  }
  return topic;
}

/** 'a=1&b=2' → decoded map; empty segments are skipped; a repeated name is malformed. */
function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decode(eq === -1 ? part : part.slice(0, eq));
    const value = eq === -1 ? '' : decode(part.slice(eq + 1));
    if (params.has(name)) throw malformed(`a DPS topic repeats the parameter '${name.length <= 32 ? name : name.slice(0, 32)}'`);
    params.set(name, value);
  }
  return params;
}

function checkRid(rid: string): string {
  if (typeof rid !== 'string' || !RID.test(rid)) {
    throw new ProvisioningError('invalid-input', 'A request id ($rid) must be 1-64 characters of A-Z a-z 0-9 . _ ~ -');
  }
  return rid;
}

function encode(text: string, label: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    throw new ProvisioningError('invalid-input', `${label} contains an unpaired surrogate (not valid Unicode)`);
  }
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw malformed('a DPS topic has a parameter with invalid URL encoding');
  }
}

function malformed(why: string): ProvisioningError {
  return new ProvisioningError('protocol', `Malformed topic: ${why}`);
}

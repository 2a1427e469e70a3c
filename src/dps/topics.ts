// DPS over MQTT, the device's side: the username and the topics it sends, and the response
// topics it parses, by pure functions. Shapes from azure-sdk-for-c
// (sdk/src/azure/iot/az_iot_provisioning_client.c) and the Node SDK
// (azure-iot-provisioning-device-mqtt, dist/mqtt.js). The service's side is ./server.ts.
import { ProvisioningError } from '../errors.js';
import { validateIdScope, validateRegistrationId } from '../identity.js';

export const DPS_API_VERSION = '2019-03-31';
export const RESPONSE_SUBSCRIBE_TOPIC = '$dps/registrations/res/#';

export const RESPONSE_PREFIX = '$dps/registrations/res/';
export const REGISTER_PREFIX = '$dps/registrations/PUT/iotdps-register/';
export const POLL_PREFIX = '$dps/registrations/GET/iotdps-get-operationstatus/';
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

/** 'a=1&b=2' → decoded map; empty segments are skipped; a repeated name is malformed. */
export function parseQuery(query: string): Map<string, string> {
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

export function encode(text: string, label: string): string {
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

export function malformed(why: string): ProvisioningError {
  return new ProvisioningError('protocol', `Malformed topic: ${why}`);
}

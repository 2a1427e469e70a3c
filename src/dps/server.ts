// DPS over MQTT, the service's side, for the local emulator and the tests' scripted DPS: the
// username and request topics a device sends, parsed, and the response topics built. The
// firmware does not include this module (manifest.json lists the device's modules).
import { ProvisioningError } from '../errors.js';
import { encode, malformed, POLL_PREFIX, parseQuery, REGISTER_PREFIX, RESPONSE_PREFIX } from './topics.js';

export interface DpsUsername {
  idScope: string;
  /** As sent: not checked against our lower-case rule (other clients may send any case). */
  registrationId: string;
  apiVersion: string;
  clientVersion?: string;
}

/**
 * Split a DPS MQTT username. Returns undefined when it is not of the form
 * '<idScope>/registrations/<registrationId>/api-version=<version>[&<name>=<value>...]';
 * throws `protocol` for bad URL encoding or a repeated parameter in the tail.
 */
export function parseDpsUsername(username: string): DpsUsername | undefined {
  if (typeof username !== 'string') return undefined;
  const match = /^([^/]+)\/registrations\/([^/]+)\/api-version=([^&]*)(?:&(.*))?$/.exec(username);
  if (!match?.[3]) return undefined;
  const parsed: DpsUsername = { idScope: match[1]!, registrationId: match[2]!, apiVersion: match[3] };
  const clientVersion = parseQuery(match[4] ?? '').get('ClientVersion');
  if (clientVersion !== undefined) parsed.clientVersion = clientVersion;
  return parsed;
}

export type RequestTopic = { type: 'register'; rid: string } | { type: 'poll'; rid: string; operationId: string };

/**
 * Parse a device's request topic. Returns undefined for a topic that is not a
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

/** '$dps/registrations/res/<status>/?$rid=<rid, URL-encoded>[&retry-after=<seconds>]' */
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

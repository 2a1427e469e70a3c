// IoT Hub over MQTT (device side): the CONNECT fields and the topics, built and parsed by pure
// functions. Source: Microsoft's "Communicate with an IoT hub using the MQTT protocol"
// (MicrosoftDocs/azure-docs articles/iot/iot-mqtt-connect-to-iot-hub.md,
// https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub), checked against
// azure-sdk-for-c (sdk/src/azure/iot/az_iot_hub_client*.c) and its unit tests.
//
// The device ID goes into the username and the topics as it is, as both Microsoft SDKs send it
// (azure-sdk-for-c az_iot_hub_client_get_user_name, azure-iot-device-mqtt's topic strings): every
// character IoT Hub allows in a device ID is legal in an MQTT topic name. Only the SAS token's
// resource is URL-encoded, as the doc says ("sr={URL-encoded-resourceURI}").
import { isHostName } from '../dps/messages.js';
import { ProvisioningError } from '../errors.js';
import { isDeviceId } from '../identity.js';
import { buildSasToken } from '../sas.js';

export const HUB_API_VERSION = '2021-04-12';
export const TWIN_RESPONSE_SUBSCRIBE_TOPIC = '$iothub/twin/res/#';
export const DESIRED_SUBSCRIBE_TOPIC = '$iothub/twin/PATCH/properties/desired/#';
export const METHODS_SUBSCRIBE_TOPIC = '$iothub/methods/POST/#';

const TWIN_RESPONSE_PREFIX = '$iothub/twin/res/';
const DESIRED_PREFIX = '$iothub/twin/PATCH/properties/desired/';
const METHODS_PREFIX = '$iothub/methods/POST/';
/** A request id we send: URL-safe without encoding. */
const RID = /^[A-Za-z0-9._~-]+$/;
/** A request id the hub sends (echoed back as it came): URL-safe characters and %-escapes. */
const HUB_RID = /^[A-Za-z0-9._~%:-]+$/;
const MAX_RID_LENGTH = 128;
/**
 * A direct method name we accept: 1-128 characters, letters, digits and - . _ : ~ ! $ ' ( ) * , ;
 * = @. The doc bounds neither; a name with a slash, '?', '%', '&', a space or a control character
 * is refused as malformed (no device method needs one, and it could not be printed safely).
 */
const METHOD_NAME = /^[A-Za-z0-9\-._:~!$'()*,;=@]+$/;
export const MAX_METHOD_NAME_LENGTH = 128;
/** $version values: whole, non-negative, at most 15 digits (a safe integer). */
const VERSION = /^\d{1,15}$/;

/** '<hub>/<deviceId>/?api-version=2021-04-12[&model-id=<url-encoded model ID>]' */
export function hubUsername(hub: string, deviceId: string, modelId?: string): string {
  checkHub(hub);
  checkDeviceId(deviceId);
  let username = `${hub}/${deviceId}/?api-version=${HUB_API_VERSION}`;
  if (modelId !== undefined) {
    // IoT Plug and Play model IDs are DTMIs ('dtmi:com:example:Thermostat;1'), URL-encoded as
    // azure-sdk-for-c does (test_az_iot_hub_client.c: 'model-id=dtmi%3AYOUR_COMPANY_NAME_HERE%3Asample_device%3B1').
    if (typeof modelId !== 'string' || !/^dtmi:[^\s]+$/.test(modelId) || modelId.length > 512) {
      throw invalid("The model ID must be a DTMI such as 'dtmi:com:example:Thermostat;1' (at most 512 characters)");
    }
    username += `&model-id=${encode(modelId, 'The model ID')}`;
  }
  return username;
}

/** The MQTT password: a SAS token for '<hub>/devices/<deviceId>' signed with the device key, no skn. */
export function hubSasToken(hub: string, deviceId: string, deviceKey: string, expiry: number): string {
  checkHub(hub);
  checkDeviceId(deviceId);
  return buildSasToken({ resource: `${hub}/devices/${deviceId}`, key: deviceKey, expiry });
}

/** Message properties of a device-to-cloud message. */
export interface TelemetryProperties {
  /** $.ct, e.g. 'application/json' (IoT Hub routing on the body needs it). */
  contentType?: string;
  /** $.ce, e.g. 'utf-8'. */
  contentEncoding?: string;
  /** $.mid */
  messageId?: string;
  /** $.cid */
  correlationId?: string;
  /** Application properties; names must not start with '$' (system properties). */
  properties?: Record<string, string>;
}

/** 'devices/<deviceId>/messages/events/[<url-encoded property bag>]' */
export function telemetryTopic(deviceId: string, properties: TelemetryProperties = {}): string {
  checkDeviceId(deviceId);
  const bag: string[] = [];
  const system: [keyof TelemetryProperties, string][] = [
    ['contentType', '$.ct'],
    ['contentEncoding', '$.ce'],
    ['messageId', '$.mid'],
    ['correlationId', '$.cid'],
  ];
  for (const [field, name] of system) {
    const value = properties[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw invalid(`The message property ${field} must be a string`);
    bag.push(`${name}=${encode(value, `The message property ${field}`)}`);
  }
  for (const [name, value] of Object.entries(properties.properties ?? {})) {
    if (name.length === 0 || name.startsWith('$')) {
      throw invalid("An application property name must not be empty nor start with '$' (reserved for system properties)");
    }
    if (typeof value !== 'string') throw invalid('An application property value must be a string');
    bag.push(`${encode(name, 'An application property name')}=${encode(value, 'An application property value')}`);
  }
  return `devices/${deviceId}/messages/events/${bag.join('&')}`;
}

/** 'devices/<deviceId>/messages/devicebound/#' */
export function c2dSubscribeTopic(deviceId: string): string {
  checkDeviceId(deviceId);
  return `devices/${deviceId}/messages/devicebound/#`;
}

/** A property bag, decoded: a name without '=' has the value null, 'name=' the empty string. */
export type MessageProperties = Record<string, string | null>;

/**
 * Parse 'devices/<deviceId>/messages/devicebound/[<property bag>]' (a leading '?' in the bag is
 * tolerated, as the doc's example shows one). Returns undefined for another topic; throws
 * `protocol` for bad URL encoding or a repeated property. The result has no prototype.
 */
export function parseC2dTopic(topic: string, deviceId: string): MessageProperties | undefined {
  const prefix = `devices/${deviceId}/messages/devicebound/`;
  if (typeof topic !== 'string' || !topic.startsWith(prefix)) return undefined;
  const bag = topic.slice(prefix.length);
  const properties: MessageProperties = Object.create(null);
  for (const [name, value] of parsePairs(bag.startsWith('?') ? bag.slice(1) : bag, 'cloud-to-device')) {
    properties[decode(name)] = value === null ? null : decode(value);
  }
  return properties;
}

/** '$iothub/twin/GET/?$rid=<rid>' (empty body) */
export function twinGetTopic(rid: string): string {
  return `$iothub/twin/GET/?$rid=${checkRid(rid)}`;
}

/** '$iothub/twin/PATCH/properties/reported/?$rid=<rid>' (body: the JSON patch) */
export function reportedPatchTopic(rid: string): string {
  return `$iothub/twin/PATCH/properties/reported/?$rid=${checkRid(rid)}`;
}

export interface TwinResponseTopic {
  status: number;
  rid: string;
  /** The reported properties' version after a PATCH (204). */
  version?: number;
}

/**
 * Parse '$iothub/twin/res/<status>/?$rid=<rid>[&$version=<n>]' (parameters in any order, others
 * ignored). Undefined for another topic; `protocol` for a malformed one (status not 100-599, no
 * $rid, a $version that is not a whole number, a repeated parameter).
 */
export function parseTwinResponseTopic(topic: string): TwinResponseTopic | undefined {
  if (typeof topic !== 'string' || !topic.startsWith(TWIN_RESPONSE_PREFIX)) return undefined;
  const rest = topic.slice(TWIN_RESPONSE_PREFIX.length);
  const query = rest.indexOf('/?');
  const statusText = query === -1 ? rest : rest.slice(0, query);
  if (!/^[1-5]\d\d$/.test(statusText)) throw malformed('a twin response topic has no valid status (three digits, 100-599)');
  const params = parseParams(query === -1 ? '' : rest.slice(query + 2), 'twin response');
  const rid = params.get('$rid');
  if (!rid) throw malformed('a twin response topic has no $rid');
  const response: TwinResponseTopic = { status: Number(statusText), rid };
  const version = params.get('$version');
  if (version !== undefined) response.version = parseVersion(version, 'twin response');
  return response;
}

/**
 * Parse '$iothub/twin/PATCH/properties/desired/?$version=<n>'. Undefined for another topic;
 * `protocol` when malformed. `version` is absent when the topic carries none (the body's counts).
 */
export function parseDesiredTopic(topic: string): { version?: number } | undefined {
  if (typeof topic !== 'string' || !topic.startsWith(DESIRED_PREFIX)) return undefined;
  const rest = topic.slice(DESIRED_PREFIX.length);
  if (rest !== '' && !rest.startsWith('?')) throw malformed("a desired-properties topic has text that is not '?<parameters>'");
  const version = parseParams(rest.slice(1), 'desired-properties').get('$version');
  return version === undefined ? {} : { version: parseVersion(version, 'desired-properties') };
}

export interface MethodRequestTopic {
  name: string;
  /** As the hub sent it (not decoded): echoed in the response topic. */
  rid: string;
}

/**
 * Parse '$iothub/methods/POST/<name>/?$rid=<rid>'. Undefined for another topic; `protocol` for a
 * malformed one, including a method name outside METHOD_NAME's rule or longer than
 * MAX_METHOD_NAME_LENGTH, and a $rid of other characters than A-Z a-z 0-9 . _ ~ % : -.
 */
export function parseMethodTopic(topic: string): MethodRequestTopic | undefined {
  if (typeof topic !== 'string' || !topic.startsWith(METHODS_PREFIX)) return undefined;
  const rest = topic.slice(METHODS_PREFIX.length);
  const query = rest.indexOf('/?');
  if (query === -1) throw malformed("a direct method topic has no '/?$rid=<rid>'");
  const name = rest.slice(0, query);
  if (name.length === 0 || name.length > MAX_METHOD_NAME_LENGTH || !METHOD_NAME.test(name)) {
    throw malformed(`a direct method name must be 1-${MAX_METHOD_NAME_LENGTH} of A-Z a-z 0-9 - . _ : ~ ! $ ' ( ) * , ; = @`);
  }
  let rid: string | undefined;
  for (const [key, value] of parsePairs(rest.slice(query + 2), 'direct method')) {
    if (key === '$rid') rid = value ?? '';
  }
  if (rid === undefined || rid.length === 0 || rid.length > MAX_RID_LENGTH || !HUB_RID.test(rid)) {
    throw malformed('a direct method topic has no usable $rid');
  }
  return { name, rid };
}

/** '$iothub/methods/res/<status>/?$rid=<rid>' (status: a whole number 0-65535, as azure-sdk-for-c's uint16_t) */
export function methodResponseTopic(status: number, rid: string): string {
  if (!Number.isInteger(status) || status < 0 || status > 65_535) {
    throw invalid('A direct method status must be a whole number from 0 to 65535');
  }
  if (typeof rid !== 'string' || rid.length === 0 || rid.length > MAX_RID_LENGTH || !HUB_RID.test(rid)) {
    throw invalid('A direct method response needs the request id ($rid) it answers');
  }
  return `$iothub/methods/res/${status}/?$rid=${rid}`;
}

export function checkHub(hub: string): string {
  if (!isHostName(hub)) throw invalid('The IoT hub must be a DNS host name such as my-hub.azure-devices.net');
  return hub;
}

export function checkDeviceId(deviceId: string): string {
  if (!isDeviceId(deviceId) || deviceId.length === 0) {
    throw invalid("The device ID must be 1-128 of A-Z a-z 0-9 - . % _ * ? ! ( ) , : = @ $ '");
  }
  return deviceId;
}

function checkRid(rid: string): string {
  if (typeof rid !== 'string' || rid.length === 0 || rid.length > 64 || !RID.test(rid)) {
    throw invalid('A request id ($rid) must be 1-64 characters of A-Z a-z 0-9 . _ ~ -');
  }
  return rid;
}

/** 'a=1&b&c=' → [['a','1'], ['b',null], ['c','']], not decoded; empty segments skipped; a repeated name is malformed. */
function parsePairs(query: string, what: string): [string, string | null][] {
  const pairs: [string, string | null][] = [];
  const seen = new Set<string>();
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (seen.has(name)) throw malformed(`a ${what} topic repeats a parameter`);
    seen.add(name);
    pairs.push([name, eq === -1 ? null : part.slice(eq + 1)]);
  }
  return pairs;
}

/** The parameters of a twin topic, decoded. */
function parseParams(query: string, what: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const [name, value] of parsePairs(query, what)) params.set(decode(name), value === null ? '' : decode(value));
  return params;
}

function parseVersion(text: string, what: string): number {
  if (!VERSION.test(text)) throw malformed(`a ${what} topic has a $version that is not a whole number`);
  return Number(text);
}

function encode(text: string, label: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    throw invalid(`${label} contains an unpaired surrogate (not valid Unicode)`);
  }
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw malformed('a hub topic has a parameter with invalid URL encoding');
  }
}

function malformed(why: string): ProvisioningError {
  return new ProvisioningError('protocol', `Malformed topic: ${why}`);
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

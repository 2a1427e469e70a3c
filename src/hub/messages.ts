// IoT Hub message bodies (device side): the twin document a GET returns, desired-property
// patches, reported-property patches, direct method payloads. Shapes from Microsoft's "Communicate
// with an IoT hub using the MQTT protocol" (articles/iot/iot-mqtt-connect-to-iot-hub.md):
//   GET → {"desired": {..., "$version": 12}, "reported": {..., "$version": 123}}
//   desired update → {"telemetrySendFrequency": "5m", "route": null, "$version": 8}
//   method request and response bodies → "either a valid JSON or an empty body".
import { utf8Decode, utf8Encode } from '../bytes.js';
import { isNestedDeeper, MAX_JSON_DEPTH } from '../dps/messages.js';
import { ProvisioningError } from '../errors.js';

export type JsonObject = { [name: string]: unknown };

/** The twin's two property sections, each with its `$version`. */
export interface TwinDocument {
  desired: JsonObject & { $version: number };
  reported: JsonObject & { $version: number };
}

/**
 * Largest twin document accepted: IoT Hub caps desired and reported properties at 32 KB each
 * (iot-hub-devguide-device-twins, "Twin size"); the rest is room for names and escapes.
 */
export const DEFAULT_MAX_TWIN_BYTES = 80 * 1024;
/** Largest method payload and desired patch accepted (IoT Hub caps a direct method payload at 128 KB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 128 * 1024;

/** Parse a GET response body. Throws `protocol` for oversized, non-UTF-8 or non-JSON bodies, too deep nesting, or a section or `$version` missing. */
export function parseTwinDocument(body: Uint8Array, maxBytes = DEFAULT_MAX_TWIN_BYTES): TwinDocument {
  const json = parseJson(body, maxBytes, 'twin document');
  if (!isObject(json)) throw protocol('The twin document is not a JSON object');
  const section = (name: 'desired' | 'reported') => {
    const value = json[name];
    if (!isObject(value)) throw protocol(`The twin document has no ${name} properties object`);
    if (!isVersion(value.$version)) throw protocol(`The twin document's ${name} properties have no valid $version`);
    return value as JsonObject & { $version: number };
  };
  return { desired: section('desired'), reported: section('reported') };
}

/**
 * Parse a desired-properties update: the patch without its `$version`, and the version (the
 * body's `$version`, else the topic's). Throws `protocol` when malformed, when neither carries a
 * version, or when they disagree.
 */
export function parseDesiredPatch(
  body: Uint8Array,
  topicVersion?: number,
  maxBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): { patch: JsonObject; version: number } {
  const json = parseJson(body, maxBytes, 'desired-properties update');
  if (!isObject(json)) throw protocol('The desired-properties update is not a JSON object');
  const { $version: bodyVersion, ...patch } = json;
  if (bodyVersion !== undefined && !isVersion(bodyVersion)) throw protocol('The desired-properties update has an invalid $version');
  if (bodyVersion !== undefined && topicVersion !== undefined && bodyVersion !== topicVersion) {
    throw protocol('The desired-properties update has another $version in its body than in its topic');
  }
  const version = (bodyVersion as number | undefined) ?? topicVersion;
  if (version === undefined) throw protocol('The desired-properties update has no $version');
  return { patch, version };
}

/** The desired section of a twin document as a patch (without `$version`). */
export function desiredProperties(twin: TwinDocument): JsonObject {
  const { $version: _version, ...properties } = twin.desired;
  return properties;
}

/** A direct method's payload: null for an empty body, else the JSON value. Throws `protocol` otherwise. */
export function parseMethodPayload(body: Uint8Array, maxBytes = DEFAULT_MAX_PAYLOAD_BYTES): unknown {
  if (body.length === 0) return null;
  return parseJson(body, maxBytes, 'direct method payload');
}

/** A reported-properties patch as UTF-8 JSON. Throws `invalid-input` for anything but a JSON object within the depth bound. */
export function reportedPatchBody(patch: JsonObject): Uint8Array {
  if (!isObject(patch)) throw new ProvisioningError('invalid-input', 'A reported-properties patch must be a JSON object');
  return utf8Encode(stringify(patch, 'A reported-properties patch'));
}

/** A direct method's response body: empty for undefined, else JSON. Throws `invalid-input` for values JSON cannot hold. */
export function methodResponseBody(payload: unknown): Uint8Array {
  return payload === undefined ? new Uint8Array(0) : utf8Encode(stringify(payload, 'A direct method response'));
}

function stringify(value: unknown, label: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  if (json === undefined)
    throw new ProvisioningError('invalid-input', `${label} cannot be converted to JSON (a cycle, a BigInt or a function?)`);
  if (isNestedDeeper(json, MAX_JSON_DEPTH))
    throw new ProvisioningError('invalid-input', `${label} nests deeper than ${MAX_JSON_DEPTH} levels`);
  return json;
}

function parseJson(body: Uint8Array, maxBytes: number, what: string): unknown {
  if (body.length > maxBytes) throw protocol(`The ${what} is ${body.length} bytes, over the ${maxBytes}-byte limit`);
  let text: string;
  try {
    text = utf8Decode(body);
  } catch {
    throw protocol(`The ${what} is not valid UTF-8`);
  }
  if (isNestedDeeper(text, MAX_JSON_DEPTH)) throw protocol(`The ${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch {
    throw protocol(`The ${what} is not valid JSON`);
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isVersion(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function protocol(message: string): ProvisioningError {
  return new ProvisioningError('protocol', message);
}

// Device twins and message property bags of the emulated IoT hubs. A twin lives in its hub device
// (model-types.ts HubDevice): tags and desired properties as DPS wrote them from the enrollment's
// initial twin, reported properties as the device patched them, and both $versions (1 and 1 at
// creation). Patches follow IoT Hub's rules (iot-hub-devguide-device-twins.md): JSON objects merged
// member by member, null removes a property, nesting at most 10 levels deep.
import { createHash } from 'node:crypto';
import type { HubDevice } from './model-types.js';

export type JsonObject = Record<string, unknown>;

/** What the service side sees of a twin. */
export interface TwinView {
  deviceId: string;
  status: 'enabled' | 'disabled';
  tags: JsonObject;
  properties: { desired: JsonObject & { $version: number }; reported: JsonObject & { $version: number } };
}

/** IoT Hub's twin depth limit (iot-hub-devguide-device-twins.md: "10 levels deep"). */
export const MAX_TWIN_DEPTH = 10;
/** IoT Hub's size limit for each of desired and reported properties: 32 KB. */
export const MAX_TWIN_SECTION_BYTES = 32 * 1024;
/** IoT Hub's size limit for the tags: 8 KB. */
export const MAX_TWIN_TAGS_BYTES = 8 * 1024;

export function twinView(device: HubDevice): TwinView {
  const versions = device.twinVersions ?? { desired: 1, reported: 1 };
  return {
    deviceId: device.deviceId,
    status: device.status ?? 'enabled',
    tags: structuredClone(device.tags),
    properties: {
      desired: { ...structuredClone(device.properties.desired), $version: versions.desired },
      reported: { ...structuredClone(device.properties.reported ?? {}), $version: versions.reported },
    },
  };
}

/**
 * The twin's etag, as the service API shows it and If-Match names it: the desired and reported
 * $versions and a digest of the tags (which have no $version), so that any change to what the
 * service may update changes it.
 */
export function twinEtag(view: TwinView): string {
  const tags = createHash('sha256').update(JSON.stringify(view.tags)).digest('base64url').slice(0, 12);
  return `${view.properties.desired.$version}-${view.properties.reported.$version}-${tags}`;
}

/** The body of a twin GET's answer: '{"desired":{...,"$version":n},"reported":{...,"$version":m}}'. */
export function twinDocument(device: HubDevice): string {
  return JSON.stringify(twinView(device).properties);
}

/**
 * Merge a patch into the desired or reported section, bumping its $version. Returns the new
 * device and version, or an error message (for the emulator's log and the service caller) when
 * the patch is not a JSON object, is too deep or makes the section too large.
 */
export function patchTwin(
  device: HubDevice,
  section: 'desired' | 'reported',
  patch: unknown,
): { device: HubDevice; version: number } | { error: string } {
  if (!isObject(patch)) return { error: 'a twin patch must be a JSON object' };
  if (depth(patch) > MAX_TWIN_DEPTH) return { error: `a twin patch may nest at most ${MAX_TWIN_DEPTH} levels` };
  const next = structuredClone(device);
  const target = section === 'desired' ? next.properties.desired : (next.properties.reported ??= {});
  merge(target, patch);
  if (JSON.stringify(target).length > MAX_TWIN_SECTION_BYTES)
    return { error: `the ${section} properties would exceed ${MAX_TWIN_SECTION_BYTES} bytes` };
  const versions = { ...(device.twinVersions ?? { desired: 1, reported: 1 }) };
  versions[section] += 1;
  next.twinVersions = versions;
  return { device: next, version: versions[section] };
}

/** Merge a patch into the tags (null removes a tag), as Update Twin does; tags have no $version. */
export function patchTags(device: HubDevice, patch: unknown): { device: HubDevice } | { error: string } {
  if (!isObject(patch)) return { error: 'a tags patch must be a JSON object' };
  if (depth(patch) > MAX_TWIN_DEPTH) return { error: `a tags patch may nest at most ${MAX_TWIN_DEPTH} levels` };
  const next = structuredClone(device);
  merge(next.tags, patch);
  if (JSON.stringify(next.tags).length > MAX_TWIN_TAGS_BYTES) return { error: `the tags would exceed ${MAX_TWIN_TAGS_BYTES} bytes` };
  return { device: next };
}

/** Parse a device's JSON body; undefined when it is not JSON. */
export function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A property bag 'a=1&%24.ct=application%2Fjson', decoded; undefined for bad URL encoding. No prototype. */
export function parsePropertyBag(bag: string): Record<string, string> | undefined {
  const properties: Record<string, string> = Object.create(null);
  for (const part of (bag.startsWith('?') ? bag.slice(1) : bag).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    try {
      properties[decodeURIComponent(eq === -1 ? part : part.slice(0, eq))] = eq === -1 ? '' : decodeURIComponent(part.slice(eq + 1));
    } catch {
      return undefined;
    }
  }
  return properties;
}

export function buildPropertyBag(properties: Record<string, string>): string {
  return Object.entries(properties)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .join('&');
}

/** A device-chosen text made safe for one log line: control and non-ASCII characters escaped, at most 200 characters. */
export function printable(text: string): string {
  const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  return shown.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function merge(target: JsonObject, patch: JsonObject): void {
  for (const [name, value] of Object.entries(patch)) {
    if (name === '$version' || name === '$metadata') continue;
    if (value === null) delete target[name];
    else if (isObject(value) && isObject(target[name])) merge(target[name] as JsonObject, value);
    else if (isObject(value)) {
      const fresh: JsonObject = {};
      merge(fresh, value);
      set(target, name, fresh);
    } else set(target, name, value);
  }
}

/** Assign as an own property, so that a member named '__proto__' stays data. */
function set(target: JsonObject, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, writable: true, enumerable: true, configurable: true });
}

function depth(value: unknown): number {
  if (!isObject(value)) return 0;
  let deepest = 0;
  for (const member of Object.values(value)) deepest = Math.max(deepest, depth(member));
  return deepest + 1;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

import { describe, expect, it, vi } from 'vitest';
import { utf8Decode, utf8Encode } from '../src/bytes.js';
import { MAX_JSON_DEPTH } from '../src/dps/messages.js';
import { ProvisioningError } from '../src/errors.js';
import {
  desiredProperties,
  methodResponseBody,
  parseDesiredPatch,
  parseMethodPayload,
  parseTwinDocument,
  reportedPatchBody,
} from '../src/hub/messages.js';
import { answerMethod } from '../src/hub/methods.js';
import { shouldReprovision } from '../src/hub/reprovision.js';
import { errorOf } from './support/errors.js';

// Bodies from Microsoft, "Communicate with an IoT hub using the MQTT protocol"
// (MicrosoftDocs/azure-docs articles/iot/iot-mqtt-connect-to-iot-hub.md).
const DOC_TWIN =
  '{"desired":{"telemetrySendFrequency":"5m","$version":12},"reported":{"telemetrySendFrequency":"5m","batteryLevel":55,"$version":123}}';
const DOC_DESIRED = '{"telemetrySendFrequency":"5m","route":null,"$version":8}';
const bytes = (text: string) => utf8Encode(text);
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('twin documents', () => {
  it("parses the doc's GET response and gives the desired section as a patch", () => {
    const twin = parseTwinDocument(bytes(DOC_TWIN));
    expect(twin.desired.$version).toBe(12);
    expect(twin.reported).toEqual({ telemetrySendFrequency: '5m', batteryLevel: 55, $version: 123 });
    expect(desiredProperties(twin)).toEqual({ telemetrySendFrequency: '5m' });
  });

  it('refuses malformed twin documents as protocol errors', () => {
    const bad = [
      '',
      '{',
      'null',
      '[]',
      '"twin"',
      '{"desired":{"$version":1}}',
      '{"desired":{"$version":1},"reported":[]}',
      '{"desired":{"$version":"1"},"reported":{"$version":1}}',
      '{"desired":{"$version":-1},"reported":{"$version":1}}',
      '{"desired":{"$version":1.5},"reported":{"$version":1}}',
      `{"desired":{"$version":1,"x":${nested(MAX_JSON_DEPTH)}},"reported":{"$version":1}}`,
    ];
    for (const text of bad) errorOf(() => parseTwinDocument(bytes(text)), 'protocol');
    errorOf(() => parseTwinDocument(Uint8Array.of(0x7b, 0xff, 0x7d)), 'protocol');
    expect(errorOf(() => parseTwinDocument(bytes(DOC_TWIN), 10), 'protocol').message).toMatch(/over the 10-byte limit/);
  });

  it("takes a desired patch's version from its body, else its topic, and refuses a conflict", () => {
    expect(parseDesiredPatch(bytes(DOC_DESIRED))).toEqual({ patch: { telemetrySendFrequency: '5m', route: null }, version: 8 });
    expect(parseDesiredPatch(bytes(DOC_DESIRED), 8).version).toBe(8);
    expect(parseDesiredPatch(bytes('{"a":1}'), 9)).toEqual({ patch: { a: 1 }, version: 9 });
    errorOf(() => parseDesiredPatch(bytes(DOC_DESIRED), 9), 'protocol');
    errorOf(() => parseDesiredPatch(bytes('{"a":1}')), 'protocol');
    for (const text of ['[]', '{"$version":"8"}', '{"$version":-2}', 'x', nested(MAX_JSON_DEPTH + 1)])
      errorOf(() => parseDesiredPatch(bytes(text), 1), 'protocol');
  });
});

describe('reported patches and method bodies', () => {
  it('encodes reported patches as JSON objects only', () => {
    expect(utf8Decode(reportedPatchBody({ firmware: '1.0', nested: { a: [1] } }))).toBe('{"firmware":"1.0","nested":{"a":[1]}}');
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const patch of [[1], null, 'x', cycle, { big: 1n }, JSON.parse(`{"x":${nested(MAX_JSON_DEPTH)}}`)]) {
      errorOf(() => reportedPatchBody(patch as Record<string, unknown>), 'invalid-input');
    }
  });

  it('reads method payloads that are JSON or empty, and answers with JSON or nothing', () => {
    expect(parseMethodPayload(new Uint8Array(0))).toBeNull();
    expect(parseMethodPayload(bytes('{"delay":5}'))).toEqual({ delay: 5 });
    expect(parseMethodPayload(bytes('7'))).toBe(7);
    for (const text of ['{', 'undefined', nested(MAX_JSON_DEPTH + 1)]) errorOf(() => parseMethodPayload(bytes(text)), 'protocol');
    expect(methodResponseBody(undefined)).toHaveLength(0);
    expect(utf8Decode(methodResponseBody({ ok: true }))).toBe('{"ok":true}');
  });
});

describe('answering a direct method', () => {
  const call = { name: 'reboot', rid: '4' };

  it('passes the payload to the handler and sends its status and payload', async () => {
    const handler = vi.fn(() => ({ status: 200, payload: { rebooting: true } }));
    const answer = await answerMethod(handler, call, bytes('{"delay":5}'));
    expect(handler).toHaveBeenCalledWith('reboot', { delay: 5 });
    expect(answer.topic).toBe('$iothub/methods/res/200/?$rid=4');
    expect(utf8Decode(answer.body)).toBe('{"rebooting":true}');
  });

  it('answers 400 without calling the handler when the payload is not JSON', async () => {
    const handler = vi.fn(() => ({ status: 200 }));
    const answer = await answerMethod(handler, call, bytes('{oops'));
    expect(handler).not.toHaveBeenCalled();
    expect(answer).toMatchObject({ status: 400, topic: '$iothub/methods/res/400/?$rid=4' });
  });

  it("answers 500, without the handler's text, when it throws, rejects or returns what cannot be sent", async () => {
    const secret = 'key=c2VjcmV0';
    const handlers = [
      () => {
        throw new Error(secret);
      },
      () => Promise.reject(new Error(secret)),
      () => ({ status: 70_000 }),
      () => ({ status: 200, payload: { big: 1n } }),
      () => undefined as unknown as { status: number },
    ];
    for (const handler of handlers) {
      const answer = await answerMethod(handler, call, new Uint8Array(0));
      expect(answer.status).toBe(500);
      expect(utf8Decode(answer.body)).not.toContain(secret);
    }
  });
});

describe('shouldReprovision', () => {
  it('says yes for a refusal, an unknown device or a hub out of reach, and no otherwise', () => {
    const error = (kind: ProvisioningError['kind'], status?: number) =>
      new ProvisioningError(kind, 'x', status === undefined ? {} : { status });
    expect(shouldReprovision(error('unauthorized', 5))).toBe(true);
    expect(shouldReprovision(error('unauthorized', 401))).toBe(true);
    expect(shouldReprovision(error('failed', 404))).toBe(true);
    expect(shouldReprovision(error('network'))).toBe(true);
    expect(shouldReprovision(error('failed', 400))).toBe(false);
    for (const kind of ['server', 'throttled', 'tls', 'protocol', 'timeout', 'invalid-input'] as const)
      expect(shouldReprovision(error(kind))).toBe(false);
    expect(shouldReprovision(undefined)).toBe(false);
  });
});

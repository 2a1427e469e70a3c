// Fuzzing DPS's messages: topic and username parsers, and the response body parser.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { utf8Encode } from '../src/bytes.js';
import { type DpsResponse, isNestedDeeper, parseResponseBody } from '../src/dps/messages.js';
import { parseDpsUsername, parseRequestTopic, responseTopic } from '../src/dps/server.js';
import { dpsUsername, parseResponseTopic, pollTopic, registerTopic } from '../src/dps/topics.js';
import {
  deepAssignedBody,
  fuzzText,
  mutateString,
  outcome,
  responseBytes,
  runs,
  statusArb,
  stringMutations,
  wellFormedText,
} from './support/fuzz.js';

// ---- DPS topics and username ----

const RESPONSE_PREFIX = '$dps/registrations/res/';
const topicLike = fc.oneof(
  fuzzText(60),
  fuzzText(40).map((s) => RESPONSE_PREFIX + s),
  fuzzText(40).map((s) => `$dps/registrations/PUT/iotdps-register/${s}`),
  fuzzText(40).map((s) => `$dps/registrations/GET/iotdps-get-operationstatus/${s}`),
);
const validResponseTopic = fc.record({
  status: statusArb,
  rid: wellFormedText(30).filter((s) => s.length > 0),
  retryAfter: fc.option(fc.integer({ min: 0, max: 999_999_999 }), { nil: undefined }),
});
const rid = fc.stringMatching(/^[A-Za-z0-9._~-]{1,64}$/);

function checkResponseTopic(topic: string): void {
  const parsed = outcome(() => parseResponseTopic(topic), ['protocol'], 'parseResponseTopic').value;
  if (!parsed) return;
  assert.ok(topic.startsWith(RESPONSE_PREFIX));
  assert.ok(Number.isInteger(parsed.status) && parsed.status >= 100 && parsed.status <= 599);
  if (parsed.rid !== undefined) assert.equal(typeof parsed.rid, 'string');
  if (parsed.retryAfterSeconds !== undefined) assert.ok(Number.isSafeInteger(parsed.retryAfterSeconds) && parsed.retryAfterSeconds >= 0);
}

function checkRequestTopic(topic: string): void {
  const parsed = outcome(() => parseRequestTopic(topic), ['protocol'], 'parseRequestTopic').value;
  if (!parsed) return;
  assert.ok(typeof parsed.rid === 'string' && parsed.rid.length > 0);
  if (parsed.type === 'poll') assert.ok(typeof parsed.operationId === 'string' && parsed.operationId.length > 0);
}

function checkUsername(username: string): void {
  const parsed = outcome(() => parseDpsUsername(username), ['protocol'], 'parseDpsUsername').value;
  if (!parsed) return;
  for (const field of [parsed.idScope, parsed.registrationId])
    assert.ok(typeof field === 'string' && field.length > 0 && !field.includes('/'));
  assert.ok(typeof parsed.apiVersion === 'string' && parsed.apiVersion.length > 0 && !parsed.apiVersion.includes('&'));
}

describe('DPS topic and username parsers', () => {
  it('parse arbitrary text to a result, undefined or a protocol error', () => {
    fc.assert(
      fc.property(topicLike, (topic) => {
        checkResponseTopic(topic);
        checkRequestTopic(topic);
        checkUsername(topic);
      }),
      runs(500),
    );
  });

  it('read back what the builders write, and take mutations of it', () => {
    fc.assert(
      fc.property(
        validResponseTopic,
        rid,
        wellFormedText(30).filter((s) => s.length > 0),
        stringMutations,
        ({ status, rid: r, retryAfter }, requestRid, operationId, mutations) => {
          const response = responseTopic(status, r, retryAfter);
          assert.deepEqual(parseResponseTopic(response), {
            status,
            rid: r,
            ...(retryAfter !== undefined && { retryAfterSeconds: retryAfter }),
          });
          assert.deepEqual(parseRequestTopic(registerTopic(requestRid)), { type: 'register', rid: requestRid });
          const poll = pollTopic(requestRid, operationId);
          assert.deepEqual(parseRequestTopic(poll), { type: 'poll', rid: requestRid, operationId });
          checkResponseTopic(mutateString(response, mutations));
          checkRequestTopic(mutateString(poll, mutations));
        },
      ),
      runs(500),
    );
  });

  it('read back a username and take mutations of it', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9]{1,16}$/),
        fc.stringMatching(/^[a-z0-9][a-z0-9\-._:]{0,30}[a-z0-9-]$/),
        fc.option(wellFormedText(20), { nil: undefined }),
        stringMutations,
        (idScope, registrationId, clientVersion, mutations) => {
          const username = dpsUsername(idScope, registrationId, clientVersion);
          const parsed = parseDpsUsername(username);
          assert.deepEqual(parsed, { idScope, registrationId, apiVersion: '2019-03-31', ...(clientVersion && { clientVersion }) });
          checkUsername(mutateString(username, mutations));
        },
      ),
      runs(400),
    );
  });
});

// ---- DPS response bodies ----

function checkResponse(status: number, body: Uint8Array, maxBytes?: number): void {
  const response = outcome(() => parseResponseBody(status, body, maxBytes), ['protocol'], 'parseResponseBody').value;
  if (!response) return;
  checkWellFormed(response, status);
  // The provisioner stores what DPS assigned and the CLI prints it: it must serialise.
  const json = outcome(() => JSON.stringify(response), [], 'JSON.stringify(response)').value;
  assert.equal(typeof json, 'string');
}

function checkWellFormed(response: DpsResponse, status: number): void {
  assert.equal(response.status, status);
  if (response.kind === 'error') {
    assert.ok(status < 200 || status > 299);
    if (response.errorCode !== undefined) assert.ok(Number.isSafeInteger(response.errorCode));
    for (const text of [response.trackingId, response.message])
      if (text !== undefined) assert.ok(typeof text === 'string' && text.length <= 501);
    if (response.operationId !== undefined) assert.match(response.operationId, /^[\x21-\x7e]{1,256}$/);
    return;
  }
  assert.ok(status >= 200 && status <= 299);
  assert.match(response.operationId, /^[\x21-\x7e]{0,256}$/);
  assert.ok(['unassigned', 'assigning', 'assigned', 'failed', 'disabled'].includes(response.registrationStatus));
  const state = response.registrationState;
  if (!state) return;
  assert.equal(typeof state.registrationId, 'string');
  for (const field of [
    'assignedHub',
    'deviceId',
    'substatus',
    'createdDateTimeUtc',
    'lastUpdatedDateTimeUtc',
    'etag',
    'errorMessage',
  ] as const) {
    if (state[field] !== undefined) assert.equal(typeof state[field], 'string');
  }
  assert.equal(state.assignedHub === undefined, state.deviceId === undefined);
}

describe('DPS response body parser (parseResponseBody)', () => {
  it('reads arbitrary bytes, JSON values and mutated bodies as a well-formed response or a protocol error', () => {
    fc.assert(
      fc.property(statusArb, responseBytes, (status, body) => checkResponse(status, body)),
      runs(600),
    );
  });

  it('found: a payload 5000 levels deep was accepted, and serialising it (to store or print it) overflowed the stack', () => {
    checkResponse(200, utf8Encode(deepAssignedBody(5000, '[')));
  });

  it('measures JSON nesting as JSON.parse sees it (brackets inside strings and escapes do not count)', () => {
    const depthOf = (v: unknown): number => (typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
    const tricky = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a'), maxLength: 8 });
    // A random JSON value wrapped in up to 100 arrays and objects, each with a random sibling.
    const wrapper = fc.record({ key: fc.option(tricky), sibling: fc.jsonValue({ maxDepth: 1 }) });
    const value = fc
      .tuple(fc.jsonValue({ maxDepth: 3 }), fc.array(wrapper, { maxLength: 100 }))
      .map(([leaf, wrappers]) =>
        wrappers.reduce<unknown>(
          (inner, { key, sibling }) => (key === null ? [sibling, inner] : { [`${key}~`]: sibling, [key]: inner }),
          leaf,
        ),
      );
    fc.assert(
      fc.property(value, fc.integer({ min: 0, max: 100 }), (v, max) => {
        assert.equal(isNestedDeeper(JSON.stringify(v), max), depthOf(v) > max);
      }),
      runs(300),
    );
  });

  it('refuses a body over the size limit whatever it holds', () => {
    fc.assert(
      fc.property(statusArb, fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), (status, body, limit) => {
        const maxBytes = limit % body.length;
        assert.match(
          outcome(() => parseResponseBody(status, body, maxBytes), ['protocol'], 'oversized').error?.message ?? '',
          /over the \d+-byte limit/,
        );
      }),
      runs(200),
    );
  });
});

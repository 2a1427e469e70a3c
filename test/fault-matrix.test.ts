// The fault matrix: the Node host (the core's provisionDevice over hosts/node's TLS connect,
// trusting the emulator's CA; and the same over MQTT over WebSockets, every scenario twice) against a DPS that misbehaves in every way we could script, at
// every step of the protocol. The emulator's fault plan plays the misbehaving DPS; a loopback
// TCP proxy (support/tcp-proxy.ts) plays the network below TLS. Every scenario must end
// provisioned correctly, or with a ProvisioningError of the expected kind before its deadline:
// never a hang (each run is raced against its deadline plus a grace), never an unhandled
// rejection, never a crash.
//
// The rows of the connection and TLS steps (those with `x509: true`) run a third and fourth time
// with an X.509 device: a client certificate its CA issued (CN = the registration ID, the chain
// sent) and an enrollment group trusting that CA, no SAS token: the same faults, the same outcomes.
//
// SCENARIOS below is the single source of the matrix: the tests iterate it, and
//   PRINT_FAULT_MATRIX=1 npx vitest run test/fault-matrix.test.ts
// prints it as the markdown table in the README.
//
// The scenarios run concurrently (each with its own registration ID, faults and proxy), so the
// file takes about as long as its slowest scenario.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueDeviceCertificate, type SigningCa } from '../cli/shared/certificates.js';
import { reportError } from '../cli/shared/io.js';
import { type DpsEmulator, type EndpointEvent, type FaultAction, type FaultTrigger, startEmulator } from '../emulator/index.js';
import { systemClock } from '../hosts/node/clock.js';
import { createTlsConnect } from '../hosts/node/tls-connect.js';
import { createWebSocketConnect } from '../hosts/node/ws-connect.js';
import { type ErrorKind, ProvisioningError } from '../src/errors.js';
import { encodePacket } from '../src/mqtt/codec.js';
import type { Clock, Connect, Endpoint, ProvisioningEvent, Store } from '../src/ports.js';
import { type DeviceConfig, type ProvisionResult, parseAssignment, provisionDevice } from '../src/provisioner.js';
import { type ProxyPlan, startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';

const ID_SCOPE = '0ne00FAULTS';
const GROUP_KEY = Buffer.from('fault-matrix-group-key-0123456789abcdef!').toString('base64');
const HUBS = ['hub-a.azure-devices.net', 'hub-b.azure-devices.net'];
/** Added to each scenario's deadline before its run counts as hung. */
const HANG_GRACE_MS = 2500;
/** Scenarios in flight at once: enough to be quick, few enough that no handshake starves. */
const CONCURRENCY = 8;
const DAY_MS = 24 * 60 * 60 * 1000;

// ---- what the scenarios are made of ----

type Expected =
  | {
      outcome: 'assigned';
      /** Connections the device opened (its 'connecting' events). */
      connections?: number;
      /** Register requests the device sent. */
      registers?: number;
    }
  | {
      outcome: 'error';
      kind: ErrorKind;
      /** Connections the device opened; 1 means it gave up at once. */
      connections?: number;
      /** The message must match this; `names` says what it shows, for the table. */
      message?: { pattern: RegExp; names: string };
    };

interface Scenario {
  /** Also the registration ID's suffix: short, lower case, unique. */
  id: string;
  step: string;
  /** What goes wrong, for the table. */
  fault: string;
  expect: Expected;
  /** Device options besides the defaults below (small deadlines keep the file fast). */
  options?: Partial<DeviceConfig>;
  // biome-ignore lint/suspicious/noConfusingVoidType: most scenarios arrange by side effect and return nothing
  arrange(ctx: Ctx): Arranged | void | Promise<Arranged | void>;
  /** Further checks on the run. */
  check?(run: Run): void;
  /** Also run with an X.509 device (client certificate, a group trusting its CA): the rows below MQTT's keys. */
  x509?: true;
}

interface Ctx {
  registrationId: string;
  /** Push a fault on the emulator for this device only. */
  fault(on: FaultTrigger, action: FaultAction, times?: number): void;
  /** A proxy in front of the emulator; the device connects through it. Closed after the run. */
  proxy(plan?: (connection: number) => ProxyPlan): Promise<TcpProxy>;
  /** Called for each request of this device the emulator served. */
  onServed(listener: (request: 'register' | 'poll') => void): void;
}

interface Arranged {
  endpoint?: Endpoint;
  clock?: Clock;
}

interface Run {
  registrationId: string;
  result?: ProvisionResult;
  error?: unknown;
  hung: boolean;
  events: ProvisioningEvent[];
  served: { register: number; poll: number };
  proxied?: number;
  /** The device's store (in memory): what it kept for its next boot. */
  stored: Map<string, string>;
}

const DEFAULTS: Partial<DeviceConfig> = {
  timeoutMs: 10_000,
  responseTimeoutMs: 5000,
  backoff: { minMs: 50, maxMs: 400, jitterMs: 0 },
};

const garbage = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x00]);
/** A PUBLISH fixed header declaring the largest remaining length MQTT allows (256 MB), then 1 MB of it. */
const hugePublish = new Uint8Array(5 + (1 << 20));
hugePublish.set([0x30, 0xff, 0xff, 0xff, 0x7f]);
/** The first half of a well-formed response PUBLISH. */
const wholeResponse = encodePacket({
  type: 'publish',
  topic: '$dps/registrations/res/202/?$rid=0.1&retry-after=1',
  payload: new TextEncoder().encode('{"operationId":"4.0123456789abcdef.truncated","status":"assigning"}'),
  qos: 0,
  dup: false,
  retain: false,
});
const truncatedResponse = wholeResponse.subarray(0, Math.floor(wholeResponse.length / 2));
/** A 200 "assigned" for `registrationId` with `state` over its registrationState: what a hostile endpoint sends. */
function assignedAnswer(registrationId: string, state: Record<string, string>): string {
  const registrationState = {
    registrationId,
    assignedHub: HUBS[0],
    deviceId: registrationId,
    status: 'assigned',
    substatus: 'initialAssignment',
    ...state,
  };
  return JSON.stringify({ operationId: '4.00.hostile', status: 'assigned', registrationState });
}
/** Every character a terminal acts on (see src/text.ts), tested apart from the module's own list. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
const notHostName = { pattern: /assignedHub that is not a DNS host name/, names: 'the invalid hub' };
const clockAdvice = { pattern: /device clock, which reads \d{4}-\d\d-\d\dT.*sync the clock/, names: 'the device clock and its reading' };

const SCENARIOS: Scenario[] = [
  // ---- the connection dropped at every step ----
  {
    id: 'drop-tcp',
    x509: true,
    step: 'TCP',
    fault: 'proxy resets the first connection as it is accepted',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: async (ctx) => ({ endpoint: (await ctx.proxy((n) => (n === 0 ? { cutToServerAfter: 0 } : {}))).endpoint }),
  },
  {
    id: 'drop-tls',
    x509: true,
    step: 'TLS handshake',
    fault: "proxy cuts the first connection 100 bytes into the server's handshake",
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: async (ctx) => ({ endpoint: (await ctx.proxy((n) => (n === 0 ? { cutToDeviceAfter: 100 } : {}))).endpoint }),
  },
  {
    id: 'drop-connect',
    x509: true,
    step: 'CONNECT sent, before CONNACK',
    fault: 'the connection closes without a CONNACK, once',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('connect', { type: 'drop' }),
  },
  {
    id: 'drop-connack',
    step: 'after CONNACK',
    fault: 'CONNACK 0, then the connection closes, once',
    expect: { outcome: 'assigned', connections: 2 },
    arrange: (ctx) => ctx.fault('connect', { type: 'drop', afterResponse: true }),
  },
  {
    id: 'drop-subscribe',
    step: 'SUBSCRIBE sent, before SUBACK',
    fault: 'the connection closes without a SUBACK, once',
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('subscribe', { type: 'drop' }),
  },
  {
    id: 'drop-register',
    step: 'register sent, before the 202',
    fault: 'DPS starts the operation, then the connection closes without an answer, once',
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'drop' }),
  },
  {
    id: 'drop-register-twice',
    step: 'register sent, before the 202',
    fault: 'the connection closes without an answer after the register, twice',
    expect: { outcome: 'assigned', connections: 3, registers: 3 },
    arrange: (ctx) => ctx.fault('register', { type: 'drop' }, 2),
  },
  {
    id: 'drop-register-always',
    step: 'register sent, before the 202',
    fault: 'the connection closes without an answer after every register (as for a request over its size limit)',
    expect: {
      outcome: 'error',
      kind: 'failed',
      connections: 3,
      message: { pattern: /right after the registration request \(\d+ bytes\), 3 times in a row/, names: 'the refused request' },
    },
    arrange: (ctx) => ctx.fault('register', { type: 'drop' }, 1000),
  },
  {
    id: 'drop-after-202',
    step: 'after the 202',
    fault: 'the 202 arrives, then the connection closes, once',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('register', { type: 'drop', afterResponse: true }),
  },
  {
    id: 'drop-waiting',
    step: 'during the wait (retry-after 1 s)',
    fault: 'the connection closes 200 ms after the 202, once',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('register', { type: 'drop', afterResponse: true, afterMs: 200 }),
  },
  {
    id: 'drop-poll',
    step: 'poll sent, before its answer',
    fault: 'the connection closes without an answer, once',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'drop' }),
  },
  {
    id: 'drop-always',
    step: 'CONNECT sent, before CONNACK',
    fault: 'every connection closes without a CONNACK (deadline 3 s)',
    options: { timeoutMs: 3000 },
    expect: { outcome: 'error', kind: 'network', message: { pattern: /before the deadline/, names: 'the deadline' } },
    arrange: (ctx) => ctx.fault('connect', { type: 'drop' }, 1000),
  },

  // ---- CONNACK and SUBACK refusals ----
  {
    id: 'connack-3',
    step: 'CONNACK',
    fault: 'CONNACK 3 (server unavailable) twice',
    expect: { outcome: 'assigned', connections: 3, registers: 1 },
    arrange: (ctx) => ctx.fault('connect', { type: 'status', status: 3 }, 2),
    check: (run) => {
      // Exponential backoff (min 50 ms, jitter pinned to 0): 50 ms, then 100 ms.
      expect(run.events.filter((e) => e.type === 'retrying').map((e) => (e as { waitMs: number }).waitMs)).toEqual([50, 100]);
    },
  },
  {
    id: 'connack-3-always',
    step: 'CONNACK',
    fault: 'CONNACK 3 (server unavailable) on every attempt (deadline 3 s)',
    options: { timeoutMs: 3000 },
    expect: { outcome: 'error', kind: 'server', message: { pattern: /CONNACK 3/, names: 'CONNACK 3' } },
    arrange: (ctx) => ctx.fault('connect', { type: 'status', status: 3 }, 1000),
  },
  {
    id: 'connack-5',
    step: 'CONNACK',
    fault: 'CONNACK 5 (not authorized)',
    expect: { outcome: 'error', kind: 'unauthorized', connections: 1, message: clockAdvice },
    arrange: (ctx) => ctx.fault('connect', { type: 'status', status: 5 }),
  },
  {
    id: 'connack-2',
    step: 'CONNACK',
    fault: 'CONNACK 2 (identifier rejected)',
    expect: {
      outcome: 'error',
      kind: 'invalid-input',
      connections: 1,
      message: { pattern: /registration ID/, names: 'the registration ID' },
    },
    arrange: (ctx) => ctx.fault('connect', { type: 'status', status: 2 }),
  },
  {
    id: 'suback-refused',
    step: 'SUBACK',
    fault: 'SUBACK 0x80: the response topic is refused',
    expect: {
      outcome: 'error',
      kind: 'failed',
      connections: 1,
      message: { pattern: /refused the subscription/, names: 'the refused subscription' },
    },
    arrange: (ctx) => ctx.fault('subscribe', { type: 'status', status: 0x80 }),
  },
  {
    id: 'suback-qos2',
    step: 'SUBACK',
    fault: 'SUBACK granting QoS 2 to a QoS 1 request, then the connection closes, once',
    expect: { outcome: 'assigned', connections: 2 },
    arrange: (ctx) => ctx.fault('subscribe', { type: 'raw', bytes: Uint8Array.from([0x90, 0x03, 0x00, 0x01, 0x02]) }),
  },

  // ---- throttling and server errors ----
  {
    id: 'register-429-ra',
    step: 'register',
    fault: '429 with retry-after 1',
    expect: { outcome: 'assigned', connections: 1, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 429, retryAfter: 1 }),
    check: (run) => expect(run.events.find((e) => e.type === 'retrying')).toMatchObject({ waitMs: 1000 }),
  },
  {
    id: 'register-429',
    step: 'register',
    fault: '429 without retry-after',
    expect: { outcome: 'assigned', connections: 1, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 429 }),
    check: (run) => expect(run.events.find((e) => e.type === 'retrying')).toMatchObject({ waitMs: 50 }),
  },
  {
    id: 'register-500-ra',
    step: 'register',
    fault: '500 with retry-after 1',
    expect: { outcome: 'assigned', connections: 1, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 500, retryAfter: 1 }),
  },
  {
    id: 'register-503',
    step: 'register',
    fault: '503 without retry-after, 3 times',
    expect: { outcome: 'assigned', connections: 1, registers: 4 },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 503 }, 3),
    check: (run) =>
      expect(run.events.filter((e) => e.type === 'retrying').map((e) => (e as { waitMs: number }).waitMs)).toEqual([50, 100, 200]),
  },
  {
    id: 'poll-429-ra',
    step: 'poll',
    fault: '429 with retry-after 1',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 429, retryAfter: 1 }),
  },
  {
    id: 'poll-503',
    step: 'poll',
    fault: '503 without retry-after, twice',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 503 }, 2),
  },
  {
    id: 'poll-429-no-operation',
    step: 'poll',
    fault: '429 whose body has no operationId (nor trackingId)',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 429, body: '{"errorCode":429001,"message":"Throttled"}' }),
  },
  {
    id: 'poll-503-empty',
    step: 'poll',
    fault: '503 with an empty body',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 503, body: '' }),
  },
  {
    id: 'poll-500-not-json',
    step: 'poll',
    fault: '500 with a body that is not JSON',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 500, body: '<html>Bad gateway</html>' }),
  },
  {
    id: 'poll-404',
    step: 'poll',
    fault: '404: DPS no longer knows the operation',
    expect: { outcome: 'assigned', connections: 1, registers: 2 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 404 }),
  },
  {
    id: 'register-429-always',
    step: 'register',
    fault: '429 with retry-after 1 on every attempt (deadline 4 s)',
    options: { timeoutMs: 4000 },
    expect: { outcome: 'error', kind: 'throttled', connections: 1, message: { pattern: /throttling/, names: 'throttling' } },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 429, retryAfter: 1 }, 1000),
  },
  {
    id: 'poll-503-always',
    step: 'poll',
    fault: '503 without retry-after on every poll (deadline 4 s)',
    options: { timeoutMs: 4000 },
    expect: { outcome: 'error', kind: 'server', connections: 1, message: { pattern: /server error/, names: 'the server errors' } },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 503 }, 1000),
  },
  {
    id: 'register-401',
    step: 'register',
    fault: '401 after connecting',
    expect: { outcome: 'error', kind: 'unauthorized', connections: 1, message: clockAdvice },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 401 }),
  },
  {
    id: 'register-400-not-json',
    step: 'register',
    fault: '400 with a body that is not JSON',
    expect: { outcome: 'error', kind: 'failed', connections: 1, message: { pattern: /\(400\)/, names: 'the status' } },
    arrange: (ctx) => ctx.fault('register', { type: 'status', status: 400, body: 'nope' }),
  },

  // ---- stray, duplicated and out-of-order responses ----
  {
    id: 'stray-202',
    step: 'register',
    fault: "a 202 for another request ($rid) before the device's own",
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('register', { type: 'stray' }),
  },
  {
    id: 'stray-200',
    step: 'poll',
    fault: "a 200 assigning another device to another hub, before the device's own answer",
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'stray', status: 200 }),
  },
  {
    id: 'stray-429',
    step: 'poll',
    fault: "a 429 for another request before the device's own answer",
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'stray', status: 429 }),
  },
  {
    id: 'duplicate-202',
    step: 'register',
    fault: 'the 202 sent twice',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('register', { type: 'duplicate' }),
  },
  {
    id: 'duplicate-200',
    step: 'poll',
    fault: 'the 200 sent twice',
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'duplicate' }),
  },
  {
    id: 'out-of-order',
    step: 'poll',
    fault: "the register's 202 again (its old $rid) before the poll's answer",
    expect: { outcome: 'assigned', connections: 1, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'replay' }),
    check: (run) => expect(run.served.poll).toBe(1),
  },

  // ---- garbage, truncated and oversized packets ----
  {
    id: 'garbage-connack',
    step: 'CONNACK',
    fault: 'garbage bytes instead of CONNACK, once',
    expect: { outcome: 'assigned', connections: 2 },
    arrange: (ctx) => ctx.fault('connect', { type: 'raw', bytes: garbage }),
  },
  {
    id: 'garbage-202',
    step: 'register',
    fault: 'garbage bytes instead of the 202, once',
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'raw', bytes: garbage }),
  },
  {
    id: 'garbage-always',
    step: 'register',
    fault: 'garbage bytes instead of every answer',
    expect: {
      outcome: 'error',
      kind: 'protocol',
      connections: 4,
      message: { pattern: /unknown MQTT packet type|reserved|Malformed|invalid/i, names: 'what was malformed' },
    },
    arrange: (ctx) => ctx.fault('register', { type: 'raw', bytes: garbage }, 1000),
  },
  {
    id: 'truncated-close',
    step: 'register',
    fault: 'half a response PUBLISH, then the connection closes, once',
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'raw', bytes: truncatedResponse }),
  },
  {
    id: 'truncated-silent',
    step: 'register',
    fault: 'half a response PUBLISH, then silence (response timeout 2 s), once',
    options: { responseTimeoutMs: 2000 },
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'raw', bytes: truncatedResponse, then: 'silent' }),
  },
  {
    id: 'oversized',
    step: 'register',
    fault: 'a PUBLISH declaring 256 MB (1 MB of it sent) instead of every answer',
    expect: {
      outcome: 'error',
      kind: 'protocol',
      connections: 4,
      message: { pattern: /exceeds the limit of 65536 bytes/, names: 'the size limit' },
    },
    arrange: (ctx) => ctx.fault('register', { type: 'raw', bytes: hugePublish, then: 'silent' }, 1000),
  },
  {
    id: 'bad-json-200',
    step: 'poll',
    fault: 'a 200 whose body is not JSON, once',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 200, body: '{"status":"assigned",' }),
  },
  {
    id: 'assigned-no-hub',
    step: 'poll',
    fault: '200 "assigned" without assignedHub and deviceId',
    expect: {
      outcome: 'error',
      kind: 'protocol',
      connections: 1,
      message: { pattern: /without an assigned hub/, names: 'the missing hub' },
    },
    arrange: (ctx) => ctx.fault('poll', { type: 'status', status: 200, body: '{"operationId":"4.00.x","status":"assigned"}' }),
  },

  // ---- a hostile or compromised endpoint (issue 16): nothing it sends is stored or printed raw ----
  {
    id: 'hostile-hub-escape',
    step: 'register',
    fault: '200 "assigned" to a hub named with terminal escape codes (ESC[31m), on every attempt',
    expect: { outcome: 'error', kind: 'protocol', connections: 4, message: notHostName },
    arrange: (ctx) =>
      ctx.fault(
        'register',
        { type: 'status', status: 200, body: assignedAnswer(ctx.registrationId, { assignedHub: `\x1b[31m${HUBS[0]}` }) },
        1000,
      ),
  },
  {
    id: 'hostile-hub-newline',
    step: 'register',
    fault: '200 "assigned" to a hub whose name has a newline and a forged \'deviceId: attacker-controlled\' line, on every attempt',
    expect: { outcome: 'error', kind: 'protocol', connections: 4, message: notHostName },
    arrange: (ctx) =>
      ctx.fault(
        'register',
        {
          type: 'status',
          status: 200,
          body: assignedAnswer(ctx.registrationId, { assignedHub: `${HUBS[0]}\ndeviceId: attacker-controlled` }),
        },
        1000,
      ),
  },
  {
    id: 'hostile-hub-path',
    step: 'register',
    fault: '200 "assigned" to the hub evil/../../etc/passwd, on every attempt',
    expect: { outcome: 'error', kind: 'protocol', connections: 4, message: notHostName },
    arrange: (ctx) =>
      ctx.fault(
        'register',
        { type: 'status', status: 200, body: assignedAnswer(ctx.registrationId, { assignedHub: 'evil/../../etc/passwd' }) },
        1000,
      ),
  },
  {
    id: 'hostile-hub-space',
    step: 'register',
    fault: '200 "assigned" to the hub \' \' (a single space), on every attempt',
    expect: { outcome: 'error', kind: 'protocol', connections: 4, message: notHostName },
    arrange: (ctx) =>
      ctx.fault('register', { type: 'status', status: 200, body: assignedAnswer(ctx.registrationId, { assignedHub: ' ' }) }, 1000),
  },
  {
    id: 'hostile-hub-10k',
    step: 'register',
    fault: '200 "assigned" to a hub named with 10 KB of text, on every attempt',
    expect: { outcome: 'error', kind: 'protocol', connections: 4, message: notHostName },
    arrange: (ctx) =>
      ctx.fault(
        'register',
        { type: 'status', status: 200, body: assignedAnswer(ctx.registrationId, { assignedHub: 'a'.repeat(10 * 1024) }) },
        1000,
      ),
  },
  {
    id: 'hostile-device-id',
    step: 'register',
    fault: '200 "assigned" with a deviceId holding terminal escape codes (OSC title, BEL), on every attempt',
    expect: {
      outcome: 'error',
      kind: 'protocol',
      connections: 4,
      message: { pattern: /deviceId that IoT Hub does not allow/, names: 'the invalid device ID' },
    },
    arrange: (ctx) =>
      ctx.fault(
        'register',
        { type: 'status', status: 200, body: assignedAnswer(ctx.registrationId, { deviceId: `\x1b]0;pwned\x07${ctx.registrationId}` }) },
        1000,
      ),
  },
  {
    id: 'other-registration',
    step: 'register',
    fault: '200 "assigned" whose registrationId is another device\'s',
    expect: {
      outcome: 'error',
      kind: 'protocol',
      connections: 1,
      message: { pattern: /another registration ID/, names: 'the other registration' },
    },
    arrange: (ctx) =>
      ctx.fault('register', {
        type: 'status',
        status: 200,
        body: assignedAnswer(ctx.registrationId, { registrationId: 'fm-someone-else', deviceId: 'fm-someone-else' }),
      }),
  },
  {
    id: 'hostile-error-text',
    step: 'register',
    fault: "400 whose message and trackingId hold escape codes and a carriage return repainting the line as 'error (none): all good'",
    expect: {
      outcome: 'error',
      kind: 'failed',
      connections: 1,
      message: { pattern: /\\u001b\[2K\\rerror \(none\): all good/, names: 'the server message, escaped' },
    },
    arrange: (ctx) => {
      const repaint = '\x1b[2K\rerror (none): all good';
      ctx.fault('register', {
        type: 'status',
        status: 400,
        body: JSON.stringify({ errorCode: 400004, trackingId: `t-1${repaint}`, message: repaint }),
      });
    },
    check: (run) => {
      const error = run.error as ProvisioningError;
      expect(error.trackingId).toBe('t-1\\u001b[2K\\rerror (none): all good');
      let stderr = '';
      expect(reportError(error, { stdout: () => {}, stderr: (text) => void (stderr += text), env: {} })).toBe(5);
      expect(stderr.slice(0, -1)).not.toMatch(CONTROL);
      expect(stderr).toMatch(/^error \(failed\): DPS refused the registration \(400\): /);
    },
  },
  {
    id: 'tls-corrupt-handshake',
    x509: true,
    step: 'TLS handshake',
    fault: "proxy flips a bit in the server's first encrypted handshake record, first connection",
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: async (ctx) => ({ endpoint: (await ctx.proxy((n) => (n === 0 ? { corruptAfterDeviceRecords: 0 } : {}))).endpoint }),
  },
  {
    id: 'tls-corrupt',
    x509: true,
    step: 'TLS record after CONNECT',
    fault: 'proxy flips a bit in a TLS record of the first connection',
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: async (ctx) => ({ endpoint: (await ctx.proxy((n) => (n === 0 ? { corruptAfterDeviceRecords: 2 } : {}))).endpoint }),
  },

  // ---- silence ----
  {
    id: 'tls-silent',
    x509: true,
    step: 'TLS handshake',
    fault: 'proxy accepts TCP and never answers (deadline 3 s, response timeout 30 s)',
    options: { timeoutMs: 3000, responseTimeoutMs: 30_000 },
    expect: { outcome: 'error', kind: 'network', message: { pattern: /before the deadline/, names: 'the deadline' } },
    arrange: async (ctx) => ({ endpoint: (await ctx.proxy(() => ({ stallToDeviceAfter: 0 }))).endpoint }),
  },
  {
    id: 'connack-silent',
    x509: true,
    step: 'CONNACK',
    fault: 'TLS completes, CONNECT is never answered, once (response timeout 2 s)',
    options: { responseTimeoutMs: 2000 },
    expect: { outcome: 'assigned', connections: 2, registers: 1 },
    arrange: (ctx) => ctx.fault('connect', { type: 'silent' }),
  },
  {
    id: 'connack-silent-always',
    step: 'CONNACK',
    fault: 'TLS completes, CONNECT is never answered (deadline 3 s, response timeout 30 s)',
    options: { timeoutMs: 3000, responseTimeoutMs: 30_000 },
    expect: { outcome: 'error', kind: 'network', message: { pattern: /did not answer CONNECT/, names: 'the unanswered CONNECT' } },
    arrange: (ctx) => ctx.fault('connect', { type: 'silent' }, 1000),
  },
  {
    id: 'register-silent',
    step: 'register',
    fault: 'the register is never answered, once (response timeout 2 s)',
    options: { responseTimeoutMs: 2000 },
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: (ctx) => ctx.fault('register', { type: 'silent' }),
  },
  {
    id: 'poll-silent-always',
    step: 'poll',
    fault: 'no poll is ever answered (response timeout 1 s, deadline 4 s)',
    options: { timeoutMs: 4000, responseTimeoutMs: 1000 },
    expect: {
      outcome: 'error',
      kind: 'network',
      message: { pattern: /did not answer the request in time/, names: 'the unanswered request' },
    },
    arrange: (ctx) => ctx.fault('poll', { type: 'silent' }, 1000),
  },
  {
    id: 'keep-alive',
    step: 'register sent, before the 202',
    fault: 'proxy stalls the connection, PINGREQ unanswered (keep-alive 1 s, response timeout 6 s)',
    options: { keepAliveSeconds: 1, responseTimeoutMs: 6000 },
    expect: { outcome: 'assigned', connections: 2, registers: 2 },
    arrange: async (ctx) => {
      const proxy = await ctx.proxy();
      let stalled = false;
      ctx.onServed((request) => {
        if (request === 'register' && !stalled) {
          stalled = true;
          proxy.stallOpen();
        }
      });
      return { endpoint: proxy.endpoint };
    },
    check: (run) => expect(run.events.find((e) => e.type === 'reconnecting')).toMatchObject({ reason: expect.stringMatching(/PINGREQ/) }),
  },

  // ---- the device clock ----
  {
    id: 'clock-behind',
    step: 'CONNACK',
    fault: 'the device clock is 2 days behind: its SAS token has expired',
    expect: { outcome: 'error', kind: 'unauthorized', connections: 1, message: clockAdvice },
    arrange: () => ({ clock: { now: () => Date.now() - 2 * DAY_MS, setTimer: systemClock.setTimer } }),
    check: (run) => {
      const reads = new Date(Date.now() - 2 * DAY_MS).toISOString().slice(0, 10);
      expect((run.error as Error).message).toContain(`reads ${reads}`);
    },
  },
];

// ---- the table ----

function describeOutcome(expected: Expected): string {
  const connections = (n: number | undefined): string[] => (n === undefined ? [] : [n === 1 ? 'one connection' : `${n} connections`]);
  if (expected.outcome === 'assigned') {
    const registers =
      expected.registers === undefined ? [] : [expected.registers === 1 ? 'one register' : `${expected.registers} registers`];
    const details = [...connections(expected.connections), ...registers];
    return `assigned${details.length ? ` (${details.join(', ')})` : ''}`;
  }
  const details = [...connections(expected.connections), ...(expected.message ? [`message names ${expected.message.names}`] : [])];
  return `\`${expected.kind}\` error${details.length ? ` (${details.join('; ')})` : ''}`;
}

function matrixTable(scenarios: readonly Scenario[]): string {
  const escapeCell = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = scenarios.map(
    (s) => `| ${escapeCell(s.step)}${s.x509 ? ' (also X.509)' : ''} | ${escapeCell(s.fault)} | ${escapeCell(describeOutcome(s.expect))} |`,
  );
  return ['| step | fault | outcome |', '| --- | --- | --- |', ...rows].join('\n');
}

// ---- running them ----

let dps: DpsEmulator;
let stateDir: string;
/** Every scenario runs over both: MQTT over TLS (8883) and MQTT over secure WebSockets (443). */
const TRANSPORTS = ['mqtt', 'mqtt-ws'] as const;
type Transport = (typeof TRANSPORTS)[number];
/** How the device attests: the group's derived key (every row), or a client certificate (rows with `x509`). */
const ATTESTATIONS = ['sas', 'x509'] as const;
type Attestation = (typeof ATTESTATIONS)[number];
const VARIANTS = TRANSPORTS.flatMap((transport) => ATTESTATIONS.map((attestation) => [transport, attestation] as const));
const scenariosFor = (attestation: Attestation): Scenario[] => SCENARIOS.filter((s) => attestation === 'sas' || s.x509);
/** The CA of the X.509 group: each X.509 run's device certificate is issued by it. */
let deviceCa: SigningCa;
const connects = {} as Record<Transport, Connect>;
/** Where a device of `transport` connects: DPS's MQTT port, or its HTTPS port for WebSockets. */
const target = (transport: Transport): Endpoint => (transport === 'mqtt-ws' ? dps.httpsEndpoint : dps.endpoint);
const servedListeners = new Map<string, (request: 'register' | 'poll') => void>();
const served = new Map<string, { register: number; poll: number }>();
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
const runs = new Map<string, Promise<Run>>();

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  stateDir = mkdtempSync(join(tmpdir(), 'dps-fault-matrix-'));
  deviceCa = createCa('fault-matrix device CA');
  dps = await startEmulator({
    idScope: ID_SCOPE,
    stateDir,
    retryAfterSeconds: 1,
    assignmentDelayMs: 0,
    config: {
      iotHubs: HUBS.map((host) => ({
        connectionString: `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.from(host).toString('base64')}`,
      })),
      enrollmentGroups: [
        { enrollmentGroupId: 'fault-matrix', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } } },
        {
          enrollmentGroupId: 'fault-matrix-x509',
          attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: deviceCa.cert } } } },
        },
      ],
    },
    onEvent: (event: EndpointEvent) => {
      if (event.type !== 'request') return;
      const id = event.registrationId.toLowerCase();
      const counts = served.get(id) ?? { register: 0, poll: 0 };
      counts[event.request]++;
      served.set(id, counts);
      servedListeners.get(id)?.(event.request);
    },
  });
  connects.mqtt = createTlsConnect({ ca: dps.caPem, connectTimeoutMs: 5000 });
  connects['mqtt-ws'] = createWebSocketConnect({ ca: dps.caPem, connectTimeoutMs: 5000 });
  const slots = limiter(CONCURRENCY);
  for (const [transport, attestation] of VARIANTS)
    for (const scenario of scenariosFor(attestation))
      runs.set(
        `${transport} ${attestation} ${scenario.id}`,
        slots(() => runScenario(scenario, transport, attestation)),
      );
  await Promise.all(runs.values());
}, 120_000);

afterAll(async () => {
  await dps?.close();
  process.off('unhandledRejection', onUnhandled);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** Runs at most `n` tasks at once. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  return async (task) => {
    if (active >= n) await new Promise<void>((resolve) => queue.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

/** A device's ID, unique per transport and attestation. */
const deviceId = (name: string, transport: Transport, attestation: Attestation): string =>
  `fm-${name}${transport === 'mqtt-ws' ? '-ws' : ''}${attestation === 'x509' ? '-x5' : ''}`;

/** The device's credentials and its connect: the group key, or a certificate of its own (CN = its ID) and a TLS context with it. */
function credentials(
  registrationId: string,
  transport: Transport,
  attestation: Attestation,
): { device: Partial<DeviceConfig>; connect: Connect } {
  if (attestation === 'sas') return { device: { groupKey: GROUP_KEY }, connect: connects[transport] };
  const clientCertificate = issueDeviceCertificate(deviceCa, registrationId);
  const options = { ca: dps.caPem, connectTimeoutMs: 5000, clientCertificate };
  return {
    device: { x509: true },
    connect: transport === 'mqtt-ws' ? createWebSocketConnect(options) : createTlsConnect(options),
  };
}

async function runScenario(scenario: Scenario, transport: Transport, attestation: Attestation): Promise<Run> {
  const registrationId = deviceId(scenario.id, transport, attestation);
  const proxies: TcpProxy[] = [];
  const ctx: Ctx = {
    registrationId,
    fault: (on, action, times = 1) => dps.faults.push({ on, action, times, registrationId }),
    proxy: async (plan) => {
      const proxy = await startTcpProxy(target(transport), plan);
      proxies.push(proxy);
      return proxy;
    },
    onServed: (listener) => servedListeners.set(registrationId, listener),
  };
  const arranged = (await scenario.arrange(ctx)) ?? {};
  const options = { ...DEFAULTS, ...scenario.options };
  const events: ProvisioningEvent[] = [];
  const stored = new Map<string, string>();
  const store: Store = {
    get: async (key) => stored.get(key),
    set: async (key, value) => void stored.set(key, value),
    delete: async (key) => void stored.delete(key),
  };
  const run: Run = { registrationId, hung: false, events, served: { register: 0, poll: 0 }, stored };
  const { device, connect } = credentials(registrationId, transport, attestation);
  let cancelHang = (): void => {};
  const hang = new Promise<'hung'>((resolve) => {
    const timer = setTimeout(() => resolve('hung'), (options.timeoutMs ?? 0) + HANG_GRACE_MS);
    cancelHang = () => clearTimeout(timer);
  });
  const provisioning = provisionDevice(
    { ...options, ...device, idScope: ID_SCOPE, registrationId, endpoint: arranged.endpoint ?? target(transport) },
    { connect, clock: arranged.clock ?? systemClock, random: () => 0, log: (event) => events.push(event), store },
  ).then(
    (result) => void (run.result = result),
    (error: unknown) => void (run.error = error),
  );
  run.hung = (await Promise.race([provisioning, hang])) === 'hung';
  cancelHang();
  run.served = served.get(registrationId) ?? run.served;
  if (proxies.length) run.proxied = proxies.reduce((n, p) => n + p.accepted, 0);
  await Promise.all(proxies.map((p) => p.close()));
  return run;
}

describe.each(VARIANTS)(
  'fault matrix over %s, %s: provisioned correctly or a typed error before the deadline',
  (transport, attestation) => {
    for (const scenario of scenariosFor(attestation)) {
      it(`${scenario.step}: ${scenario.fault} → ${describeOutcome(scenario.expect)}`, async () => {
        const run = await runs.get(`${transport} ${attestation} ${scenario.id}`)!;
        expect(run.hung, 'the flow outlived its deadline').toBe(false);
        const expected = scenario.expect;
        const count = (type: ProvisioningEvent['type']): number => run.events.filter((e) => e.type === type).length;
        if (expected.outcome === 'assigned') {
          expect(run.error).toBeUndefined();
          const assignment = run.result!.assignment;
          expect(assignment.deviceId).toBe(run.registrationId);
          expect(HUBS).toContain(assignment.assignedHub);
          // The identity DPS made in the hub is the attestation's: the group's derived keys, or its CA.
          expect(dps.model.hubDevice(assignment.assignedHub, run.registrationId)?.authentication.type).toBe(
            attestation === 'x509' ? 'certificateAuthority' : 'sas',
          );
          expect(dps.model.registration(run.registrationId)?.enrollment).toEqual({
            kind: 'group',
            enrollmentGroupId: attestation === 'x509' ? 'fault-matrix-x509' : 'fault-matrix',
          });
          expect(dps.model.registration(run.registrationId)?.state.assignedHub).toBe(assignment.assignedHub);
          expect(parseAssignment(run.stored.get('assignment') ?? '')).toEqual(assignment);
          if (expected.registers !== undefined) expect(count('registering')).toBe(expected.registers);
        } else {
          expect(run.error).toBeInstanceOf(ProvisioningError);
          const error = run.error as ProvisioningError;
          expect({ kind: error.kind, message: error.message }).toMatchObject({ kind: expected.kind });
          if (expected.message) expect(error.message).toMatch(expected.message.pattern);
          expect([...run.stored.keys()], 'a failed run stored nothing').toEqual([]);
          expect(error.message).not.toMatch(CONTROL);
        }
        if (expected.connections !== undefined) expect(count('connecting')).toBe(expected.connections);
        scenario.check?.(run);
      });
    }

    it('raised no unhandled rejection, and the emulator still serves', async () => {
      expect(unhandled).toEqual([]);
      const events: ProvisioningEvent[] = [];
      const registrationId = deviceId('after-all', transport, attestation);
      const { device, connect } = credentials(registrationId, transport, attestation);
      const { assignment } = await provisionDevice(
        { ...DEFAULTS, ...device, idScope: ID_SCOPE, registrationId, endpoint: target(transport) },
        { connect, clock: systemClock, log: (event) => events.push(event) },
      );
      expect(assignment.deviceId).toBe(registrationId);
      expect(dps.faults.pending().filter((f) => f.registrationId?.startsWith('fm-') && (f.times ?? 1) < 1000)).toEqual([]);
    });
  },
);

describe('the fault matrix itself', () => {
  it('the fault plan refuses what the endpoint cannot play', () => {
    const bad: Array<[FaultTrigger, FaultAction]> = [
      ['connect', { type: 'duplicate' }],
      ['subscribe', { type: 'replay' }],
      ['subscribe', { type: 'status', status: 1 }],
      ['connect', { type: 'drop', afterResponse: true, afterMs: 5 }],
      ['poll', { type: 'drop', afterMs: 5 }],
      ['register', { type: 'raw', bytes: [1, 2] as unknown as Uint8Array }],
      ['register', { type: 'raw', bytes: garbage, then: 'later' as 'close' }],
      ['register', { type: 'status', status: 503, body: 42 as unknown as string }],
    ];
    for (const [on, action] of bad)
      expect(() => dps.faults.push({ on, action, registrationId: 'fm-never' }), `${on} ${JSON.stringify(action)}`).toThrow(TypeError);
  });

  it("has a row per scenario, each with a unique id, and the README's table is the generated one", () => {
    expect(new Set(SCENARIOS.map((s) => s.id)).size).toBe(SCENARIOS.length);
    // Every TLS row runs with a client certificate too.
    expect(SCENARIOS.filter((s) => /TLS/.test(s.step) && !s.x509).map((s) => s.id)).toEqual([]);
    const table = matrixTable(SCENARIOS);
    if (process.env.PRINT_FAULT_MATRIX) console.log(`\n${table}\n`);
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8').split('\n');
    const start = readme.indexOf('| step | fault | outcome |');
    expect(start, "the README's fault matrix table").toBeGreaterThan(0);
    const end = readme.findIndex((line, i) => i > start && !line.startsWith('|'));
    expect(
      readme.slice(start, end).join('\n'),
      'README.md is out of date: PRINT_FAULT_MATRIX=1 npx vitest run test/fault-matrix.test.ts',
    ).toBe(table);
  });
});

describe('the CLI against a silent server', () => {
  let dir: string;
  let bin: string;
  let proxy: TcpProxy;

  beforeAll(async () => {
    // The current source of the executable, bundled (dist/ may be stale outside `npm test`).
    dir = mkdtempSync(join(tmpdir(), 'dps-fault-cli-'));
    symlinkSync(join(import.meta.dirname, '..', 'node_modules'), join(dir, 'node_modules'), 'dir');
    bin = join(dir, 'bin.mjs');
    await build({
      entryPoints: [join(import.meta.dirname, '..', 'cli', 'bin.ts')],
      outfile: bin,
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'error',
    });
    proxy = await startTcpProxy({ host: '127.0.0.1', port: 9 }, () => ({ stallToDeviceAfter: 0 }));
  });

  afterAll(async () => {
    await proxy?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exits with the network status when its --timeout passes, not when a pending TLS handshake times out', async () => {
    const key = Buffer.from('fault-matrix-device-key-0123456789abcdef').toString('base64');
    const args = [
      'register',
      '--id-scope',
      ID_SCOPE,
      '--registration-id',
      'fm-cli',
      '--key',
      key,
      '--endpoint',
      `127.0.0.1:${proxy.endpoint.port}`,
      '--timeout',
      '2',
      '--quiet',
    ];
    // The hang detector: the TLS connect's own timeout is 30 s, the flow's deadline 2 s.
    const { code, killed, stderr } = await new Promise<{ code: number | null; killed: boolean; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args], { timeout: 12_000 }, (error, _stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, killed: Boolean(error?.killed), stderr }),
      );
    });
    expect(killed, 'the CLI outlived its --timeout').toBe(false);
    expect(code).toBe(8);
    expect(stderr).toMatch(/network/);
  }, 20_000);
});

// Scripted misbehaviour for tests: make the device endpoint throttle, fail, drop connections,
// go silent, or send stray, duplicated, stale or malformed responses, a given number of times. A
// test pushes faults; each matching request consumes one use of the first matching fault, in
// push order. What each action does is decided here, in applyFault; the device endpoint only
// supplies the moves its protocol allows at each trigger (FaultTarget).
//
//   emulator.faults.push({ on: 'register', action: { type: 'status', status: 429, retryAfter: 1 } });
//   emulator.faults.push({ on: 'poll', action: { type: 'drop' }, times: 2, registrationId: 'dev-1' });
//
// Triggers:
//   connect    a CONNECT that passed authentication (before CONNACK)
//   subscribe  a SUBSCRIBE to the response topic (before SUBACK)
//   register   a PUBLISH to $dps/registrations/PUT/iotdps-register/?$rid=...
//   poll       a PUBLISH to $dps/registrations/GET/iotdps-get-operationstatus/?$rid=...&operationId=...
// Actions (the triggers each applies to in brackets):
//   status     [register, poll] answer res/<status> with DPS's error body (errorCode <status>000,
//              or `errorCode`, and `message`), or with `body` verbatim when given (any text: an
//              empty or non-JSON error body), and, when retryAfter is given, &retry-after=<n>;
//              the request is not processed (a throttled register creates no operation).
//              [connect] `status` is the CONNACK return code to refuse with, 2..5 (2 identifier
//              rejected, 3 server unavailable, 4 bad username or password, 5 not authorized).
//              [subscribe] `status` 0x80 (the only one): SUBACK refuses the subscription. (A SUBACK
//              granting another QoS than asked for (at most 1): send one of your own with `raw`.)
//   drop       close the connection without answering. [connect] without `afterResponse` no
//              CONNACK is sent; with it, CONNACK 0 is sent and then the connection closes.
//              [subscribe] no SUBACK. [register, poll] with `afterResponse` the request is
//              processed and answered first, then the connection closes (after `afterMs` more
//              milliseconds when given: while the device waits to poll); without it, a register is
//              still processed (DPS may have started the operation) but not answered.
//   stray      [register, poll] first send a response with a foreign $rid, then handle the request
//              normally. `status` (default 202) shapes it: 202 assigning, 200 an assigned result
//              for 'stray-device' on 'stray-hub.azure-devices.net', otherwise DPS's error body.
//   delay      [all] hold the answer (CONNACK, SUBACK, response) for `ms` milliseconds, then
//              handle normally (a slow DPS).
//   silent     [all] never answer this request; the connection stays open and everything else
//              (PUBACK, PINGRESP) keeps working. A silent register or poll is not processed.
//              [connect] the CONNECT is never answered; [subscribe] nor is anything after it.
//   duplicate  [register, poll] process the request and send the answer twice.
//   replay     [register, poll] process the request, but first send again the previous answer
//              given on this connection, with its old $rid (a stale, out-of-order response);
//              nothing extra when this is the connection's first request.
//   raw        [all] instead of the answer, write `bytes` on the connection as they are
//              (garbage, a truncated or an oversized packet), then close the connection, or with
//              then: 'silent' keep it open and say nothing more. A register or poll answered
//              with raw bytes is not processed.

import { randomBytes, randomUUID } from 'node:crypto';
import { errorBody, genericErrorCode } from './dps-errors.js';
import type { RegistrationAnswer } from './registrations.js';

export type FaultTrigger = 'connect' | 'subscribe' | 'register' | 'poll';

export type FaultAction =
  | { type: 'status'; status: number; retryAfter?: number; errorCode?: number; message?: string; body?: string }
  | { type: 'drop'; afterResponse?: boolean; afterMs?: number }
  | { type: 'stray'; status?: number }
  | { type: 'delay'; ms: number }
  | { type: 'silent' }
  | { type: 'duplicate' }
  | { type: 'replay' }
  | { type: 'raw'; bytes: Uint8Array; then?: 'close' | 'silent' };

export interface Fault {
  on: FaultTrigger;
  action: FaultAction;
  /** How many matching requests it applies to; default 1. */
  times?: number;
  /** Only for this registration ID (case-insensitive); default any device. */
  registrationId?: string;
}

/** What happened, for assertions: each use of a fault. */
export interface FaultRecord {
  on: FaultTrigger;
  action: FaultAction;
  registrationId: string;
  at: number;
}

export class FaultPlan {
  readonly #queue: Array<Fault & { remaining: number }> = [];
  readonly #fired: FaultRecord[] = [];

  /** Add a fault; returns this for chaining. Throws TypeError for a malformed fault. */
  push(fault: Fault): this {
    validate(fault);
    this.#queue.push({ ...fault, action: { ...fault.action }, remaining: fault.times ?? 1 });
    return this;
  }

  /** Remove every pending fault (the record of fired ones stays). */
  clear(): void {
    this.#queue.length = 0;
  }

  /** Faults not yet used up, with their remaining counts. */
  pending(): Array<Fault & { remaining: number }> {
    return this.#queue.map((f) => ({ ...f, action: { ...f.action } }));
  }

  /** Every use so far, oldest first. */
  fired(): FaultRecord[] {
    return this.#fired.map((r) => ({ ...r, action: { ...r.action } }));
  }

  /** For the endpoint: the action for this request, consuming one use, or undefined. */
  take(on: FaultTrigger, registrationId: string): FaultAction | undefined {
    const id = registrationId.toLowerCase();
    const index = this.#queue.findIndex((f) => f.on === on && (f.registrationId === undefined || f.registrationId.toLowerCase() === id));
    if (index === -1) return undefined;
    const fault = this.#queue[index]!;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.#queue.splice(index, 1);
    this.#fired.push({ on, action: { ...fault.action }, registrationId, at: Date.now() });
    return { ...fault.action };
  }
}

const TRIGGERS: readonly FaultTrigger[] = ['connect', 'subscribe', 'register', 'poll'];

function validate(fault: Fault): void {
  if (!fault || !TRIGGERS.includes(fault.on)) {
    throw new TypeError("A fault needs on: 'connect' | 'subscribe' | 'register' | 'poll'");
  }
  const times = fault.times ?? 1;
  if (!Number.isInteger(times) || times < 1) throw new TypeError('A fault needs times >= 1');
  const request = fault.on === 'register' || fault.on === 'poll';
  const action = fault.action;
  const requestOnly = (what: string): void => {
    if (!request) throw new TypeError(`A ${what} fault needs a register or poll request`);
  };
  switch (action?.type) {
    case 'status':
      if (fault.on === 'connect') {
        if (!Number.isInteger(action.status) || action.status < 2 || action.status > 5) {
          throw new TypeError('A connect status fault needs a CONNACK return code from 2 to 5');
        }
        return;
      }
      if (fault.on === 'subscribe') {
        if (action.status !== 0x80) throw new TypeError('A subscribe status fault needs the SUBACK failure code 0x80');
        return;
      }
      if (!Number.isInteger(action.status) || action.status < 100 || action.status > 599) {
        throw new TypeError('A status fault needs a status from 100 to 599');
      }
      if (action.retryAfter !== undefined && (!Number.isInteger(action.retryAfter) || action.retryAfter < 0)) {
        throw new TypeError('A status fault retryAfter must be whole seconds');
      }
      if (action.body !== undefined && typeof action.body !== 'string') throw new TypeError('A status fault body must be a string');
      return;
    case 'drop':
      if (action.afterMs !== undefined) {
        if (!request || !action.afterResponse)
          throw new TypeError('A drop fault takes afterMs only with afterResponse, on a register or poll');
        if (!Number.isFinite(action.afterMs) || action.afterMs < 0) throw new TypeError('A drop fault needs afterMs >= 0');
      }
      if (action.afterResponse && fault.on === 'subscribe') throw new TypeError('A subscribe drop fault cannot answer first');
      return;
    case 'stray':
      return requestOnly('stray');
    case 'delay':
      if (!Number.isFinite(action.ms) || action.ms < 0) throw new TypeError('A delay fault needs ms >= 0');
      return;
    case 'silent':
      return;
    case 'duplicate':
      return requestOnly('duplicate');
    case 'replay':
      return requestOnly('replay');
    case 'raw':
      if (!(action.bytes instanceof Uint8Array)) throw new TypeError('A raw fault needs bytes (a Uint8Array)');
      if (action.then !== undefined && action.then !== 'close' && action.then !== 'silent') {
        throw new TypeError("A raw fault's then must be 'close' or 'silent'");
      }
      return;
    default:
      throw new TypeError("A fault action type must be 'status', 'drop', 'stray', 'delay', 'silent', 'duplicate', 'replay' or 'raw'");
  }
}

/**
 * What a fault does with the request it meets, in terms of what the endpoint can do at that point
 * of its protocol (accept, answer, refuse, close, write bytes). The endpoint implements these for
 * each trigger; applyFault decides which to do, so no fault's meaning lives in the protocol code.
 */
export interface FaultTarget {
  /**
   * Go on as without a fault: accept the CONNECT, grant the SUBSCRIBE, or process the request and
   * answer it. `answers`: how many times to send the answer (0: process, but do not answer);
   * `hangUpAfterMs`: close the connection that long after the answer has gone out.
   */
  proceed(how?: { answers?: 0 | 1 | 2; hangUpAfterMs?: number }): void | Promise<void>;
  /** A status fault: CONNACK with its return code, SUBACK 0x80, or its error answer to the request. */
  refuse(fault: Extract<FaultAction, { type: 'status' }>): void;
  /** Close the connection now, without an answer. */
  drop(): void;
  /** Write the raw fault's bytes instead of the answer (then close, or say nothing more). */
  writeRaw(fault: Extract<FaultAction, { type: 'raw' }>): void;
  /** Wait, then tell whether the connection is still there. */
  wait(ms: number): Promise<boolean>;
  /** For register and poll: send an answer that is not this request's, with its own $rid. */
  send?(answer: RegistrationAnswer, rid: string): void;
  /** For register and poll: the last answer on this connection, for a replay. */
  previous?(): { answer: RegistrationAnswer; rid: string } | undefined;
  now(): Date;
}

/** Do what `fault` says at `on` (validated by FaultPlan.push, so only an action that applies to `on` arrives). */
export async function applyFault(on: FaultTrigger, fault: FaultAction, target: FaultTarget): Promise<void> {
  switch (fault.type) {
    case 'status':
      return target.refuse(fault);
    case 'silent':
      return; // never answered: the device's timeout, or close(), ends it
    case 'raw':
      return target.writeRaw(fault);
    case 'delay':
      if (await target.wait(fault.ms)) await target.proceed();
      return;
    case 'drop':
      if (fault.afterResponse) return target.proceed({ hangUpAfterMs: fault.afterMs ?? 0 });
      // A register is still processed (DPS may have started the operation), just not answered.
      if (on === 'register' || on === 'poll') await target.proceed({ answers: 0 });
      return target.drop();
    case 'duplicate':
      return target.proceed({ answers: 2 });
    case 'stray':
      target.send?.(strayResponse(fault.status ?? 202, target.now()), randomUUID());
      return target.proceed();
    case 'replay': {
      const previous = target.previous?.();
      if (previous) target.send?.(previous.answer, previous.rid);
      return target.proceed();
    }
  }
}

/** The answer a status fault sends: DPS's error body, with retry-after when the fault has one. */
export function statusFaultResponse(fault: Extract<FaultAction, { type: 'status' }>, at: Date): RegistrationAnswer {
  const body =
    fault.body !== undefined
      ? new RawBody(fault.body)
      : errorBody(fault.errorCode ?? genericErrorCode(fault.status), fault.message ?? faultMessage(fault.status), at);
  return fault.retryAfter === undefined
    ? { status: fault.status, body }
    : { status: fault.status, body, retryAfterSeconds: fault.retryAfter };
}

/** A response body sent as this text, not serialized as JSON (a malformed or empty body). */
export class RawBody {
  constructor(readonly text: string) {}
}

/** A plausible answer to somebody else's request: a client that matches $rid must ignore it. */
function strayResponse(status: number, at: Date): RegistrationAnswer {
  const operationId = `4.${randomBytes(8).toString('hex')}.${randomUUID()}`;
  if (status === 202) return { status, body: { operationId, status: 'assigning' }, retryAfterSeconds: 1 };
  if (status === 200) {
    const time = at.toISOString();
    const registrationState = {
      registrationId: 'stray-device',
      createdDateTimeUtc: time,
      assignedHub: 'stray-hub.azure-devices.net',
      deviceId: 'stray-device',
      status: 'assigned',
      substatus: 'initialAssignment',
      lastUpdatedDateTimeUtc: time,
      etag: 'c3RyYXk=',
    };
    return { status, body: { operationId, status: 'assigned', registrationState } };
  }
  return { status, body: errorBody(genericErrorCode(status), 'A response to another request (emulator fault injection)', at) };
}

function faultMessage(status: number): string {
  if (status === 429) return 'Operations are being throttled (emulator fault injection)';
  if (status >= 500) return 'Internal error (emulator fault injection)';
  return `Request refused with status ${status} (emulator fault injection)`;
}

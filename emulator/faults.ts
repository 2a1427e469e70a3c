// Scripted misbehaviour for tests: make the device endpoint throttle, fail, drop connections or
// send stray responses, a given number of times. A test pushes faults; each matching request
// consumes one use of the first matching fault, in push order.
//
//   emulator.faults.push({ on: 'register', action: { type: 'status', status: 429, retryAfter: 1 } });
//   emulator.faults.push({ on: 'poll', action: { type: 'drop' }, times: 2, registrationId: 'dev-1' });
//
// Triggers:
//   connect   a CONNECT that passed authentication (before CONNACK)
//   register  a PUBLISH to $dps/registrations/PUT/iotdps-register/?$rid=...
//   poll      a PUBLISH to $dps/registrations/GET/iotdps-get-operationstatus/?$rid=...&operationId=...
// Actions:
//   status   register/poll: answer res/<status> with DPS's error body (errorCode <status>000) and,
//            when retryAfter is given, &retry-after=<retryAfter>; the request is not processed
//            (a throttled register creates no operation). connect: `status` is the CONNACK
//            return code to refuse with, 2..5 (2 identifier rejected, 3 server unavailable,
//            4 bad username or password, 5 not authorized).
//   drop     close the TCP connection without answering. register/poll: with `afterResponse`
//            the request is processed and answered first, then the connection closes (the
//            device knows the operationId and should resume polling); without it, a register
//            is still processed (DPS may have started the operation) but not answered.
//   stray    register/poll: first send a response with a foreign $rid, then handle the request
//            normally. `status` (default 202) shapes it: 202 assigning, 200 an assigned result
//            for 'stray-device' on 'stray-hub.azure-devices.net', otherwise DPS's error body.
//            connect: not applicable.
//   delay    hold the answer for `ms` milliseconds, then handle normally (a slow DPS).

import { randomBytes, randomUUID } from 'node:crypto';
import { errorBody, genericErrorCode } from './dps-errors.js';
import type { DpsResponse } from './registrations.js';

export type FaultTrigger = 'connect' | 'register' | 'poll';

export type FaultAction =
  | { type: 'status'; status: number; retryAfter?: number; errorCode?: number; message?: string }
  | { type: 'drop'; afterResponse?: boolean }
  | { type: 'stray'; status?: number }
  | { type: 'delay'; ms: number };

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
    const index = this.#queue.findIndex(
      (f) => f.on === on && (f.registrationId === undefined || f.registrationId.toLowerCase() === id),
    );
    if (index === -1) return undefined;
    const fault = this.#queue[index]!;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.#queue.splice(index, 1);
    this.#fired.push({ on, action: { ...fault.action }, registrationId, at: Date.now() });
    return { ...fault.action };
  }
}

function validate(fault: Fault): void {
  if (!fault || !['connect', 'register', 'poll'].includes(fault.on)) {
    throw new TypeError("A fault needs on: 'connect' | 'register' | 'poll'");
  }
  const times = fault.times ?? 1;
  if (!Number.isInteger(times) || times < 1) throw new TypeError('A fault needs times >= 1');
  const action = fault.action;
  switch (action?.type) {
    case 'status':
      if (fault.on === 'connect') {
        if (!Number.isInteger(action.status) || action.status < 2 || action.status > 5) {
          throw new TypeError('A connect status fault needs a CONNACK return code from 2 to 5');
        }
        return;
      }
      if (!Number.isInteger(action.status) || action.status < 100 || action.status > 599) {
        throw new TypeError('A status fault needs a status from 100 to 599');
      }
      if (action.retryAfter !== undefined && (!Number.isInteger(action.retryAfter) || action.retryAfter < 0)) {
        throw new TypeError('A status fault retryAfter must be whole seconds');
      }
      return;
    case 'drop':
      return;
    case 'stray':
      if (fault.on === 'connect') throw new TypeError('A stray response needs a register or poll request');
      return;
    case 'delay':
      if (!Number.isFinite(action.ms) || action.ms < 0) throw new TypeError('A delay fault needs ms >= 0');
      return;
    default:
      throw new TypeError("A fault action type must be 'status', 'drop', 'stray' or 'delay'");
  }
}

/** The answer a status fault sends: DPS's error body, with retry-after when the fault has one. */
export function statusFaultResponse(fault: Extract<FaultAction, { type: 'status' }>, at: Date): DpsResponse {
  const body = errorBody(fault.errorCode ?? genericErrorCode(fault.status), fault.message ?? faultMessage(fault.status), at);
  return fault.retryAfter === undefined ? { status: fault.status, body } : { status: fault.status, body, retryAfterSeconds: fault.retryAfter };
}

/** A plausible answer to somebody else's request: a client that matches $rid must ignore it. */
export function strayResponse(status: number, at: Date): DpsResponse {
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

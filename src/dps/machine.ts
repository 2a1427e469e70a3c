// The register/poll flow as a pure state machine: given what just happened and the time,
// decide what to do next. No I/O, no timers: flow.ts performs the actions.
//
//   start ──► request(register) ──202──► wait(retry-after) ──► request(poll) ──202──► …
//                 │   ▲                                          │
//                 │   └──────── 404 operation unknown ───────────┘
//                 ├─ 200 assigned ──► done
//                 ├─ 200 failed / disabled, 401, other 4xx ──► fail
//                 ├─ 429 / 5xx ──► wait(retry-after or backoff) ──► same request again
//                 ├─ connection lost / refused ──► wait(backoff) ──► same request on a new connection
//                 └─ connection closed before the register's answer, maxRegisterDrops times in a row ──► fail
//
// Every wait is checked against the deadline first: a wait that would end past it fails now,
// with the kind of the problem that kept us waiting (throttled, server, network, timeout).
import { detailsOf, type ErrorKind, ProvisioningError } from '../errors.js';
import type { Random } from '../ports.js';
import type { DpsResponse, RegistrationState } from './messages.js';

export interface BackoffPolicy {
  /** First retry waits about this long (before jitter). */
  minMs: number;
  /** No backoff wait is longer than this (before jitter). */
  maxMs: number;
  /** Up to this much random time is added to each backoff wait. */
  jitterMs: number;
}

export interface MachineConfig {
  /** Absolute time (ms since epoch) by which the flow must have ended. */
  deadline: number;
  /** Wait between polls when a 202 carries no retry-after. */
  defaultRetryAfterMs: number;
  backoff: BackoffPolicy;
  random: Random;
  /** Consecutive protocol violations tolerated (each followed by a reconnect) before giving up. */
  maxProtocolErrors: number;
  /**
   * The server closing the connection before answering the register request this many times in
   * a row ends the flow ('failed'): it refuses that request (too large, or its payload), and
   * sending it unchanged until the deadline will not help. Default 3.
   */
  maxRegisterDrops?: number;
  /** The register request's size, named when it is refused so. */
  registerRequestBytes?: number;
}

/** What to request next; `polls` counts the status requests answered "assigning" for this operation. */
export type Phase = { type: 'register' } | { type: 'poll'; operationId: string; polls: number };

export interface MachineState {
  phase: Phase;
  /** Consecutive transient failures: the backoff exponent. Reset by any useful response. */
  failures: number;
  protocolErrors: number;
  /** Consecutive connections the server closed before answering the register request. */
  registerDrops: number;
  /**
   * What last held the flow up (a throttle, a server error, a lost connection): the failure to
   * report, with its details, if the deadline passes. Undefined while DPS is simply assigning.
   */
  problem: ProvisioningError | undefined;
}

/**
 * A wait, and what it means to the device's owner (the host logs it as it is): DPS is assigning
 * (the n-th poll follows), or the same request is retried on this connection (`retrying`: DPS
 * throttled or failed) or on a new one (`reconnecting`: the connection failed or the server broke
 * the protocol). `cause` is the kind of the problem; `detail` its message.
 */
export type Wait =
  | { type: 'wait'; ms: number; reason: 'assigning'; operationId: string; poll: number }
  | { type: 'wait'; ms: number; reason: 'retrying' | 'reconnecting'; cause: ErrorKind; detail: string };

export type Action =
  | { type: 'request'; phase: Phase }
  | Wait
  | { type: 'done'; registrationState: RegistrationState; operationId: string }
  | { type: 'fail'; error: ProvisioningError };

export type MachineEvent =
  | { type: 'start' }
  | { type: 'response'; status: number; retryAfterSeconds: number | undefined; response: DpsResponse }
  | { type: 'connect-failed'; error: ProvisioningError }
  /** `closed`: the connection closed (not a request left unanswered). */
  | { type: 'lost'; error: ProvisioningError; closed?: boolean }
  | { type: 'waited' };

const DEFAULT_MAX_REGISTER_DROPS = 3;

export function initialState(): MachineState {
  return { phase: { type: 'register' }, failures: 0, protocolErrors: 0, registerDrops: 0, problem: undefined };
}

export interface Step {
  state: MachineState;
  action: Action;
}

export function step(state: MachineState, event: MachineEvent, now: number, config: MachineConfig): Step {
  if (now >= config.deadline && event.type !== 'response') {
    // A connection that failed or was lost as the deadline passed is the cause, unless something
    // else held the flow up, or DPS was still assigning.
    const lost = (event.type === 'connect-failed' || event.type === 'lost') && !state.problem && state.phase.type === 'register';
    const cause = lost ? { ...state, problem: event.error } : state;
    return { state, action: { type: 'fail', error: deadlineError(cause) } };
  }
  switch (event.type) {
    case 'start':
    case 'waited':
      return { state, action: { type: 'request', phase: state.phase } };
    case 'connect-failed':
      return onConnectFailed(state, event.error, now, config);
    case 'lost':
      return onLost(state, event, now, config);
    case 'response':
      return onResponse(state, event, now, config);
  }
}

function onConnectFailed(state: MachineState, error: ProvisioningError, now: number, config: MachineConfig): Step {
  // Refused credentials, an untrusted server or a refused subscription will not fix themselves.
  if (error.kind === 'unauthorized' || error.kind === 'tls' || error.kind === 'invalid-input' || error.kind === 'failed') {
    return { state, action: { type: 'fail', error } };
  }
  return retryLater(state, error, now, config);
}

function onLost(state: MachineState, event: Extract<MachineEvent, { type: 'lost' }>, now: number, config: MachineConfig): Step {
  const { error } = event;
  if (event.closed && error.kind === 'network' && state.phase.type === 'register') {
    const registerDrops = state.registerDrops + 1;
    const maxDrops = config.maxRegisterDrops ?? DEFAULT_MAX_REGISTER_DROPS;
    if (registerDrops >= maxDrops) {
      const size = config.registerRequestBytes === undefined ? '' : ` (${config.registerRequestBytes} bytes)`;
      const refused = new ProvisioningError(
        'failed',
        `DPS closed the connection right after the registration request${size}, ${registerDrops} times in a row: it refuses that request (too large, or its payload), so it is not sent again unchanged. Last: ${error.message}`,
      );
      return { state: { ...state, registerDrops }, action: { type: 'fail', error: refused } };
    }
    state = { ...state, registerDrops };
  }
  if (error.kind === 'protocol') {
    const protocolErrors = state.protocolErrors + 1;
    if (protocolErrors > config.maxProtocolErrors) return { state, action: { type: 'fail', error } };
    return retryLater({ ...state, protocolErrors }, error, now, config);
  }
  if (error.kind === 'unauthorized') return { state, action: { type: 'fail', error } };
  return retryLater(state, error, now, config);
}

function onResponse(state: MachineState, event: Extract<MachineEvent, { type: 'response' }>, now: number, config: MachineConfig): Step {
  const { response, status } = event;
  state = { ...state, registerDrops: 0 };
  const retryAfterMs = event.retryAfterSeconds === undefined ? undefined : event.retryAfterSeconds * 1000;

  if (response.kind === 'error') {
    const kind: ErrorKind =
      status === 429 ? 'throttled' : status >= 500 ? 'server' : status === 401 || status === 403 ? 'unauthorized' : 'failed';
    const problem = new ProvisioningError(kind, response.message ?? `DPS answered ${status}`, { ...detailsOf(response), status });
    if (kind === 'throttled' || kind === 'server') return retryLater(state, problem, now, config, retryAfterMs);
    if (status === 404 && state.phase.type === 'poll') {
      // DPS no longer knows the operation (expired, or lost in a failover): start over.
      const next: MachineState = { ...state, phase: { type: 'register' }, failures: 0, problem };
      return { state: next, action: { type: 'request', phase: next.phase } };
    }
    return { state, action: { type: 'fail', error: rephrase(problem, describeRefusal(status, state.phase)) } };
  }

  const registration = response.registrationState;
  switch (response.registrationStatus) {
    case 'assigned': {
      if (!registration?.assignedHub || !registration.deviceId) {
        const error = new ProvisioningError('protocol', 'DPS reported "assigned" without an assigned hub and device ID', { status });
        return { state, action: { type: 'fail', error } };
      }
      return { state, action: { type: 'done', registrationState: registration, operationId: response.operationId } };
    }
    case 'failed':
    case 'disabled': {
      const disabled = response.registrationStatus === 'disabled';
      const message = disabled
        ? 'The enrollment or registration is disabled in DPS'
        : `DPS could not assign the device: ${registration?.errorMessage ?? 'no reason given'}`;
      const error = new ProvisioningError(disabled ? 'disabled' : 'failed', message, {
        status,
        ...(registration?.errorCode !== undefined && { errorCode: registration.errorCode }),
      });
      return { state, action: { type: 'fail', error } };
    }
    case 'assigning':
    case 'unassigned': {
      const { operationId } = response;
      const polls = state.phase.type === 'poll' && state.phase.operationId === operationId ? state.phase.polls + 1 : 1;
      const next: MachineState = {
        phase: { type: 'poll', operationId, polls },
        failures: 0,
        protocolErrors: 0,
        registerDrops: 0,
        problem: undefined,
      };
      const ms = retryAfterMs ?? config.defaultRetryAfterMs;
      return waitOrFail(next, { type: 'wait', ms, reason: 'assigning', operationId, poll: polls }, now, config);
    }
  }
}

/**
 * A transient problem: wait as the server asked, or back off exponentially with jitter. DPS's
 * answers (throttled, server errors) are retried on the connection; anything else on a new one.
 */
function retryLater(state: MachineState, problem: ProvisioningError, now: number, config: MachineConfig, retryAfterMs?: number): Step {
  const failures = state.failures + 1;
  const next: MachineState = { ...state, failures, problem };
  const ms = retryAfterMs ?? backoffMs(failures, config);
  const reason = problem.kind === 'throttled' || problem.kind === 'server' ? 'retrying' : 'reconnecting';
  return waitOrFail(next, { type: 'wait', ms, reason, cause: problem.kind, detail: problem.message }, now, config);
}

function waitOrFail(state: MachineState, wait: Wait, now: number, config: MachineConfig): Step {
  if (now + wait.ms >= config.deadline) return { state, action: { type: 'fail', error: deadlineError(state) } };
  return { state, action: wait };
}

/** Exponential backoff: min·2^(n-1), capped at max, plus uniform jitter. */
export function backoffMs(failures: number, config: Pick<MachineConfig, 'backoff' | 'random'>): number {
  const { minMs, maxMs, jitterMs } = config.backoff;
  const exponential = Math.min(maxMs, minMs * 2 ** Math.min(failures - 1, 30));
  return Math.round(exponential + config.random() * jitterMs);
}

function deadlineError(state: MachineState): ProvisioningError {
  const problem = state.problem;
  if (!problem && state.phase.type === 'poll') {
    return new ProvisioningError(
      'timeout',
      `The provisioning deadline passed: DPS was still assigning (operation ${state.phase.operationId})`,
    );
  }
  if (!problem) return new ProvisioningError('timeout', 'The provisioning deadline passed before DPS answered');
  const prefix: Record<string, string> = {
    throttled: 'DPS kept throttling the device (429) until the deadline passed',
    server: 'DPS kept failing (server error) until the deadline passed',
    network: 'Could not reach DPS before the deadline passed',
    protocol: 'DPS kept sending malformed data until the deadline passed',
    timeout: 'The provisioning deadline passed',
  };
  return rephrase(problem, `${prefix[problem.kind] ?? 'The provisioning deadline passed'}: ${problem.message}`);
}

function describeRefusal(status: number, phase: Phase): string {
  const what = phase.type === 'register' ? 'the registration' : 'the operation status request';
  if (status === 401) {
    return `DPS refused ${what} as unauthorized (401): check the key (a group enrollment needs the derived device key) and the device clock`;
  }
  return `DPS refused ${what} (${status})`;
}

/** The problem told with `message`, followed by the problem's own message unless it is already in it. */
function rephrase(problem: ProvisioningError, message: string): ProvisioningError {
  return problem.rephrase(problem.message && !message.includes(problem.message) ? `${message}: ${problem.message}` : message);
}

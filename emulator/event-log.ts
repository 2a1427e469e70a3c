// The device events of this DPS instance and its hubs, as the emulator's banner logs them, kept
// for the service API (event-routes.ts): the last EVENT_LOG_SIZE events with sequence numbers,
// and what Azure Monitor shows of a DPS instance, counted in EVENT_BUCKET_SECONDS buckets over
// the last METRICS_WINDOW_SECONDS: attestation attempts (succeeded, failed), registrations,
// assignments (by hub) and failures by error code. A request's outcome is read from the
// registration record when the event happens. No event carries a key or a token.
import type { EndpointEvent } from './device-endpoint.js';
import type { DpsModel } from './model.js';
import type { DeviceRegistrationState } from './model-types.js';

export const EVENT_LOG_SIZE = 1000;
export const EVENT_BUCKET_SECONDS = 10;
export const METRICS_WINDOW_SECONDS = 30 * 60;

/** What the registration record said when a device was answered 200, or 202 to a register (registrationOutcome). */
export interface RegistrationOutcome
  extends Pick<DeviceRegistrationState, 'status' | 'assignedHub' | 'deviceId' | 'substatus' | 'errorCode' | 'errorMessage'> {
  /** The enrollment group it came through, when it did. */
  enrollmentGroupId?: string;
}

export interface LoggedEvent {
  /** 1, 2, 3...: a follower's cursor. */
  sequenceNumber: number;
  timeUtc: string;
  event: EndpointEvent;
  outcome?: RegistrationOutcome;
}

export interface MetricsBucket {
  /** The bucket's start, Unix milliseconds. */
  start: number;
  attestationSucceeded: number;
  attestationFailed: number;
  registrations: number;
  assignments: number;
  assignmentsByHub: Record<string, number>;
  /** Failures by error code: a DPS errorCode, an HTTP status, or CONNACK 5 with the refusal's reason. */
  failures: Record<string, number>;
}

export interface Metrics {
  bucketSeconds: number;
  windowSeconds: number;
  /** Non-empty buckets of the window, oldest first. */
  buckets: MetricsBucket[];
  /** The same counts since the emulator started. */
  totals: Omit<MetricsBucket, 'start'>;
}

export class DeviceEventLog {
  readonly #events: LoggedEvent[] = [];
  readonly #listeners = new Set<(entry: LoggedEvent) => void>();
  readonly #buckets: MetricsBucket[] = [];
  readonly #totals: MetricsBucket;
  #next = 1;

  constructor(
    private readonly model: DpsModel,
    private readonly now: () => number = Date.now,
  ) {
    this.#totals = emptyBucket(0);
  }

  /** Keep `event` with its outcome; returns what was kept. */
  record(event: EndpointEvent): LoggedEvent {
    const at = this.now();
    const entry: LoggedEvent = { sequenceNumber: this.#next++, timeUtc: new Date(at).toISOString(), event };
    const outcome = registrationOutcome(this.model, event);
    if (outcome) entry.outcome = outcome;
    this.#events.push(entry);
    // Trimmed EVENT_LOG_SIZE at a time, not one event at a time (a shift of 1000 per event).
    if (this.#events.length >= 2 * EVENT_LOG_SIZE) this.#events.splice(0, this.#events.length - EVENT_LOG_SIZE);
    this.#count(entry, at);
    for (const listener of this.#listeners) listener(entry);
    return entry;
  }

  /** The kept events from sequence number `from` on, oldest first. */
  events(from = 0): LoggedEvent[] {
    const events = this.#events;
    const kept: LoggedEvent[] = [];
    for (let i = Math.max(0, events.length - EVENT_LOG_SIZE); i < events.length; i++) {
      if (events[i]!.sequenceNumber >= from) kept.push(events[i]!);
    }
    return kept;
  }

  onEvent(listener: (entry: LoggedEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  metrics(): Metrics {
    this.#expire(this.now());
    const { start: _, ...totals } = this.#totals;
    return {
      bucketSeconds: EVENT_BUCKET_SECONDS,
      windowSeconds: METRICS_WINDOW_SECONDS,
      buckets: structuredClone(this.#buckets),
      totals: structuredClone(totals),
    };
  }

  #count(entry: LoggedEvent, at: number): void {
    const change = counted(entry);
    if (!change) return;
    this.#expire(at);
    const start = at - (at % (EVENT_BUCKET_SECONDS * 1000));
    let bucket = this.#buckets.at(-1);
    if (bucket?.start !== start) {
      bucket = emptyBucket(start);
      this.#buckets.push(bucket);
    }
    for (const target of [bucket, this.#totals]) change(target);
  }

  #expire(at: number): void {
    const oldest = at - METRICS_WINDOW_SECONDS * 1000;
    while (this.#buckets.length > 0 && this.#buckets[0]!.start < oldest) this.#buckets.shift();
  }
}

function emptyBucket(start: number): MetricsBucket {
  return {
    start,
    attestationSucceeded: 0,
    attestationFailed: 0,
    registrations: 0,
    assignments: 0,
    assignmentsByHub: Object.create(null),
    failures: Object.create(null),
  };
}

/**
 * What the registration record says as a device is answered 200 (a poll or a register that ends
 * it) or 202 to a register (the enrollment it came through); undefined for any other event.
 */
export function registrationOutcome(model: DpsModel, event: EndpointEvent): RegistrationOutcome | undefined {
  if (event.type !== 'request' || !(event.status === 200 || (event.request === 'register' && event.status === 202))) return undefined;
  const record = model.readRegistration(event.registrationId);
  if (!record) return undefined;
  const { status, assignedHub, deviceId, substatus, errorCode, errorMessage } = record.state;
  return {
    status,
    ...(assignedHub !== undefined && { assignedHub }),
    ...(deviceId !== undefined && { deviceId }),
    ...(substatus !== undefined && { substatus }),
    ...(errorCode !== undefined && { errorCode }),
    ...(errorMessage !== undefined && { errorMessage }),
    ...(record.enrollment.kind === 'group' && { enrollmentGroupId: record.enrollment.enrollmentGroupId }),
  };
}

/** How an event changes the counts; undefined when it does not. */
function counted(entry: LoggedEvent): ((bucket: MetricsBucket) => void) | undefined {
  const { event, outcome } = entry;
  const fail = (code: string) => (b: MetricsBucket) => {
    b.failures[code] = (b.failures[code] ?? 0) + 1;
  };
  switch (event.type) {
    case 'connected':
      return (b) => b.attestationSucceeded++;
    case 'refused':
      return (b) => {
        b.attestationFailed++;
        fail(`CONNACK 5 (${event.reason})`)(b);
      };
    case 'request':
      if (event.request === 'register' && event.status === 202) return (b) => b.registrations++;
      if (event.status === 401) {
        return (b) => {
          b.attestationFailed++;
          fail('401')(b);
        };
      }
      if (event.status >= 400) return fail(String(event.status));
      if (event.status !== 200 || !outcome) return undefined;
      if (outcome.status === 'assigned') {
        const hub = outcome.assignedHub ?? '';
        return (b) => {
          b.assignments++;
          b.assignmentsByHub[hub] = (b.assignmentsByHub[hub] ?? 0) + 1;
        };
      }
      if (outcome.status === 'failed') return fail(String(outcome.errorCode ?? 'failed'));
      if (outcome.status === 'disabled') return fail('disabled');
      return undefined;
    default:
      return undefined;
  }
}

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffMs, initialState, type MachineConfig, type MachineEvent, type MachineState, step } from '../src/dps/machine.js';
import type { DpsResponse } from '../src/dps/messages.js';
import { ProvisioningError } from '../src/errors.js';

const T0 = 1_700_000_000_000;
const config = (overrides: Partial<MachineConfig> = {}): MachineConfig => ({
  deadline: T0 + 60_000,
  defaultRetryAfterMs: 3000,
  backoff: { minMs: 1000, maxMs: 60_000, jitterMs: 1000 },
  random: () => 0.5,
  maxProtocolErrors: 3,
  ...overrides,
});

const assigning = (operationId = 'op-1'): DpsResponse => ({
  kind: 'operation',
  status: 202,
  operationId,
  registrationStatus: 'assigning',
});
const assigned: DpsResponse = {
  kind: 'operation',
  status: 200,
  operationId: 'op-1',
  registrationStatus: 'assigned',
  registrationState: {
    registrationId: 'dev-1',
    assignedHub: 'hub-a.azure-devices.net',
    deviceId: 'dev-1',
    status: 'assigned',
    substatus: 'initialAssignment',
  },
};
const errorBody = (status: number, extra: Partial<Extract<DpsResponse, { kind: 'error' }>> = {}): DpsResponse => ({
  kind: 'error',
  status,
  ...extra,
});
const response = (status: number, body: DpsResponse, retryAfterSeconds?: number): MachineEvent => ({
  type: 'response',
  status,
  retryAfterSeconds,
  response: body,
});

/** Feed events in order, each at the given time; return the last step. */
function run(events: [MachineEvent, number][], cfg = config()) {
  let state: MachineState = initialState();
  let last: ReturnType<typeof step> | undefined;
  for (const [event, now] of events) {
    last = step(state, event, now, cfg);
    state = last.state;
  }
  return last!;
}

describe('the DPS state machine', () => {
  it('starts by registering', () => {
    expect(step(initialState(), { type: 'start' }, T0, config()).action).toEqual({ type: 'request', phase: { type: 'register' } });
  });

  it('waits the retry-after DPS gives on 202, then polls that operation', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(202, assigning('op-7'), 2), T0 + 100],
    ]);
    expect(s.action).toEqual({ type: 'wait', ms: 2000, reason: 'assigning', operationId: 'op-7', poll: 1 });
    const next = step(s.state, { type: 'waited' }, T0 + 2100, config());
    expect(next.action).toEqual({ type: 'request', phase: { type: 'poll', operationId: 'op-7', polls: 1 } });
  });

  it('uses the default wait when a 202 has no retry-after, and counts polls', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(202, assigning()), T0],
      [{ type: 'waited' }, T0 + 3000],
      [response(202, assigning()), T0 + 3100],
    ]);
    expect(s.action).toMatchObject({ type: 'wait', ms: 3000, reason: 'assigning', poll: 2 });
  });

  it('ends with the registration state on 200 assigned', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(200, assigned), T0],
    ]);
    expect(s.action).toMatchObject({ type: 'done', operationId: 'op-1', registrationState: { assignedHub: 'hub-a.azure-devices.net' } });
  });

  it('refuses an "assigned" without a hub as a protocol error', () => {
    const body = { ...assigned, registrationState: { registrationId: 'x', status: 'assigned' as const } };
    const s = run([
      [{ type: 'start' }, T0],
      [response(200, body), T0],
    ]);
    expect(s.action).toMatchObject({ type: 'fail', error: { kind: 'protocol' } });
  });

  it('fails with the DPS error code on status failed, and kind disabled on status disabled', () => {
    const failed: DpsResponse = {
      kind: 'operation',
      status: 200,
      operationId: 'op-1',
      registrationStatus: 'failed',
      registrationState: { registrationId: 'x', status: 'failed', errorCode: 400207, errorMessage: 'Custom allocation failed' },
    };
    const f = run([
      [{ type: 'start' }, T0],
      [response(200, failed), T0],
    ]);
    expect(f.action).toMatchObject({ type: 'fail', error: { kind: 'failed', errorCode: 400207 } });
    expect((f.action as { error: Error }).error.message).toContain('Custom allocation failed');
    const d = run([
      [{ type: 'start' }, T0],
      [response(200, { ...failed, registrationStatus: 'disabled' }), T0],
    ]);
    expect(d.action).toMatchObject({ type: 'fail', error: { kind: 'disabled' } });
  });

  it('fails at once on 401 with the error code and tracking id', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(401, errorBody(401, { errorCode: 401002, trackingId: 't-1', message: 'Unauthorized' })), T0],
    ]);
    expect(s.action).toMatchObject({ type: 'fail', error: { kind: 'unauthorized', errorCode: 401002, trackingId: 't-1', status: 401 } });
  });

  it('fails on a 400 without retrying', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(400, errorBody(400, { errorCode: 400004 })), T0],
    ]);
    expect(s.action).toMatchObject({ type: 'fail', error: { kind: 'failed', errorCode: 400004 } });
  });

  it('retries the same request after 429, honouring retry-after', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(429, errorBody(429), 5), T0],
    ]);
    expect(s.action).toMatchObject({ type: 'wait', ms: 5000, reason: 'retrying', cause: 'throttled' });
    expect(step(s.state, { type: 'waited' }, T0 + 5000, config()).action).toEqual({ type: 'request', phase: { type: 'register' } });
  });

  it('backs off exponentially on repeated 5xx without retry-after', () => {
    let state = step(initialState(), { type: 'start' }, T0, config()).state;
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const s = step(state, response(503, errorBody(503)), T0, config({ deadline: T0 + 3_600_000 }));
      expect(s.action.type).toBe('wait');
      waits.push((s.action as { ms: number }).ms);
      state = step(s.state, { type: 'waited' }, T0, config()).state;
    }
    expect(waits).toEqual([1500, 2500, 4500, 8500]);
  });

  it('keeps polling the same operation after a 429 on poll', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(202, assigning('op-9'), 1), T0],
      [{ type: 'waited' }, T0 + 1000],
      [response(429, errorBody(429), 2), T0 + 1000],
      [{ type: 'waited' }, T0 + 3000],
    ]);
    expect(s.action).toEqual({ type: 'request', phase: { type: 'poll', operationId: 'op-9', polls: 1 } });
  });

  it('re-registers when DPS no longer knows the operation (404 on poll)', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [response(202, assigning('op-9'), 1), T0],
      [{ type: 'waited' }, T0 + 1000],
      [response(404, errorBody(404, { errorCode: 404201 })), T0 + 1000],
    ]);
    expect(s.action).toEqual({ type: 'request', phase: { type: 'register' } });
  });

  it('after a lost connection, backs off and resumes polling the same operation', () => {
    const lost: MachineEvent = { type: 'lost', error: new ProvisioningError('network', 'reset') };
    const s = run([
      [{ type: 'start' }, T0],
      [response(202, assigning('op-3'), 1), T0],
      [{ type: 'waited' }, T0 + 1000],
      [lost, T0 + 1000],
    ]);
    expect(s.action).toMatchObject({ type: 'wait', reason: 'reconnecting', cause: 'network', detail: 'reset', ms: 1500 });
    expect(step(s.state, { type: 'waited' }, T0 + 3000, config()).action).toEqual({
      type: 'request',
      phase: { type: 'poll', operationId: 'op-3', polls: 1 },
    });
  });

  it('fails at once when the connection is refused as unauthorized or the certificate is untrusted', () => {
    for (const kind of ['unauthorized', 'tls'] as const) {
      const s = run([
        [{ type: 'start' }, T0],
        [{ type: 'connect-failed', error: new ProvisioningError(kind, 'no') }, T0],
      ]);
      expect(s.action).toMatchObject({ type: 'fail', error: { kind } });
    }
  });

  it('retries a server-unavailable refusal with backoff', () => {
    const s = run([
      [{ type: 'start' }, T0],
      [{ type: 'connect-failed', error: new ProvisioningError('server', 'CONNACK 3') }, T0],
    ]);
    expect(s.action).toMatchObject({ type: 'wait', reason: 'retrying', cause: 'server', detail: 'CONNACK 3' });
  });

  it('gives up after repeated protocol violations', () => {
    const bad: MachineEvent = { type: 'lost', error: new ProvisioningError('protocol', 'garbage') };
    const events: [MachineEvent, number][] = [[{ type: 'start' }, T0]];
    for (let i = 0; i < 3; i++) events.push([bad, T0], [{ type: 'waited' }, T0]);
    expect(run(events, config({ deadline: T0 + 3_600_000 })).action).toMatchObject({ type: 'request' });
    events.push([bad, T0]);
    expect(run(events, config({ deadline: T0 + 3_600_000 })).action).toMatchObject({ type: 'fail', error: { kind: 'protocol' } });
  });

  it('gives up when the server closes the connection before answering the register, 3 times in a row', () => {
    const closed: MachineEvent = { type: 'lost', error: new ProvisioningError('network', 'ECONNRESET'), closed: true };
    const cfg = config({ deadline: T0 + 3_600_000, registerRequestBytes: 70_113 });
    const events: [MachineEvent, number][] = [[{ type: 'start' }, T0]];
    for (let i = 0; i < 2; i++) events.push([closed, T0], [{ type: 'waited' }, T0]);
    expect(run(events, cfg).action).toEqual({ type: 'request', phase: { type: 'register' } });
    events.push([closed, T0]);
    const s = run(events, cfg);
    expect(s.action).toMatchObject({ type: 'fail', error: { kind: 'failed' } });
    expect((s.action as { error: ProvisioningError }).error.message).toMatch(
      /registration request \(70113 bytes\), 3 times in a row.*ECONNRESET/,
    );
  });

  it('counts only closes in a row, before the register is answered: an answer, an unanswered request or a poll resets or does not count', () => {
    const closed: MachineEvent = { type: 'lost', error: new ProvisioningError('network', 'reset'), closed: true };
    const silent: MachineEvent = { type: 'lost', error: new ProvisioningError('network', 'DPS did not answer the request in time') };
    const cfg = config({ deadline: T0 + 3_600_000 });
    const waited: [MachineEvent, number] = [{ type: 'waited' }, T0];
    // close, close, 503, close, close, silence, silence: never three closes in a row before an answer.
    const interrupted = run(
      [
        [{ type: 'start' }, T0],
        [closed, T0],
        waited,
        [closed, T0],
        waited,
        [response(503, errorBody(503)), T0],
        waited,
        [closed, T0],
        waited,
        [closed, T0],
        waited,
        [silent, T0],
        waited,
        [silent, T0],
      ],
      cfg,
    );
    expect(interrupted.action).toMatchObject({ type: 'wait', reason: 'reconnecting' });
    // Closes while polling are ordinary drops.
    const polling: [MachineEvent, number][] = [
      [{ type: 'start' }, T0],
      [response(202, assigning('op-1'), 1), T0],
    ];
    for (let i = 0; i < 5; i++) polling.push(waited, [closed, T0]);
    expect(run(polling, cfg).action).toMatchObject({ type: 'wait', reason: 'reconnecting' });
    // The limit is the config's.
    const once = run(
      [
        [{ type: 'start' }, T0],
        [closed, T0],
      ],
      config({ maxRegisterDrops: 1 }),
    );
    expect(once.action).toMatchObject({ type: 'fail', error: { kind: 'failed' } });
  });

  it('names the cause when the deadline passes: throttled, server, network, still assigning', () => {
    const cases: [MachineEvent, string][] = [
      [response(429, errorBody(429, { errorCode: 429001 }), 30), 'throttled'],
      [response(500, errorBody(500), 30), 'server'],
      [{ type: 'lost', error: new ProvisioningError('network', 'ECONNRESET') }, 'network'],
      [response(202, assigning(), 30), 'timeout'],
    ];
    for (const [event, kind] of cases) {
      const s = run([
        [{ type: 'start' }, T0],
        [event, T0 + 59_000],
      ]);
      expect(s.action).toMatchObject({ type: 'fail', error: { kind } });
    }
  });

  it('never waits past the deadline and always ends, whatever DPS does (property)', () => {
    const arbitraryEvent = fc.oneof(
      fc
        .record({ status: fc.constantFrom(202, 429, 500, 503), retry: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }) })
        .map(({ status, retry }) => response(status, status === 202 ? assigning() : errorBody(status), retry)),
      fc.constantFrom<MachineEvent>(
        { type: 'lost', error: new ProvisioningError('network', 'drop') },
        { type: 'connect-failed', error: new ProvisioningError('network', 'refused') },
        { type: 'connect-failed', error: new ProvisioningError('server', 'unavailable') },
      ),
    );
    fc.assert(
      fc.property(
        fc.array(arbitraryEvent, { minLength: 1, maxLength: 400 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (events, r) => {
          const cfg = config({ random: () => r });
          let state = step(initialState(), { type: 'start' }, T0, cfg).state;
          let now = T0;
          // DPS's events, then (if it has not ended yet) connections that keep failing: it must end
          // by failing before the deadline, within the waits the backoff allows, naming a cause.
          const lost: MachineEvent = { type: 'lost', error: new ProvisioningError('network', 'drop') };
          const forever = [...events, ...Array.from({ length: 1000 }, () => lost)];
          for (const event of forever) {
            const s = step(state, event, now, cfg);
            state = s.state;
            if (s.action.type === 'fail') {
              expect(now).toBeLessThanOrEqual(cfg.deadline);
              expect(['throttled', 'server', 'network', 'timeout']).toContain(s.action.error.kind);
              return;
            }
            expect(s.action.type).toBe('wait');
            const { ms } = s.action as { ms: number };
            expect(now + ms).toBeLessThan(cfg.deadline);
            now += ms;
            state = step(state, { type: 'waited' }, now, cfg).state;
          }
          expect.fail(`did not end after ${forever.length} events (${now - T0} ms of waiting)`);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('backoffMs', () => {
  it('doubles from the minimum, caps at the maximum, and adds at most the jitter', () => {
    const cfg = { backoff: { minMs: 1000, maxMs: 10_000, jitterMs: 500 }, random: () => 0 };
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => backoffMs(n, cfg))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(backoffMs(1, { ...cfg, random: () => 0.999 })).toBe(1500);
  });
});

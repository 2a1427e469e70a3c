// The register/poll state machine driven through its branches with fixed times and a seeded
// random source: every engine must take the same actions.
import { type Action, initialState, type MachineConfig, type MachineEvent, type MachineState, step } from '../../../src/dps/machine.js';
import type { DpsResponse } from '../../../src/dps/messages.js';
import { ProvisioningError } from '../../../src/errors.js';
import { errorShape, seededRandom } from './util.js';

const T0 = 1_795_392_000_000; // 2026-11-23T00:00:00Z

const config = (random = seededRandom(7)): MachineConfig => ({
  deadline: T0 + 120_000,
  defaultRetryAfterMs: 3000,
  backoff: { minMs: 1000, maxMs: 60_000, jitterMs: 1000 },
  random,
  maxProtocolErrors: 3,
});

const operation = (registrationStatus: string, extra: Record<string, unknown> = {}) =>
  ({ kind: 'operation', status: 200, operationId: 'op-1', registrationStatus, ...extra }) as unknown as DpsResponse;
const errorBody = (status: number, extra: Record<string, unknown> = {}) => ({ kind: 'error', status, ...extra }) as unknown as DpsResponse;
const response = (status: number, body: DpsResponse, retryAfterSeconds?: number): MachineEvent => ({
  type: 'response',
  status,
  retryAfterSeconds,
  response: body,
});
const assignedState = {
  registrationId: 'dev-1',
  assignedHub: 'hub-a.azure-devices.net',
  deviceId: 'dev-1',
  status: 'assigned',
  substatus: 'initialAssignment',
};
const network = (message: string): MachineEvent => ({ type: 'lost', error: new ProvisioningError('network', message) });
const protocol: MachineEvent = { type: 'lost', error: new ProvisioningError('protocol', 'Malformed MQTT PUBLISH packet') };

function actionJson(action: Action): unknown {
  return action.type === 'fail' ? { type: 'fail', error: errorShape(action.error) } : action;
}

/** Feed `events` (each at its time offset from T0); return the action taken after each. */
function run(events: [MachineEvent, number][], cfg = config()): unknown[] {
  let state: MachineState = initialState();
  const actions: unknown[] = [];
  for (const [event, offset] of events) {
    const next = step(state, event, T0 + offset, cfg);
    state = next.state;
    actions.push(actionJson(next.action));
  }
  return actions;
}

export function machine() {
  const start: [MachineEvent, number] = [{ type: 'start' }, 0];
  return {
    assigned: run([
      start,
      [response(202, operation('assigning'), 2), 100],
      [{ type: 'waited' }, 2100],
      [response(200, operation('assigned', { registrationState: assignedState })), 2200],
    ]),
    defaultRetryAfter: run([
      start,
      [response(202, operation('assigning')), 10],
      [{ type: 'waited' }, 3010],
      [response(202, operation('assigning')), 3020],
    ]),
    throttled: run([
      start,
      [response(429, errorBody(429, { errorCode: 429001, trackingId: 't-1', message: 'Throttled' }), 5), 10],
      [{ type: 'waited' }, 5010],
      [response(429, errorBody(429)), 5020],
    ]),
    serverBackoff: run([
      start,
      [response(500, errorBody(500)), 10],
      [{ type: 'waited' }, 2000],
      [response(503, errorBody(503)), 2010],
      [{ type: 'waited' }, 5000],
      [response(500, errorBody(500)), 5010],
    ]),
    networkBackoff: run([
      start,
      [{ type: 'connect-failed', error: new ProvisioningError('network', 'ECONNREFUSED') }, 10],
      [{ type: 'waited' }, 2000],
      [network('reset'), 2010],
    ]),
    protocolLimit: run([
      start,
      [protocol, 1],
      [{ type: 'waited' }, 3000],
      [protocol, 3001],
      [{ type: 'waited' }, 9000],
      [protocol, 9001],
      [{ type: 'waited' }, 20_000],
      [protocol, 20_001],
    ]),
    unauthorized: run([start, [response(401, errorBody(401, { errorCode: 401002, trackingId: 't-2', message: 'Unauthorized' })), 10]]),
    refusedConnect: run([start, [{ type: 'connect-failed', error: new ProvisioningError('unauthorized', 'CONNACK 5') }, 10]]),
    badRequest: run([start, [response(400, errorBody(400, { errorCode: 400004 })), 10]]),
    operationForgotten: run([
      start,
      [response(202, operation('assigning'), 1), 10],
      [{ type: 'waited' }, 1010],
      [response(404, errorBody(404)), 1020],
    ]),
    failed: run([
      start,
      [
        response(
          200,
          operation('failed', {
            registrationState: { registrationId: 'dev-1', status: 'failed', errorCode: 400209, errorMessage: 'Custom allocation failed' },
          }),
        ),
        10,
      ],
    ]),
    disabled: run([start, [response(200, operation('disabled')), 10]]),
    assignedWithoutHub: run([
      start,
      [response(200, operation('assigned', { registrationState: { registrationId: 'dev-1', status: 'assigned' } })), 10],
    ]),
    deadlineWhileThrottled: run([start, [response(429, errorBody(429), 200), 10]]),
    deadlinePassed: run([
      start,
      [response(202, operation('assigning'), 60), 10],
      [{ type: 'waited' }, 60_010],
      [response(202, operation('assigning'), 60), 60_020],
    ]),
    deadlineAtStart: run([[{ type: 'start' }, 120_000]]),
  };
}

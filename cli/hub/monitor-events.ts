// `hub monitor-events`: follow a hub's telemetry as `az iot hub monitor-events` does, printing each
// device-to-cloud message as az prints it ({"event": {"origin", "module", "interface", "component",
// "payload"}}, with "properties" and "annotations" when --properties asks). It follows the
// emulator's telemetry log with long polls (GET /hubs/{host}/events?from=<n>&waitSeconds=<s>, each
// asking for the messages after the last one printed) until --timeout or Ctrl-C.
import { ProvisioningError } from '../../src/errors.js';
import type { DpsServiceClient } from '../service/client.js';
import { serviceClient, type Values } from '../service/flags.js';
import { DEVICE_ID, HUB_NAME, type HubCommand, type HubIo, hubBase, seconds } from './shared.js';

/** A message of the emulator's telemetry log (emulator/iothub-service.ts TelemetryMessage). */
interface TelemetryMessage {
  deviceId: string;
  body: string;
  properties: Record<string, string>;
  enqueuedTimeUtc: string;
  sequenceNumber: number;
}

/** az's default: 300 s; 0 follows until Ctrl-C. */
const DEFAULT_TIMEOUT_SECONDS = 300;
/** Each long poll waits at most this long for the next message (the emulator allows 60). */
const POLL_SECONDS = 20;
/** A poll's request ends within its wait and this much more. */
const REQUEST_MARGIN_SECONDS = 30;
const PROPERTY_KINDS = ['sys', 'app', 'anno', 'all'] as const;
/** The message's system properties under the names az shows them (AMQP's). */
const SYSTEM_NAMES: Record<string, string> = {
  '$.mid': 'message_id',
  '$.cid': 'correlation_id',
  '$.uid': 'user_id',
  '$.ct': 'content_type',
  '$.ce': 'content_encoding',
  '$.to': 'to',
  '$.exp': 'absolute_expiry_time',
};

const monitorEvents: HubCommand = {
  usage: `monitor-events --hub-name <host> [--device-id <id>] [--timeout <seconds>] [--properties sys|app|anno|all]
                   [--from <sequenceNumber>]
                   follows the hub's telemetry and prints each message as az does: {"event": {"origin",
                   "payload", ...}} (a JSON payload as JSON); --properties (or --props, repeatable or
                   comma-separated) adds its system and/or application properties and annotations.
                   --timeout: stop after this many seconds (default ${DEFAULT_TIMEOUT_SECONDS}; 0: until Ctrl-C).
                   Starts with the next message unless --from names a sequence number the hub still logs
                   (it keeps the last 1000). --json: one event per line`,
  // --timeout here is az's: how long to follow, not a request's deadline.
  flags: {
    ...HUB_NAME,
    ...DEVICE_ID,
    properties: { type: 'string', multiple: true },
    props: { type: 'string', multiple: true },
    from: { type: 'string' },
  },
  async run(values, io: HubIo) {
    const kinds = propertyKinds(values);
    const timeout = seconds(values, 'timeout', 0, 86_400, DEFAULT_TIMEOUT_SECONDS);
    const fromFlag = values.from;
    if (fromFlag !== undefined && (typeof fromFlag !== 'string' || !/^\d{1,15}$/.test(fromFlag) || Number(fromFlag) < 1))
      throw new ProvisioningError('invalid-input', '--from must be a sequence number (a whole number from 1)');
    const deviceId = values['device-id'] as string | undefined;
    if (deviceId === '') throw new ProvisioningError('invalid-input', '--device-id needs a device ID');
    const path = `${hubBase(values)}/events`;
    const client = serviceClient({ ...values, timeout: String(POLL_SECONDS + REQUEST_MARGIN_SECONDS) }, io);

    const started = Date.now();
    const deadline = timeout === 0 ? Number.POSITIVE_INFINITY : started + timeout * 1000;
    let from = fromFlag === undefined ? await nextSequenceNumber(client, path) : Number(fromFlag);
    io.stderr(`Starting event monitor${deviceId ? `, filtering on device: ${deviceId}` : ''}, use ctrl-c to stop...\n`);

    const stopped = stopSignal(io);
    try {
      for (;;) {
        const remaining = deadline - Date.now();
        if (remaining <= 0 || stopped.done) break;
        const wait = Math.min(POLL_SECONDS, Math.ceil(remaining / 1000));
        const query: Record<string, string> = { from: String(from), waitSeconds: String(wait) };
        if (deviceId) query.deviceId = deviceId;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const outcome = await Promise.race([
          client.call('GET', path, { query }).then((reply) => reply.body),
          stopped.promise,
          new Promise<'deadline'>((resolve) => {
            if (Number.isFinite(remaining)) timer = setTimeout(() => resolve('deadline'), remaining);
          }),
        ]);
        clearTimeout(timer);
        if (outcome === 'stopped' || outcome === 'deadline') break;
        if (!Array.isArray(outcome)) throw new ProvisioningError('protocol', 'the answer to GET events is not a list');
        for (const message of outcome as TelemetryMessage[]) {
          if (!Number.isSafeInteger(message?.sequenceNumber) || message.sequenceNumber < from) continue;
          const event = azEvent(message, kinds);
          io.stdout(values.json === true ? `${JSON.stringify(event)}\n` : `${JSON.stringify(event, null, 4)}\n`);
          from = message.sequenceNumber + 1;
        }
      }
    } finally {
      stopped.dispose();
    }
    io.stderr('Stopping event monitor...\n');
    return 0;
  },
};

/** The sequence number the next message will have: one past the last the hub logged. */
async function nextSequenceNumber(client: DpsServiceClient, path: string): Promise<number> {
  const logged = (await client.call('GET', path, { query: { waitSeconds: '0' } })).body;
  if (!Array.isArray(logged)) throw new ProvisioningError('protocol', 'the answer to GET events is not a list');
  const last = (logged as TelemetryMessage[]).at(-1)?.sequenceNumber;
  return typeof last === 'number' ? last + 1 : 1;
}

/** --properties / --props: sys, app, anno, all; repeatable, comma or space separated (az takes them space separated). */
function propertyKinds(values: Values): Set<string> {
  const given = [...((values.properties as string[] | undefined) ?? []), ...((values.props as string[] | undefined) ?? [])];
  const kinds = new Set(given.flatMap((text) => text.split(/[\s,]+/)).filter(Boolean));
  for (const kind of kinds) {
    if (!(PROPERTY_KINDS as readonly string[]).includes(kind))
      throw new ProvisioningError('invalid-input', `--properties takes ${PROPERTY_KINDS.join(', ')}`);
  }
  if (kinds.has('all')) return new Set(['sys', 'app', 'anno']);
  return kinds;
}

/** A message as az prints it (azext_iot's common parser): a JSON payload parsed when its content type says JSON. */
function azEvent(message: TelemetryMessage, kinds: Set<string>): { event: Record<string, unknown> } {
  const system: Record<string, string> = {};
  const application: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.properties ?? {})) {
    if (name.startsWith('$.')) system[Object.hasOwn(SYSTEM_NAMES, name) ? SYSTEM_NAMES[name]! : name.slice(2)] = value;
    else Object.defineProperty(application, name, { value, enumerable: true, writable: true, configurable: true });
  }
  const event: Record<string, unknown> = { origin: message.deviceId, module: '', interface: '', component: '' };
  if (kinds.size > 0) {
    const properties: Record<string, unknown> = {};
    if (kinds.has('sys')) properties.system = system;
    if (kinds.has('app')) properties.application = application;
    event.properties = properties;
  }
  if (kinds.has('anno')) {
    const enqueued = Date.parse(message.enqueuedTimeUtc);
    event.annotations = {
      'iothub-connection-device-id': message.deviceId,
      'iothub-enqueuedtime': enqueued,
      'iothub-message-source': 'Telemetry',
      'x-opt-sequence-number': message.sequenceNumber,
      'x-opt-enqueued-time': enqueued,
    };
  }
  event.payload = payload(message.body, system.content_type);
  return { event };
}

function payload(body: string, contentType: string | undefined): unknown {
  if (!contentType?.toLowerCase().includes('application/json')) return body;
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}

/** Ctrl-C (or the io's signal, in tests) ends the monitor: the current poll is left behind. */
function stopSignal(io: HubIo): { promise: Promise<'stopped'>; done: boolean; dispose(): void } {
  let resolve!: (value: 'stopped') => void;
  const state = {
    promise: new Promise<'stopped'>((r) => (resolve = r)),
    done: false,
    dispose: () => {},
  };
  const stop = (): void => {
    state.done = true;
    resolve('stopped');
  };
  if (io.signal) {
    if (io.signal.aborted) stop();
    io.signal.addEventListener('abort', stop, { once: true });
    state.dispose = () => io.signal?.removeEventListener('abort', stop);
  } else {
    process.once('SIGINT', stop);
    state.dispose = () => process.off('SIGINT', stop);
  }
  return state;
}

export const MONITOR_COMMANDS: Record<string, HubCommand> = { 'monitor-events': monitorEvents };

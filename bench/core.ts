// The core alone: CPU per provisioning with no TLS and no server work. A replaying Connection
// answers each packet the client writes with bytes encoded once up front (CONNACK; SUBACK;
// PUBACK + 202 retry-after 0; PUBACK + 200 assigned), so the time measured is registerDevice's
// own: key derivation, SAS, MQTT encode/decode, topic and JSON parsing, the state machine,
// promises and timers. Used to take before/after figures of core optimisations without the
// noise of the TLS stack, which costs ten times more per device (see bench/README.md).

import { runFleet } from '../cli/fleet/run.js';
import { systemClock } from '../hosts/node/clock.js';
import { registerDevice } from '../src/dps/flow.js';
import { responseTopic } from '../src/dps/server.js';
import { deriveDeviceKey } from '../src/identity.js';
import { encodePacket } from '../src/mqtt/codec.js';
import type { Connect } from '../src/ports.js';
import { BENCH_GROUP_KEY, BENCH_HUB, BENCH_ID_SCOPE } from './common.js';

const OPERATION_ID = '4.0123456789abcdef.01234567-89ab-cdef-0123-456789abcdef';
const utf8 = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

// The answers, encoded once for every device (the client checks the rid, not the device ID).
// With random() = 0 the client's rids are '0.1' (register) and '0.2' (poll).
const publish = (topic: string, body: unknown) =>
  encodePacket({ type: 'publish', topic, payload: utf8(body), qos: 0, dup: false, retain: false });
const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const TIME = '2026-11-23T00:00:00.000Z';
const STATE = {
  registrationId: 'core',
  createdDateTimeUtc: TIME,
  assignedHub: BENCH_HUB,
  deviceId: 'core',
  status: 'assigned',
  substatus: 'initialAssignment',
  lastUpdatedDateTimeUtc: TIME,
  etag: 'ImJlbmNoIg==',
};
const CONNACK = encodePacket({ type: 'connack', sessionPresent: false, returnCode: 0 });
const SUBACK = encodePacket({ type: 'suback', messageId: 1, granted: [1] });
const REGISTERED = concat(
  encodePacket({ type: 'puback', messageId: 2 }),
  publish(responseTopic(202, '0.1', 0), { operationId: OPERATION_ID, status: 'assigning' }),
);
const ASSIGNED = concat(
  encodePacket({ type: 'puback', messageId: 3 }),
  publish(responseTopic(200, '0.2'), { operationId: OPERATION_ID, status: 'assigned', registrationState: STATE }),
);

/** A Connect whose server answers each packet with the bytes above, a promise job later. */
const replayConnect: Connect = async (_endpoint, handlers) => {
  let publishes = 0;
  let closed = false;
  const reply = (bytes: Uint8Array): void => queueMicrotask(() => closed || handlers.onData(bytes));
  return {
    write(data) {
      const type = data[0]! >> 4;
      if (type === 1) reply(CONNACK);
      else if (type === 8) reply(SUBACK);
      else if (type === 3) reply(++publishes === 1 ? REGISTERED : ASSIGNED);
    },
    close() {
      if (closed) return;
      closed = true;
      queueMicrotask(() => handlers.onClose());
    },
  };
};

export interface CoreFigures {
  devices: number;
  /** Process CPU (user + system) per provisioning, µs. */
  cpuUsPerDevice: number;
}

/** `devices` provisionings through the replay, 32 at a time, after a warm-up. */
export async function coreCpu(devices: number, warmup = 300): Promise<CoreFigures> {
  const one = (i: number, tag: string) => {
    // Every device registers as 'core', the ID in the replayed assignment (the flow refuses an
    // assignment of another registration ID); each still derives a key of its own, as a fleet does.
    return registerDevice(
      {
        idScope: BENCH_ID_SCOPE,
        registrationId: STATE.registrationId,
        deviceKey: deriveDeviceKey(BENCH_GROUP_KEY, `core-${tag}-${i}`),
        endpoint: { host: 'replay', port: 8883 },
      },
      { connect: replayConnect, clock: systemClock, random: () => 0 },
    );
  };
  await runFleet({ count: warmup, concurrency: 32, provision: (i) => one(i, 'warm') });
  const summary = await runFleet({ count: devices, concurrency: 32, provision: (i) => one(i, 'run') });
  if (summary.failed) throw new Error(`core bench: ${JSON.stringify(summary.firstError)}`);
  return { devices, cpuUsPerDevice: Math.round(summary.cpuMs.perDevice * 1000 * 10) / 10 };
}

// The device events and metrics of this DPS instance on the service API (event-log.ts), for the
// web console's live page and any other client, behind the same SAS as the rest:
//   GET /events[?from=<n>][&waitSeconds=<0-60>]   the last EVENT_LOG_SIZE device events, oldest first,
//                                                 from sequence number n on; when there is none yet,
//                                                 waits up to s seconds for the next one (a follower
//                                                 asks again with from = the last sequenceNumber + 1)
//   GET /metrics                                  attestation attempts, registrations, assignments and
//                                                 failures by error code, in 10 s buckets over 30 min
import type { DeviceEventLog, LoggedEvent } from './event-log.js';
import { dpsError, noRoute, notAllowed, type ServiceRequest, type ServiceResponse } from './service-http.js';

const MAX_WAIT_SECONDS = 60;

export function isEventCollection(segment: string | undefined): boolean {
  const name = segment?.toLowerCase();
  return name === 'events' || name === 'metrics';
}

export async function eventRoute(log: DeviceEventLog, request: ServiceRequest): Promise<ServiceResponse> {
  const [collection, ...rest] = request.segments;
  if (rest.length > 0) throw noRoute(request);
  if (request.method !== 'GET') throw notAllowed(request);
  if (collection!.toLowerCase() === 'metrics') return { status: 200, body: log.metrics() };
  const from = wholeNumber(request, 'from', Number.MAX_SAFE_INTEGER);
  const waitMs = wholeNumber(request, 'waitSeconds', MAX_WAIT_SECONDS) * 1000;
  const logged = log.events(from);
  if (logged.length > 0 || waitMs === 0) return { status: 200, body: logged };
  const next = await new Promise<LoggedEvent[]>((resolve) => {
    const timer = setTimeout(() => {
      stop();
      resolve([]);
    }, waitMs);
    timer.unref(); // a follower left waiting does not keep a closing emulator alive
    const stop = log.onEvent((entry) => {
      if (entry.sequenceNumber < from) return;
      clearTimeout(timer);
      stop();
      resolve([entry]);
    });
  });
  return { status: 200, body: next };
}

function wholeNumber(request: ServiceRequest, name: string, max: number): number {
  const text = request.query.get(name);
  if (text === null) return 0;
  if (!/^\d{1,16}$/.test(text) || Number(text) > max) throw dpsError(400, `${name} must be a whole number from 0 to ${max}`);
  return Number(text);
}

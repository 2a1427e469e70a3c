// The device events and metrics of this DPS instance on the service API (event-log.ts), for the
// web console's live page and any other client, behind the same SAS as the rest:
//   GET /events[?from=<n>][&waitSeconds=<0-60>]   the last EVENT_LOG_SIZE device events, oldest first,
//                                                 from sequence number n on; when there is none yet,
//                                                 waits up to s seconds for the next one (a follower
//                                                 asks again with from = the last sequenceNumber + 1)
//   GET /metrics                                  attestation attempts, registrations, assignments and
//                                                 failures by error code, in 10 s buckets over 30 min
import type { DeviceEventLog } from './event-log.js';
import { followLog, noRoute, notAllowed, type ServiceRequest, type ServiceResponse } from './service-http.js';

export function isEventCollection(segment: string | undefined): boolean {
  const name = segment?.toLowerCase();
  return name === 'events' || name === 'metrics';
}

export async function eventRoute(log: DeviceEventLog, request: ServiceRequest): Promise<ServiceResponse> {
  const [collection, ...rest] = request.segments;
  if (rest.length > 0) throw noRoute(request);
  if (request.method !== 'GET') throw notAllowed(request);
  if (collection!.toLowerCase() === 'metrics') return { status: 200, body: log.metrics() };
  return await followLog(
    request,
    (from) => log.events(from),
    (listener) => log.onEvent(listener),
  );
}

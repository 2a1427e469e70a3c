// Choosing the IoT hub for a registration: the built-in policies hashed, geoLatency and static.
// (custom calls a webhook and lives with the registration flow, which may wait for it.)
//
// Hashed = weighted rendezvous hashing (highest random weight). For each eligible hub:
//     h     = SHA-256(UTF-8(lower(hubHostName) + "\n" + lower(registrationId)))
//     u     = (first 53 bits of h, as an integer, + 0.5) / 2^53          uniform in (0, 1)
//     score = -allocationWeight / ln(u)
// and the hub with the highest score wins (ties, practically impossible, go to the smaller host
// name). -ln(u)/w is exponentially distributed with rate w, so the hub with the smallest such
// value (the highest score) wins with probability w / sum(w): shares follow the weights. The
// choice depends only on the registration ID and the eligible hubs' host names and weights, so
// it is deterministic for a given hub set, and adding a hub moves only the devices the new hub
// wins (a fair share), never devices between the old hubs.
import { createHash } from 'node:crypto';
import { ErrorCodes } from './dps-errors.js';
import type { AllocationPolicy, LatencyTable, LinkedHub } from './model-types.js';

export interface AllocationRequest {
  registrationId: string;
  policy: AllocationPolicy;
  /** Every hub linked now. */
  linkedHubs: readonly LinkedHub[];
  /** The host names the enrollment lists; absent or empty: every linked hub. */
  enrollmentHubs?: readonly string[];
  /** geoLatency: the region of the listener the device connected to. */
  deviceRegion?: string;
  /** geoLatency: milliseconds between regions. */
  latency?: LatencyTable;
}

export type AllocationResult = { ok: true; hub: LinkedHub } | { ok: false; status: number; errorCode: number; message: string };

/** The hubs a registration may land on: the enrollment's list, or every linked hub. */
export function candidateHubs(
  linkedHubs: readonly LinkedHub[],
  enrollmentHubs?: readonly string[],
): { hubs: LinkedHub[]; missing: string[] } {
  if (!enrollmentHubs || enrollmentHubs.length === 0) return { hubs: [...linkedHubs], missing: [] };
  const byName = new Map(linkedHubs.map((hub) => [hub.hostName.toLowerCase(), hub]));
  const hubs: LinkedHub[] = [];
  const missing: string[] = [];
  for (const name of enrollmentHubs) {
    const hub = byName.get(name.toLowerCase());
    if (hub) hubs.push(hub);
    else missing.push(name);
  }
  return { hubs, missing };
}

/** Apply a built-in policy. `custom` is refused here: the registration flow calls the webhook. */
export function allocateHub(request: AllocationRequest): AllocationResult {
  const { hubs, missing } = candidateHubs(request.linkedHubs, request.enrollmentHubs);
  if (missing.length > 0) {
    return failure(
      ErrorCodes.hubNotLinked,
      `The enrollment lists IoT hub ${missing.join(', ')}, which is no longer linked to this DPS instance; ` +
        'link it again or change the enrollment',
    );
  }
  switch (request.policy) {
    case 'static': {
      if (hubs.length !== 1) {
        return failure(ErrorCodes.noHubAvailable, 'The static allocation policy needs exactly one IoT hub on the enrollment');
      }
      return { ok: true, hub: hubs[0]! };
    }
    case 'hashed': {
      const hub = hashedPick(eligible(hubs), request.registrationId);
      return hub ? { ok: true, hub } : noEligibleHub(hubs);
    }
    case 'geoLatency': {
      const hub = geoLatencyPick(eligible(hubs), request.registrationId, request.deviceRegion ?? '', request.latency ?? {});
      return hub ? { ok: true, hub } : noEligibleHub(hubs);
    }
    case 'custom':
      return failure(ErrorCodes.policyNotSupported, 'The custom allocation policy is applied by the registration flow, not here');
  }
}

/** Hubs a policy may choose: applyAllocationPolicy true. */
export function eligible(hubs: readonly LinkedHub[]): LinkedHub[] {
  return hubs.filter((hub) => hub.applyAllocationPolicy);
}

/** Weighted rendezvous hashing over `hubs` (see the top of this file); undefined when there are none. */
export function hashedPick(hubs: readonly LinkedHub[], registrationId: string): LinkedHub | undefined {
  if (hubs.length === 1) return hubs[0]; // the only hub wins whatever its score: no hash per device
  let best: LinkedHub | undefined;
  let bestScore = -Infinity;
  for (const hub of hubs) {
    const score = rendezvousScore(hub.hostName, registrationId, hub.allocationWeight);
    if (score > bestScore || (score === bestScore && best !== undefined && hub.hostName < best.hostName)) {
      best = hub;
      bestScore = score;
    }
  }
  return best;
}

export function rendezvousScore(hubHostName: string, registrationId: string, weight: number): number {
  const digest = createHash('sha256').update(`${hubHostName.toLowerCase()}\n${registrationId.toLowerCase()}`, 'utf8').digest();
  // The first 53 bits: 6 whole bytes (48 bits) and the top 5 bits of the seventh.
  const high = digest.readUIntBE(0, 6);
  const low = digest[6]! >> 3;
  const u = (high * 32 + low + 0.5) / 2 ** 53;
  return -weight / Math.log(u);
}

/**
 * geoLatency: the hubs whose location has the lowest latency from `deviceRegion` (the same region
 * is 0 ms unless the table says otherwise; a pair the table lacks is unknown and loses to any
 * known one); ties are broken by the weighted hash.
 */
export function geoLatencyPick(
  hubs: readonly LinkedHub[],
  registrationId: string,
  deviceRegion: string,
  latency: LatencyTable,
): LinkedHub | undefined {
  const from = deviceRegion.toLowerCase();
  const cost = (hub: LinkedHub): number => {
    const to = hub.location.toLowerCase();
    const known = latency[from]?.[to] ?? latency[to]?.[from];
    if (known !== undefined) return known;
    return to === from && from !== '' ? 0 : Infinity;
  };
  let lowest = Infinity;
  for (const hub of hubs) lowest = Math.min(lowest, cost(hub));
  const nearest = hubs.filter((hub) => cost(hub) === lowest);
  return hashedPick(nearest, registrationId);
}

function noEligibleHub(candidates: readonly LinkedHub[]): AllocationResult {
  const why =
    candidates.length === 0
      ? 'no IoT hub is linked to this DPS instance'
      : `none of the candidate IoT hubs (${candidates.map((h) => h.hostName).join(', ')}) applies the allocation policy`;
  return failure(ErrorCodes.noHubAvailable, `No IoT hub can take this device: ${why}`);
}

function failure(errorCode: number, message: string): AllocationResult {
  return { ok: false, status: Math.floor(errorCode / 1000), errorCode, message };
}

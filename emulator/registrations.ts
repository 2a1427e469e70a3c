// The registration flow behind the device endpoint, independent of MQTT: a register request
// starts an operation; polls report it. Like DPS, the register request always answers 202
// "assigning" with an operationId and retry-after; the operation completes `assignmentDelayMs`
// after it started, and polls before then get 202 again. The assignment itself is computed when
// the request arrives (so registration records and hub registries change at once); only its
// report waits.
//
// Outcomes (the 200 body is {"operationId","status","registrationState"}):
//   assigned  registrationState has assignedHub, deviceId, substatus; the device identity is
//             created (or updated) in the hub's registry with the enrollment's initialTwin.
//   disabled  the enrollment's provisioningStatus is disabled: status "disabled", no hub. Shape
//             as in azure-sdk-for-c's parser test vector (test_az_iot_provisioning_client_parser.c).
//   failed    no hub could be chosen: registrationState carries errorCode and errorMessage, as
//             DPS does for a failed custom allocation (400207 in the same test file).
import { randomBytes, randomUUID } from 'node:crypto';
import { allocateHub, candidateHubs } from './allocation.js';
import type { DeviceAttestation } from './auth.js';
import { DpsError, ErrorCodes } from './dps-errors.js';
import type { DpsModel } from './model.js';
import type {
  DeviceRegistrationState,
  EnrollmentGroup,
  HubDevice,
  IndividualEnrollment,
  RegistrationSubstatus,
} from './model-types.js';
import { newEtag } from './validation.js';

export interface RegistrationOptions {
  /** The retry-after (seconds) sent with every 202. */
  retryAfterSeconds: number;
  /** How long an operation stays "assigning". */
  assignmentDelayMs: number;
  /** How long a finished operation can still be polled. Default one hour. */
  operationTtlMs?: number;
  /** The region of the listener (geoLatency). */
  region?: string;
  now?: () => number;
}

/** A response for the device: status, JSON body, and retry-after for the topic. */
export interface DpsResponse {
  status: number;
  body: unknown;
  retryAfterSeconds?: number;
}

interface Operation {
  operationId: string;
  registrationId: string;
  readyAt: number;
  expiresAt: number;
  state: DeviceRegistrationState;
}

const MAX_OPERATIONS = 100_000;

export class RegistrationService {
  readonly #model: DpsModel;
  readonly #options: Required<Omit<RegistrationOptions, 'region'>> & { region: string };
  readonly #operations = new Map<string, Operation>();

  constructor(model: DpsModel, options: RegistrationOptions) {
    this.#model = model;
    this.#options = {
      operationTtlMs: 60 * 60 * 1000,
      region: '',
      now: Date.now,
      ...options,
    };
  }

  /** PUT iotdps-register: `body` is the request payload as received. */
  register(device: DeviceAttestation, body: Uint8Array): DpsResponse {
    const now = this.#options.now();
    const request = parseRegisterBody(body);
    if (request.registrationId.toLowerCase() !== device.registrationId.toLowerCase()) {
      throw new DpsError(400, ErrorCodes.registrationIdMismatch, 'The registrationId in the request body differs from the one the device connected with');
    }
    const state = this.#assign(device, now);
    this.#purge(now);
    const operationId = `4.${randomBytes(8).toString('hex')}.${randomUUID()}`;
    this.#operations.set(operationId, {
      operationId,
      registrationId: device.registrationId.toLowerCase(),
      readyAt: now + this.#options.assignmentDelayMs,
      expiresAt: now + this.#options.assignmentDelayMs + this.#options.operationTtlMs,
      state,
    });
    return this.#assigning(operationId);
  }

  /** GET iotdps-get-operationstatus. */
  poll(device: DeviceAttestation, operationId: string): DpsResponse {
    const now = this.#options.now();
    const operation = this.#operations.get(operationId);
    if (!operation || operation.registrationId !== device.registrationId.toLowerCase() || now >= operation.expiresAt) {
      throw new DpsError(404, ErrorCodes.operationNotFound, `The operation ${operationId.slice(0, 100)} is not known for this registration`);
    }
    if (now < operation.readyAt) return this.#assigning(operationId);
    return { status: 200, body: { operationId, status: operation.state.status, registrationState: operation.state } };
  }

  #assigning(operationId: string): DpsResponse {
    return {
      status: 202,
      body: { operationId, status: 'assigning' },
      retryAfterSeconds: this.#options.retryAfterSeconds,
    };
  }

  #purge(now: number): void {
    for (const [id, operation] of this.#operations) {
      if (now >= operation.expiresAt || this.#operations.size >= MAX_OPERATIONS) this.#operations.delete(id);
    }
  }

  /** Decide the outcome, record it, and create the device identity in the hub. */
  #assign(device: DeviceAttestation, nowMs: number): DeviceRegistrationState {
    const model = this.#model;
    const now = new Date(nowMs).toISOString();
    const enrollment = this.#enrollment(device);
    const previous = model.registration(device.registrationId)?.state;
    const base = {
      registrationId: device.registrationId,
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
      etag: newEtag(),
    };
    let state: DeviceRegistrationState;
    if (enrollment.provisioningStatus === 'disabled') {
      state = { ...base, status: 'disabled' };
    } else {
      state = this.#allocate(device, enrollment, previous, base, now);
    }
    model.saveRegistration({ state, enrollment: device.enrollment });
    return state;
  }

  #allocate(
    device: DeviceAttestation,
    enrollment: EnrollmentGroup | IndividualEnrollment,
    previous: DeviceRegistrationState | undefined,
    base: Pick<DeviceRegistrationState, 'registrationId' | 'createdDateTimeUtc' | 'lastUpdatedDateTimeUtc' | 'etag'>,
    now: string,
  ): DeviceRegistrationState {
    const model = this.#model;
    const linkedHubs = model.linkedHubs();
    const wasAssigned = previous?.status === 'assigned' && previous.assignedHub !== undefined;
    const keepHub =
      wasAssigned &&
      !enrollment.reprovisionPolicy.updateHubAssignment &&
      candidateHubs(linkedHubs, enrollment.iotHubs).hubs.some((h) => h.hostName === previous!.assignedHub);
    let hostName: string;
    if (keepHub) {
      hostName = previous!.assignedHub!;
    } else {
      const policy = enrollment.allocationPolicy ?? model.allocationPolicy;
      if (policy === 'custom') {
        return failed(base, ErrorCodes.policyNotSupported, 'The custom allocation policy (webhook) is not implemented by the emulator yet');
      }
      const result = allocateHub({
        registrationId: device.registrationId,
        policy,
        linkedHubs,
        enrollmentHubs: enrollment.iotHubs,
        deviceRegion: this.#options.region,
        latency: model.latency,
      });
      if (!result.ok) return failed(base, result.errorCode, result.message);
      hostName = result.hub.hostName;
    }

    const deviceId = 'deviceId' in enrollment && enrollment.deviceId ? enrollment.deviceId : device.registrationId;
    const moved = wasAssigned && previous!.assignedHub !== hostName;
    const migrate = moved && enrollment.reprovisionPolicy.migrateDeviceData;
    const old = wasAssigned ? model.hubDevice(previous!.assignedHub!, previous!.deviceId ?? deviceId) : undefined;
    const existing = model.hubDevice(hostName, deviceId);
    const twinSource = migrate && old ? { tags: old.tags, desired: old.properties.desired } : undefined;
    const identity: HubDevice = {
      deviceId,
      registrationId: device.registrationId,
      authentication: { type: 'sas', symmetricKey: { ...device.deviceKeys } },
      tags: structuredClone(twinSource?.tags ?? (moved || !existing ? enrollment.initialTwin?.tags ?? {} : existing.tags)),
      properties: {
        desired: structuredClone(
          twinSource?.desired ??
            (moved || !existing ? enrollment.initialTwin?.properties?.desired ?? {} : existing.properties.desired),
        ),
      },
      createdDateTimeUtc: !moved && existing ? existing.createdDateTimeUtc : now,
      lastUpdatedDateTimeUtc: now,
    };
    model.upsertHubDevice(hostName, identity);
    if (moved && old) model.removeHubDevice(previous!.assignedHub!, old.deviceId);

    let substatus: RegistrationSubstatus = 'initialAssignment';
    if (moved) substatus = migrate ? 'deviceDataMigrated' : 'deviceDataReset';
    else if (wasAssigned) substatus = previous!.substatus ?? 'initialAssignment';
    return { ...base, assignedHub: hostName, deviceId, status: 'assigned', substatus };
  }

  /** The enrollment the device authenticated through, as it is now (it may have changed since CONNECT). */
  #enrollment(device: DeviceAttestation): EnrollmentGroup | IndividualEnrollment {
    const ref = device.enrollment;
    const enrollment =
      ref.kind === 'individual'
        ? this.#model.individualEnrollment(ref.registrationId)
        : this.#model.enrollmentGroup(ref.enrollmentGroupId);
    if (!enrollment) {
      throw new DpsError(401, ErrorCodes.unauthorized, 'The enrollment this device authenticated with no longer exists');
    }
    return enrollment;
  }
}

function failed(
  base: Pick<DeviceRegistrationState, 'registrationId' | 'createdDateTimeUtc' | 'lastUpdatedDateTimeUtc' | 'etag'>,
  errorCode: number,
  errorMessage: string,
): DeviceRegistrationState {
  return { ...base, status: 'failed', errorCode, errorMessage };
}

interface RegisterRequest {
  registrationId: string;
  payload?: unknown;
}

/** The register body: {"registrationId":"...","payload":<any JSON>}; anything else is a 400. */
export function parseRegisterBody(body: Uint8Array): RegisterRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    throw new DpsError(400, ErrorCodes.badRequest, 'The register request body is not valid UTF-8 JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new DpsError(400, ErrorCodes.badRequest, 'The register request body must be a JSON object');
  }
  const { registrationId, payload } = parsed as { registrationId?: unknown; payload?: unknown };
  if (typeof registrationId !== 'string' || registrationId === '') {
    throw new DpsError(400, ErrorCodes.badRequest, 'The register request body lacks registrationId');
  }
  return payload === undefined ? { registrationId } : { registrationId, payload };
}

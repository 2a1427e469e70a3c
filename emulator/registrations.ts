// The registration flow behind the device endpoint, independent of MQTT: a register request
// starts an operation; polls report it. Like DPS, the register request always answers 202
// "assigning" with an operationId and retry-after; the operation completes `assignmentDelayMs`
// after it started (and, for custom allocation, once the webhook has answered); polls before
// then get 202 again. Built-in policies decide when the request arrives (registration records and
// hub registries change at once); only the report waits.
//
// Outcomes (the 200 body is {"operationId","status","registrationState"}):
//   assigned  registrationState has assignedHub, deviceId, substatus; the device identity is
//             created (or updated) in the hub's registry with the enrollment's initialTwin.
//   disabled  the enrollment's provisioningStatus is disabled: status "disabled", no hub. Shape
//             as in azure-sdk-for-c's parser test vector (test_az_iot_provisioning_client_parser.c).
//   failed    no hub could be chosen, the custom allocation webhook failed, or the chosen hub's
//             link holds a renewed key (400006, hubs.ts): registrationState carries errorCode
//             and errorMessage, as DPS does (400207 in the same test file).
//   payload   a custom allocation webhook's payload is returned in registrationState.payload.
import { randomBytes, randomUUID } from 'node:crypto';
import { allocateHub, candidateHubs } from './allocation.js';
import type { DeviceAttestation } from './auth.js';
import { callAllocationWebhook } from './custom-allocation.js';
import { DpsError, ErrorCodes } from './dps-errors.js';
import { HUB_LINK_OUTDATED } from './hubs.js';
import type { DpsModel } from './model.js';
import type {
  DeviceRegistrationState,
  EnrollmentGroup,
  HubDevice,
  IndividualEnrollment,
  InitialTwin,
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
  /** How long the custom allocation webhook may take. Default 10 s. */
  webhookTimeoutMs?: number;
  /** The region of the listener (geoLatency). */
  region?: string;
  now?: () => number;
}

/** The answer to a device's register or poll: status, JSON body, and retry-after (the core parses it as a DpsResponse). */
export interface RegistrationAnswer {
  status: number;
  body: unknown;
  retryAfterSeconds?: number;
}

interface Operation {
  operationId: string;
  registrationId: string;
  readyAt: number;
  expiresAt: number;
  /** Undefined while a custom allocation webhook is still being asked. */
  state?: DeviceRegistrationState;
}

type Base = Pick<DeviceRegistrationState, 'registrationId' | 'createdDateTimeUtc' | 'lastUpdatedDateTimeUtc' | 'etag'>;
type Enrollment = Readonly<EnrollmentGroup> | Readonly<IndividualEnrollment>;

const MAX_OPERATIONS = 100_000;

export class RegistrationService {
  readonly #model: DpsModel;
  readonly #options: Required<Omit<RegistrationOptions, 'region'>> & { region: string };
  readonly #operations = new Map<string, Operation>();
  readonly #abort = new AbortController();

  constructor(model: DpsModel, options: RegistrationOptions) {
    this.#model = model;
    this.#options = {
      operationTtlMs: 60 * 60 * 1000,
      webhookTimeoutMs: 10_000,
      region: '',
      now: Date.now,
      ...options,
    };
  }

  /** Abandon webhook calls in flight. */
  close(): void {
    this.#abort.abort();
  }

  /** PUT iotdps-register: `body` is the request payload as received. */
  register(device: DeviceAttestation, body: Uint8Array): RegistrationAnswer {
    const now = this.#options.now();
    const request = parseRegisterBody(body);
    if (request.registrationId.toLowerCase() !== device.registrationId.toLowerCase()) {
      throw new DpsError(
        400,
        ErrorCodes.registrationIdMismatch,
        'The registrationId in the request body differs from the one the device connected with',
      );
    }
    const enrollment = this.#enrollment(device);
    this.#purge(now);
    const operationId = `4.${randomBytes(8).toString('hex')}.${randomUUID()}`;
    const operation: Operation = {
      operationId,
      registrationId: device.registrationId.toLowerCase(),
      readyAt: now + this.#options.assignmentDelayMs,
      expiresAt: now + this.#options.assignmentDelayMs + this.#options.operationTtlMs,
    };
    this.#operations.set(operationId, operation);
    const outcome = this.#assign(device, enrollment, request.payload, now);
    if (outcome instanceof Promise) {
      outcome.then(
        (state) => (operation.state = state),
        () => {
          const at = new Date(this.#options.now()).toISOString();
          const base = { registrationId: device.registrationId, createdDateTimeUtc: at, lastUpdatedDateTimeUtc: at, etag: newEtag() };
          operation.state = failed(base, ErrorCodes.internal, 'Internal error in the emulator during custom allocation');
        },
      );
    } else {
      operation.state = outcome;
    }
    return this.#assigning(operationId);
  }

  /** GET iotdps-get-operationstatus. */
  poll(device: DeviceAttestation, operationId: string): RegistrationAnswer {
    const now = this.#options.now();
    const operation = this.#operations.get(operationId);
    if (!operation || operation.registrationId !== device.registrationId.toLowerCase() || now >= operation.expiresAt) {
      throw new DpsError(
        404,
        ErrorCodes.operationNotFound,
        `The operation ${operationId.slice(0, 100)} is not known for this registration`,
      );
    }
    if (now < operation.readyAt || !operation.state) return this.#assigning(operationId);
    return { status: 200, body: { operationId, status: operation.state.status, registrationState: operation.state } };
  }

  #assigning(operationId: string): RegistrationAnswer {
    return {
      status: 202,
      body: { operationId, status: 'assigning' },
      retryAfterSeconds: this.#options.retryAfterSeconds,
    };
  }

  /**
   * Operations expire in the order they were made (a fixed delay and lifetime after their
   * register): drop from the oldest until one is still live and there is room, so a register
   * costs the same whatever the number of operations kept.
   */
  #purge(now: number): void {
    for (const [id, operation] of this.#operations) {
      if (now < operation.expiresAt && this.#operations.size < MAX_OPERATIONS) break;
      this.#operations.delete(id);
    }
  }

  /** Decide the outcome (at once, or after the custom allocation webhook answers), record it, create the device. */
  #assign(
    device: DeviceAttestation,
    enrollment: Enrollment,
    payload: unknown,
    nowMs: number,
  ): DeviceRegistrationState | Promise<DeviceRegistrationState> {
    const model = this.#model;
    const now = new Date(nowMs).toISOString();
    const previous = model.readRegistration(device.registrationId)?.state; // read only: a stored record is replaced, never changed
    const base: Base = {
      registrationId: device.registrationId,
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
      etag: newEtag(),
    };
    const save = (state: DeviceRegistrationState): DeviceRegistrationState => {
      model.saveRegistration({ state, enrollment: device.enrollment });
      return state;
    };
    if (enrollment.provisioningStatus === 'disabled') return save({ ...base, status: 'disabled' });

    const linkedHubs = model.linkedHubs();
    const wasAssigned = previous?.status === 'assigned' && previous.assignedHub !== undefined;
    const { hubs: candidates, missing } = candidateHubs(linkedHubs, enrollment.iotHubs);
    if (wasAssigned && !enrollment.reprovisionPolicy.updateHubAssignment && candidates.some((h) => h.hostName === previous!.assignedHub)) {
      return save(this.#commit(device, enrollment, previous, base, previous!.assignedHub!, now));
    }
    const policy = enrollment.allocationPolicy ?? model.allocationPolicy;
    if (policy !== 'custom' || missing.length > 0) {
      const result = allocateHub({
        registrationId: device.registrationId,
        policy: policy === 'custom' ? 'hashed' : policy, // a missing hub fails before any policy runs
        linkedHubs,
        enrollmentHubs: enrollment.iotHubs,
        deviceRegion: this.#options.region,
        latency: model.latency,
      });
      if (!result.ok) return save(failed(base, result.errorCode, result.message));
      return save(this.#commit(device, enrollment, previous, base, result.hub.hostName, now));
    }
    const definition = enrollment.customAllocationDefinition!;
    return callAllocationWebhook(
      {
        webhookUrl: definition.webhookUrl,
        enrollment: 'enrollmentGroupId' in enrollment ? { kind: 'group', value: enrollment } : { kind: 'individual', value: enrollment },
        registrationId: device.registrationId,
        ...(wasAssigned
          ? { currentIotHubHostName: previous!.assignedHub!, currentDeviceId: previous!.deviceId ?? device.registrationId }
          : {}),
        payload,
        linkedHubs: candidates.map((h) => h.hostName),
      },
      { timeoutMs: this.#options.webhookTimeoutMs, signal: this.#abort.signal },
    ).then((answer) => {
      if (!answer.ok) return save(failed(base, ErrorCodes.customAllocationFailed, answer.errorMessage));
      if (!model.linkedHub(answer.iotHubHostName)) {
        return save(failed(base, ErrorCodes.customAllocationFailed, 'Custom allocation failed: the chosen IoT hub was unlinked meanwhile'));
      }
      const state = this.#commit(device, enrollment, previous, base, answer.iotHubHostName, now, answer.initialTwin);
      return save(answer.payload !== undefined ? { ...state, payload: answer.payload } : state);
    });
  }

  /** Create or update the device identity in `hostName`'s registry; the assigned state. */
  #commit(
    device: DeviceAttestation,
    enrollment: Enrollment,
    previous: DeviceRegistrationState | undefined,
    base: Base,
    hostName: string,
    now: string,
    twinOverride?: InitialTwin,
  ): DeviceRegistrationState {
    const model = this.#model;
    // DPS creates the identity with the link's connection string: a renewed hub key breaks it.
    const linkProblem = model.linkProblem(hostName);
    if (linkProblem) return failed(base, HUB_LINK_OUTDATED, linkProblem);
    const deviceId = 'deviceId' in enrollment && enrollment.deviceId ? enrollment.deviceId : device.registrationId;
    const wasAssigned = previous?.status === 'assigned' && previous.assignedHub !== undefined;
    const moved = wasAssigned && previous!.assignedHub !== hostName;
    // The reprovision policy (concepts-device-reprovision.md): "migrate data" moves the whole twin
    // (tags, desired and reported properties with their versions) to the new hub; "reset to
    // initial config" starts from the enrollment's initial twin, also on the same hub ("often used
    // for a factory reset without changing IoT hubs"); "never re-provision" kept the hub above.
    const reset = wasAssigned && enrollment.reprovisionPolicy.updateHubAssignment && !enrollment.reprovisionPolicy.migrateDeviceData;
    const old = wasAssigned ? model.hubDevice(previous!.assignedHub!, previous!.deviceId ?? deviceId) : undefined;
    const existing = model.hubDevice(hostName, deviceId);
    // The device's own twin, moved or kept, unless the policy resets it; otherwise the initial
    // twin: a custom allocation webhook's, which DPS uses "on initial assignment or when
    // reprovisioning if the ... policy is set to Reprovision and reset to initial config" and
    // ignores otherwise (concepts-custom-allocation.md), else the enrollment's.
    const kept = moved ? old : existing;
    const initial = twinOverride ?? enrollment.initialTwin;
    const fresh = reset || !kept || (twinOverride !== undefined && !wasAssigned);
    const twin: Pick<HubDevice, 'tags' | 'properties' | 'twinVersions'> = fresh
      ? { tags: initial?.tags ?? {}, properties: { desired: initial?.properties?.desired ?? {} } }
      : { tags: kept.tags, properties: kept.properties, ...(kept.twinVersions && { twinVersions: kept.twinVersions }) };
    const identity: HubDevice = {
      deviceId,
      registrationId: device.registrationId,
      authentication: structuredClone(device.authentication),
      ...structuredClone(twin),
      // A device that stays keeps its status (DPS does not enable a device an operator disabled).
      ...(!moved && existing?.status && { status: existing.status }),
      createdDateTimeUtc: !moved && existing ? existing.createdDateTimeUtc : now,
      lastUpdatedDateTimeUtc: now,
    };
    model.upsertHubDevice(hostName, identity);
    if (moved && old) model.removeHubDevice(previous!.assignedHub!, old.deviceId);

    let substatus: RegistrationSubstatus = 'initialAssignment';
    if (reset) substatus = 'deviceDataReset';
    else if (moved) substatus = 'deviceDataMigrated';
    else if (wasAssigned) substatus = previous!.substatus ?? 'initialAssignment';
    return { ...base, assignedHub: hostName, deviceId, status: 'assigned', substatus };
  }

  /** The enrollment the device authenticated through, as it is now (it may have changed since CONNECT). */
  #enrollment(device: DeviceAttestation): Enrollment {
    const ref = device.enrollment;
    const enrollment =
      ref.kind === 'individual'
        ? this.#model.readIndividualEnrollment(ref.registrationId)
        : this.#model.readEnrollmentGroup(ref.enrollmentGroupId);
    if (!enrollment) {
      throw new DpsError(401, ErrorCodes.unauthorized, 'The enrollment this device authenticated with no longer exists');
    }
    return enrollment;
  }
}

function failed(base: Base, errorCode: number, errorMessage: string): DeviceRegistrationState {
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

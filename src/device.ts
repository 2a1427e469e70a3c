// Online, not just provisioned: find the device's hub (the stored assignment, or DPS), connect to
// it, and when the hub turns the device away, provision again and connect to the new hub.
//
//   stored assignment ──► connect to its hub ──► online
//         │ none               │ refused (CONNACK 4/5, twin 401/403/404), or unreachable past
//         ▼                    │ the session's offline bound, or a host that does not resolve
//   DPS registers ◄────────────┘ (DPS's troubleshooting guidance: register again, with backoff)
//
// Bounded: at most `maxReprovisions` registrations after the first connection attempt, with
// backoff and jitter between rounds, then the last error. A hub that refuses the device right
// after DPS assigned it is not retried forever. The decision lives here, at the level of the
// provisioner, not inside a transport: src/hub/reprovision.ts says which failures qualify.
import { type BackoffPolicy, backoffMs } from './dps/machine.js';
import { ProvisioningError } from './errors.js';
import type { HubSessionOptions } from './hub/options.js';
import { shouldReprovision } from './hub/reprovision.js';
import { connectHub, type HubSession } from './hub/session.js';
import type { Endpoint, HubLog } from './ports.js';
import {
  type Assignment,
  type DeviceConfig,
  type ProvisionerPorts,
  provisionDevice,
  resolveDeviceKey,
  resolveRegistrationId,
} from './provisioner.js';

/** What the session does once connected: its handlers and limits (the credentials come from the assignment). */
export type SessionSettings = Omit<HubSessionOptions, 'hub' | 'deviceId' | 'deviceKey' | 'endpoint' | 'modelId'>;

export interface OnlineConfig extends DeviceConfig {
  /** Development: connect here instead of the assigned hub (the username and SAS still name the hub). */
  hubEndpoint?: Endpoint;
  /** IoT Plug and Play / IoT Central: sent to DPS as payload {"modelId": ...} and in the hub username. */
  modelId?: string;
  /** Registrations with DPS after the first hub connection attempt, at most (default 3). */
  maxReprovisions?: number;
  /** Wait between rounds (default 2 s doubling to 5 min, plus up to 2 s of jitter). */
  reprovisionBackoff?: Partial<BackoffPolicy>;
  session?: SessionSettings;
}

export interface OnlinePorts extends ProvisionerPorts {
  /** The hub session's events (the provisioning events go to `log`). */
  hubLog?: HubLog;
}

export type OnlineEvent = { type: 'reprovisioning'; reason: string; round: number; waitMs: number };

export interface Online {
  session: HubSession;
  assignment: Assignment;
  /** The assignment came from the store and DPS was not contacted. */
  fromCache: boolean;
  /** Registrations made because a hub turned the device away. */
  reprovisions: number;
}

export const DEFAULT_MAX_REPROVISIONS = 3;
const DEFAULT_REPROVISION_BACKOFF: BackoffPolicy = { minMs: 2000, maxMs: 5 * 60_000, jitterMs: 2000 };

/**
 * Provision when needed, then connect to the hub. Rejects with the last ProvisioningError when the
 * hub keeps refusing past `maxReprovisions`, or at once for a failure that another registration
 * would not fix (a wrong key with DPS, an untrusted certificate, bad settings).
 */
export async function goOnline(config: OnlineConfig, ports: OnlinePorts & { onEvent?: (event: OnlineEvent) => void }): Promise<Online> {
  const maxReprovisions = config.maxReprovisions ?? DEFAULT_MAX_REPROVISIONS;
  if (!Number.isInteger(maxReprovisions) || maxReprovisions < 0 || maxReprovisions > 100) {
    throw new ProvisioningError('invalid-input', 'maxReprovisions must be a whole number from 0 to 100');
  }
  const backoff = { ...DEFAULT_REPROVISION_BACKOFF, ...config.reprovisionBackoff };
  const registrationId = resolveRegistrationId(config);
  const deviceKey = resolveDeviceKey(config, registrationId);
  const provisioning: DeviceConfig = {
    ...config,
    registrationId,
    ...(config.modelId !== undefined && { payload: { ...payloadObject(config.payload), modelId: config.modelId } }),
  };
  let force = config.force === true;
  for (let round = 0; ; round++) {
    const { assignment, fromCache } = await provisionDevice({ ...provisioning, force }, ports);
    try {
      const session = await connectHub(
        {
          ...config.session,
          hub: assignment.assignedHub,
          deviceId: assignment.deviceId,
          ...(deviceKey !== undefined && { deviceKey }),
          ...(config.hubEndpoint && { endpoint: config.hubEndpoint }),
          ...(config.modelId !== undefined && { modelId: config.modelId }),
        },
        {
          connect: ports.connect,
          clock: ports.clock,
          ...(ports.hubLog && { log: ports.hubLog }),
          ...(ports.random && { random: ports.random }),
        },
      );
      return { session, assignment, fromCache, reprovisions: round };
    } catch (error) {
      const failure = error instanceof ProvisioningError ? error : new ProvisioningError('network', String(error), { cause: error });
      if (!shouldReprovision(failure) || round >= maxReprovisions) throw failure;
      const waitMs = round === 0 && fromCache ? 0 : backoffMs(round + 1, { backoff, random: ports.random ?? Math.random });
      ports.onEvent?.({ type: 'reprovisioning', reason: failure.message, round: round + 1, waitMs });
      if (waitMs > 0) await new Promise<void>((resolve) => ports.clock.setTimer(resolve, waitMs));
      force = true;
    }
  }
}

function payloadObject(payload: unknown): Record<string, unknown> {
  if (payload === undefined || payload === null) return {};
  if (typeof payload !== 'object' || Array.isArray(payload)) {
    throw new ProvisioningError(
      'invalid-input',
      'With a model ID, the registration payload must be a JSON object (the model ID is added to it)',
    );
  }
  return payload as Record<string, unknown>;
}

// A local Azure IoT Hub Device Provisioning Service: start it, point devices at it, trust its CA.
//
//   const dps = await startEmulator({ idScope: '0ne00000001', port: 0, config: {...} });
//   // devices connect to dps.endpoint.host:dps.endpoint.port over TLS, trusting dps.caPem
//   await dps.close();
import { resolve } from 'node:path';
import { loadOrCreateCertificates } from './certificates.js';
import { startDeviceEndpoint, type EndpointEvent } from './device-endpoint.js';
import { FaultPlan } from './faults.js';
import { DpsModel } from './model.js';
import type { ModelConfig } from './model-types.js';
import { RegistrationService } from './registrations.js';

export type { EndpointEvent } from './device-endpoint.js';
export type { Fault, FaultAction, FaultRecord, FaultTrigger } from './faults.js';
export { FaultPlan } from './faults.js';
export { DpsModel } from './model.js';
export type * from './model-types.js';

export const DEFAULT_STATE_DIR = '.dps-emulator';
export const DEFAULT_RETRY_AFTER_SECONDS = 3;

export interface EmulatorOptions {
  /** The instance's ID scope, e.g. '0ne00000001'; devices must send it in their username. */
  idScope: string;
  /** Where the CA and server certificate live; default `.dps-emulator/` under the current directory. */
  stateDir?: string;
  /** Device endpoint port; 0 (the default) picks a free one. DPS itself listens on 8883. */
  port?: number;
  /** Listening address; default 127.0.0.1 (loopback only). */
  host?: string;
  /** Extra names (DNS or IP) the server certificate must cover besides localhost, 127.0.0.1, ::1. */
  hostNames?: string[];
  /** retry-after sent with every 202; default 3 s, like DPS. */
  retryAfterSeconds?: number;
  /** How long an operation stays "assigning"; default retryAfterSeconds * 1000. */
  assignmentDelayMs?: number;
  /** The region of this listener, for geoLatency (e.g. 'westus'). */
  region?: string;
  /** Largest inbound MQTT packet; default 64 KiB. */
  maxPacketBytes?: number;
  /** How long a custom allocation webhook may take; default 10 s. */
  webhookTimeoutMs?: number;
  /** QoS of responses; default 0, as DPS sends them. */
  responseQos?: 0 | 1;
  /** Linked hubs, instance policy, enrollments (the provisioningServices properties + enrollments). */
  config?: ModelConfig;
  /** Progress and refusals, for a CLI or a test. */
  onEvent?: (event: EndpointEvent) => void;
}

export interface DpsEmulator {
  endpoint: { host: string; port: number };
  idScope: string;
  /** The CA certificate devices must trust (PEM), and the file it is in. */
  caPem: string;
  caPath: string;
  model: DpsModel;
  faults: FaultPlan;
  close(): Promise<void>;
}

export async function startEmulator(options: EmulatorOptions): Promise<DpsEmulator> {
  if (typeof options.idScope !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(options.idScope)) {
    throw new TypeError('The ID scope must be a non-empty alphanumeric string (e.g. 0ne00000001)');
  }
  const retryAfterSeconds = options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
  if (!Number.isInteger(retryAfterSeconds) || retryAfterSeconds < 0) {
    throw new TypeError('retryAfterSeconds must be a whole, non-negative number');
  }
  const assignmentDelayMs = options.assignmentDelayMs ?? retryAfterSeconds * 1000;
  if (!Number.isFinite(assignmentDelayMs) || assignmentDelayMs < 0) {
    throw new TypeError('assignmentDelayMs must be a non-negative number');
  }
  const host = options.host ?? '127.0.0.1';
  const stateDir = resolve(options.stateDir ?? DEFAULT_STATE_DIR);
  const model = new DpsModel(options.config ?? {});
  const faults = new FaultPlan();
  const certificates = await loadOrCreateCertificates({
    stateDir,
    hostNames: [...(options.hostNames ?? []), ...(isWildcard(host) ? [] : [host])],
  });
  const service = new RegistrationService(model, {
    retryAfterSeconds,
    assignmentDelayMs,
    ...(options.region !== undefined ? { region: options.region } : {}),
    ...(options.webhookTimeoutMs !== undefined ? { webhookTimeoutMs: options.webhookTimeoutMs } : {}),
  });
  const endpoint = await startDeviceEndpoint({
    idScope: options.idScope,
    model,
    service,
    faults,
    cert: certificates.serverCertPem,
    key: certificates.serverKeyPem,
    host,
    port: options.port ?? 0,
    ...(options.maxPacketBytes !== undefined ? { maxPacketBytes: options.maxPacketBytes } : {}),
    ...(options.responseQos !== undefined ? { responseQos: options.responseQos } : {}),
    ...(options.onEvent !== undefined ? { onEvent: options.onEvent } : {}),
  });
  return {
    endpoint: { host: endpoint.host, port: endpoint.port },
    idScope: options.idScope,
    caPem: certificates.caPem,
    caPath: certificates.caPath,
    model,
    faults,
    close: async () => {
      service.close();
      await endpoint.close();
    },
  };
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

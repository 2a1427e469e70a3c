// A local Azure IoT Hub Device Provisioning Service: start it, point devices at it, trust its CA.
//
//   const dps = await startEmulator({ idScope: '0ne00000001', port: 0, config: {...} });
//   // devices connect to dps.endpoint.host:dps.endpoint.port over TLS, trusting dps.caPem
//   await dps.close();
import { resolve } from 'node:path';
import { loadOrCreateCertificates } from './certificates.js';
import { type ConsoleServer, startConsole } from './console/server.js';
import { type EndpointEvent, startDeviceEndpoint } from './device-endpoint.js';
import { type DeviceHttpsEndpoint, startDeviceHttpsEndpoint } from './device-https.js';
import { DeviceEventLog, type RegistrationOutcome } from './event-log.js';
import { FaultPlan } from './faults.js';
import type { HttpLimits } from './http-limits.js';
import { type IotHubEndpoint, startIotHubEndpoint } from './iothub-endpoint.js';
import type { EmulatedIotHubs } from './iothub-service.js';
import { hubSniCallback } from './iothub-sni.js';
import { isLoopback, isWildcard } from './listen-address.js';
import { DpsModel } from './model.js';
import type { ModelConfig } from './model-types.js';
import { RegistrationService } from './registrations.js';
import { startServiceApi } from './service-api.js';
import { loadOrCreateServicePolicy, SERVICE_KEY_NAME } from './service-auth.js';
import { openState, type StateStore } from './state-store.js';
import { webSocketRouter } from './websocket.js';

export type { EndpointEvent } from './device-endpoint.js';
export type { Fault, FaultAction, FaultRecord, FaultTrigger } from './faults.js';
export { FaultPlan } from './faults.js';
export { DEFAULT_HTTP_LIMITS, type HttpLimits } from './http-limits.js';
export type { EmulatedHub, HubPolicy, HubRight } from './hubs.js';
export type { EmulatedIotHubs, HubEndpointEvent, TelemetryMessage } from './iothub-service.js';
export { IotHubError, TELEMETRY_LOG_SIZE } from './iothub-service.js';
export type { TwinView } from './iothub-twins.js';
export { DpsModel } from './model.js';
export type * from './model-types.js';
export { serviceClientAgent } from './service-agent.js';
export { STATE_FILE, StateConflictError, StateFileError } from './state-store.js';

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
  /** Progress and refusals, for a CLI or a test, with what the registration record said then (event-log.ts). */
  onEvent?: (event: EndpointEvent, outcome?: RegistrationOutcome) => void;
  /** Service API port (HTTPS, same host and certificate); 0 (the default) picks a free one. DPS itself uses 443. */
  servicePort?: number;
  /**
   * Primary key (base64) of the provisioningserviceowner policy. Default: generated once and kept
   * in the state directory (service-policy.json), so the connection string survives restarts.
   */
  serviceKey?: string;
  /** The emulated IoT hubs' MQTT device endpoint port (TLS, same host and certificate); 0 (the default) picks a free one. IoT Hub uses 8883. */
  hubPort?: number;
  /** DPS's HTTPS device API port (same host, certificate and registrations as `port`); 0 (the default) picks a free one. DPS uses 443. */
  httpsPort?: number;
  /** The web console's port (HTTPS, same host and certificate; console/server.ts); 0 (the default) picks a free one. */
  consolePort?: number;
  /** false: no web console. Default: one, which requires a sign-in with the service key unless `host` is loopback. */
  console?: boolean;
  /** The service API's deadlines and connection cap (http-limits.ts); default DEFAULT_HTTP_LIMITS. */
  serviceLimits?: Partial<HttpLimits>;
  /**
   * Keep the model (enrollments, registrations, linked hubs, hub registries and twins) in memory
   * only: it starts from `config` and is gone on close. Default false: it lives in
   * <stateDir>/state.json (state-store.ts), seeded from `config` on the first start, and a later
   * start with another `config` is refused (StateConflictError).
   */
  inMemory?: boolean;
  /** Set the stored state aside (renamed to state.json.<time>.bak) and seed a new one from `config`. */
  reset?: boolean;
  /** The file `config` came from, recorded in the state and named in messages. */
  configFile?: string;
  /** A save of the state failed (it is tried again; close() rejects if the last one fails). */
  onStateError?: (error: Error) => void;
}

export interface EmulatorService {
  /** Where the service API listens; `host` is the name the connection string uses. */
  endpoint: { host: string; port: number };
  keyName: typeof SERVICE_KEY_NAME;
  /** The policy's primary key: a secret. */
  key: string;
  /** HostName=<host>:<port>;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=<key> */
  connectionString: string;
}

export interface DpsEmulator {
  endpoint: { host: string; port: number };
  idScope: string;
  /** The CA certificate devices must trust (PEM), and the file it is in. */
  caPem: string;
  caPath: string;
  model: DpsModel;
  faults: FaultPlan;
  /** The service API (enrollments, registrations) and the management API (linked hubs, emulated hubs). */
  service: EmulatorService;
  /** Where devices connect to their emulated IoT hub (MQTT over TLS); the username names the hub. */
  hubEndpoint: { host: string; port: number };
  /** Where devices register over HTTPS (DPS's REST device API), with the same answers as over MQTT at `endpoint`. */
  httpsEndpoint: { host: string; port: number };
  /** The emulated IoT hubs' service side: twins, device status, direct methods, C2D, telemetry. */
  hubs: EmulatedIotHubs;
  /** The web console (url: https://<host>:<port>/); undefined with `console: false`. */
  console: { url: string; port: number } | undefined;
  /**
   * The state file, a way to wait until every change so far is in it (state.json and its journal),
   * and one to write it whole now (the journal folded in); undefined with `inMemory`.
   */
  state: { path: string; origin: 'seeded' | 'restored'; setAside?: string; flush(): Promise<void>; save(): Promise<void> } | undefined;
  /** Closes the device endpoints (MQTT and HTTPS), the IoT hub endpoint and the service API, then saves the state. */
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
  // The config is checked before any file is touched; a stored state may then take its place,
  // else a new one is seeded with this model.
  let model = new DpsModel(options.config ?? {});
  const faults = new FaultPlan();
  const certificates = await loadOrCreateCertificates({
    stateDir,
    hostNames: [...(options.hostNames ?? []), ...(isWildcard(host) ? [] : [host])],
  });
  let stateStore: StateStore | undefined;
  let state: DpsEmulator['state'];
  if (!options.inMemory) {
    // The state directory exists: loadOrCreateCertificates made it.
    const opened = await openState({
      stateDir,
      idScope: options.idScope,
      model,
      ...(options.config !== undefined && { config: options.config }),
      ...(options.configFile !== undefined && { configFile: options.configFile }),
      ...(options.reset !== undefined && { reset: options.reset }),
      ...(options.onStateError !== undefined && { onError: options.onStateError }),
    });
    model = opened.model;
    stateStore = opened.store;
    state = {
      path: opened.store.path,
      origin: opened.origin,
      ...(opened.setAside !== undefined && { setAside: opened.setAside }),
      flush: () => opened.store.flush(),
      save: () => opened.store.save(),
    };
  }
  // Leaf and CA, as real DPS sends leaf and intermediate: Moddable's TLS (SDK 8.2.3) checks the
  // host name only while walking a chain of two or more certificates.
  const serverChain = certificates.serverCertPem + certificates.caPem;
  const policy = await loadOrCreateServicePolicy(stateDir, options.serviceKey);
  /** The name clients use: the listening address, or for a wildcard the first configured name. */
  const clientHost = isWildcard(host) ? (options.hostNames?.[0] ?? 'localhost') : host;
  // The device events, for the service API's GET /events and /metrics (the console's live page), and the caller's.
  const events = new DeviceEventLog(model);
  const onEvent = (event: EndpointEvent): void => {
    const { outcome } = events.record(event);
    options.onEvent?.(event, outcome);
  };
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
    cert: serverChain,
    key: certificates.serverKeyPem,
    host,
    port: options.port ?? 0,
    ...(options.maxPacketBytes !== undefined ? { maxPacketBytes: options.maxPacketBytes } : {}),
    ...(options.responseQos !== undefined ? { responseQos: options.responseQos } : {}),
    onEvent,
  });
  const issueHubCertificate = (hostName: string): string => certificates.issueServerCertificate([hostName]) + certificates.caPem;
  // Each emulated hub's certificate, for the names <hub>.azure-devices.net that Azure serves on 443.
  const hubCertificates = hubSniCallback(model, certificates.serverKeyPem, issueHubCertificate);
  let serviceApi: Awaited<ReturnType<typeof startServiceApi>>;
  let hubEndpoint: IotHubEndpoint | undefined;
  let httpsEndpoint: DeviceHttpsEndpoint | undefined;
  let consoleServer: ConsoleServer | undefined;
  try {
    hubEndpoint = await startIotHubEndpoint({
      model,
      cert: serverChain,
      key: certificates.serverKeyPem,
      issueCertificate: issueHubCertificate,
      host,
      port: options.hubPort ?? 0,
      onEvent,
    });
    httpsEndpoint = await startDeviceHttpsEndpoint({
      idScope: options.idScope,
      model,
      service,
      cert: serverChain,
      key: certificates.serverKeyPem,
      host,
      port: options.httpsPort ?? 0,
      ...(options.maxPacketBytes !== undefined ? { maxBodyBytes: options.maxPacketBytes } : {}),
      onEvent,
      // MQTT over WebSockets for DPS and the hubs, on this port as on Azure's 443.
      onUpgrade: webSocketRouter({ dps: endpoint.accept, hub: hubEndpoint.accept }),
      SNICallback: hubCertificates,
    });
    serviceApi = await startServiceApi({
      model,
      idScope: options.idScope,
      policy,
      cert: serverChain,
      key: certificates.serverKeyPem,
      host,
      port: options.servicePort ?? 0,
      clientHost,
      deviceProvisioningHostName: `${bracketed(clientHost)}:${endpoint.port}`,
      hubs: hubEndpoint.hubs,
      SNICallback: hubCertificates,
      events,
      ...(options.serviceLimits !== undefined ? { limits: options.serviceLimits } : {}),
    });
    if (options.console !== false) {
      try {
        consoleServer = await startConsole({
          cert: serverChain,
          key: certificates.serverKeyPem,
          host,
          port: options.consolePort ?? 0,
          call: serviceApi.call,
          serviceHostName: serviceApi.hostName,
          serviceKey: policy.primaryKey,
          requireSignIn: !isLoopback(host),
          hostNames: [clientHost, 'localhost', '127.0.0.1', '::1', ...(options.hostNames ?? [])],
          info: {
            deviceEndpoint: `${bracketed(clientHost)}:${endpoint.port}`,
            hubEndpoint: `${bracketed(clientHost)}:${hubEndpoint.port}`,
            httpsEndpoint: `${bracketed(clientHost)}:${httpsEndpoint.port}`,
            serviceUrl: `https://${serviceApi.hostName}`,
            caPem: certificates.caPem,
            caPath: certificates.caPath,
            connectionString: `HostName=${serviceApi.hostName};SharedAccessKeyName=${SERVICE_KEY_NAME};SharedAccessKey=${policy.primaryKey}`,
          },
          ...(options.serviceLimits !== undefined ? { limits: options.serviceLimits } : {}),
        });
      } catch (error) {
        await serviceApi.close();
        throw error;
      }
    }
  } catch (error) {
    service.close();
    await Promise.all([endpoint.close(), hubEndpoint?.close(), httpsEndpoint?.close()]);
    await stateStore?.close();
    throw error;
  }
  return {
    endpoint: { host: endpoint.host, port: endpoint.port },
    idScope: options.idScope,
    caPem: certificates.caPem,
    caPath: certificates.caPath,
    model,
    faults,
    hubEndpoint: { host: hubEndpoint.host, port: hubEndpoint.port },
    httpsEndpoint: { host: httpsEndpoint.host, port: httpsEndpoint.port },
    hubs: hubEndpoint.hubs,
    console: consoleServer && { url: consoleServer.url, port: consoleServer.port },
    state,
    service: {
      endpoint: { host: clientHost, port: serviceApi.port },
      keyName: SERVICE_KEY_NAME,
      key: policy.primaryKey,
      connectionString: `HostName=${serviceApi.hostName};SharedAccessKeyName=${SERVICE_KEY_NAME};SharedAccessKey=${policy.primaryKey}`,
    },
    close: async () => {
      service.close();
      await Promise.all([endpoint.close(), hubEndpoint.close(), serviceApi.close(), httpsEndpoint.close(), consoleServer?.close()]);
      await stateStore?.close();
    },
  };
}

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

// What the Azure portal and ARM do, on the same HTTPS server and SAS as the service API (no
// api-version needed; errors in ARM's envelope, see service-http.ts):
//   GET  /resource    the provisioningServices resource: name, etag, properties { state, idScope,
//                     allocationPolicy, iotHubs[], serviceOperationsHostName, deviceProvisioningHostName }
//   PUT  /resource    replace properties.allocationPolicy and properties.iotHubs as a whole (ARM's
//                     get-modify-put, which `az iot dps update --set` and `az iot dps linked-hub
//                     create|update|delete` do); If-Match guards it (412)
//   GET  /hubs                                   the emulated IoT hubs (policies without keys)
//   GET  /hubs/{host}/policies[/{keyName}]       shared access policies with keys (`az iot hub policy list|show`)
//   POST /hubs/{host}/policies/{keyName}/renew-key?key=primary|secondary|swap   (`az iot hub policy renew-key`)
//   GET  /hubs/{host}/devices[/{deviceId}]       the hub's registry: identities (connectionState), twin tags and properties
//   /hubs/{host}/twins/..., /events, and PUT|DELETE|POST on /devices/{id}: the hub's own service API (hub-routes.ts)
//
// As ARM does, GET masks each linked hub's key (SharedAccessKey=****) and allocationWeight /
// applyAllocationPolicy read as given (1 / true when not set). allocationPolicy uses ARM's
// spelling (Hashed, GeoLatency, Static) and is read ignoring case. A PUT may send a masked key
// back: it means "keep the key this hub is linked with" (so get-modify-put works), and is refused
// for a hub that is not linked with that policy yet. Absent iotHubs means none; absent
// allocationPolicy means Hashed, as in a full ARM PUT.

import { createHash } from 'node:crypto';
import { certificateRoute } from './certificate-routes.js';
import { DpsError, ErrorCodes, invalidConfiguration, notFound } from './dps-errors.js';
import { hubDataRoute, isHubDataRoute } from './hub-routes.js';
import { type RenewKey, rightsText } from './hubs.js';
import type { EmulatedIotHubs } from './iothub-service.js';
import type { DpsModel } from './model.js';
import type { AllocationPolicy, HubDevice, LinkedHub, LinkedHubConfig } from './model-types.js';
import { ifMatch, isObject, noRoute, notAllowed, type ServiceRequest, type ServiceResponse } from './service-http.js';
import { checkEtag, parseConnectionString, validateInstancePolicy } from './validation.js';

export const MASKED_KEY = '****';
export const RESOURCE_NAME = 'dps-emulator';

export interface ManagementContext {
  model: DpsModel;
  idScope: string;
  /** host:port of the service API and of the device endpoint, as clients write them. */
  serviceOperationsHostName: string;
  deviceProvisioningHostName: string;
  /** The emulated hubs' service side, for their twins, devices, methods, C2D and telemetry (hub-routes.ts). */
  hubs: EmulatedIotHubs;
}

const ARM_POLICY: Record<Exclude<AllocationPolicy, 'custom'>, string> = { hashed: 'Hashed', geoLatency: 'GeoLatency', static: 'Static' };

export function isManagementCollection(segment: string | undefined): boolean {
  const name = segment?.toLowerCase();
  return name === 'resource' || name === 'hubs' || name === 'certificates';
}

export function managementRoute(context: ManagementContext, request: ServiceRequest): ServiceResponse | Promise<ServiceResponse> {
  const [collection, ...rest] = request.segments;
  if (collection!.toLowerCase() === 'certificates') return certificateRoute(context.model.certificates, request);
  if (collection!.toLowerCase() === 'resource') {
    if (rest.length > 0) throw noRoute(request);
    if (request.method === 'GET') return resourceResponse(context);
    if (request.method === 'PUT') return putResource(context, request);
    throw notAllowed(request);
  }
  const { model } = context;
  const [host, sub, name, action, ...extra] = rest;
  if (host === undefined) return get(request, () => model.iotHubs.list().map((hub) => hubSummary(context, hub.hostName)));
  const hub = model.iotHubs.hub(host);
  if (!hub) throw notFound(`The IoT hub ${host} is not known to the emulator (link it to create it)`);
  if (isHubDataRoute(sub, name, request.method)) return hubDataRoute(context.hubs, hub.hostName, request, rest.slice(1));
  if (extra.length > 0) throw noRoute(request);
  if (sub === undefined) return get(request, () => hubSummary(context, hub.hostName));
  if (sub.toLowerCase() === 'policies') {
    const policies = hub.policies.map((p) => ({
      keyName: p.keyName,
      primaryKey: p.primaryKey,
      secondaryKey: p.secondaryKey,
      rights: rightsText(p.rights),
    }));
    if (name === undefined) return get(request, () => policies);
    const policy = policies.find((p) => p.keyName.toLowerCase() === name.toLowerCase());
    if (!policy) throw notFound(`The IoT hub ${hub.hostName} has no shared access policy named '${name}'`);
    if (action === undefined) return get(request, () => policy);
    if (action.toLowerCase() !== 'renew-key') throw noRoute(request);
    if (request.method !== 'POST') throw notAllowed(request);
    const which = (request.query.get('key') ?? '').toLowerCase();
    if (which !== 'primary' && which !== 'secondary' && which !== 'swap') {
      throw invalidConfiguration('renew-key needs ?key=primary, ?key=secondary or ?key=swap');
    }
    const renewed = model.iotHubs.renewKey(hub.hostName, policy.keyName, which as RenewKey);
    return { status: 200, body: { ...renewed, rights: rightsText(renewed.rights) } };
  }
  if (sub.toLowerCase() === 'devices' && action === undefined) {
    const view = (device: HubDevice) => deviceView(device, context.hubs.connected(hub.hostName, device.deviceId));
    if (name === undefined) return get(request, () => model.hubDevices(hub.hostName).map(view));
    const device = model.hubDevice(hub.hostName, name);
    if (!device) throw notFound(`The IoT hub ${hub.hostName} has no device '${name}'`);
    return get(request, () => view(device));
  }
  throw noRoute(request);
}

/** The resource as ARM shows it, with its etag. */
export function resource(context: ManagementContext): Record<string, unknown> {
  const { model } = context;
  const policy = model.allocationPolicy;
  const properties = {
    state: 'Active',
    provisioningState: 'Succeeded',
    idScope: context.idScope,
    allocationPolicy: policy === 'custom' ? policy : ARM_POLICY[policy],
    iotHubs: model.linkedHubs().map((hub) => ({
      connectionString: masked(hub),
      name: hub.hostName,
      location: hub.location,
      allocationWeight: hub.allocationWeight,
      applyAllocationPolicy: hub.applyAllocationPolicy,
    })),
    serviceOperationsHostName: context.serviceOperationsHostName,
    deviceProvisioningHostName: context.deviceProvisioningHostName,
  };
  return { name: RESOURCE_NAME, type: 'Microsoft.Devices/provisioningServices', etag: resourceEtag(model), properties };
}

function resourceResponse(context: ManagementContext): ServiceResponse {
  const body = resource(context);
  return { status: 200, body, headers: { etag: `"${body.etag as string}"` } };
}

function putResource(context: ManagementContext, request: ServiceRequest): ServiceResponse {
  const { model } = context;
  checkEtag(resourceEtag(model), ifMatch(request), 'resource');
  const body = request.body;
  if (!isObject(body) || !isObject(body.properties)) {
    throw new DpsError(
      400,
      ErrorCodes.badRequest,
      'The body must be the resource: {"properties": {"allocationPolicy": ..., "iotHubs": [...]}}',
    );
  }
  const { allocationPolicy, iotHubs } = body.properties;
  const policy = validateInstancePolicy(restPolicyName(allocationPolicy));
  if (iotHubs !== undefined && iotHubs !== null && !Array.isArray(iotHubs)) throw invalidConfiguration('properties.iotHubs must be a list');
  const current = new Map(model.linkedHubs().map((hub) => [hub.hostName, hub]));
  const configs = ((iotHubs ?? []) as unknown[]).map((entry, index) => unmask(entry, index, current));
  model.replaceLinkedHubs(configs);
  model.setAllocationPolicy(policy);
  return resourceResponse(context);
}

/** 'Hashed', 'hashed', 'GEOLATENCY' → the REST name; absent → hashed. Anything else is passed on to be refused by name. */
function restPolicyName(value: unknown): unknown {
  if (value === undefined || value === null) return 'hashed';
  if (typeof value !== 'string') return value;
  const lower = value.toLowerCase();
  return lower === 'geolatency' ? 'geoLatency' : ['hashed', 'static', 'custom'].includes(lower) ? lower : value;
}

function unmask(entry: unknown, index: number, current: Map<string, LinkedHub>): LinkedHubConfig {
  if (!isObject(entry)) throw invalidConfiguration(`iotHubs[${index}] must be an object with a connectionString`);
  const { connectionString, location, allocationWeight, applyAllocationPolicy } = entry;
  let text = connectionString;
  if (typeof text === 'string' && /SharedAccessKey=\*+\s*(;|$)/i.test(text)) {
    const withKey = text.replace(/SharedAccessKey=\*+/i, `SharedAccessKey=${'A'.repeat(24)}`);
    let parsed: ReturnType<typeof parseConnectionString>;
    try {
      parsed = parseConnectionString(withKey);
    } catch (error) {
      throw new DpsError(400, ErrorCodes.invalidConfiguration, `iotHubs[${index}]: ${(error as Error).message}`);
    }
    const linked = current.get(parsed.hostName);
    if (!linked || linked.sharedAccessKeyName.toLowerCase() !== parsed.sharedAccessKeyName.toLowerCase()) {
      throw invalidConfiguration(
        `iotHubs[${index}]: the connection string for ${parsed.hostName} has a masked key (****), but that hub is not ` +
          `linked with the policy '${parsed.sharedAccessKeyName}': give the full connection string`,
      );
    }
    text = linked.connectionString;
  }
  return {
    connectionString: text as string,
    ...(location !== undefined && location !== null ? { location: location as string } : {}),
    allocationWeight: allocationWeight as number | null | undefined,
    applyAllocationPolicy: applyAllocationPolicy as boolean | null | undefined,
  };
}

function masked(hub: LinkedHub): string {
  return `HostName=${hub.hostName};SharedAccessKeyName=${hub.sharedAccessKeyName};SharedAccessKey=${MASKED_KEY}`;
}

/** Changes whenever the policy or anything about a link (its key included) changes. */
function resourceEtag(model: DpsModel): string {
  const state = JSON.stringify([model.allocationPolicy, model.linkedHubs()]);
  return createHash('sha256').update(state).digest('base64').slice(0, 12);
}

function hubSummary(context: ManagementContext, hostName: string): Record<string, unknown> {
  const { model } = context;
  const hub = model.iotHubs.hub(hostName)!;
  return {
    name: hub.hostName,
    linked: model.linkedHub(hub.hostName) !== undefined,
    linkProblem: model.linkProblem(hub.hostName) ?? null,
    policies: hub.policies.map((p) => ({ keyName: p.keyName, rights: rightsText(p.rights) })),
    deviceCount: model.hubDeviceCount(hub.hostName),
  };
}

/** An identity as the registry shows it, with IoT Hub's connectionState (Connected: online at its hub endpoint now). */
function deviceView(device: HubDevice, connected: boolean): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    registrationId: device.registrationId,
    status: device.status ?? 'enabled',
    connectionState: connected ? 'Connected' : 'Disconnected',
    authentication: device.authentication,
    tags: device.tags,
    properties: device.properties,
    createdDateTimeUtc: device.createdDateTimeUtc,
    lastUpdatedDateTimeUtc: device.lastUpdatedDateTimeUtc,
  };
}

function get(request: ServiceRequest, run: () => unknown): ServiceResponse {
  if (request.method !== 'GET') throw notAllowed(request);
  return { status: 200, body: run() };
}

// The emulated hubs' own service REST API, as IoT Hub serves it at https://<hub>.azure-devices.net
// (api-version 2021-04-12, what Microsoft's azure-iothub Registry and Client call over HTTPS:
// node_modules/azure-iothub/dist/registry.js, device_method.js). The service endpoint serves it
// for a request whose Host header names an emulated hub (the TLS server name gets that hub's
// certificate, iothub-sni.ts), authenticated with the hub's shared access policies
// (iothub-service-auth.ts):
//   GET    /devices[?top=n]              Get Devices (Registry.list)                        RegistryRead
//   GET    /devices/{id}                 Get Identity (Registry.get)                        RegistryRead
//   PUT    /devices/{id}                 Create Or Update Identity (Registry.create without
//                                        If-Match: 409 when it exists; Registry.update with
//                                        If-Match '*' or its etag: 404 / 412)                RegistryWrite
//   DELETE /devices/{id}                 Delete Identity (If-Match '*' or its etag)           RegistryWrite
//   GET    /twins/{id}                   Get Twin (Registry.getTwin)                        ServiceConnect or RegistryRead
//   PATCH  /twins/{id}                   Update Twin (tags, desired; If-Match etag or 412)  ServiceConnect
//   POST   /twins/{id}/methods           Invoke Device Method (Client.invokeDeviceMethod)   ServiceConnect
// Only symmetric-key identities: X.509 ones are refused (400). An identity created here has no
// registration ID (DPS did not create it); an update without keys keeps the device's keys.
// Twins, statuses, deletions and methods go through the hubs' service side (iothub-service.ts,
// with hub-routes.ts's Update Twin and Invoke Device Method), as the emulator's own service API
// does. Answers and errors in IoT Hub's JSON (iothub-rest-shapes.ts): DeviceNotFound,
// DeviceNotOnline, DeviceAlreadyExists, PreconditionFailed, IotHubUnauthorizedAccess, ArgumentInvalid, ...
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DpsError } from './dps-errors.js';
import { applyTwinUpdate, invokeDeviceMethod } from './hub-routes.js';
import type { EmulatedHub } from './hubs.js';
import { deviceEtag, errorResponse, HubRestError, identity, twin } from './iothub-rest-shapes.js';
import type { EmulatedIotHubs } from './iothub-service.js';
import { authorizeHubServiceRequest, type HubServiceOperation } from './iothub-service-auth.js';
import type { DpsModel } from './model.js';
import type { HubDevice } from './model-types.js';
import { ifMatch, isObject, readRequest, type ServiceRequest, type ServiceResponse } from './service-http.js';
import { checkEtag, isBase64Key } from './validation.js';

export interface IotHubRestContext {
  model: DpsModel;
  hubs: EmulatedIotHubs;
  now: () => number;
}

/** IoT Hub's device ID characters, up to 128 (iot-hub-devguide-identity-registry.md). */
const DEVICE_ID = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;
const API_VERSION = /^\d{4}-\d{2}-\d{2}(-preview)?$/;

/** The emulated hub a request's Host header names (a port after it is ignored), if any. */
export function hubNamedBy(host: string | undefined, model: DpsModel): EmulatedHub | undefined {
  const name = /^([A-Za-z0-9.-]{1,253})(?::\d{1,5})?$/.exec(host ?? '')?.[1];
  return name === undefined ? undefined : model.iotHubs.hub(name);
}

/** Answer one request to `hub`'s service REST API; never throws. */
export async function serveIotHubRest(context: IotHubRestContext, hub: EmulatedHub, req: IncomingMessage): Promise<ServiceResponse> {
  try {
    const path = new URL(req.url ?? '/', 'https://hub.invalid').pathname;
    const method = (req.method ?? 'GET').toUpperCase();
    const auth = authorizeHubServiceRequest(
      typeof req.headers.authorization === 'string' ? req.headers.authorization : undefined,
      hub,
      path,
      operationOf(method, path),
      Math.floor(context.now() / 1000),
    );
    if (!auth.ok) throw new HubRestError(401, 'IotHubUnauthorizedAccess', auth.message);
    const request = await readRequest(req);
    const version = request.query.get('api-version');
    if (version === null || !API_VERSION.test(version)) {
      throw new HubRestError(400, 'InvalidProtocolVersion', 'The api-version query parameter is missing or malformed (e.g. 2021-04-12)');
    }
    return await route(context, hub.hostName, request);
  } catch (error) {
    return errorResponse(error, new Date(context.now()));
  }
}

/** The right a request needs, from its method and path alone (checked before its body is read). */
function operationOf(method: string, path: string): HubServiceOperation {
  const collection = path
    .split('/')
    .find((s) => s !== '')
    ?.toLowerCase();
  if (collection === 'twins') return method === 'GET' ? 'twin-read' : 'service-connect';
  return method === 'GET' ? 'registry-read' : 'registry-write';
}

async function route(context: IotHubRestContext, hub: string, request: ServiceRequest): Promise<ServiceResponse> {
  const { model, hubs } = context;
  const [collection, id, action, ...rest] = request.segments;
  const { method } = request;
  if (rest.length > 0 || (id !== undefined && !DEVICE_ID.test(id))) throw noSuchPath(request);
  switch (collection?.toLowerCase()) {
    case 'devices':
      if (action !== undefined) throw noSuchPath(request);
      if (id === undefined) {
        if (method !== 'GET') throw notAllowed(request);
        return { status: 200, body: listDevices(context, hub, request) };
      }
      if (method === 'GET') return { status: 200, body: identity(hubs, hub, existing(model, hub, id)) };
      if (method === 'PUT') return { status: 200, body: identity(hubs, hub, putDevice(context, hub, id, request)) };
      if (method === 'DELETE') {
        const device = existing(model, hub, id);
        checkEtag(deviceEtag(device), ifMatch(request), `identity of ${device.deviceId}`);
        hubs.deleteDevice(hub, id);
        return { status: 204 };
      }
      throw notAllowed(request);
    case 'twins': {
      if (id === undefined) throw noSuchPath(request);
      if (action?.toLowerCase() === 'methods') {
        if (method !== 'POST') throw notAllowed(request);
        return { status: 200, body: await invokeDeviceMethod(hubs, hub, id, request.body) };
      }
      if (action !== undefined) throw noSuchPath(request);
      if (method === 'GET') return { status: 200, body: twin(hubs, hub, existing(model, hub, id)) };
      if (method === 'PATCH') {
        applyTwinUpdate(hubs, hub, id, request.body, ifMatch(request));
        return { status: 200, body: twin(hubs, hub, existing(model, hub, id)) };
      }
      throw notAllowed(request);
    }
    default:
      throw noSuchPath(request);
  }
}

function listDevices(context: IotHubRestContext, hub: string, request: ServiceRequest): unknown[] {
  const top = request.query.get('top');
  if (top !== null && !/^\d{1,4}$/.test(top)) throw new HubRestError(400, 'ArgumentInvalid', 'top must be a whole number from 0 to 9999');
  const devices = context.model.hubDevices(hub).map((device) => identity(context.hubs, hub, device));
  return top === null ? devices : devices.slice(0, Number(top));
}

/** Create (no If-Match) or update (If-Match '*' or the etag) an identity: its status and symmetric keys. */
function putDevice(context: IotHubRestContext, hub: string, id: string, request: ServiceRequest): HubDevice {
  const { model, hubs } = context;
  const body = request.body;
  const shape =
    'A device identity is {"deviceId": "<id>", "status": "enabled"|"disabled", "authentication": {"type": "sas", ' +
    '"symmetricKey": {"primaryKey": "<base64>", "secondaryKey": "<base64>"}}}';
  if (!isObject(body)) throw new HubRestError(400, 'ArgumentInvalid', shape);
  if (body.deviceId !== undefined && body.deviceId !== id) {
    throw new HubRestError(400, 'ArgumentInvalid', `The deviceId in the body differs from the one in the path (${id})`);
  }
  const status = body.status ?? undefined;
  if (status !== undefined && status !== 'enabled' && status !== 'disabled') {
    throw new HubRestError(400, 'ArgumentInvalid', "A device's status is 'enabled' or 'disabled'");
  }
  const keys = symmetricKeys(body.authentication, shape);
  const etag = ifMatch(request);
  if (etag === undefined) {
    const now = new Date(context.now()).toISOString();
    try {
      model.addHubDevice(hub, {
        deviceId: id,
        authentication: {
          type: 'sas',
          symmetricKey: { primaryKey: keys.primaryKey ?? newKey(), secondaryKey: keys.secondaryKey ?? newKey() },
        },
        tags: {},
        properties: { desired: {} },
        ...(status === 'disabled' && { status }),
        createdDateTimeUtc: now,
        lastUpdatedDateTimeUtc: now,
      });
    } catch (error) {
      if (error instanceof DpsError && error.status === 409) {
        throw new HubRestError(409, 'DeviceAlreadyExists', `The device ${id} exists in ${hub} already (update it with If-Match)`);
      }
      throw error;
    }
    return existing(model, hub, id);
  }
  const current = existing(model, hub, id);
  checkEtag(deviceEtag(current), etag, `identity of ${current.deviceId}`);
  const currentKeys = current.authentication.type === 'sas' ? current.authentication.symmetricKey : undefined;
  const symmetricKey = {
    primaryKey: keys.primaryKey ?? currentKeys?.primaryKey ?? newKey(),
    secondaryKey: keys.secondaryKey ?? currentKeys?.secondaryKey ?? newKey(),
  };
  model.replaceHubDevice(hub, {
    ...current,
    authentication: { type: 'sas', symmetricKey },
    lastUpdatedDateTimeUtc: new Date(context.now()).toISOString(),
  });
  // Through the service side, which closes a disabled device's connection.
  hubs.setDeviceStatus(hub, id, status ?? current.status ?? 'enabled');
  return existing(model, hub, id);
}

/** The keys of a symmetric-key authentication; an empty or absent key means "generate" (create) or "keep" (update). */
function symmetricKeys(authentication: unknown, shape: string): { primaryKey?: string; secondaryKey?: string } {
  if (authentication === undefined || authentication === null) return {};
  if (!isObject(authentication)) throw new HubRestError(400, 'ArgumentInvalid', shape);
  if (authentication.type !== undefined && authentication.type !== 'sas') {
    throw new HubRestError(
      400,
      'ArgumentInvalid',
      `The emulator's hubs take symmetric-key (sas) identities only, not '${String(authentication.type).slice(0, 40)}'`,
    );
  }
  const given = authentication.symmetricKey ?? {};
  if (!isObject(given)) throw new HubRestError(400, 'ArgumentInvalid', shape);
  const keys: { primaryKey?: string; secondaryKey?: string } = {};
  for (const name of ['primaryKey', 'secondaryKey'] as const) {
    const key = given[name];
    if (key === undefined || key === null || key === '') continue;
    if (typeof key !== 'string' || !isBase64Key(key)) {
      throw new HubRestError(400, 'ArgumentInvalid', `The ${name} is not a base64 key of 16 to 64 bytes`);
    }
    keys[name] = key;
  }
  return keys;
}

function existing(model: DpsModel, hub: string, id: string): HubDevice {
  const device = model.hubDevice(hub, id);
  if (!device) throw new HubRestError(404, 'DeviceNotFound', `The device ${id} does not exist in ${hub}`);
  return device;
}

function newKey(): string {
  return randomBytes(32).toString('base64');
}

function noSuchPath(request: ServiceRequest): HubRestError {
  return new HubRestError(
    404,
    'NotFound',
    `No such resource in IoT Hub's service API: ${request.method} /${request.segments.join('/').slice(0, 200)}`,
  );
}

function notAllowed(request: ServiceRequest): HubRestError {
  return new HubRestError(405, 'MethodNotAllowed', `${request.method} is not supported on /${request.segments.join('/').slice(0, 200)}`);
}

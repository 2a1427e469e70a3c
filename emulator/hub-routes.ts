// The emulated IoT hubs' service API over HTTPS, under each hub's management path (the service
// endpoint serves every hub, so the hub is the path's first segment after /hubs), with the
// operations named as IoT Hub's REST API names them (api-version 2021-04-12):
//   GET    /hubs/{host}/twins/{id}                  Get Twin: {deviceId, status, etag, tags, properties{desired, reported}}
//   PATCH  /hubs/{host}/twins/{id}                  Update Twin: {"tags": {...}, "properties": {"desired": {...}}}, either or
//                                                   both, merged (null removes); If-Match: the etag GET gave, else 412
//   POST   /hubs/{host}/twins/{id}/methods          Invoke Device Method: {methodName, payload, responseTimeoutInSeconds}
//                                                   → {status, payload}; 404 when the device is not listening, 504 on timeout
//   GET    /hubs/{host}/devices/{id}                the identity (service-management.ts)
//   PUT    /hubs/{host}/devices/{id}                Create Or Update Identity, for an existing one: {"status": "enabled"|"disabled"}
//   DELETE /hubs/{host}/devices/{id}                Delete Identity
//   POST   /hubs/{host}/devices/{id}/messages/deviceBound   a cloud-to-device message: {"body": "...", "properties": {...}}
//   GET    /hubs/{host}/events[?deviceId=..][&from=<n>][&waitSeconds=<s>]   the hub's telemetry log, oldest first
//                                                   (the last TELEMETRY_LOG_SIZE), from sequence number n on; when
//                                                   there is none yet, waits up to s seconds (0-60) for the next one:
//                                                   a follower asks again with from = the last sequenceNumber + 1
// What `az iot hub device-twin show|update`, `az iot hub device-identity update|delete`,
// `az iot hub invoke-device-method`, `az iot device c2d-message send` and
// `az iot hub monitor-events` do. Updated tags stay with the device when DPS reprovisions it with
// its data migrated, as the desired properties do.
import { DpsError, genericErrorCode } from './dps-errors.js';
import { type EmulatedIotHubs, IotHubError, type TelemetryMessage } from './iothub-service.js';
import { type JsonObject, type TwinView, twinEtag } from './iothub-twins.js';
import { dpsError, followLog, ifMatch, isObject, noRoute, notAllowed, type ServiceRequest, type ServiceResponse } from './service-http.js';
import { checkEtag } from './validation.js';

/** IoT Hub bounds a method's response timeout to 5..300 s (iot-hub-devguide-direct-methods.md); default 30 s. */
const METHOD_TIMEOUT_SECONDS = { min: 5, max: 300, default: 30 };

/** Whether `/hubs/{host}/<sub>/...` belongs here rather than to the management routes. */
export function isHubDataRoute(sub: string | undefined, name: string | undefined, method: string): boolean {
  const collection = sub?.toLowerCase();
  return collection === 'twins' || collection === 'events' || (collection === 'devices' && name !== undefined && method !== 'GET');
}

export async function hubDataRoute(hubs: EmulatedIotHubs, hub: string, request: ServiceRequest, path: string[]): Promise<ServiceResponse> {
  const [collection, id, action, extra, ...rest] = path;
  try {
    switch (collection!.toLowerCase()) {
      case 'events':
        if (id !== undefined) throw noRoute(request);
        return await events(hubs, hub, request);
      case 'twins':
        if (id === undefined || extra !== undefined) throw noRoute(request);
        if (action?.toLowerCase() === 'methods') return await invoke(hubs, hub, id, request);
        if (action !== undefined) throw noRoute(request);
        if (request.method === 'GET') return { status: 200, body: twin(hubs, hub, id) };
        if (request.method !== 'PATCH') throw notAllowed(request);
        return { status: 200, body: updateTwin(hubs, hub, id, request) };
      default: // devices/{id}[/messages/deviceBound]
        if (rest.length > 0) throw noRoute(request);
        if (action !== undefined) {
          if (action.toLowerCase() !== 'messages' || extra?.toLowerCase() !== 'devicebound') throw noRoute(request);
          if (request.method !== 'POST') throw notAllowed(request);
          const { body, properties } = c2dMessage(request.body);
          await hubs.sendC2D(hub, id!, body, properties);
          return { status: 204 };
        }
        if (request.method === 'DELETE') {
          hubs.deleteDevice(hub, id!);
          return { status: 204 };
        }
        if (request.method !== 'PUT') throw notAllowed(request);
        if (!isObject(request.body) || (request.body.status !== 'enabled' && request.body.status !== 'disabled')) {
          throw dpsError(
            400,
            'The emulator changes only the status of an identity DPS created: send {"status": "enabled"} or {"status": "disabled"}',
          );
        }
        if (!hubs.twin(hub, id!)) throw dpsError(404, `The device ${id} does not exist in ${hub} (identities are created by DPS)`);
        hubs.setDeviceStatus(hub, id!, request.body.status);
        return { status: 200, body: { deviceId: id, status: request.body.status } };
    }
  } catch (error) {
    if (error instanceof IotHubError) throw new DpsError(error.status, genericErrorCode(error.status), error.message);
    throw error;
  }
}

async function events(hubs: EmulatedIotHubs, hub: string, request: ServiceRequest): Promise<ServiceResponse> {
  if (request.method !== 'GET') throw notAllowed(request);
  const deviceId = request.query.get('deviceId');
  const wanted = (m: TelemetryMessage): boolean =>
    m.hub.toLowerCase() === hub.toLowerCase() && (deviceId === null || m.deviceId === deviceId);
  return await followLog(
    request,
    (from) => hubs.telemetry(hub).filter((m) => wanted(m) && m.sequenceNumber >= from),
    (listener) =>
      hubs.onTelemetry((message) => {
        if (wanted(message)) listener(message);
      }),
  );
}

function twin(hubs: EmulatedIotHubs, hub: string, id: string): unknown {
  const view = hubs.twin(hub, id);
  if (!view) throw dpsError(404, `The device ${id} does not exist in ${hub}`);
  return { ...view, etag: `"${twinEtag(view)}"` };
}

/** Checked and applied with no await in between: nothing else changes the twin meanwhile. */
function updateTwin(hubs: EmulatedIotHubs, hub: string, id: string, request: ServiceRequest): unknown {
  applyTwinUpdate(hubs, hub, id, request.body, ifMatch(request));
  return twin(hubs, hub, id);
}

/**
 * Update Twin, as both service APIs do it (this one and IoT Hub's own, iothub-rest.ts): the body
 * checked, the If-Match etag (quoted or not, '*' or absent: any) compared, the patch merged.
 * Throws 400, 404 or 412 as DpsErrors. Returns the twin as it is now.
 */
export function applyTwinUpdate(hubs: EmulatedIotHubs, hub: string, id: string, body: unknown, etag: string | undefined): TwinView {
  const patch = twinPatch(body);
  const view = hubs.twin(hub, id);
  if (!view) throw dpsError(404, `The device ${id} does not exist in ${hub}`);
  checkEtag(twinEtag(view), etag, `twin of ${id}`);
  try {
    hubs.updateTwin(hub, id, patch);
  } catch (error) {
    if (error instanceof IotHubError) throw new DpsError(error.status, genericErrorCode(error.status), error.message);
    throw error;
  }
  return hubs.twin(hub, id)!;
}

function twinPatch(body: unknown): { tags?: JsonObject; desired?: JsonObject } {
  const shape = 'An Update Twin body is {"tags": {...}, "properties": {"desired": {...}}}, with tags or desired properties or both';
  if (!isObject(body)) throw dpsError(400, shape);
  const properties = body.properties;
  if (properties !== undefined && (!isObject(properties) || properties.reported !== undefined)) {
    throw dpsError(400, `${shape} (reported properties belong to the device)`);
  }
  const tags = body.tags;
  const desired = properties?.desired;
  if ((tags !== undefined && !isObject(tags)) || (desired !== undefined && !isObject(desired)) || (tags ?? desired) === undefined) {
    throw dpsError(400, shape);
  }
  return { ...(tags !== undefined && { tags }), ...(desired !== undefined && { desired }) };
}

async function invoke(hubs: EmulatedIotHubs, hub: string, id: string, request: ServiceRequest): Promise<ServiceResponse> {
  if (request.method !== 'POST') throw notAllowed(request);
  return { status: 200, body: await invokeDeviceMethod(hubs, hub, id, request.body) };
}

/**
 * Invoke Device Method, as both service APIs do it: the body {methodName, payload,
 * responseTimeoutInSeconds} checked (400), then the device's {status, payload}; 404 with errorCode
 * 404103 when the device is not listening, 504 with 504101 when it does not answer in time.
 */
export async function invokeDeviceMethod(
  hubs: EmulatedIotHubs,
  hub: string,
  id: string,
  body: unknown,
): Promise<{ status: number; payload: unknown }> {
  if (!isObject(body) || typeof body.methodName !== 'string') {
    throw dpsError(400, 'An Invoke Device Method body is {"methodName": "...", "payload": ..., "responseTimeoutInSeconds": 30}');
  }
  const seconds = body.responseTimeoutInSeconds ?? METHOD_TIMEOUT_SECONDS.default;
  if (
    typeof seconds !== 'number' ||
    !Number.isInteger(seconds) ||
    seconds < METHOD_TIMEOUT_SECONDS.min ||
    seconds > METHOD_TIMEOUT_SECONDS.max
  ) {
    throw dpsError(
      400,
      `responseTimeoutInSeconds must be a whole number from ${METHOD_TIMEOUT_SECONDS.min} to ${METHOD_TIMEOUT_SECONDS.max}`,
    );
  }
  try {
    return await hubs.invokeMethod(hub, id, body.methodName, body.payload ?? null, seconds * 1000);
  } catch (error) {
    // IoT Hub's codes for these two (troubleshoot-error-codes.md): 404103 DeviceNotOnline, 504101 GatewayTimeout.
    if (error instanceof IotHubError && (error.status === 404 || error.status === 504)) {
      throw new DpsError(error.status, error.status === 404 ? 404103 : 504101, error.message);
    }
    throw error;
  }
}

function c2dMessage(body: unknown): { body: string; properties: Record<string, string> } {
  if (!isObject(body) || typeof body.body !== 'string')
    throw dpsError(400, 'A cloud-to-device message is {"body": "<text>", "properties": {"name": "value"}}');
  const properties = body.properties ?? {};
  if (!isObject(properties) || Object.values(properties).some((value) => typeof value !== 'string')) {
    throw dpsError(400, 'The properties of a cloud-to-device message are names with text values');
  }
  return { body: body.body, properties: properties as Record<string, string> };
}

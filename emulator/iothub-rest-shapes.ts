// IoT Hub's JSON for the emulated hubs' service REST API (iothub-rest.ts): the Device and Twin
// shapes azure-iothub reads (node_modules/azure-iothub/dist/device.d.ts, twin.d.ts), and errors in
// IoT Hub's shape, which azure-iothub parses (common-http/http.js parseErrorBody):
//   {"Message": "ErrorCode:<name>;<message>", "ExceptionMessage": "Tracking ID:<id>-G:0-TimeStamp:<MM/dd/yyyy HH:mm:ss>"}
// with the name also in the iothub-errorcode header. What the emulator cannot know (last activity,
// connection state changes) is IoT Hub's "never", 0001-01-01T00:00:00Z.
import { createHash, randomUUID } from 'node:crypto';
import { DpsError } from './dps-errors.js';
import { type EmulatedIotHubs, IotHubError } from './iothub-service.js';
import { type TwinView, twinEtag } from './iothub-twins.js';
import type { HubDevice } from './model-types.js';
import { ServiceErrorCodes, type ServiceResponse } from './service-http.js';

/** Changes whenever what Registry.update may change (status, keys) changes. */
export function deviceEtag(device: HubDevice): string {
  const state = JSON.stringify([device.deviceId, device.status ?? 'enabled', device.authentication, device.createdDateTimeUtc]);
  return createHash('sha256').update(state).digest('base64').slice(0, 12);
}

/** IoT Hub's Device: the identity, its keys, its connection state. */
export function identity(hubs: EmulatedIotHubs, hub: string, device: HubDevice): Record<string, unknown> {
  const connected = hubs.connected(hub, device.deviceId);
  return {
    deviceId: device.deviceId,
    generationId: createHash('sha256').update(`${device.deviceId}\n${device.createdDateTimeUtc}`).digest('hex').slice(0, 18),
    etag: deviceEtag(device),
    connectionState: connected ? 'Connected' : 'Disconnected',
    status: device.status ?? 'enabled',
    statusReason: null,
    connectionStateUpdatedTime: NEVER,
    statusUpdatedTime: device.lastUpdatedDateTimeUtc,
    lastActivityTime: NEVER,
    cloudToDeviceMessageCount: 0,
    authentication: authenticationOf(device),
    capabilities: { iotEdge: false },
  };
}

/** IoT Hub's Twin: the identity's read-only properties, the tags and both property sections. */
export function twin(hubs: EmulatedIotHubs, hub: string, device: HubDevice): Record<string, unknown> {
  const view: TwinView = hubs.twin(hub, device.deviceId)!;
  return {
    deviceId: device.deviceId,
    etag: twinEtag(view),
    deviceEtag: deviceEtag(device),
    status: view.status,
    statusUpdateTime: device.lastUpdatedDateTimeUtc,
    connectionState: hubs.connected(hub, device.deviceId) ? 'Connected' : 'Disconnected',
    lastActivityTime: NEVER,
    cloudToDeviceMessageCount: 0,
    authenticationType: 'sas',
    x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    capabilities: { iotEdge: false },
    tags: view.tags,
    properties: view.properties,
  };
}

/** IoT Hub's "never" timestamp. */
const NEVER = '0001-01-01T00:00:00Z';

/** A refusal in IoT Hub's terms: the status and the ErrorCode name azure-iothub switches on. */
export class HubRestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HubRestError';
  }
}

/** The shared pieces (hub-routes.ts, the model, the body reader) refuse with DpsErrors and IotHubErrors: named here as IoT Hub names them. */
function hubRestError(error: unknown): HubRestError {
  if (error instanceof HubRestError) return error;
  if (error instanceof IotHubError) error = new DpsError(error.status, error.status * 1000, error.message);
  if (!(error instanceof DpsError)) return new HubRestError(500, 'ServerError', 'Internal error in the emulator');
  const code =
    error.errorCode === 404103
      ? 'DeviceNotOnline'
      : error.errorCode === ServiceErrorCodes.tooLarge
        ? 'MessageTooLarge'
        : ((
            {
              400: 'ArgumentInvalid',
              401: 'IotHubUnauthorizedAccess',
              404: 'DeviceNotFound',
              409: 'DeviceAlreadyExists',
              412: 'PreconditionFailed',
              504: 'GatewayTimeout',
            } as Record<number, string>
          )[error.status] ?? 'ServerError');
  return new HubRestError(error.status, code, error.message);
}

export function errorResponse(error: unknown, now: Date): ServiceResponse {
  const refusal = hubRestError(error);
  // parseErrorBody takes the name before the first ';' and the text up to the next: keep ';' out of the text.
  const text = refusal.message.replace(/;/g, ',');
  const iso = now.toISOString();
  const stamp = `${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(0, 4)} ${iso.slice(11, 19)}`;
  return {
    status: refusal.status,
    headers: { 'iothub-errorcode': refusal.code },
    body: {
      Message: `ErrorCode:${refusal.code};${text}`,
      ExceptionMessage: `Tracking ID:${randomUUID().replace(/-/g, '')}-G:0-TimeStamp:${stamp}`,
    },
  };
}

/** IoT Hub's AuthenticationMechanism for an identity: SAS keys, or the X.509 thumbprints (selfSigned), or none (certificateAuthority). */
function authenticationOf(device: HubDevice): Record<string, unknown> {
  const auth = device.authentication;
  return {
    symmetricKey: auth.type === 'sas' ? { ...auth.symmetricKey } : { primaryKey: null, secondaryKey: null },
    x509Thumbprint:
      auth.type === 'selfSigned'
        ? { primaryThumbprint: auth.x509Thumbprint.primaryThumbprint, secondaryThumbprint: auth.x509Thumbprint.secondaryThumbprint ?? null }
        : { primaryThumbprint: null, secondaryThumbprint: null },
    type: auth.type,
  };
}

// The emulator's service endpoint: HTTPS with the same server certificate as the device
// endpoint, serving the DPS service API (service-routes.ts) and the management API
// (service-management.ts, with the emulated hubs' own service API in hub-routes.ts), both behind
// DPS's service SAS (service-auth.ts). A request whose Host header names an emulated hub gets
// that hub's service REST API instead, behind the hub's own policies (iothub-rest.ts), as
// <hub>.azure-devices.net:443 answers it; a TLS server name naming a hub gets its certificate.
//
// Clients reach it through a connection string
//   HostName=<host>:<port>;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=<key>
// and sign tokens for sr=<host>:<port> (the bare host is accepted too). Every request is
// answered: unknown paths 404, wrong methods 405, bad JSON 400, a bug 500; the server never
// stops for a client's mistake.
import { createServer, type Server } from 'node:https';
import { isIP } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { DpsError, ErrorCodes } from './dps-errors.js';
import type { DeviceEventLog } from './event-log.js';
import { eventRoute, isEventCollection } from './event-routes.js';
import { applyLimits, type HttpLimits, httpLimits, serverOptions } from './http-limits.js';
import { hubNamedBy, serveIotHubRest } from './iothub-rest.js';
import type { EmulatedIotHubs } from './iothub-service.js';
import { isWildcard, listen } from './listen-address.js';
import type { DpsModel } from './model.js';
import { authorizeServiceRequest, type ServicePolicy } from './service-auth.js';
import {
  type ErrorShape,
  errorResponse,
  type RequestSource,
  readRequest,
  ServiceErrorCodes,
  type ServiceResponse,
  send,
} from './service-http.js';
import { isManagementCollection, managementRoute } from './service-management.js';
import { isServiceCollection, serviceRoute } from './service-routes.js';

export interface ServiceApiOptions {
  model: DpsModel;
  idScope: string;
  policy: ServicePolicy;
  /** PEM server certificate (leaf) and key: the device endpoint's. */
  cert: string;
  key: string;
  /** Listening address and port (0: ephemeral). */
  host: string;
  port: number;
  /** The name clients use for this host (for the connection string); default `host`, or localhost for a wildcard. */
  clientHost?: string;
  /** host:port devices use, shown as deviceProvisioningHostName. */
  deviceProvisioningHostName: string;
  /** The emulated IoT hubs' service side (twins, devices, methods, C2D, telemetry under /hubs/{host}/). */
  hubs: EmulatedIotHubs;
  /** Deadlines and the connection cap (http-limits.ts); default DEFAULT_HTTP_LIMITS. */
  limits?: Partial<HttpLimits>;
  /** Certificates by TLS server name: each emulated hub's own (iothub-sni.ts). */
  SNICallback?: TlsOptions['SNICallback'];
  /** The device event log, served as GET /events and GET /metrics (event-routes.ts). */
  events?: DeviceEventLog;
  /** Unix milliseconds; for tests. */
  now?: () => number;
}

export interface ServiceApi {
  host: string;
  port: number;
  /** `<host>:<port>` as it appears in the connection string (IPv6 in brackets). */
  hostName: string;
  /**
   * A request made in-process, answered by the same authorization and routes as one over HTTPS
   * (the web console's way in): `path` with its query, e.g. '/enrollmentGroups/g1?api-version=2021-10-01'.
   */
  call(request: ServiceCall): Promise<ServiceResponse>;
  close(): Promise<void>;
}

export interface ServiceCall {
  method: string;
  path: string;
  /** Authorization (a SharedAccessSignature, as over HTTPS), If-Match, x-ms-continuation... */
  headers?: Record<string, string>;
  /** Sent as JSON. */
  body?: unknown;
}

export async function startServiceApi(options: ServiceApiOptions): Promise<ServiceApi> {
  const now = options.now ?? Date.now;
  const clientHost = options.clientHost ?? (isWildcard(options.host) ? 'localhost' : options.host);
  let hostName = '';
  const limits = httpLimits(options.limits);

  /** One request of the DPS service and management APIs, from the network or in-process (call). */
  const handle = async (req: RequestSource): Promise<ServiceResponse> => {
    const first = new URL(req.url ?? '/', 'https://emulator.invalid').pathname.split('/').find((s) => s !== '');
    const shape: ErrorShape = isManagementCollection(first) ? 'arm' : 'dps';
    try {
      const auth = authorizeServiceRequest(
        typeof req.headers.authorization === 'string' ? req.headers.authorization : undefined,
        options.policy,
        [hostName, clientHost, bare(clientHost)],
        Math.floor(now() / 1000),
      );
      if (!auth.ok) throw new DpsError(401, ErrorCodes.unauthorized, auth.message);
      const request = await readRequest(req);
      const collection = request.segments[0];
      if (isServiceCollection(collection)) return serviceRoute(options.model, request);
      if (isManagementCollection(collection)) {
        return await managementRoute(
          {
            model: options.model,
            idScope: options.idScope,
            serviceOperationsHostName: hostName,
            deviceProvisioningHostName: options.deviceProvisioningHostName,
            hubs: options.hubs,
          },
          request,
        );
      }
      if (options.events && isEventCollection(collection)) return await eventRoute(options.events, request);
      throw new DpsError(404, ServiceErrorCodes.noRoute, `No such resource: /${request.segments.join('/').slice(0, 200)}`);
    } catch (error) {
      return errorResponse(error, shape, new Date(now()));
    }
  };

  const server: Server = createServer(
    {
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      ...serverOptions(limits),
      ...(options.SNICallback && { SNICallback: options.SNICallback }),
    },
    (req, res) => {
      // (A hub named like the service's own host, say 'localhost', does not take the DPS service API over.)
      const hub = hubNamedBy(req.headers.host, options.model);
      if (hub !== undefined && hub.hostName.toLowerCase() !== bare(clientHost).toLowerCase()) {
        void serveIotHubRest({ model: options.model, hubs: options.hubs, now }, hub, req).then((response) => send(res, response));
        return;
      }
      void handle(req).then((response) => send(res, response));
    },
  );
  server.on('tlsClientError', () => {
    // a client that does not trust the CA, or speaks something else: node:tls closed it
  });
  applyLimits(server, limits, { now });
  const listening = await listen(server, options.port, options.host);
  const port = listening.port;
  hostName = `${isIP(clientHost) === 6 ? `[${clientHost}]` : clientHost}:${port}`;

  return {
    host: options.host,
    port,
    hostName,
    call(request) {
      const body = request.body === undefined ? [] : [Buffer.from(JSON.stringify(request.body))];
      return handle({
        method: request.method,
        url: request.path,
        headers: { host: hostName, ...lowerCased(request.headers ?? {}) },
        async *[Symbol.asyncIterator]() {
          yield* body;
        },
      });
    },
    close: listening.close,
  };
}

function lowerCased(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function bare(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1');
}

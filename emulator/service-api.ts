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
import type { AddressInfo, Socket } from 'node:net';
import { isIP } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { DpsError, ErrorCodes } from './dps-errors.js';
import { applyLimits, type HttpLimits, httpLimits, serverOptions } from './http-limits.js';
import { hubNamedBy, serveIotHubRest } from './iothub-rest.js';
import type { EmulatedIotHubs } from './iothub-service.js';
import { isWildcard } from './listen-address.js';
import type { DpsModel } from './model.js';
import { authorizeServiceRequest, type ServicePolicy } from './service-auth.js';
import { type ErrorShape, errorResponse, readRequest, ServiceErrorCodes, type ServiceResponse, send } from './service-http.js';
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
  /** Unix milliseconds; for tests. */
  now?: () => number;
}

export interface ServiceApi {
  host: string;
  port: number;
  /** `<host>:<port>` as it appears in the connection string (IPv6 in brackets). */
  hostName: string;
  close(): Promise<void>;
}

export async function startServiceApi(options: ServiceApiOptions): Promise<ServiceApi> {
  const now = options.now ?? Date.now;
  const clientHost = options.clientHost ?? (isWildcard(options.host) ? 'localhost' : options.host);
  let hostName = '';
  const connections = new Set<Socket>();
  const limits = httpLimits(options.limits);

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
      const first = new URL(req.url ?? '/', 'https://emulator.invalid').pathname.split('/').find((s) => s !== '');
      const shape: ErrorShape = isManagementCollection(first) ? 'arm' : 'dps';
      const respond = (response: ServiceResponse): void => send(res, response);
      void (async () => {
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
          if (isServiceCollection(collection)) {
            respond(serviceRoute(options.model, request));
          } else if (isManagementCollection(collection)) {
            respond(
              await managementRoute(
                {
                  model: options.model,
                  idScope: options.idScope,
                  serviceOperationsHostName: hostName,
                  deviceProvisioningHostName: options.deviceProvisioningHostName,
                  hubs: options.hubs,
                },
                request,
              ),
            );
          } else {
            throw new DpsError(404, ServiceErrorCodes.noRoute, `No such resource: /${request.segments.join('/').slice(0, 200)}`);
          }
        } catch (error) {
          respond(errorResponse(error, shape, new Date(now())));
        }
      })();
    },
  );
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  server.on('tlsClientError', () => {
    // a client that does not trust the CA, or speaks something else: node:tls closed it
  });
  applyLimits(server, limits, { now });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  hostName = `${isIP(clientHost) === 6 ? `[${clientHost}]` : clientHost}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    hostName,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      });
      return closing;
    },
  };
}

function bare(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1');
}

// DPS's HTTPS device API (the runtime "Device Registration" REST API), beside the MQTT endpoint:
// what azure-iot-provisioning-device-http, the C SDK's HTTP transport and
// `az iot device registration create` speak.
//
//   PUT /{idScope}/registrations/{registrationId}/register?api-version=...         body {"registrationId", "payload"?}
//   GET /{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=...
//   Authorization: SharedAccessSignature sr=<idScope>/registrations/<registrationId>&sig=..&se=..&skn=registration
//
// Every request is checked by auth.ts (authenticateRegistration, the MQTT endpoint's CONNECT
// check) and answered by the same RegistrationService as MQTT, so both transports give the same
// answers: 202 {"operationId","status":"assigning"} with a retry-after header, then 200 with the
// registration state; the same 400, 401 and 404 bodies. Path segments are URL-decoded (the C SDK
// encodes them); any api-version is accepted, as over MQTT, but one must be given.
//
// Refusals, each in DPS's error shape {"errorCode","trackingId","message","timestampUtc"}: an
// unknown path 404, a known path with another method 405 (with Allow), a missing api-version or
// bad path encoding 400, no valid SAS token 401 (the reason goes nowhere: as CONNACK 5, it tells
// nobody which check failed; an X.509 device without the header is told its certificate was not
// accepted), a body over `maxBodyBytes` 413 (the connection is then closed),
// headers or a whole request slower than `headersTimeoutMs` / `requestTimeoutMs` 408 and closed,
// oversized headers 431, bytes that are not HTTP 400. A bug of ours is a 500; nothing a client
// sends stops the server.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { Duplex } from 'node:stream';
import type { SecureContext, TLSSocket } from 'node:tls';
import { authenticateRegistration } from './auth.js';
import type { EndpointEvent } from './device-endpoint.js';
import { DpsError, ErrorCodes, errorBody } from './dps-errors.js';
import { BodyTooLargeError, readBoundedBody } from './http-body.js';
import { applyLimits, type HttpLimits, httpLimits, serverOptions } from './http-limits.js';
import { listen } from './listen-address.js';
import type { DpsModel } from './model.js';
import type { RegistrationAnswer, RegistrationService } from './registrations.js';
import { errorResponse, ServiceErrorCodes, type ServiceResponse, send } from './service-http.js';
import { peerCertificates } from './x509.js';

export interface DeviceHttpsOptions {
  idScope: string;
  model: DpsModel;
  /** The registration flow, shared with the MQTT endpoint. */
  service: RegistrationService;
  /** PEM server certificate chain and key: the MQTT endpoint's. */
  cert: string;
  key: string;
  host: string;
  /** 0 for an ephemeral port. DPS itself listens on 443. */
  port: number;
  /** Largest request body; default 64 KiB (the MQTT endpoint's packet limit). */
  maxBodyBytes?: number;
  /** From the first byte of a request to the end of its headers; default 10 s. */
  headersTimeoutMs?: number;
  /** From the first byte of a request to the end of its body; default 30 s. */
  requestTimeoutMs?: number;
  /** TLS handshake deadline; default 10 s. */
  handshakeTimeoutMs?: number;
  /** The other bounds (idle connections, the connection cap): http-limits.ts. */
  limits?: Partial<HttpLimits>;
  onEvent?: (event: EndpointEvent) => void;
  now?: () => number;
  /** HTTP upgrades (MQTT over WebSockets: websocket.ts); without it an upgrade request is answered as any request. */
  onUpgrade?: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** A certificate by TLS server name (the emulated hubs' names: iothub-sni.ts), for the hubs' WebSocket clients. */
  SNICallback?: (servername: string, callback: (error: Error | null, context?: SecureContext) => void) => void;
}

export interface DeviceHttpsEndpoint {
  host: string;
  port: number;
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

type Route =
  | { type: 'register'; idScope: string; registrationId: string }
  | { type: 'poll'; idScope: string; registrationId: string; operationId: string };

const METHODS: Record<Route['type'], string> = { register: 'PUT', poll: 'GET' };

/** Bodies past the limit are read (and dropped) up to this multiple, so the client gets its 413 rather than a reset. */
const DRAIN_FACTOR = 4;

export async function startDeviceHttpsEndpoint(options: DeviceHttpsOptions): Promise<DeviceHttpsEndpoint> {
  const now = options.now ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const limits = httpLimits({
    ...options.limits,
    ...(options.headersTimeoutMs !== undefined && { headersTimeoutMs: options.headersTimeoutMs }),
    ...(options.requestTimeoutMs !== undefined && { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.handshakeTimeoutMs !== undefined && { handshakeTimeoutMs: options.handshakeTimeoutMs }),
  });
  const emit = (event: EndpointEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // a listener's bug is not the device's problem
    }
  };
  const server: Server = createServer(
    {
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      // Asked, not required: an X.509 device presents its certificate instead of a SAS token.
      requestCert: true,
      rejectUnauthorized: false,
      ...(options.SNICallback && { SNICallback: options.SNICallback }),
      ...serverOptions(limits),
    },
    (req, res) => void handle(req, res),
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const body = await readBody(req, maxBodyBytes);
      const at = new Date(now());
      const url = new URL(req.url ?? '/', 'https://emulator.invalid');
      const route = parseRoute(url.pathname);
      if (req.method !== METHODS[route.type]) {
        const allowed = METHODS[route.type];
        reply(req, res, {
          ...errorResponse(
            new DpsError(405, ServiceErrorCodes.methodNotAllowed, `${clip(req.method ?? '')} is not supported here; use ${allowed}`),
            'dps',
            at,
          ),
          headers: { allow: allowed },
        });
        return;
      }
      if (!url.searchParams.get('api-version')) {
        throw new DpsError(400, ServiceErrorCodes.apiVersion, 'The request has no api-version query parameter');
      }
      const authorization = typeof req.headers.authorization === 'string' ? req.headers.authorization : '';
      const peer = peerCertificates(req.socket as TLSSocket);
      const auth = authenticateRegistration(options.model, options.idScope, route, authorization, Math.floor(at.getTime() / 1000), peer);
      if (!auth.ok) {
        emit({ type: 'request', registrationId: route.registrationId, request: route.type, status: 401 });
        // Which check failed goes nowhere (as CONNACK 5); what the device relied on is named.
        throw new DpsError(
          401,
          ErrorCodes.unauthorized,
          authorization === '' && peer
            ? "Unauthorized: the client certificate is not accepted for this registration (its CN must be the registration ID, it must be valid now, and be an individual enrollment's by thumbprint or issued by a verified CA of an X.509 enrollment group)"
            : 'Unauthorized: the Authorization header holds no valid SAS token for this registration (check the device key, the ID scope and the device clock)',
        );
      }
      let response: RegistrationAnswer;
      try {
        response =
          route.type === 'register'
            ? options.service.register(auth.attestation, body)
            : options.service.poll(auth.attestation, route.operationId);
      } catch (error) {
        if (!(error instanceof DpsError)) throw error;
        response = { status: error.status, body: errorBody(error.errorCode, error.message, at) };
      }
      emit({ type: 'request', registrationId: auth.attestation.registrationId, request: route.type, status: response.status });
      reply(req, res, {
        status: response.status,
        body: response.body,
        ...(response.retryAfterSeconds !== undefined ? { headers: { 'retry-after': String(response.retryAfterSeconds) } } : {}),
      });
    } catch (error) {
      reply(req, res, errorResponse(error, 'dps', new Date(now())));
    }
  }

  /**
   * Answer unless the connection is gone (a timeout may have closed it while the body was read).
   * An answer given before the whole body was read (a 413 for a body declared far too large) ends
   * the connection: the rest is not worth reading.
   */
  function reply(req: IncomingMessage, res: ServerResponse, response: ServiceResponse): void {
    if (req.socket.destroyed) return;
    send(res, req.complete ? response : { ...response, headers: { ...response.headers, connection: 'close' } });
  }

  // A request Node could not parse or that timed out: answered in DPS's shape (http-limits.ts).
  applyLimits(server, limits, { now });
  server.on('tlsClientError', () => {
    // a client that does not trust the CA, or speaks something else: node:tls closed it
  });
  if (options.onUpgrade) server.on('upgrade', options.onUpgrade);
  const listening = await listen(server, options.port, options.host);
  return { host: options.host, port: listening.port, close: listening.close };
}

/** '/{idScope}/registrations/{registrationId}/register' or '.../operations/{operationId}'; anything else is a 404. */
export function parseRoute(pathname: string): Route {
  const raw = pathname.split('/').slice(1);
  const notFound = (): DpsError =>
    new DpsError(
      404,
      ServiceErrorCodes.noRoute,
      `No such resource: ${clip(pathname)} (DPS's device API has /{idScope}/registrations/{registrationId}/register and .../operations/{operationId})`,
    );
  if (raw.length < 4 || raw[1] !== 'registrations' || raw.some((s) => s === '')) throw notFound();
  let segments: string[];
  try {
    segments = raw.map((s) => decodeURIComponent(s));
  } catch {
    throw new DpsError(400, ErrorCodes.badRequest, 'The request path is not valid URL encoding');
  }
  const [idScope, , registrationId, action, operationId] = segments as [string, string, string, string, string | undefined];
  if (segments.length === 4 && action === 'register') return { type: 'register', idScope, registrationId };
  if (segments.length === 5 && raw[3] === 'operations' && operationId) return { type: 'poll', idScope, registrationId, operationId };
  throw notFound();
}

/**
 * The body, at most `limit` bytes. A larger one is a 413, answered once the body has been read
 * (and dropped) so the client sees it rather than a reset; one declared or sent past DRAIN_FACTOR
 * times the limit is answered at once (declared) or cut off (sent).
 */
async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const tooLarge = (): DpsError => new DpsError(413, ServiceErrorCodes.tooLarge, `The request body exceeds ${limit} bytes`);
  const declared = Number(req.headers['content-length']);
  if (declared > DRAIN_FACTOR * limit) throw tooLarge();
  try {
    return await readBoundedBody(req, limit, { drainBytes: DRAIN_FACTOR * limit });
  } catch (error) {
    throw error instanceof BodyTooLargeError ? tooLarge() : error;
  }
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

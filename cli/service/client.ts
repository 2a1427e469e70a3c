// A small client for the DPS service API and the emulator's management API, for the CLI's
// `dps` and `hub` commands. It signs each request with the service SAS (src/sas.ts), as
// Microsoft's service SDK does: sr = the connection string's HostName, skn = its key name.
// Every failure is a ProvisioningError of the kind the CLI's exit codes know; no message
// repeats the key or the token.
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { splitConnectionString } from '../../emulator/connection-string.js';
import { BodyTooLargeError, readBoundedBody } from '../../emulator/http-body.js';
import { isNestedDeeper, MAX_JSON_DEPTH } from '../../src/dps/messages.js';
import { type ErrorKind, ProvisioningError } from '../../src/errors.js';
import { buildSasToken } from '../../src/sas.js';

export const SERVICE_API_VERSION = '2021-10-01';
const TOKEN_TTL_SECONDS = 3600;
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/**
 * Deeper replies are refused before parsing: printing them (JSON.stringify recurses) would
 * overflow the stack. Twice the core's bound, so that a list of enrollments each as deep as the
 * emulator accepts (MAX_JSON_DEPTH) still passes.
 */
const MAX_REPLY_DEPTH = 2 * MAX_JSON_DEPTH;

export interface ServiceConnection {
  /** The connection string's HostName, exactly: what tokens are signed for. */
  hostName: string;
  host: string;
  port: number;
  keyName: string;
  key: string;
}

/** Parse 'HostName=<host>[:port];SharedAccessKeyName=<name>;SharedAccessKey=<key>' without echoing it. */
export function parseServiceConnectionString(text: string): ServiceConnection {
  const fields = splitConnectionString(text);
  if ('problem' in fields) throw invalid(`the service connection string ${fields.problem}`);
  const { hostName, sharedAccessKeyName: keyName, sharedAccessKey: key } = fields;
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(hostName);
  if (!match) throw invalid('the HostName of the service connection string is not host[:port]');
  const host = match[1]!.replace(/^\[(.*)\]$/, '$1');
  const port = match[2] === undefined ? 443 : Number(match[2]);
  if (port < 1 || port > 65535) throw invalid('the port in the service connection string must be from 1 to 65535');
  return { hostName, host, port, keyName, key };
}

export interface RequestOptions {
  body?: unknown;
  /** Query parameters; api-version is added for the service API's paths. */
  query?: Record<string, string>;
  headers?: Record<string, string>;
}

export interface ServiceReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export class DpsServiceClient {
  readonly #connection: ServiceConnection;
  readonly #ca: string[] | undefined;
  readonly #timeoutMs: number;
  readonly #now: () => number;

  constructor(connection: ServiceConnection, options: { ca?: string; timeoutMs?: number; now?: () => number } = {}) {
    this.#connection = connection;
    this.#ca = options.ca ? [...rootCertificates, options.ca] : undefined;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#now = options.now ?? Date.now;
  }

  /** One request; a 2xx reply is returned, anything else thrown as a ProvisioningError. */
  async call(method: string, path: string, options: RequestOptions = {}): Promise<ServiceReply> {
    const reply = await this.#send(method, path, options);
    if (reply.status >= 200 && reply.status < 300) return reply;
    throw replyError(reply);
  }

  #send(method: string, path: string, options: RequestOptions): Promise<ServiceReply> {
    const { host, port, hostName, keyName, key } = this.#connection;
    const query = new URLSearchParams(options.query ?? {});
    if (/^\/(enrollments|enrollmentGroups|registrations)\b/i.test(path)) query.set('api-version', SERVICE_API_VERSION);
    let authorization: string;
    try {
      authorization = buildSasToken({ resource: hostName, key, keyName, expiry: Math.floor(this.#now() / 1000) + TOKEN_TTL_SECONDS });
    } catch (error) {
      throw invalid(`the SharedAccessKey of the service connection string is not usable: ${(error as Error).message}`);
    }
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string | number> = { authorization, accept: 'application/json', ...(options.headers ?? {}) };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json; charset=utf-8';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const where = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
    return new Promise((resolve, reject) => {
      // One deadline for the whole request (connection, TLS, headers, body): a socket idle timeout
      // never fires for a server that trickles its answer a byte at a time. The first failure
      // settles the promise; what the destroyed request reports afterwards is ignored.
      const fail = (error: ProvisioningError): void => {
        clearTimeout(deadline);
        reject(error);
        req.destroy();
      };
      const deadline = setTimeout(
        () => fail(new ProvisioningError('network', `no complete answer from ${where} within ${this.#timeoutMs / 1000} s (--timeout)`)),
        this.#timeoutMs,
      );
      const req = httpsRequest(
        {
          host,
          port,
          method,
          path: `${path}${query.toString() ? `?${query.toString()}` : ''}`,
          headers,
          agent: false,
          servername: isIP(host) ? '' : host,
          ...(this.#ca ? { ca: this.#ca } : {}),
        },
        (res) => {
          readBoundedBody(res, MAX_RESPONSE_BYTES).then(
            (bytes) => {
              clearTimeout(deadline);
              const status = res.statusCode ?? 0;
              const text = bytes.toString('utf8');
              let body: unknown;
              if (isNestedDeeper(text, MAX_REPLY_DEPTH)) {
                reject(
                  new ProvisioningError('protocol', `${where} answered ${status} with JSON nested deeper than ${MAX_REPLY_DEPTH} levels`, {
                    status,
                  }),
                );
                return;
              }
              if (text.trim() !== '') {
                try {
                  body = JSON.parse(text);
                } catch {
                  reject(new ProvisioningError('protocol', `${where} answered ${status} with a body that is not JSON`, { status }));
                  return;
                }
              }
              resolve({ status, headers: res.headers, body });
            },
            (error: Error) =>
              fail(
                error instanceof BodyTooLargeError
                  ? new ProvisioningError('protocol', `the reply from ${where} is larger than ${MAX_RESPONSE_BYTES} bytes`)
                  : connectError(error, where),
              ),
          );
        },
      );
      req.on('error', (error) => fail(error instanceof ProvisioningError ? error : connectError(error, where)));
      req.end(payload);
    });
  }
}

/** DPS's {errorCode, trackingId, message} or ARM's {error: {code, message, errorCode, trackingId}} → the CLI's error kinds. */
export function replyError(reply: ServiceReply): ProvisioningError {
  const body = (typeof reply.body === 'object' && reply.body !== null ? reply.body : {}) as Record<string, unknown>;
  const inner = (typeof body.error === 'object' && body.error !== null ? body.error : body) as Record<string, unknown>;
  const message = typeof inner.message === 'string' ? inner.message : `the service answered ${reply.status}`;
  const errorCode = typeof inner.errorCode === 'number' ? inner.errorCode : undefined;
  const trackingId = typeof inner.trackingId === 'string' ? inner.trackingId : undefined;
  const kind: ErrorKind =
    reply.status === 400 || reply.status === 413
      ? 'invalid-input'
      : reply.status === 401 || reply.status === 403
        ? 'unauthorized'
        : reply.status === 429
          ? 'throttled'
          : reply.status >= 500
            ? 'server'
            : 'failed';
  return new ProvisioningError(kind, message, {
    status: reply.status,
    ...(errorCode !== undefined && { errorCode }),
    ...(trackingId !== undefined && { trackingId }),
  });
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL|EPROTO|HOSTNAME_MISMATCH/;

function connectError(error: Error, where: string): ProvisioningError {
  const code = String((error as { code?: unknown }).code ?? '');
  if (TLS_CODES.test(code)) {
    return new ProvisioningError(
      'tls',
      `the TLS connection to ${where} failed (${code}): the server certificate is not trusted or names another host. ` +
        'For the local emulator, pass its CA with --ca <pem>.',
      { cause: error },
    );
  }
  return new ProvisioningError('network', `cannot reach ${where}: ${error.message}`, { cause: error });
}

function invalid(message: string): ProvisioningError {
  return new ProvisioningError('invalid-input', message);
}

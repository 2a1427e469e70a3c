// How the console reaches the emulator: through the service API only, in-process (the same
// authorization and routes as a request over HTTPS, service-api.ts `call`), each request signed
// with the service SAS as the CLI signs it, with the key this session holds (the key given at
// sign-in, or on loopback the emulator's own). No page reads or changes the model another way.
import { buildSasToken } from '../../src/sas.js';
import type { ServiceCall } from '../service-api.js';
import { SERVICE_KEY_NAME } from '../service-auth.js';
import type { ServiceResponse } from '../service-http.js';
import { SERVICE_API_VERSION } from '../service-routes.js';

const TOKEN_TTL_SECONDS = 300;

/** A refusal of the service API: its status, DPS errorCode and message. */
export class ServiceFailure extends Error {
  override readonly name = 'ServiceFailure';
  constructor(
    readonly status: number,
    readonly errorCode: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

export type ServiceCaller = (request: ServiceCall) => Promise<ServiceResponse>;

export class ConsoleService {
  constructor(
    private readonly caller: ServiceCaller,
    /** What tokens are signed for: the connection string's HostName. */
    private readonly hostName: string,
    /** The provisioningserviceowner key this session signs with: a secret, never rendered. */
    private readonly key: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The answer as it is, whatever its status. */
  request(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}): Promise<ServiceResponse> {
    const authorization = buildSasToken({
      resource: this.hostName,
      key: this.key,
      keyName: SERVICE_KEY_NAME,
      expiry: Math.floor(this.now() / 1000) + TOKEN_TTL_SECONDS,
    });
    return this.caller({
      method,
      path,
      headers: { authorization, ...(options.headers ?? {}) },
      ...(options.body !== undefined && { body: options.body }),
    });
  }

  /** The body of a 2xx answer; a ServiceFailure with the service's message otherwise. */
  async json<T>(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
    const response = await this.request(method, path, options);
    if (response.status >= 400) throw failure(response);
    return response.body as T;
  }

  /** Every item of a query (POST <path> {"query": "*"}), page by page. */
  async query<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    let continuation: string | undefined;
    do {
      const response = await this.request('POST', withVersion(path), {
        body: { query: '*' },
        headers: { 'x-ms-max-item-count': '100', ...(continuation ? { 'x-ms-continuation': continuation } : {}) },
      });
      if (response.status >= 400) throw failure(response);
      items.push(...(response.body as T[]));
      continuation = response.headers?.['x-ms-continuation'];
    } while (continuation);
    return items;
  }
}

/** A service path with the DPS service API's api-version. */
export function withVersion(path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}api-version=${SERVICE_API_VERSION}`;
}

function failure(response: ServiceResponse): ServiceFailure {
  const body = response.body as { message?: unknown; errorCode?: unknown; error?: { message?: unknown; errorCode?: unknown } } | undefined;
  const message = body?.message ?? body?.error?.message;
  const errorCode = body?.errorCode ?? body?.error?.errorCode;
  return new ServiceFailure(
    response.status,
    typeof errorCode === 'number' ? errorCode : undefined,
    typeof message === 'string' ? message : `The service API answered ${response.status}`,
  );
}

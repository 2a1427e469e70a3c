// What a console page is: a method and a path pattern, and a handler that reads the service API
// and answers with a page, a redirect (after a change, with a line for the next page), JSON (for
// the script) or a file; or streams the answer itself (the live page's events).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConsoleService } from './service.js';

/** What the overview shows besides the service API's resource: where things listen, the CA. */
export interface ConsoleInfo {
  /** host:port devices dial: the DPS device endpoint (MQTT), the hubs' endpoint, DPS's HTTPS device API. */
  deviceEndpoint: string;
  hubEndpoint: string;
  httpsEndpoint: string;
  /** https://host:port of the service API. */
  serviceUrl: string;
  caPem: string;
  caPath: string;
  /** The service connection string: a secret, shown only when asked for. */
  connectionString: string;
}

export interface RouteContext {
  service: ConsoleService;
  csrf: string;
  /** The posted form (empty for a GET). */
  form: URLSearchParams;
  query: URLSearchParams;
  info: ConsoleInfo;
  /** Whether this console requires a sign-in (then pages offer to sign out). */
  signedIn: boolean;
  flash?: { kind: 'ok' | 'error'; text: string };
  /** True once the console is closing: a stream ends. */
  isClosed(): boolean;
  req: IncomingMessage;
  res: ServerResponse;
}

export interface Reply {
  status?: number;
  html?: string;
  /** 303 to this path. */
  redirect?: string;
  /** Shown once on the next page (after a redirect). */
  flash?: { kind: 'ok' | 'error'; text: string };
  json?: unknown;
  file?: { name: string; type: string; body: string };
}

export interface Route {
  method: 'GET' | 'POST';
  /** Anchored; its groups are the URL-decoded parameters. */
  path: RegExp;
  handle(context: RouteContext, params: string[]): Promise<Reply | 'streamed'>;
}

/** The frame fields every page takes from its context. */
export function frame(context: RouteContext): { csrf: string; signedIn: boolean; flash?: { kind: 'ok' | 'error'; text: string } } {
  return { csrf: context.csrf, signedIn: context.signedIn, ...(context.flash && { flash: context.flash }) };
}

// The emulator's web console: HTTPS with the service API's certificate (the same CA), pages
// written on the server, forms that post and redirect (they work without the script; the
// script adds copy buttons, confirmations and the live page's stream). Every page reads and
// changes the emulator through the service API only (service.ts).
//
// Who may use it: on a loopback address, whoever reaches it (as the state directory's files
// are readable to whoever runs the emulator); on any other address, only a session signed in
// with the service connection string. Every POST carries the session's CSRF token (a form's
// _csrf or the script's x-csrf-token header) and, when the browser sends one, an Origin of this
// console; a Host header must name this machine as its certificate does (no DNS rebinding).
// The bounds of the other HTTPS servers apply (http-limits.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { isIP } from 'node:net';
import { splitConnectionString } from '../connection-string.js';
import { BodyTooLargeError, readBoundedBody } from '../http-body.js';
import { applyLimits, type HttpLimits, httpLimits, serverOptions } from '../http-limits.js';
import { listen } from '../listen-address.js';
import { SERVICE_KEY_NAME } from '../service-auth.js';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.js';
import { csrfField, field, html, page } from './html.js';
import { enrollmentRoutes } from './pages/enrollments.js';
import { hubRoutes } from './pages/hubs.js';
import { linkedHubRoutes } from './pages/linked-hubs.js';
import { liveRoutes } from './pages/live.js';
import { overviewRoutes } from './pages/overview.js';
import type { ConsoleInfo, Reply, Route, RouteContext } from './routes.js';
import { ConsoleService, type ServiceCaller } from './service.js';
import { clearedCookie, csrfMatches, type Session, Sessions, sessionCookie } from './session.js';

export type { ConsoleInfo } from './routes.js';

export interface ConsoleOptions {
  cert: string;
  key: string;
  host: string;
  /** 0: a free one. */
  port: number;
  /** The service API, in-process. */
  call: ServiceCaller;
  /** The service connection string's HostName (what tokens are signed for). */
  serviceHostName: string;
  /** The emulator's provisioningserviceowner key: sessions sign with it where no sign-in is required. */
  serviceKey: string;
  /** Whether a session must sign in with the service connection string (any host but loopback). */
  requireSignIn: boolean;
  /** The names a request's Host may give (the certificate's). */
  hostNames: string[];
  info: ConsoleInfo;
  limits?: Partial<HttpLimits>;
  now?: () => number;
}

export interface ConsoleServer {
  host: string;
  port: number;
  /** https://<host>:<port>/ as a browser on this machine opens it. */
  url: string;
  close(): Promise<void>;
}

const MAX_FORM_BYTES = 256 * 1024;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  // same-origin, not no-referrer: with no-referrer Chromium sends a form's Origin as null
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

export async function startConsole(options: ConsoleOptions): Promise<ConsoleServer> {
  const now = options.now ?? Date.now;
  const sessions = new Sessions(now);
  const limits = httpLimits(options.limits);
  const allowedHosts = new Set(options.hostNames.map((h) => h.toLowerCase()));
  const routes: Route[] = [...overviewRoutes, ...linkedHubRoutes, ...enrollmentRoutes, ...hubRoutes, ...liveRoutes];
  let closed = false;

  const server: Server = createServer(
    { cert: options.cert, key: options.key, minVersion: 'TLSv1.2', ...serverOptions(limits) },
    (req, res) => {
      void handle(req, res).catch(() => {
        if (!res.headersSent) reply(res, { status: 500, html: simplePage('Error', 'The console failed to answer this request.') });
        else res.destroy();
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://console.invalid');
    const method = (req.method ?? 'GET').toUpperCase();
    if (!allowedHosts.has(hostOf(req.headers.host))) {
      reply(res, { status: 421, html: simplePage('Unknown host', 'This console answers only to the names in its certificate.') });
      return;
    }
    if (method === 'GET' && url.pathname === '/assets/console.css') return asset(res, 'text/css', CONSOLE_CSS);
    if (method === 'GET' && url.pathname === '/assets/console.js') return asset(res, 'text/javascript', CONSOLE_JS);
    if (method !== 'GET' && method !== 'POST') {
      reply(res, { status: 405, html: simplePage('Method not allowed', `${method} is not used here.`) });
      return;
    }

    let session = sessions.fromCookie(req.headers.cookie);
    const cookies: string[] = [];
    if (!session) {
      session = sessions.create(options.requireSignIn ? undefined : options.serviceKey);
      cookies.push(sessionCookie(session));
    }

    let form = new URLSearchParams();
    if (method === 'POST') {
      try {
        form = new URLSearchParams((await readBoundedBody(req, MAX_FORM_BYTES)).toString('utf8'));
      } catch (error) {
        if (!(error instanceof BodyTooLargeError)) throw error;
        reply(res, { status: 413, html: simplePage('Too large', 'The form is larger than the console takes.') }, cookies);
        return;
      }
      const origin = req.headers.origin;
      const token = typeof req.headers['x-csrf-token'] === 'string' ? req.headers['x-csrf-token'] : (form.get('_csrf') ?? undefined);
      if ((origin !== undefined && origin !== `https://${req.headers.host}`) || !csrfMatches(session, token)) {
        reply(
          res,
          {
            status: 403,
            html: simplePage(
              'Request refused',
              'This request did not carry the security token of your session (a form from another site, or a page open since before a restart). Go back, reload the page, and try again.',
            ),
          },
          cookies,
        );
        return;
      }
    }

    if (url.pathname === '/login' || url.pathname === '/logout') {
      reply(res, await signIn(method, url.pathname, session, form, cookies), cookies);
      return;
    }
    if (session.key === undefined) {
      reply(res, { redirect: '/login' }, cookies);
      return;
    }

    const service = new ConsoleService(options.call, options.serviceHostName, session.key, now);
    const flash = session.flash;
    delete session.flash;
    const context: RouteContext = {
      service,
      csrf: session.csrf,
      form,
      query: url.searchParams,
      info: options.info,
      signedIn: options.requireSignIn,
      ...(flash && { flash }),
      isClosed: () => closed,
      req,
      res,
    };
    for (const route of routes) {
      if (route.method !== method) continue;
      const match = route.path.exec(url.pathname);
      if (!match) continue;
      const params = match.slice(1).map((p) => decodeURIComponent(p));
      const result = await route.handle(context, params);
      if (result === 'streamed') return;
      if (result.flash) session.flash = result.flash;
      reply(res, result, cookies);
      return;
    }
    reply(res, { status: 404, html: simplePage('Not found', 'There is no such page in the console.', session.csrf) }, cookies);
  }

  /** GET /login shows the form, POST /login checks the connection string with the service API, POST /logout ends the session. */
  async function signIn(method: string, path: string, session: Session, form: URLSearchParams, cookies: string[]): Promise<Reply> {
    if (path === '/logout') {
      if (method !== 'POST') return { redirect: '/' };
      sessions.end(session);
      cookies.push(clearedCookie());
      return { redirect: '/login' };
    }
    if (!options.requireSignIn) return { redirect: '/' };
    if (method === 'GET') return { html: loginPage(session.csrf) };
    const text = (form.get('connectionString') ?? '').trim();
    const fields = splitConnectionString(text);
    let error: string | undefined;
    if (text === '')
      error = 'Paste the service connection string (the emulator prints it; it is also in .dps-emulator/service-connection-string)';
    else if ('problem' in fields) error = `The connection string ${fields.problem}`;
    else {
      // The key is checked by the service API itself: a request signed with it must be accepted.
      const probe = new ConsoleService(options.call, options.serviceHostName, fields.sharedAccessKey, now);
      let status: number;
      try {
        status = (await probe.request('GET', '/resource')).status;
      } catch {
        status = 401; // a key that is not base64 cannot sign
      }
      if (fields.sharedAccessKeyName.toLowerCase() !== SERVICE_KEY_NAME || status !== 200) {
        error = "This is not this emulator's service connection string: its key is refused";
      }
    }
    if (error !== undefined || 'problem' in fields) return { status: 400, html: loginPage(session.csrf, error) };
    sessions.end(session);
    const signedIn = sessions.create(fields.sharedAccessKey);
    cookies.push(sessionCookie(signedIn));
    return { redirect: '/' };
  }

  server.on('tlsClientError', () => {});
  applyLimits(server, limits, { now });
  const listening = await listen(server, options.port, options.host);
  const port = listening.port;
  const shownHost = options.hostNames[0] ?? 'localhost';
  return {
    host: options.host,
    port,
    url: `https://${isIP(shownHost) === 6 ? `[${shownHost}]` : shownHost}:${port}/`,
    close() {
      closed = true;
      return listening.close();
    },
  };
}

function reply(res: ServerResponse, result: Reply, cookies: string[] = []): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | string[] | number> = { ...SECURITY_HEADERS };
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  if (result.redirect !== undefined) {
    res.writeHead(303, { ...headers, location: result.redirect, 'content-length': 0 });
    res.end();
    return;
  }
  let body = '';
  if (result.json !== undefined) {
    body = JSON.stringify(result.json);
    headers['content-type'] = 'application/json; charset=utf-8';
  } else if (result.file !== undefined) {
    body = result.file.body;
    headers['content-type'] = result.file.type;
    headers['content-disposition'] = `attachment; filename="${result.file.name}"`;
  } else {
    body = result.html ?? '';
    headers['content-type'] = 'text/html; charset=utf-8';
  }
  headers['content-length'] = Buffer.byteLength(body);
  res.writeHead(result.status ?? 200, headers);
  res.end(body);
}

function asset(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, {
    'content-type': `${type}; charset=utf-8`,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'max-age=300',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function simplePage(title: string, text: string, csrf = ''): string {
  return page({ title, csrf, body: html`<p>${text}</p><p><a href="/">Back to the overview</a></p>` });
}

function loginPage(csrf: string, error?: string): string {
  return page({
    title: 'Sign in',
    csrf: '',
    body: html`<p>This console listens on an address other machines can reach, so it asks for the emulator's service key.</p>
<form method="post" action="/login" class="card" novalidate>${csrfField(csrf)}${field({
      name: 'connectionString',
      label: 'Service connection string',
      type: 'password',
      autocomplete: 'off',
      required: true,
      error,
      hint: 'HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=… (printed by the emulator, kept in .dps-emulator/service-connection-string)',
    })}<button type="submit">Sign in</button></form>`,
  });
}

/** The host name of a Host header, lower case, without port or brackets. */
function hostOf(header: string | undefined): string {
  const text = (header ?? '').toLowerCase();
  if (text.startsWith('[')) return text.slice(1, text.indexOf(']'));
  const colon = text.lastIndexOf(':');
  return colon >= 0 && text.indexOf(':') === colon ? text.slice(0, colon) : text;
}

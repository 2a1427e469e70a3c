// The console's sessions: a random ID in a cookie (HttpOnly, Secure, SameSite=Strict, and the
// __Host- prefix so no other site or path can set it), kept in memory with the CSRF token every
// state-changing request must carry and, once signed in, the service key the session signs its
// service API requests with. On loopback a visitor gets a session without signing in; on any
// other address only a sign-in with the service connection string makes one that may call the
// service API.
import { randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = '__Host-dps-console';
/** A session ends this long after its last request. */
export const SESSION_IDLE_MS = 8 * 60 * 60 * 1000;
/** Sessions kept at most; the least recently used goes first. */
const MAX_SESSIONS = 1000;

export interface Session {
  id: string;
  /** Sent back in every form (_csrf) and by the script (x-csrf-token). */
  csrf: string;
  /** The provisioningserviceowner key this session signs with; undefined: not signed in. A secret. */
  key: string | undefined;
  /** A line to show once on the next page. */
  flash?: { kind: 'ok' | 'error'; text: string };
  lastUsed: number;
}

export class Sessions {
  readonly #sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  create(key: string | undefined): Session {
    const session: Session = { id: token(), csrf: token(), key, lastUsed: this.now() };
    this.#sessions.set(session.id, session);
    if (this.#sessions.size > MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    return session;
  }

  /** The session the request's cookie names, when it is current. */
  fromCookie(header: string | undefined): Session | undefined {
    const id = cookieValue(header, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    if (this.now() - session.lastUsed > SESSION_IDLE_MS) {
      this.#sessions.delete(id);
      return undefined;
    }
    session.lastUsed = this.now();
    this.#sessions.delete(id); // most recently used last
    this.#sessions.set(id, session);
    return session;
  }

  end(session: Session): void {
    this.#sessions.delete(session.id);
  }
}

export function sessionCookie(session: Session): string {
  return `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; Secure; SameSite=Strict`;
}

export function clearedCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`;
}

/** Whether `given` is the session's CSRF token (compared in constant time). */
export function csrfMatches(session: Session, given: string | undefined): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function token(): string {
  return randomBytes(32).toString('base64url');
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

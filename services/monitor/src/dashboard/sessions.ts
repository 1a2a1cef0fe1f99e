import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** What checks a key the dashboard is given: libs/grpc-kit's ApiKeyAuth (its `authenticate` takes the authorization value). */
export interface DashboardKeyCheck {
  authenticate(authorization: string): { id: string; role: string };
}

/** One signed-in browser: the key it gave, kept here only (the browser holds a random id). */
export interface Session {
  id: string;
  key: string;
  keyId: string;
  role: 'viewer' | 'admin';
  /** Sent back in the `x-jobmesh-csrf` header of every action. */
  csrf: string;
  expiresAt: number;
}

/** The session cookie's name. */
export const SESSION_COOKIE = 'jobmesh_session';
/** The header an action carries the session's CSRF token in. */
export const CSRF_HEADER = 'x-jobmesh-csrf';

/** Signed-in sessions at most; past it the oldest is dropped, so logins cannot fill the memory. */
const MAX_SESSIONS = 10_000;

/** Why a key cannot open the dashboard: 401 for a key not recognised, 403 for a role that may not. */
export class SignInError extends Error {
  constructor(
    readonly status: 401 | 403,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The dashboard's sessions, server-side: a random id (32 bytes, base64url) in an HttpOnly,
 * SameSite=Strict cookie maps to the key it was opened with, for `ttlMs`. Each request checks the
 * key again, so a key removed from the keys file ends its sessions at once.
 */
export class Sessions {
  private readonly byId = new Map<string, Session>();

  constructor(
    private readonly keys: DashboardKeyCheck,
    private readonly ttlMs: number,
    private readonly onEnd: (s: Session) => void = () => undefined,
  ) {}

  /** Opens a session for a viewer or admin key. */
  signIn(key: string): Session {
    let who: { id: string; role: string };
    try {
      who = this.keys.authenticate(`Bearer ${key.trim()}`);
    } catch (err) {
      throw new SignInError(401, (err as Error).message);
    }
    if (who.role !== 'viewer' && who.role !== 'admin') throw new SignInError(403, `API key "${who.id}" has role ${who.role}; the dashboard needs a viewer or admin key`);
    const now = Date.now();
    this.sweep(now);
    if (this.byId.size >= MAX_SESSIONS) this.end(this.byId.keys().next().value!);
    const s: Session = { id: token(), key: key.trim(), keyId: who.id, role: who.role, csrf: token(), expiresAt: now + this.ttlMs };
    this.byId.set(s.id, s);
    return s;
  }

  /** The request's session, if its cookie names one still valid whose key is still accepted. */
  of(req: IncomingMessage): Session | undefined {
    const id = cookie(req, SESSION_COOKIE);
    const s = id ? this.byId.get(id) : undefined;
    if (!s) return undefined;
    if (s.expiresAt <= Date.now()) {
      this.end(s.id);
      return undefined;
    }
    try {
      const who = this.keys.authenticate(`Bearer ${s.key}`);
      if (who.role !== s.role) throw new Error('role changed');
    } catch {
      this.end(s.id);
      return undefined;
    }
    return s;
  }

  /** Whether the request carries the session's CSRF token in its header (compared in constant time). */
  csrfOk(req: IncomingMessage, s: Session): boolean {
    const given = req.headers[CSRF_HEADER];
    if (typeof given !== 'string') return false;
    const a = Buffer.from(given);
    const b = Buffer.from(s.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  end(id: string): void {
    const s = this.byId.get(id);
    if (!s) return;
    this.byId.delete(id);
    this.onEnd(s);
  }

  close(): void {
    for (const id of [...this.byId.keys()]) this.end(id);
  }

  private sweep(now: number): void {
    for (const s of this.byId.values()) if (s.expiresAt <= now) this.end(s.id);
  }
}

/** The Set-Cookie value that opens (or, with maxAgeS 0, clears) a session cookie. */
export function sessionCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;
}

const token = (): string => randomBytes(32).toString('base64url');

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

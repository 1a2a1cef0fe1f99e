import { EventEmitter } from 'node:events';
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { type ApiKeyEntry, PermissionDeniedError, type Role, UnauthenticatedError, digestOf, secretMatches } from '@jobmesh/core';
import type { Logger } from '@jobmesh/telemetry';
import type { AuthHook, CallContext } from '../rpc';
import { ALL_QUEUES, OPEN_SERVICES, PERMISSIONS, STREAM } from './permissions';

/** Who is calling: set as the call context's `principal` by the API-key auth hook. */
export class ApiKeyPrincipal {
  private readonly patterns: RegExp[];
  /** Whether its queues include `*`: it may make calls that name no queue. */
  readonly allQueues: boolean;

  constructor(
    readonly id: string,
    readonly role: Role,
    readonly queues: readonly string[],
  ) {
    this.patterns = queues.map(globToRegExp);
    this.allQueues = queues.includes('*');
  }

  mayUse(queue: string): boolean {
    return this.patterns.some((p) => p.test(queue));
  }
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}

/** At most this many characters of a caller's queue name go into an error message. */
const MAX_ECHO = 100;
const echo = (s: string): string => (s.length > MAX_ECHO ? `${s.slice(0, MAX_ECHO)}…` : s);

/**
 * Refuses, with PERMISSION_DENIED, a queue the call's key may not use; does nothing when auth is
 * off (no principal). For what streams name after their start: Connect's Hello, EnqueueStream's
 * jobs. `field` names the request field, for the message.
 */
export function requireQueues(ctx: Pick<CallContext, 'principal'>, queues: Iterable<string>, field: string): void {
  const who = ctx.principal;
  if (!(who instanceof ApiKeyPrincipal)) return;
  for (const q of queues) {
    if (!q) {
      if (!who.allQueues) throw new PermissionDeniedError(`${field} names no queue, which only a key whose queues include "*" may do; API key "${who.id}" has queues ${who.queues.join(', ')}`);
    } else if (!who.mayUse(q)) {
      throw new PermissionDeniedError(`${field}: API key "${who.id}" may not use queue "${echo(q)}"; its queues are ${who.queues.join(', ')} (add the queue to its queues in the keys file)`);
    }
  }
}

interface KeyRecord {
  principal: ApiKeyPrincipal;
  digest: Buffer;
}

/** Compared against when the key id is unknown, so that an unknown id costs the same as a wrong secret. */
const DUMMY_DIGEST = Buffer.alloc(32);
const BEARER = /^Bearer ([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.([A-Za-z0-9_-]{1,512})$/;

export interface ApiKeyAuthOptions {
  /** The keys file, watched for changes (JOBMESH_API_KEYS_FILE). */
  path: string;
  /** Reads and validates the file; throws with a message saying what to fix. */
  read: (path: string) => ApiKeyEntry[];
  logger: Logger;
  /** Also reload on SIGHUP. @default true */
  sighup?: boolean;
  /** Watch the file for changes. @default true */
  watch?: boolean;
  /**
   * Keys held in memory only, on top of the file's, kept across reloads: `jobmesh up`'s key for
   * its own calls to itself (dead-letter replays into its scheduler) when it has none set.
   */
  internal?: ApiKeyEntry[];
}

/**
 * API keys from a file, and the AuthHook that checks every call against PERMISSIONS. The file is
 * read at start (a bad one throws), then again when it changes (watched through its directory, so
 * an editor that writes a new file and renames it over the old one is seen too, and so is a
 * Kubernetes Secret volume's update) and on SIGHUP; a
 * bad new file keeps the keys in force and logs an error. Emits 'reload' (key count) after a good
 * read and 'reloadFailed' (error) after a bad one.
 */
export class ApiKeyAuth extends EventEmitter<{ reload: [number]; reloadFailed: [Error] }> {
  private keys = new Map<string, KeyRecord>();
  private watcher?: FSWatcher;
  private debounce?: NodeJS.Timeout;
  private readonly path: string;
  private readonly onHup = (): void => this.reload('SIGHUP');

  constructor(private readonly opts: ApiKeyAuthOptions) {
    super();
    this.path = resolve(opts.path);
    this.keys = this.load();
    if (opts.watch ?? true) {
      const file = basename(this.path);
      this.watcher = watch(dirname(this.path), (_event, name) => {
        // `..data`: a Kubernetes Secret or ConfigMap volume updates by swapping that link, and the
        // file (a link through it) never has an event of its own.
        if (name !== null && name !== file && name !== '..data') return;
        // An editor's save is several events (truncate, write, rename): read once they settle.
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.reload('file changed'), 50);
      });
      this.watcher.on('error', (err) => opts.logger.error({ err: err.message, path: this.path }, 'cannot watch the API keys file; reload with SIGHUP'));
    }
    if (opts.sighup ?? true) process.on('SIGHUP', this.onHup);
  }

  /** How many keys are in force. */
  get size(): number {
    return this.keys.size;
  }

  /** Reads the file again; keeps the keys in force if it is bad. */
  reload(why = 'reload'): void {
    try {
      this.keys = this.load();
      this.opts.logger.info({ path: this.path, keys: this.keys.size, why }, 'API keys reloaded');
      this.emit('reload', this.keys.size);
    } catch (err) {
      this.opts.logger.error({ path: this.path, err: (err as Error).message, why }, 'API keys file is invalid; keeping the keys in force');
      this.emit('reloadFailed', err as Error);
    }
  }

  private load(): Map<string, KeyRecord> {
    const keys = new Map<string, KeyRecord>();
    for (const e of [...this.opts.read(this.path), ...(this.opts.internal ?? [])]) keys.set(e.id, { principal: new ApiKeyPrincipal(e.id, e.role, e.queues), digest: digestOf(e.hash) });
    return keys;
  }

  /** The key a call's `authorization` metadata names; UNAUTHENTICATED when missing, malformed, unknown or wrong. */
  authenticate(authorization: unknown): ApiKeyPrincipal {
    if (authorization === undefined) throw new UnauthenticatedError('no API key: send the metadata "authorization: Bearer <id>.<secret>" (the CLI: --api-key or JOBMESH_API_KEY)');
    const m = typeof authorization === 'string' ? BEARER.exec(authorization) : null;
    if (!m) throw new UnauthenticatedError('malformed authorization metadata: expected "Bearer <id>.<secret>" as `jobmesh keys create` prints it');
    const record = this.keys.get(m[1]!);
    const ok = secretMatches(m[2]!, record?.digest ?? DUMMY_DIGEST);
    if (!record || !ok) throw new UnauthenticatedError('API key not recognised: unknown key id or wrong secret');
    return record.principal;
  }

  /** The AuthHook for RpcKit: authenticates, then checks the role and the request's queues. */
  readonly hook: AuthHook = (ctx, request) => {
    const service = ctx.method.slice(1, ctx.method.lastIndexOf('/'));
    if (OPEN_SERVICES.includes(service)) return undefined;
    const principal = this.authenticate(ctx.metadata.get('authorization')[0]);
    const rule = PERMISSIONS[ctx.method];
    if (!rule) throw new PermissionDeniedError(`${ctx.method} has no permission rule; only an admin key may call it`);
    if (principal.role !== 'admin' && !rule.roles.includes(principal.role)) {
      throw new PermissionDeniedError(`API key "${principal.id}" has role ${principal.role}; ${ctx.method.slice(1)} needs role ${[...rule.roles, 'admin'].join(' or ')}`);
    }
    // A bidi stream's hook has no request: its handler checks the queues as they come.
    const scope = request === undefined ? STREAM : rule.queues(request as never);
    if (scope === ALL_QUEUES) requireQueues({ principal }, [''], ctx.method.slice(ctx.method.lastIndexOf('/') + 1));
    else if (scope && scope !== STREAM) requireQueues({ principal }, scope, 'queue');
    return principal;
  };

  /** Stops watching the file and listening for SIGHUP. */
  close(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
    process.off('SIGHUP', this.onHup);
  }
}

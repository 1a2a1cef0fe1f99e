import type { IncomingMessage, ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { Dial } from '@jobmesh/grpc-kit';
import type { DeepPartial } from '@jobmesh/sdk';
import type { Logger } from '@jobmesh/telemetry';
import { type Address, BadRequestError, DashboardApi, type JobAction } from './api';
import { type Asset, Assets } from './assets';
import { CSRF_HEADER, type DashboardKeyCheck, type Session, Sessions, SignInError, sessionCookie } from './sessions';

export interface DashboardOptions {
  /** SchedulerService's gRPC address (JOBMESH_SCHEDULER_ADDRESS). */
  schedulerAddress: Address;
  /** DeadLetterService's gRPC address (JOBMESH_DEAD_LETTER_ADDRESS). */
  deadLetterAddress: Address;
  /** WorkerService's gRPC address, for ListWorkers (JOBMESH_WORKER_POOL_ADDRESS). */
  workerPoolAddress: Address;
  /** MonitorService's gRPC address: the monitor's own; a function when it is known only after listen. */
  monitorAddress: Address;
  /** Hide the actions and answer their endpoints with 403. @default false */
  readOnly?: boolean;
  /** A trace viewer's page for a trace, with `{trace_id}` where the id goes (JOBMESH_TRACE_UI_URL). */
  traceUiUrl?: string;
  logger: Logger;
  /** TLS and API key of the dashboard's gRPC calls; plaintext without a key when unset. */
  dial?: Dial;
  /** How often the live figures (SSE over WatchQueueStats) are sent, ms; at least 1000. @default 2000 */
  liveIntervalMs?: number;
  /**
   * The API keys (the host's ApiKeyAuth) when auth is on: the dashboard then asks for a viewer or
   * admin key, keeps it in a server-side session, and calls the services with it.
   */
  auth?: DashboardKeyCheck;
  /** How long a signed-in session lasts, ms. @default 28800000 (8 h) */
  sessionTtlMs?: number;
}

/** The dashboard as the ops HTTP server's extra routes (see OpsRoutes), with a close for its gRPC clients and open streams. */
export interface Dashboard {
  routes(path: string, res: ServerResponse, req: IncomingMessage): Promise<boolean>;
  close(): Promise<void>;
}

/** HTTP status of each gRPC code the services answer with; anything else is 502 (a service failed, not the dashboard). */
const HTTP_OF: Partial<Record<number, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.FAILED_PRECONDITION]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.UNAUTHENTICATED]: 401,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.UNAVAILABLE]: 503,
  [status.DEADLINE_EXCEEDED]: 504,
};

const MAX_BODY_BYTES = 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The web dashboard: its page and browser modules at `/`, `/web/…` and `/vendor/…`, and a JSON API
 * under `/api/` that calls the services' gRPC APIs (never Redis):
 * - GET  /api/config: read-only mode and the trace link template;
 * - GET  /api/overview: every queue's figures and the dead-letter counts; /api/live?queue: the
 *   figures (of the queues named, else all) as server-sent events, from WatchQueueStats;
 * - GET  /api/queues/:q, /api/queues/:q/jobs?state&search&pageSize&pageToken, /api/queues/:q/jobs/:id
 *   (with its flow parent and trace link), /api/queues/:q/jobs/:id/events (SSE of WatchJob);
 * - GET  /api/find?id: the queues holding a job of that id;
 * - GET  /api/workers?queue, /api/dead-letters?queue&category&since&until&pageSize&pageToken,
 *   /api/dead-letters/:id;
 * - POST /api/queues/:q/pause, /resume; /api/queues/:q/jobs/actions {action, ids | filter};
 *   /api/dead-letters/replay {ids | filter, dataPatch, targetQueue}, /quarantine {ids | filter,
 *   quarantined, reason}, /purge {ids | filter}. Actions need a JSON body and, from a browser, an
 *   Origin that is the dashboard's own (so another site's page cannot send one); they answer 403
 *   in read-only mode.
 * - With auth on (`auth`): POST /api/login {key} opens a session (a viewer or admin key; an
 *   HttpOnly, SameSite=Strict cookie holding a random id, the key kept server-side) and
 *   POST /api/logout ends it; every other API path answers 401 without one, every POST needs the
 *   session's CSRF token (from /api/config) in the x-jobmesh-csrf header, and a viewer's session
 *   is read-only. The services are called with the session's key.
 */
export function dashboardHandler(opts: DashboardOptions): Dashboard {
  const addresses = { scheduler: opts.schedulerAddress, deadLetter: opts.deadLetterAddress, workerPool: opts.workerPoolAddress, monitor: opts.monitorAddress };
  /** Auth off: one set of clients, sending no key. Auth on: a set per session, sending its key. */
  const shared = new DashboardApi(addresses, opts.dial);
  const perSession = new Map<string, DashboardApi>();
  const sessionTtlMs = opts.sessionTtlMs ?? 8 * 3_600_000;
  const sessions = opts.auth
    ? new Sessions(opts.auth, sessionTtlMs, (s) => {
        perSession.get(s.id)?.close();
        perSession.delete(s.id);
      })
    : undefined;
  const apiOf = (s: Session | undefined): DashboardApi => {
    if (!s) return shared;
    let a = perSession.get(s.id);
    if (!a) perSession.set(s.id, (a = new DashboardApi(addresses, { ...opts.dial, apiKey: s.key })));
    return a;
  };
  const assets = new Assets();
  const readOnly = opts.readOnly ?? false;
  const liveMs = Math.max(1000, opts.liveIntervalMs ?? 2000);
  const closing = new AbortController();
  const traceUrl = (traceId: string | undefined): string | undefined =>
    traceId && opts.traceUiUrl ? opts.traceUiUrl.replaceAll('{trace_id}', encodeURIComponent(traceId)) : undefined;

  async function get(api: DashboardApi, session: Session | undefined, parts: string[], q: URLSearchParams, res: ServerResponse): Promise<unknown> {
    const [a, b, c, d, e] = parts;
    if (a === 'config' && !b) {
      const signedIn = session ? { keyId: session.keyId, role: session.role, csrfToken: session.csrf } : undefined;
      return { readOnly: readOnly || session?.role === 'viewer', traceUiUrl: opts.traceUiUrl ?? '', auth: !!sessions, signedIn };
    }
    if (a === 'overview' && !b) {
      const o = await api.overview();
      return { stats: o.stats.map((s) => pb.QueueStats.toJSON(s)), deadLetters: 'error' in o.deadLetters ? o.deadLetters : pb.GetDeadLetterStatsResponse.toJSON(o.deadLetters) };
    }
    if (a === 'live' && !b) {
      await sse(res, (signal, send) => pump(api.watchStats(liveMs, signal, q.getAll('queue')), (stats) => send('stats', { stats: stats.map((s) => pb.QueueStats.toJSON(s)) })));
      return undefined;
    }
    if (a === 'find' && !b) {
      const id = required(q, 'id');
      return { jobs: (await api.findJob(id)).map((j) => pb.Job.toJSON(j)) };
    }
    if (a === 'queues' && b && !c) {
      const r = await api.queue(b);
      return { queue: pb.QueueConfig.toJSON(r.queue), stats: r.stats ? pb.QueueStats.toJSON(r.stats) : undefined };
    }
    if (a === 'queues' && b && c === 'jobs' && !d) {
      const r = await api.jobs(b, { state: q.get('state') ?? undefined, search: q.get('search') ?? undefined }, pageSize(q), q.get('pageToken') ?? '');
      return { jobs: r.jobs.map((j) => pb.Job.toJSON(j)), nextPageToken: r.nextPageToken, scanned: r.scanned };
    }
    if (a === 'queues' && b && c === 'jobs' && d && !e) {
      const details = await api.jobDetails(b, d);
      const job = details.job!;
      if (job.state === pb.JobState.JOB_STATE_UNSPECIFIED) throw new HttpError(404, `job ${d} of queue ${b} is not kept any more`);
      const parent = await api.parentOf(job);
      return {
        job: pb.Job.toJSON(job),
        parent: parent ? pb.Job.toJSON(parent) : undefined,
        traceUrl: traceUrl(job.traceId),
        logs: details.logs,
        logsTotal: details.logsTotal,
        children: details.children,
      };
    }
    if (a === 'queues' && b && c === 'jobs' && d && e === 'events' && !parts[5]) {
      await sse(res, (signal, send) => pump(api.watchJob(b, d, signal), (ev) => send('event', pb.JobEvent.toJSON(ev))));
      return undefined;
    }
    if (a === 'workers' && !b) return { workers: (await api.workers(q.get('queue') ?? '')).map((w) => pb.WorkerInfo.toJSON(w)) };
    if (a === 'dead-letters' && !b) {
      const filter = deadLetterFilter(Object.fromEntries(q));
      const [page, stats] = await Promise.all([api.deadLetters(filter, pageSize(q), q.get('pageToken') ?? ''), api.deadLetterStats()]);
      return {
        deadLetters: page.deadLetters.map((x) => ({ ...(pb.DeadLetter.toJSON(x) as object), traceUrl: traceUrl(x.traceId) })),
        nextPageToken: page.nextPageToken,
        stats: pb.GetDeadLetterStatsResponse.toJSON(stats),
      };
    }
    if (a === 'dead-letters' && b && !c) {
      const x = await api.deadLetter(b);
      return { deadLetter: pb.DeadLetter.toJSON(x), traceUrl: traceUrl(x.traceId) };
    }
    throw new HttpError(404, 'no such API path');
  }

  async function post(api: DashboardApi, parts: string[], body: Record<string, unknown>): Promise<unknown> {
    const [a, b, c, d, e] = parts;
    if (a === 'queues' && b && (c === 'pause' || c === 'resume') && !d) {
      const queue = c === 'pause' ? await api.pause(b) : await api.resume(b);
      return { queue: pb.QueueConfig.toJSON(queue) };
    }
    if (a === 'queues' && b && c === 'jobs' && d === 'actions' && !e) {
      const action = body.action;
      if (action !== 'retry' && action !== 'promote' && action !== 'cancel') throw new BadRequestError('action must be retry, promote or cancel');
      const filter = (body.filter ?? {}) as { state?: string; search?: string };
      const results = await api.jobAction(b, action as JobAction, idList(body), { state: str(filter.state), search: str(filter.search) });
      return { results, ok: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length };
    }
    if (a === 'dead-letters' && !c) {
      const ids = idList(body);
      const filter = deadLetterFilter((body.filter ?? {}) as Record<string, unknown>);
      if (!ids && body.filter === undefined) throw new BadRequestError('give ids or a filter');
      if (b === 'replay') {
        const patch = body.dataPatch;
        if (patch !== undefined && (typeof patch !== 'object' || patch === null || Array.isArray(patch))) throw new BadRequestError('dataPatch must be a JSON object');
        const r = await api.replay({ ids, filter, dataPatch: patch as Record<string, unknown> | undefined, targetQueue: str(body.targetQueue) });
        return pb.ReplayDeadLettersResponse.toJSON(r);
      }
      if (b === 'quarantine') {
        if (typeof body.quarantined !== 'boolean') throw new BadRequestError('quarantined must be true or false');
        return pb.QuarantineDeadLettersResponse.toJSON(await api.quarantine({ ids, filter, quarantined: body.quarantined, reason: str(body.reason) }));
      }
      if (b === 'purge') return pb.PurgeDeadLettersResponse.toJSON(await api.purge({ ids, filter }));
    }
    throw new HttpError(404, 'no such API path');
  }

  /** Serves server-sent events from `run` until the browser leaves, the stream ends or the dashboard closes. */
  async function sse(res: ServerResponse, run: (signal: AbortSignal, send: (event: string, data: unknown) => void) => Promise<void>): Promise<void> {
    const gone = new AbortController();
    const stop = (): void => gone.abort();
    // The response's close, not the request's: that one fires once the (empty) body is read.
    res.on('close', stop);
    closing.signal.addEventListener('abort', stop, { once: true });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (event: string, data: unknown): void => void res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    try {
      await run(gone.signal, send);
    } catch (err) {
      if (!gone.signal.aborted) send('failure', { error: (err as Error).message });
    } finally {
      closing.signal.removeEventListener('abort', stop);
      res.off('close', stop);
      res.end();
    }
  }

  return {
    async routes(path, res, req) {
      if (!path.startsWith('/api/')) {
        if (req.method !== 'GET' && req.method !== 'HEAD') return false;
        let asset: Asset | undefined;
        try {
          asset = await assets.get(path);
        } catch (err) {
          opts.logger.warn({ err: (err as Error).message, path }, 'could not read a dashboard file');
          json(res, 500, { error: 'could not read the file' });
          return true;
        }
        if (!asset) return false;
        res.writeHead(200, { 'content-type': asset.contentType, 'cache-control': 'no-cache' });
        res.end(req.method === 'HEAD' ? undefined : asset.body);
        return true;
      }
      const parts = path.slice('/api/'.length).split('/').filter(Boolean).map(decodeURIComponent);
      const query = new URL(req.url ?? '/', 'http://dashboard').searchParams;
      try {
        let out: unknown;
        // A browser names the page that sent a POST: only the dashboard's own pages may act or sign in.
        // (An opaque origin, "null", has no host and is refused too.)
        const origin = req.headers.origin;
        if (req.method === 'POST' && origin !== undefined && hostOf(origin) !== req.headers.host) throw new HttpError(403, `actions are taken from the dashboard's own pages, not from ${origin}`);
        const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
        if (sessions && req.method === 'POST' && parts.length === 1 && parts[0] === 'login') {
          const body = await jsonBody(req);
          if (typeof body.key !== 'string' || !body.key.trim()) throw new BadRequestError('give the API key as {"key": "<id>.<secret>"}');
          let s: Session;
          try {
            s = sessions.signIn(body.key);
          } catch (err) {
            if (err instanceof SignInError) throw new HttpError(err.status, err.message);
            throw err;
          }
          res.setHeader('set-cookie', sessionCookie(s.id, Math.floor(sessionTtlMs / 1000), secure));
          json(res, 200, { keyId: s.keyId, role: s.role });
          return true;
        }
        const session = sessions?.of(req);
        if (sessions && !session) throw new HttpError(401, 'sign in with a viewer or admin API key');
        const api = apiOf(session);
        if (req.method === 'GET') out = await get(api, session, parts, query, res);
        else if (req.method === 'POST') {
          // A custom header another site's page cannot send without CORS, holding a token only this session's pages know.
          if (session && !sessions!.csrfOk(req, session)) throw new HttpError(403, `actions need the session's CSRF token in the ${CSRF_HEADER} header (GET /api/config gives it)`);
          if (session && parts.length === 1 && parts[0] === 'logout') {
            sessions!.end(session.id);
            res.setHeader('set-cookie', sessionCookie('', 0, secure));
            out = { signedOut: true };
          } else {
            if (readOnly) throw new HttpError(403, 'the dashboard is read-only (JOBMESH_DASHBOARD_READ_ONLY)');
            if (session?.role === 'viewer') throw new HttpError(403, `API key "${session.keyId}" is a viewer's: the dashboard is read-only for it; sign in with an admin key to act`);
            out = await post(api, parts, await jsonBody(req));
          }
        } else throw new HttpError(405, 'GET or POST');
        // An SSE route has answered already.
        if (!res.headersSent) json(res, 200, out);
      } catch (err) {
        const e = err as Error & { code?: number; details?: string };
        const code = err instanceof HttpError ? err.status : err instanceof BadRequestError ? 400 : e.code !== undefined ? (HTTP_OF[e.code] ?? 502) : 500;
        if (code >= 500) opts.logger.warn({ err: e.message, path }, 'dashboard request failed');
        if (!res.headersSent) json(res, code, { error: e.details || e.message, code: e.code });
        else res.end();
      }
      return true;
    },
    close: async () => {
      closing.abort();
      sessions?.close();
      shared.close();
    },
  };
}

async function pump<T>(source: AsyncGenerator<T>, each: (m: T) => void): Promise<void> {
  for await (const m of source) each(m);
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body ?? null));
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!(req.headers['content-type'] ?? '').startsWith('application/json')) throw new HttpError(415, 'actions take a JSON body (content-type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    throw new BadRequestError('the body is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequestError('the body must be a JSON object');
  return body as Record<string, unknown>;
}

function required(q: URLSearchParams, name: string): string {
  const v = q.get(name)?.trim();
  if (!v) throw new BadRequestError(`${name} is required`);
  return v;
}

function pageSize(q: URLSearchParams): number {
  const n = Number(q.get('pageSize') ?? 50);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new BadRequestError('pageSize must be 1..1000');
  return n;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function idList(body: Record<string, unknown>): string[] | undefined {
  if (body.ids === undefined) return undefined;
  if (!Array.isArray(body.ids) || !body.ids.every((x) => typeof x === 'string') || !body.ids.length) throw new BadRequestError('ids must be a non-empty list of strings');
  return body.ids as string[];
}

/** A DeadLetterFilter from query or body fields: queue, jobName, category, since, until (ISO times). */
function deadLetterFilter(f: Record<string, unknown>): DeepPartial<pb.DeadLetterFilter> {
  const time = (name: string): Date | undefined => {
    const v = str(f[name]);
    if (!v) return undefined;
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw new BadRequestError(`${name} must be a time, e.g. 2026-12-01T14:00:00Z`);
    return d;
  };
  return { queue: str(f.queue) ?? '', jobName: str(f.jobName) ?? '', category: str(f.category) ?? '', since: time('since'), until: time('until') };
}

import * as pb from '@jobmesh/contracts';
import { INVALID_DURATION, InvalidArgumentError, validateJobName, validateKeyText, validateLength, validateQueueName, validateReason } from '@jobmesh/core';
import type { CallContext, RpcKit } from '@jobmesh/grpc-kit';
import { type DeadLetterCursor, type DeadLetterFilter, type DeadLetterStore, matchesFilter } from '@jobmesh/queue';
import { type EnqueueFn, replay, streamReplay } from './replay';

export interface DeadLetterParts {
  store: DeadLetterStore;
  enqueue: EnqueueFn;
  /** Aborted when the service shuts down, to end open WatchDeadLetters streams. */
  shutdown: AbortSignal;
}

const M = (name: string): string => `/jobmesh.v1.DeadLetterService/${name}`;

const DEFAULT_PAGE = 50;
const MAX_PAGE = 1000;

/**
 * The domain filter of a request's filter, checked (INVALID_ARGUMENT naming the field: a filter
 * no dead letter can match, such as an invalid queue name, would otherwise hold a
 * WatchDeadLetters stream open for nothing); undefined when the request has none.
 */
export function filterOf(f: pb.DeadLetterFilter | undefined, field = 'filter'): DeadLetterFilter | undefined {
  if (!f) return undefined;
  if (f.queue) validateQueueName(f.queue, `${field}.queue`);
  if (f.jobName) validateJobName(f.jobName, `${field}.job_name`);
  if (f.category) validateLength(f.category, 100, `${field}.category`);
  for (const [key, name] of [['since', 'since'], ['until', 'until']] as const) {
    if (f[key] && Number.isNaN(f[key].getTime())) throw new InvalidArgumentError(`${field}.${name}`, 'is not a valid time');
  }
  return {
    queue: f.queue || undefined,
    jobName: f.jobName || undefined,
    category: f.category || undefined,
    since: f.since?.getTime(),
    until: f.until?.getTime(),
  };
}

/** Dead letters one call may name. */
const MAX_IDS = 10_000;

/** Refuses more than {@link MAX_IDS} ids, or an id longer than any dead letter's (512 characters). */
export function validateIds(ids: string[], field = 'ids'): void {
  if (ids.length > MAX_IDS) throw new InvalidArgumentError(field, `names ${ids.length} dead letters; at most ${MAX_IDS} per call`);
  ids.forEach((id, i) => validateKeyText(validateLength(id, 512, `${field}[${i}]`), `${field}[${i}]`));
}

/** `older_than` in ms: a valid, non-negative Duration. */
function olderThanMs(d: pb.Duration): number {
  const ms = pb.durationToMs(d)!;
  if (Number.isNaN(ms)) throw new InvalidArgumentError('older_than', INVALID_DURATION);
  if (ms < 0) throw new InvalidArgumentError('older_than', `must not be negative, got ${ms}ms`);
  return ms;
}

/** Thin handlers: decode, call the domain module, encode. Errors map to statuses in grpc-kit. */
export function deadLetterHandlers(kit: RpcKit, p: DeadLetterParts): pb.DeadLetterServiceServer {
  return {
    listDeadLetters: kit.unary(M('ListDeadLetters'), async (req: pb.ListDeadLettersRequest) => {
      const size = Math.min(MAX_PAGE, req.pageSize || DEFAULT_PAGE);
      const { deadLetters, next } = await p.store.list(filterOf(req.filter) ?? {}, size, req.pageToken);
      return { deadLetters, nextPageToken: next };
    }),
    getDeadLetter: kit.unary(M('GetDeadLetter'), async (req: pb.GetDeadLetterRequest) => {
      if (!req.id) throw new InvalidArgumentError('id', 'is required');
      return { deadLetter: await p.store.get(req.id) };
    }),
    replayDeadLetters: kit.unary(M('ReplayDeadLetters'), async (req: pb.ReplayDeadLettersRequest, ctx: CallContext) => {
      validateIds(req.ids);
      return replay(p.store, p.enqueue, req, filterOf(req.filter), { signal: ctx.signal, shutdown: p.shutdown });
    }),
    streamReplayDeadLetters: kit.serverStream(
      M('StreamReplayDeadLetters'),
      (req: pb.StreamReplayDeadLettersRequest, ctx, send: (r: pb.StreamReplayDeadLettersResponse) => void) => {
        if (!req.replay) throw new InvalidArgumentError('replay', 'is required: the replay to run, as ReplayDeadLetters takes it');
        validateIds(req.replay.ids, 'replay.ids');
        return streamReplay(p.store, p.enqueue, req.replay, filterOf(req.replay.filter, 'replay.filter'), { signal: ctx.signal, shutdown: p.shutdown }, send);
      },
    ),
    purgeDeadLetters: kit.unary(M('PurgeDeadLetters'), async (req: pb.PurgeDeadLettersRequest) => ({ purged: await purge(p, req) })),
    quarantineDeadLetters: kit.unary(M('QuarantineDeadLetters'), async (req: pb.QuarantineDeadLettersRequest) => {
      if (!req.ids.length) throw new InvalidArgumentError('ids', 'is required');
      validateIds(req.ids);
      validateReason(req.reason);
      return { updated: await p.store.quarantine(req.ids, req.quarantined, req.reason) };
    }),
    getDeadLetterStats: kit.unary(M('GetDeadLetterStats'), (req: pb.GetDeadLetterStatsRequest) => p.store.stats(req.queue || undefined)),
    watchDeadLetters: kit.serverStream(M('WatchDeadLetters'), (req: pb.WatchDeadLettersRequest, ctx, send: (r: pb.WatchDeadLettersResponse) => void) =>
      watch(p, req, ctx, send),
    ),
  };
}

/** Dead letters a purge by filter deletes at once: a fixed number of round trips per page. */
const PURGE_PAGE = 500;

/**
 * By ids (all or nothing: an unknown id is NOT_FOUND and deletes nothing), by filter, by age, or
 * by a filter and an age together; at least one is required. A filter is read and purged a page
 * at a time, oldest first, up to the newest dead letter stored when the purge started.
 */
async function purge(p: DeadLetterParts, req: pb.PurgeDeadLettersRequest): Promise<number> {
  const filter = filterOf(req.filter);
  validateIds(req.ids);
  if (req.ids.length && filter) throw new InvalidArgumentError('ids', 'give ids or a filter, not both');
  if (!req.ids.length && !filter && !req.olderThan) throw new InvalidArgumentError('filter', 'give ids, a filter or older_than');
  const cutoff = req.olderThan ? Date.now() - olderThanMs(req.olderThan) : undefined;
  if (req.ids.length) return p.store.purge(req.ids, { unknown: 'not-found', before: cutoff });
  const f: DeadLetterFilter = { ...filter };
  if (cutoff !== undefined) f.until = f.until === undefined ? cutoff : Math.min(f.until, cutoff);
  const span = await p.store.span(f);
  let purged = 0;
  let cursor: DeadLetterCursor | undefined;
  do {
    const page = await p.store.page(span, f, PURGE_PAGE, cursor);
    if (page.matches.size) purged += await p.store.purge([...page.matches.keys()], { unknown: 'skip' });
    cursor = page.next;
  } while (cursor);
  return purged;
}

/**
 * Streams dead letters captured from now on, by any replica (capture publishes each new id once,
 * from the replica that won it), until the client cancels or the server shuts down.
 */
async function watch(p: DeadLetterParts, req: pb.WatchDeadLettersRequest, ctx: CallContext, send: (r: pb.WatchDeadLettersResponse) => void): Promise<void> {
  const f = { ...filterOf(req.filter), since: undefined, until: undefined };
  const stop = await p.store.onNew((d) => {
    if (matchesFilter(f, d)) send({ deadLetter: d });
  });
  try {
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted || p.shutdown.aborted) return resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      p.shutdown.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    stop();
  }
}

import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError } from '@jobmesh/core';
import type { CallContext, RpcKit } from '@jobmesh/grpc-kit';
import type { Capturer } from './capture';
import { type EnqueueFn, replay } from './replay';
import type { DeadLetterStore, Filter } from './store';

export interface DeadLetterParts {
  store: DeadLetterStore;
  capturer: Capturer;
  enqueue: EnqueueFn;
  /** Aborted when the service shuts down, to end open WatchDeadLetters streams. */
  shutdown: AbortSignal;
}

const M = (name: string): string => `/jobmesh.v1.DeadLetterService/${name}`;

const DEFAULT_PAGE = 50;
const MAX_PAGE = 1000;

/** The domain filter of a request's filter; undefined when the request has none. */
export function filterOf(f: pb.DeadLetterFilter | undefined): Filter | undefined {
  if (!f) return undefined;
  return {
    queue: f.queue || undefined,
    jobName: f.jobName || undefined,
    category: f.category || undefined,
    since: f.since?.getTime(),
    until: f.until?.getTime(),
  };
}

function matches(f: Filter, d: pb.DeadLetter): boolean {
  return (!f.queue || d.job?.queue === f.queue) && (!f.jobName || d.job?.name === f.jobName) && (!f.category || d.category === f.category);
}

const durationMs = (d: { seconds: number; nanos: number }): number => d.seconds * 1000 + Math.floor(d.nanos / 1e6);

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
    replayDeadLetters: kit.unary(M('ReplayDeadLetters'), (req: pb.ReplayDeadLettersRequest, ctx: CallContext) =>
      replay(p.store, p.enqueue, req, filterOf(req.filter), ctx.signal),
    ),
    purgeDeadLetters: kit.unary(M('PurgeDeadLetters'), async (req: pb.PurgeDeadLettersRequest) => ({ purged: await purge(p, req) })),
    quarantineDeadLetters: kit.unary(M('QuarantineDeadLetters'), async (req: pb.QuarantineDeadLettersRequest) => {
      if (!req.ids.length) throw new InvalidArgumentError('ids', 'is required');
      return { updated: await p.store.quarantine(req.ids, req.quarantined, req.reason) };
    }),
    getDeadLetterStats: kit.unary(M('GetDeadLetterStats'), (req: pb.GetDeadLetterStatsRequest) => p.store.stats(req.queue || undefined)),
    watchDeadLetters: kit.serverStream(M('WatchDeadLetters'), (req: pb.WatchDeadLettersRequest, ctx, send: (r: pb.WatchDeadLettersResponse) => void) =>
      watch(p, req, ctx, send),
    ),
  };
}

/** By ids, by filter, by age, or by a filter and an age together; at least one is required. */
async function purge(p: DeadLetterParts, req: pb.PurgeDeadLettersRequest): Promise<number> {
  const filter = filterOf(req.filter);
  if (req.ids.length && filter) throw new InvalidArgumentError('ids', 'give ids or a filter, not both');
  if (!req.ids.length && !filter && !req.olderThan) throw new InvalidArgumentError('filter', 'give ids, a filter or older_than');
  const cutoff = req.olderThan ? Date.now() - durationMs(req.olderThan) : undefined;
  if (req.ids.length) {
    if (cutoff === undefined) return p.store.purge(req.ids);
    const old = (await p.store.getMany(req.ids)).filter((d) => d.deadLetteredAt!.getTime() < cutoff);
    return p.store.purge(old.map((d) => d.id));
  }
  const f: Filter = { ...filter };
  if (cutoff !== undefined) f.until = f.until === undefined ? cutoff : Math.min(f.until, cutoff);
  const ids: string[] = [];
  for await (const d of p.store.scan(f)) ids.push(d.id);
  return p.store.purge(ids);
}

/**
 * Streams dead letters captured from now on, by any replica (capture publishes each new id once,
 * from the replica that won it), until the client cancels or the server shuts down.
 */
async function watch(p: DeadLetterParts, req: pb.WatchDeadLettersRequest, ctx: CallContext, send: (r: pb.WatchDeadLettersResponse) => void): Promise<void> {
  const f = { ...filterOf(req.filter), since: undefined, until: undefined };
  const stop = await p.capturer.onCapture((d) => {
    if (matches(f, d)) send({ deadLetter: d });
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

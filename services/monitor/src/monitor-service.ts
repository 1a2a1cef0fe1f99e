import { setMaxListeners } from 'node:events';
import * as pb from '@jobmesh/contracts';
import { durationToMs } from '@jobmesh/contracts';
import { INVALID_DURATION, InvalidArgumentError } from '@jobmesh/core';
import type { CallContext, RpcKit } from '@jobmesh/grpc-kit';
import type { QueueFigures } from './figures';
import type { SystemHealth } from './health';

export interface MonitorParts {
  figures: QueueFigures;
  health: SystemHealth;
  /** Aborted when the service shuts down, to end open WatchQueueStats streams. */
  shutdown: AbortSignal;
}

const M = (name: string): string => `/jobmesh.v1.MonitorService/${name}`;

/** WatchQueueStats' interval: default and floor, ms. */
export const WATCH_DEFAULT_MS = 5000;
export const WATCH_MIN_MS = 1000;
/** The longest WatchQueueStats interval. */
export const WATCH_MAX_MS = 3_600_000;

export function monitorHandlers(kit: RpcKit, p: MonitorParts): pb.MonitorServiceServer {
  setMaxListeners(0, p.shutdown);
  return {
    getQueueStats: kit.unary(M('GetQueueStats'), async (req: pb.GetQueueStatsRequest) => ({ stats: await p.figures.get(req.queue) })),
    listQueueStats: kit.unary(M('ListQueueStats'), async () => ({ stats: await p.figures.list() })),
    watchQueueStats: kit.serverStream(M('WatchQueueStats'), (req: pb.WatchQueueStatsRequest, ctx, send: (r: pb.WatchQueueStatsResponse) => void) => watch(p, req, ctx, send)),
    getSystemHealth: kit.unary(M('GetSystemHealth'), () => p.health.get()),
  };
}

/** Sends the figures at once, then every interval, until the client leaves or the service stops. */
async function watch(p: MonitorParts, req: pb.WatchQueueStatsRequest, ctx: CallContext, send: (r: pb.WatchQueueStatsResponse) => void): Promise<void> {
  const asked = durationToMs(req.interval);
  if (asked !== undefined && Number.isNaN(asked)) throw new InvalidArgumentError('interval', INVALID_DURATION);
  // setTimeout fires at once for more than 2^31 - 1 ms: a longer interval would flood the stream.
  if (asked !== undefined && asked > WATCH_MAX_MS) throw new InvalidArgumentError('interval', `must be at most 1 h; got ${asked} ms`);
  if (asked !== undefined && asked < WATCH_MIN_MS) throw new InvalidArgumentError('interval', `must be at least ${WATCH_MIN_MS / 1000} s; got ${asked} ms`);
  const intervalMs = asked || WATCH_DEFAULT_MS;
  // Checked once up front: an unknown queue is NOT_FOUND before anything is sent.
  send({ stats: await p.figures.list(req.queues) });
  const over = (): boolean => ctx.signal.aborted || p.shutdown.aborted;
  while (!over()) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', done);
        p.shutdown.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, intervalMs);
      ctx.signal.addEventListener('abort', done);
      p.shutdown.addEventListener('abort', done);
    });
    if (over()) return;
    // A queue deleted while watched drops out of the next round rather than ending the stream.
    send({ stats: await p.figures.list(req.queues, { skipMissing: true }) });
  }
}

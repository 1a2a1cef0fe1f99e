import type * as pb from '@jobmesh/contracts';
import { type RetentionSpec, settlesWithin } from '@jobmesh/core';
import { type ConnectionOptions, Job as BullJob, QueueEvents } from 'bullmq';
import type { Cluster, RedisOptions } from 'ioredis';
import type { RedisClient } from './connection';
import type { Backbone } from './backbone';
import { deadLetterLinks, isDeadLetterOf } from './dead-letters';
import { jobmeshOpts, toProtoJob } from './job-mapping';
import type { QueueRegistry } from './registry';

/**
 * A job that failed for good, as capture reads it. BullMQ puts a job in its queue's failed set
 * only after its last attempt, and keeps one stack per failed attempt but the message of the last
 * only.
 */
export interface FailedJob {
  id: string;
  name: string;
  /** The last attempt's message. */
  reason: string;
  /** One stack per failed attempt that had one, oldest first; a stalled attempt has none. */
  stacks: string[];
  /** It failed because it stalled (its worker went away) more often than the queue allows. */
  stalledOut: boolean;
  attemptsMade: number;
  /** The job's `attempts` option. */
  attempts: number;
  /** When it failed for good, ms: its score in the failed set and the time its dead-letter link holds. */
  failedAt: number;
  /** keep_failed set on the job itself, if any (applied once the job is captured). */
  keepFailed?: RetentionSpec;
  /** The W3C traceparent stored with the job at its enqueue, if any. */
  traceparent?: string;
  /** The job as GetJob shows it, in state DEAD_LETTERED. */
  snapshot: pb.Job;
}

/**
 * Whether a failure message is BullMQ's for a job that stalled more often than allowed (older
 * BullMQ stores it as a plain failure, BullMQ 6 as an UnrecoverableError of its own).
 */
export const isStalledOut = (reason: string): boolean => /stalled more than allowable limit/i.test(reason);

/** A job in a failed set: its id and when it failed for good (ms). */
export interface FailedEntry {
  id: string;
  failedAt: number;
}

/** A queue's 'failed' events being listened to (see FailedJobs.watch). */
export interface FailedJobsWatch {
  /** Resolves once listening (or once listening failed: it retries by itself). */
  ready(): Promise<void>;
  /** Stops listening; bounded, also when Redis is gone. */
  close(): Promise<void>;
}

/**
 * How long a watch's close may wait: BullMQ's QueueEvents.close() can wait forever when Redis is
 * gone (see the scheduler's watch), and a listener that did not close loses nothing.
 */
const WATCH_CLOSE_MS = 2500;

/**
 * BullMQ's failed sets, read and trimmed for the dead-letter service: the sweep that finds jobs
 * not captured yet, the 'failed' events that report them at once, each job as capture needs it,
 * and keep_failed applied to the jobs that are captured.
 */
export class FailedJobs {
  private readonly redis: RedisClient;
  private readonly registry: QueueRegistry;
  private readonly watchConnection: RedisOptions | Cluster;

  constructor(backbone: Pick<Backbone, 'redis' | 'registry' | 'workerConnection'>) {
    this.redis = backbone.redis;
    this.registry = backbone.registry;
    this.watchConnection = backbone.workerConnection;
  }

  private failedKey(queue: string): string {
    return this.registry.bullQueue(queue).keys.failed!;
  }

  /**
   * The jobs of `queue`'s failed set that failed at `sinceMs` or later (all without it), oldest
   * first, a page of at most `pageSize` at a time, less those already dead-lettered as this very
   * failure (the events got there first, or an earlier sweep). Pages by score, not offset: the
   * caller may remove jobs from the set between pages (keep_failed), which would shift offsets
   * and skip entries; the ids already seen at the page's last score are read again and left out.
   */
  async *sweep(queue: string, sinceMs?: number, pageSize = 100): AsyncGenerator<{ jobs: FailedEntry[]; upTo: number }> {
    const key = this.failedKey(queue);
    const keys = this.registry.keys;
    let min = sinceMs === undefined ? '-inf' : String(sinceMs);
    let seen = new Set<string>();
    for (;;) {
      const want = seen.size + pageSize;
      const flat = await this.redis.zrangebyscore(key, min, '+inf', 'WITHSCORES', 'LIMIT', 0, want);
      const fresh: FailedEntry[] = [];
      for (let i = 0; i < flat.length; i += 2) if (!(flat[i + 1] === min && seen.has(flat[i]!))) fresh.push({ id: flat[i]!, failedAt: Number(flat[i + 1]) });
      if (!fresh.length) return;
      // One read of the page's dead-letter links tells the captured jobs from the others.
      const links = await deadLetterLinks(this.redis, keys, queue, fresh.map((e) => e.id));
      const top = fresh[fresh.length - 1]!.failedAt;
      const topScore = String(top);
      if (topScore !== min) (min = topScore), (seen = new Set());
      for (const e of fresh) if (e.failedAt === top) seen.add(e.id);
      yield { jobs: fresh.filter((e) => !isDeadLetterOf(links.get(e.id), e.failedAt)), upTo: top };
      if (flat.length < want * 2) return;
    }
  }

  /**
   * The job `jobId` of `queue` as capture needs it; undefined unless it exists and has finished.
   * Whether it is still this failure in the failed set is for the store's capture to check, in
   * the same step as it stores the dead letter.
   */
  async read(queue: string, jobId: string): Promise<FailedJob | undefined> {
    const job = await BullJob.fromId(this.registry.bullQueue(queue), jobId);
    if (!job || !job.finishedOn) return undefined;
    return {
      id: job.id ?? jobId,
      name: job.name,
      reason: job.failedReason ?? '',
      stacks: job.stacktrace ?? [],
      stalledOut: isStalledOut(job.failedReason ?? ''),
      attemptsMade: job.attemptsMade,
      attempts: job.opts.attempts ?? 1,
      failedAt: job.finishedOn,
      keepFailed: jobmeshOpts(job).keepFailed,
      traceparent: jobmeshOpts(job).traceparent,
      snapshot: toProtoJob(job, queue, 'dead-lettered'),
    };
  }

  /**
   * Removes jobs from `queue`'s failed set beyond `keep` (BullMQ's removeOnFail semantics: at most
   * `count` newest, none older than `ageMs`), at most `batch` of each per call. A job not
   * dead-lettered yet is never removed, unless `capturedOnly` is off (its queue's capture was
   * turned off).
   */
  async trim(queue: string, keep: RetentionSpec, { capturedOnly = true, now = Date.now(), batch = 1000 } = {}): Promise<void> {
    const key = this.failedKey(queue);
    const over = new Map<string, number>(); // job id → failure time
    const add = (flat: string[]): void => {
      for (let i = 0; i < flat.length; i += 2) over.set(flat[i]!, Number(flat[i + 1]));
    };
    if (keep.count !== undefined) add(await this.redis.zrevrange(key, keep.count, keep.count + batch - 1, 'WITHSCORES'));
    if (keep.ageMs !== undefined) add(await this.redis.zrangebyscore(key, '-inf', `(${now - keep.ageMs}`, 'WITHSCORES', 'LIMIT', 0, batch));
    if (!over.size) return;
    let removable = [...over.keys()];
    if (capturedOnly) {
      const links = await deadLetterLinks(this.redis, this.registry.keys, queue, removable);
      removable = removable.filter((id) => isDeadLetterOf(links.get(id), over.get(id)));
    }
    const bull = this.registry.bullQueue(queue);
    // A job another replica removed first is gone either way.
    await Promise.all(removable.map((id) => bull.remove(id).catch(() => 0)));
  }

  /** How many jobs `queue`'s failed set holds. */
  count(queue: string): Promise<number> {
    return this.redis.zcard(this.failedKey(queue));
  }

  /**
   * Calls `onFailed` with the id of each job of `queue` that fails for good from now on, on a
   * connection of its own that reconnects by itself (`onError` hears its errors). Events may be
   * missed while it reconnects: the sweep is what makes capture complete.
   *
   * With `sinceMs`, it also hears the failures from then on that came before it was listening
   * (the events stream is read from that time, by Redis's clock, instead of from its end): a
   * queue created a moment ago may have failed jobs before its listener's first read.
   */
  watch(queue: string, onFailed: (jobId: string) => void, onError: (err: Error) => void, { sinceMs }: { sinceMs?: number } = {}): FailedJobsWatch {
    const events = new QueueEvents(queue, {
      connection: this.watchConnection as ConnectionOptions,
      prefix: this.registry.keys.queuePrefix(queue),
      blockingTimeout: 1000,
      ...(sinceMs === undefined ? {} : { lastEventId: `${Math.max(0, Math.floor(sinceMs))}-0` }),
    });
    events.on('error', onError);
    events.on('failed', ({ jobId }) => onFailed(jobId));
    return {
      // A listener that cannot connect yet retries by itself (onError hears it).
      ready: () => events.waitUntilReady().then(
        () => undefined,
        () => undefined,
      ),
      close: async () => {
        await settlesWithin(
          events.close().catch(() => undefined),
          WATCH_CLOSE_MS,
        );
      },
    };
  }
}

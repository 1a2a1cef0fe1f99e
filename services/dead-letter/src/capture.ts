import * as pb from '@jobmesh/contracts';
import { DEFAULT_DEAD_LETTER_RETENTION, type QueueSpec, type RetentionSpec, resolveJobOptions } from '@jobmesh/core';
import { type Keys, type QueueRegistry, deadLetterLinks, isDeadLetterOf, jobmeshOpts, toProtoJob } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, Job as BullJob, QueueEvents } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { categorize, errorNameOf } from './categorize';
import type { DeadLetterStore } from './store';

export interface CaptureOptions {
  /** How often every queue's failed set is swept. @default 10000 */
  sweepIntervalMs: number;
  /**
   * Called with each dead letter this replica stored (not those another replica won), and for
   * those a replica stored but died before it called this (see the outbox in DeadLetterStore).
   */
  onCaptured?: (d: pb.DeadLetter) => void | Promise<void>;
}

/** Jobs read from a failed set at once. */
const SWEEP_PAGE = 100;
/** Entries one retention pass removes at most, per queue and kind (the next pass goes on). */
const TRIM_BATCH = 1000;
/**
 * How far before its watermark a sweep looks again. A job enters the failed set with its
 * finishedOn as score, set by the worker's clock; this covers workers whose clocks disagree a
 * little. Capture is idempotent, so looking twice costs a read, never a duplicate.
 */
const SWEEP_OVERLAP_MS = 60_000;

/**
 * Every attempt's error, oldest first. BullMQ keeps one stack per failed attempt (`stacktrace`) and
 * the message of the last (`failedReason`); earlier messages come from their stack's first line.
 */
export function attemptErrors(job: BullJob): pb.AttemptError[] {
  const stacks = job.stacktrace ?? [];
  const last = job.attemptsMade;
  const errors = stacks.map((stack, i) => {
    const attempt = last - (stacks.length - 1 - i);
    const lines = (stack ?? '').split('\n');
    const name = errorNameOf(stack);
    const first = lines[0] ?? '';
    const message = i === stacks.length - 1 ? (job.failedReason ?? '') : name && first.startsWith(`${name}: `) ? first.slice(name.length + 2) : first;
    return pb.AttemptError.fromPartial({
      attempt: Math.max(1, attempt),
      errorName: name,
      message,
      stacktrace: lines,
      failedAt: i === stacks.length - 1 && job.finishedOn ? new Date(job.finishedOn) : undefined,
    });
  });
  // A failure without a stack (e.g. a stalled job) still has its reason.
  if (!errors.length && job.failedReason) {
    errors.push(pb.AttemptError.fromPartial({ attempt: Math.max(1, last), message: job.failedReason, failedAt: job.finishedOn ? new Date(job.finishedOn) : undefined }));
  }
  return errors;
}

/**
 * Durable capture: sweeps every queue's BullMQ failed set at start and every interval (from a
 * per-queue watermark kept in memory), and listens to 'failed' events for low latency. A job in
 * the failed set failed for good (BullMQ puts it there only after its last attempt), so it is a
 * dead letter. BullMQ keeps the job until then (jobs of a queue with dead-lettering are enqueued
 * with removeOnFail off); once captured, the job's keep_failed is applied to BullMQ's failed set
 * here, and each sweep applies the queue's own keep_failed and its dead-letter retention.
 */
export class Capturer {
  private readonly taps = new Map<string, QueueEvents>();
  private readonly watermarks = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  private readonly listeners = new Set<(d: pb.DeadLetter) => void>();
  private subscriber: Promise<Redis> | undefined;
  private unwatchRegistry: (() => void) | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
    private readonly store: DeadLetterStore,
    private readonly connection: RedisOptions,
    private readonly logger: Logger,
    private readonly opts: CaptureOptions,
  ) {}

  private get keys(): Keys {
    return this.registry.keys;
  }

  /**
   * Starts listening and sweeping. Resolves once every queue's 'failed' events are listened to
   * (a queue created later is listened to as soon as the registry hears of it); the first sweep,
   * which after an outage may take a while, runs on in the background, then one every interval.
   */
  async start(): Promise<void> {
    this.unwatchRegistry = this.registry.onChange(() => this.syncTaps(this.registry.cached()));
    this.syncTaps(await this.registry.list());
    // A listener that cannot connect yet retries by itself (and logs); the sweep below catches up
    // on whatever it misses, so start-up does not wait for it.
    await Promise.all([...this.taps.values()].map((t) => t.waitUntilReady().catch(() => undefined)));
    const tick = (): void => {
      this.timer = setTimeout(() => {
        void this.sweep().finally(() => {
          if (!this.closed) tick();
        });
      }, this.opts.sweepIntervalMs);
    };
    void this.sweep().finally(() => {
      if (!this.closed) tick();
    });
  }

  /**
   * Calls `listener` with each new dead letter, whichever replica captured it (through the
   * store's pub/sub channel). Resolves once subscribed; call the result to stop.
   */
  async onCapture(listener: (d: pb.DeadLetter) => void): Promise<() => void> {
    this.listeners.add(listener);
    if (!this.subscriber) {
      // Its own connection: a subscribed connection runs no other command.
      const sub = new Redis({ ...this.connection, connectionName: 'jobmesh:dlq-sub' });
      // It reconnects by itself; its outages are reported by the service's main connection.
      sub.on('error', () => undefined);
      sub.on('message', (_channel: string, id: string) => {
        void this.store.get(id).then(
          (d) => {
            for (const l of this.listeners) l(d);
          },
          () => undefined, // purged already
        );
      });
      this.subscriber = sub.subscribe(this.keys.deadLetterChannel).then(() => sub);
    }
    await this.subscriber;
    return () => this.listeners.delete(listener);
  }

  /** One pass over every registry queue; concurrent calls share the pass. */
  sweep(): Promise<void> {
    return (this.sweeping ??= (async () => {
      try {
        const queues = await this.registry.list();
        this.syncTaps(queues);
        for (const q of queues) {
          if (this.closed) return;
          await this.sweepQueue(q).catch((err: Error) => this.logger.warn({ err: err.message, queue: q.name }, 'dead-letter sweep failed'));
        }
        await this.drainOutbox();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'dead-letter sweep failed');
      } finally {
        this.sweeping = undefined;
      }
    })());
  }

  /**
   * Captures every job in `spec`'s failed set from its watermark on. Pages by score, not offset:
   * capture itself removes jobs from the set (keep_failed), which would shift offsets and skip
   * entries. `seen` holds the ids already handled at the current lowest score, read again.
   */
  private async sweepQueue(spec: QueueSpec): Promise<void> {
    if (spec.deadLetter.disabled) {
      // Jobs enqueued while capture was on are still held: apply keep_failed to them uncaptured.
      await this.trimFailed(spec.name, resolveJobOptions({}, spec.defaultJobOptions).keepFailed, { capturedOnly: false });
      return;
    }
    const failedKey = this.registry.bullQueue(spec.name).keys.failed!;
    const from = this.watermarks.get(spec.name);
    let min = from === undefined ? '-inf' : String(from - SWEEP_OVERLAP_MS);
    let seen = new Set<string>();
    let high = from ?? 0;
    while (!this.closed) {
      const want = seen.size + SWEEP_PAGE;
      const flat = await this.redis.zrangebyscore(failedKey, min, '+inf', 'WITHSCORES', 'LIMIT', 0, want);
      const fresh: Array<[id: string, score: string]> = [];
      for (let i = 0; i < flat.length; i += 2) if (!(flat[i + 1] === min && seen.has(flat[i]!))) fresh.push([flat[i]!, flat[i + 1]!]);
      if (!fresh.length) break;
      // Most of a page is captured already (the events got there first, or an earlier sweep's
      // overlap): one read of the job links skips those, whose failure time matches their link.
      const links = await deadLetterLinks(this.redis, this.keys, spec.name, fresh.map(([id]) => id));
      await Promise.all(fresh.filter(([id, score]) => links.get(id)?.at !== Number(score)).map(([id]) => this.captureJob(spec, id)));
      const top = fresh[fresh.length - 1]![1];
      if (top !== min) (min = top), (seen = new Set());
      for (const [id, score] of fresh) if (score === top) seen.add(id);
      high = Math.max(high, Number(top));
      if (flat.length < want * 2) break;
    }
    this.watermarks.set(spec.name, high);
    await this.trimFailed(spec.name, resolveJobOptions({}, spec.defaultJobOptions).keepFailed);
    await this.applyRetention(spec);
  }

  /**
   * Removes BullMQ's copies of captured jobs from `queue`'s failed set beyond `keep` (BullMQ's
   * removeOnFail semantics: at most `count` newest, none older than `ageMs`). A job not captured
   * yet is never removed, unless `capturedOnly` is off (the queue's capture was turned off).
   */
  private async trimFailed(queue: string, keep: RetentionSpec, { capturedOnly = true, now = Date.now() } = {}): Promise<void> {
    const bull = this.registry.bullQueue(queue);
    const failedKey = bull.keys.failed!;
    const over = new Map<string, number>(); // job id → failure time
    const add = (flat: string[]): void => {
      for (let i = 0; i < flat.length; i += 2) over.set(flat[i]!, Number(flat[i + 1]));
    };
    if (keep.count !== undefined) add(await this.redis.zrevrange(failedKey, keep.count, keep.count + TRIM_BATCH - 1, 'WITHSCORES'));
    if (keep.ageMs !== undefined) add(await this.redis.zrangebyscore(failedKey, '-inf', `(${now - keep.ageMs}`, 'WITHSCORES', 'LIMIT', 0, TRIM_BATCH));
    if (!over.size) return;
    let removable = [...over.keys()];
    if (capturedOnly) {
      const links = await deadLetterLinks(this.redis, this.keys, queue, removable);
      removable = removable.filter((id) => isDeadLetterOf(links.get(id), over.get(id)));
    }
    await Promise.all(removable.map((id) => bull.remove(id).catch(() => 0)));
  }

  /** Purges `spec`'s dead letters older than, or beyond the count of, its dead-letter retention. */
  private async applyRetention(spec: QueueSpec, now = Date.now()): Promise<void> {
    const keep = { ...DEFAULT_DEAD_LETTER_RETENTION, ...spec.deadLetter.retention };
    const index = this.keys.deadLetterQueueIndex(spec.name);
    if (keep.ageMs !== undefined) {
      const old = await this.redis.zrangebyscore(index, '-inf', `(${now - keep.ageMs}`, 'LIMIT', 0, TRIM_BATCH);
      if (old.length) await this.store.purge(old, { unknown: 'skip' });
    }
    if (keep.count !== undefined) {
      const excess = Math.min(TRIM_BATCH, (await this.redis.zcard(index)) - keep.count);
      if (excess > 0) await this.store.purge(await this.redis.zrange(index, 0, excess - 1), { unknown: 'skip' });
    }
  }

  /** Captures one job if it is in the failed set; idempotent on (queue, job id, attempt). */
  async captureJob(spec: QueueSpec, jobId: string): Promise<void> {
    const queue = this.registry.bullQueue(spec.name);
    const job = await BullJob.fromId(queue, jobId);
    // Whether it is still this failure in the failed set is checked by the capture script itself.
    if (!job || !job.finishedOn) return;
    const stacks = job.stacktrace ?? [];
    const { category, severity, quarantine } = categorize(
      { jobName: job.name, reason: job.failedReason ?? '', stack: stacks[stacks.length - 1], attemptsMade: job.attemptsMade, attempts: job.opts.attempts ?? 1 },
      spec.deadLetter.rules,
    );
    const snapshot = toProtoJob(job, spec.name, 'dead-lettered');
    const { id, created, deadLetter } = await this.store.capture({
      queue: spec.name,
      job: snapshot,
      errors: attemptErrors(job),
      category,
      severity,
      quarantine,
      at: new Date(job.finishedOn),
      traceId: snapshot.traceId,
    });
    if (!created) return;
    // The job's own keep_failed, now that losing BullMQ's copy loses nothing; the queue's is
    // applied by every sweep anyway.
    const kf = jobmeshOpts(job).keepFailed;
    if (kf && JSON.stringify(kf) !== JSON.stringify(resolveJobOptions({}, spec.defaultJobOptions).keepFailed)) await this.trimFailed(spec.name, kf);
    await this.followUp(id, deadLetter);
  }

  /** Runs onCaptured for a stored dead letter (read back unless given), then takes it out of the outbox. */
  private async followUp(id: string, stored?: pb.DeadLetter): Promise<void> {
    const d = stored ?? (await this.store.get(id).catch(() => undefined)); // purged already: nothing to report
    if (d) await this.opts.onCaptured?.(d);
    await this.store.settle(id);
  }

  /**
   * Follow-ups a replica never ran (it died between capture and follow-up). Only entries older
   * than a few sweep intervals: younger ones are most likely being followed up by their replica.
   */
  private async drainOutbox(): Promise<void> {
    const before = Date.now() - Math.max(30_000, 3 * this.opts.sweepIntervalMs);
    for (const id of await this.store.unsettled(before)) await this.followUp(id);
  }

  /** One 'failed' listener per registry queue: opened for new queues, closed for deleted ones. */
  private syncTaps(queues: QueueSpec[]): void {
    if (this.closed) return;
    const names = new Set(queues.filter((q) => !q.deadLetter.disabled).map((q) => q.name));
    for (const [name, events] of this.taps) {
      if (!names.has(name)) {
        this.taps.delete(name);
        // The queue is gone or no longer captured; a listener that fails to close has nothing left to lose.
        void events.close().catch(() => undefined);
      }
    }
    for (const spec of queues) {
      if (!names.has(spec.name) || this.taps.has(spec.name)) continue;
      const events = new QueueEvents(spec.name, { connection: this.connection as ConnectionOptions, prefix: this.keys.prefix, blockingTimeout: 1000 });
      events.on('error', (err) => this.logger.warn({ err: err.message, queue: spec.name }, 'queue events error'));
      events.on('failed', ({ jobId }) => {
        const current = this.registry.cached().find((q) => q.name === spec.name) ?? spec;
        void this.captureJob(current, jobId).catch((err: Error) => this.logger.warn({ err: err.message, queue: spec.name, jobId }, 'dead-letter capture failed'));
      });
      this.taps.set(spec.name, events);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unwatchRegistry?.();
    clearTimeout(this.timer);
    await this.sweeping;
    // A subscriber that never connected has nothing to close.
    const sub = await this.subscriber?.catch(() => undefined);
    if (sub) await sub.quit().catch(() => sub.disconnect());
    const taps = [...this.taps.values()];
    this.taps.clear();
    // QueueEvents.close() may wait forever when Redis is down (see scheduler's watch.ts); bound it.
    // Closing at shutdown: an error there loses nothing (captures are idempotent and the sweep catches up).
    await Promise.all(taps.map((t) => Promise.race([t.close().catch(() => undefined), new Promise((r) => setTimeout(r, 2500).unref())])));
  }
}

import * as pb from '@jobmesh/contracts';
import { DEFAULT_DEAD_LETTER_RETENTION, type QueueSpec, type RetentionSpec, resolveJobOptions } from '@jobmesh/core';
import type { DeadLetterStore, FailedJob, FailedJobs, FailedJobsWatch, QueueRegistry } from '@jobmesh/queue';
import { type Logger, startCaptureSpan } from '@jobmesh/telemetry';
import { categorize, errorNameOf } from './categorize';

export interface CaptureOptions {
  /** How often every queue's failed set is swept. @default 10000 */
  sweepIntervalMs: number;
  /**
   * Called with each dead letter this replica stored (not those another replica won), and for
   * those a replica stored but died before it called this (see the outbox in DeadLetterStore).
   */
  onCaptured?: (d: pb.DeadLetter) => void | Promise<void>;
}

/**
 * How far before its watermark a sweep looks again. A job enters the failed set with its
 * finishedOn as score, set by the worker's clock; this covers workers whose clocks disagree a
 * little. Capture is idempotent, so looking twice costs a read, never a duplicate.
 */
const SWEEP_OVERLAP_MS = 60_000;

/**
 * Every attempt's error, oldest first. A failed job has one stack per failed attempt and the
 * message of the last; earlier messages come from their stack's first line.
 */
export function attemptErrors(job: Pick<FailedJob, 'stacks' | 'attemptsMade' | 'reason' | 'failedAt'>): pb.AttemptError[] {
  const stacks = job.stacks;
  const last = job.attemptsMade;
  const errors = stacks.map((stack, i) => {
    const attempt = last - (stacks.length - 1 - i);
    const lines = (stack ?? '').split('\n');
    const name = errorNameOf(stack);
    const first = lines[0] ?? '';
    const message = i === stacks.length - 1 ? job.reason : name && first.startsWith(`${name}: `) ? first.slice(name.length + 2) : first;
    return pb.AttemptError.fromPartial({
      attempt: Math.max(1, attempt),
      errorName: name,
      message,
      stacktrace: lines,
      failedAt: i === stacks.length - 1 ? new Date(job.failedAt) : undefined,
    });
  });
  // A failure without a stack (e.g. a stalled job) still has its reason.
  if (!errors.length && job.reason) {
    errors.push(pb.AttemptError.fromPartial({ attempt: Math.max(1, last), message: job.reason, failedAt: new Date(job.failedAt) }));
  }
  return errors;
}

/** What the capture loop works with. */
export interface CaptureParts {
  registry: QueueRegistry;
  failed: FailedJobs;
  store: DeadLetterStore;
  logger: Logger;
}

/**
 * Durable capture: sweeps every queue's failed set at start and every interval (from a per-queue
 * watermark kept in memory), and listens to 'failed' events for low latency. A job in the failed
 * set failed for good (BullMQ puts it there only after its last attempt), so it is a dead letter.
 * BullMQ keeps the job until then (jobs of a queue with dead-lettering are enqueued with
 * removeOnFail off); once captured, the job's keep_failed is applied to the failed set here, and
 * each sweep applies the queue's own keep_failed and its dead-letter retention.
 */
export class Capturer {
  private readonly taps = new Map<string, FailedJobsWatch>();
  private readonly watermarks = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  private unwatchRegistry: (() => void) | undefined;
  /** Taps are opened from the events stream's end until start() has its first set listening. */
  private started = false;

  constructor(
    private readonly parts: CaptureParts,
    private readonly opts: CaptureOptions,
  ) {}

  /**
   * Starts listening and sweeping. Resolves once every queue's 'failed' events are listened to
   * (a queue created later is listened to as soon as the registry hears of it); the first sweep,
   * which after an outage may take a while, runs on in the background, then one every interval.
   */
  async start(): Promise<void> {
    const { registry } = this.parts;
    this.unwatchRegistry = registry.onChange(() => this.syncTaps(registry.cached()));
    this.syncTaps(await registry.list());
    // A listener that cannot connect yet retries by itself (and logs); the sweep below catches up
    // on whatever it misses, so start-up does not wait for it.
    await Promise.all([...this.taps.values()].map((t) => t.ready()));
    this.started = true;
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

  /** One pass over every registry queue; concurrent calls share the pass. */
  sweep(): Promise<void> {
    const { registry, logger } = this.parts;
    return (this.sweeping ??= (async () => {
      try {
        const queues = await registry.list();
        this.syncTaps(queues);
        for (const q of queues) {
          if (this.closed) return;
          await this.sweepQueue(q).catch((err: Error) => logger.warn({ err: err.message, queue: q.name }, 'dead-letter sweep failed'));
        }
        await this.drainOutbox();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'dead-letter sweep failed');
      } finally {
        this.sweeping = undefined;
      }
    })());
  }

  /** Captures every job in `spec`'s failed set from its watermark on that is not captured yet. */
  private async sweepQueue(spec: QueueSpec): Promise<void> {
    const { failed, store } = this.parts;
    const keepFailed = resolveJobOptions({}, spec.defaultJobOptions).keepFailed;
    if (spec.deadLetter.disabled) {
      // Jobs enqueued while capture was on are still held: apply keep_failed to them uncaptured.
      await failed.trim(spec.name, keepFailed, { capturedOnly: false });
      return;
    }
    const from = this.watermarks.get(spec.name);
    let high = from ?? 0;
    for await (const page of failed.sweep(spec.name, from === undefined ? undefined : from - SWEEP_OVERLAP_MS)) {
      await Promise.all(page.jobs.map((j) => this.captureJob(spec, j.id)));
      high = Math.max(high, page.upTo);
      if (this.closed) break;
    }
    this.watermarks.set(spec.name, high);
    await failed.trim(spec.name, keepFailed);
    await store.applyRetention(spec.name, { ...DEFAULT_DEAD_LETTER_RETENTION, ...spec.deadLetter.retention });
  }

  /** Captures one job if it is in the failed set; idempotent on (queue, job id, attempt). */
  async captureJob(spec: QueueSpec, jobId: string): Promise<void> {
    const { failed, store } = this.parts;
    const job = await failed.read(spec.name, jobId);
    // Whether it is still this failure in the failed set is checked by the store's capture itself.
    if (!job) return;
    const { category, severity, quarantine } = categorize(
      { jobName: job.name, reason: job.reason, stack: job.stacks[job.stacks.length - 1], attemptsMade: job.attemptsMade, attempts: job.attempts, stalledOut: job.stalledOut },
      spec.deadLetter.rules,
    );
    const span = startCaptureSpan({ queue: spec.name, jobId: job.id, name: job.name, category, severity, traceparent: job.traceparent, failedAt: job.failedAt });
    const { id, created, deadLetter } = await store.capture({
      queue: spec.name,
      job: job.snapshot,
      errors: attemptErrors(job),
      category,
      severity,
      quarantine,
      at: new Date(job.failedAt),
      traceId: job.snapshot.traceId,
      traceparent: span.traceparent,
    });
    if (!created) return;
    span.end(id);
    // The job's own keep_failed, now that losing BullMQ's copy loses nothing; the queue's is
    // applied by every sweep anyway.
    const kf: RetentionSpec | undefined = job.keepFailed;
    if (kf && JSON.stringify(kf) !== JSON.stringify(resolveJobOptions({}, spec.defaultJobOptions).keepFailed)) await failed.trim(spec.name, kf);
    await this.followUp(id, deadLetter);
  }

  /** Runs onCaptured for a stored dead letter (read back unless given), then takes it out of the outbox. */
  private async followUp(id: string, stored?: pb.DeadLetter): Promise<void> {
    const { store } = this.parts;
    const d = stored ?? (await store.get(id).catch(() => undefined)); // purged already: nothing to report
    if (d) await this.opts.onCaptured?.(d);
    await store.settle(id);
  }

  /**
   * Follow-ups a replica never ran (it died between capture and follow-up). Only entries older
   * than a few sweep intervals: younger ones are most likely being followed up by their replica.
   */
  private async drainOutbox(): Promise<void> {
    const before = Date.now() - Math.max(30_000, 3 * this.opts.sweepIntervalMs);
    for (const id of await this.parts.store.unsettled(before)) await this.followUp(id);
  }

  /**
   * One 'failed' listener per registry queue: opened for new queues, closed for deleted ones. The
   * queues there at start are listened to from now on (the first sweep covers their past). A
   * queue heard of later is listened to from a little before it was heard of: its producers may
   * have enqueued and failed jobs before its listener's first read, and with a long sweep interval
   * those would wait for the next sweep. Capture is idempotent, so hearing a failure twice costs a
   * read.
   */
  private syncTaps(queues: QueueSpec[]): void {
    if (this.closed) return;
    const { registry, failed, logger } = this.parts;
    const names = new Set(queues.filter((q) => !q.deadLetter.disabled).map((q) => q.name));
    for (const [name, tap] of this.taps) {
      if (!names.has(name)) {
        this.taps.delete(name);
        // The queue is gone or no longer captured; a listener that fails to close has nothing left to lose.
        void tap.close();
      }
    }
    for (const spec of queues) {
      if (!names.has(spec.name) || this.taps.has(spec.name)) continue;
      const tap = failed.watch(
        spec.name,
        (jobId) => {
          const current = registry.cached().find((q) => q.name === spec.name) ?? spec;
          void this.captureJob(current, jobId).catch((err: Error) => logger.warn({ err: err.message, queue: spec.name, jobId }, 'dead-letter capture failed'));
        },
        (err) => logger.warn({ err: err.message, queue: spec.name }, 'queue events error'),
        this.started ? { sinceMs: Date.now() - SWEEP_OVERLAP_MS } : {},
      );
      this.taps.set(spec.name, tap);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unwatchRegistry?.();
    clearTimeout(this.timer);
    await this.sweeping;
    const taps = [...this.taps.values()];
    this.taps.clear();
    // Closing at shutdown: what a listener misses loses nothing (captures are idempotent and the sweep catches up).
    await Promise.all(taps.map((t) => t.close()));
  }
}

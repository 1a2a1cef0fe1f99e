import {
  computeBackoff,
  DEFAULT_PROCESSOR_WAIT_MS,
  isRateLimited,
  isUnrecoverable,
  JobCancelledError,
  JobTimeoutError,
  PROCESSOR_NOT_FOUND,
  type QueueSpec,
  RateLimitError,
  UnrecoverableError,
} from '@jobmesh/core';
import {
  type Keys,
  type ProcessorWait,
  type QueueRegistry,
  type ServedDirectory,
  jobmeshOpts,
  parentRef,
  recordCancelled,
  toProtoJob,
  traceIdOf,
} from '@jobmesh/queue';
import { FailOutcome } from '@jobmesh/contracts';
import type { JobInfo } from '@jobmesh/sdk';
import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, DelayedError, type Job as BullJob, type MinimalJob, WaitingError, Worker } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { BullJobContext } from './context';
import type { WorkerMetrics } from './metrics';
import type { ProcessorRegistry } from './processors';
import { LeaseLostError, type RemoteDispatcher } from './remote/dispatcher';

export interface RunnerSettings {
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
}

export interface RunnerDeps {
  redis: Redis;
  registry: QueueRegistry;
  keys: Keys;
  processors: ProcessorRegistry;
  connection: RedisOptions;
  metrics: WorkerMetrics;
  logger: Logger;
  settings: RunnerSettings;
  /** This replica's remote workers, who serves what on other replicas, and jobs waiting for a processor. */
  remote: { dispatcher: RemoteDispatcher; directory: ServedDirectory; processorWait: ProcessorWait };
}

/** The abort reason of jobs still running when a replica's shutdown grace period ran out. */
export class WorkerShutdownError extends Error {
  override readonly name = 'WorkerShutdownError';
  constructor() {
    super('the worker shut down before the job finished');
  }
}

/** Cancel requests that arrived before their job started here are kept this long. */
const EARLY_CANCEL_MS = 60_000;

/** A RateLimitError backs the whole queue off for at most this long, whatever it asks for. */
export const MAX_RATE_LIMIT_MS = 3_600_000;

/**
 * BullMQ honours a queue back-off (worker.rateLimit) only when some limit is set, and a worker's
 * limiter duration overrides the queue's. So: the queue's own rate limit, or one too high to bite.
 */
function limiterOf(spec: QueueSpec): { max: number; duration: number } {
  return spec.rateLimit && spec.rateLimit.max > 0
    ? { max: spec.rateLimit.max, duration: spec.rateLimit.durationMs }
    : { max: Number.MAX_SAFE_INTEGER, duration: 60_000 };
}

/** Runs one queue's jobs with in-process processors: one BullMQ Worker, concurrency from the registry. */
export class QueueRunner {
  readonly worker: Worker;
  private readonly active = new Map<string, Attempt>();
  private readonly earlyCancels = new Map<string, { reason: string; at: number }>();
  /** Job names found without a processor and logged as such, until something serves them. */
  private readonly unserved = new Set<string>();
  private spec: QueueSpec;

  constructor(
    readonly queue: string,
    spec: QueueSpec,
    private readonly deps: RunnerDeps,
  ) {
    this.spec = spec;
    const { settings } = deps;
    this.worker = new Worker(queue, (job, token) => this.run(job, token), {
      connection: deps.connection as ConnectionOptions,
      prefix: deps.keys.prefix,
      concurrency: this.slots(spec),
      lockDuration: settings.lockDurationMs,
      stalledInterval: settings.stalledIntervalMs,
      maxStalledCount: settings.maxStalledCount,
      limiter: limiterOf(spec),
      settings: { backoffStrategy: (attemptsMade, _type, err, job) => this.backoff(attemptsMade, err, job) },
    });
    this.worker.on('error', (err) => deps.logger.warn({ err: err.message, queue }, 'worker error'));
    // After moveToFailed: tells a remote worker's Fail what became of the job (retry or final).
    this.worker.on('failed', (job) => job && deps.remote.dispatcher.afterFailed(job));
  }

  /** Jobs held at once: the queue's concurrency, plus what remote workers connected here can take. */
  private slots(spec: QueueSpec): number {
    return spec.concurrency + this.deps.remote.dispatcher.capacity(this.queue);
  }

  /**
   * Applies a registry change live, or (no argument) a change in connected remote workers. Only a
   * registry change wakes BullMQ's fetch loop at once; remote capacity is picked up on its next turn.
   */
  update(spec?: QueueSpec): void {
    const wake = spec !== undefined;
    if (spec) this.spec = spec;
    else spec = this.spec;
    // Who serves what may have changed: a name still without a processor is logged again.
    this.unserved.clear();
    this.worker.opts.limiter = limiterOf(spec);
    const before = this.worker.concurrency;
    const after = this.slots(spec);
    if (before === after) return;
    this.worker.concurrency = after;
    // With `before` jobs running, BullMQ's fetch loop sleeps until one of them ends before it looks
    // at the concurrency again. A pause that does not wait for them, then a resume, wakes it now.
    if (wake && after > before && this.worker.isRunning() && !this.worker.isPaused()) {
      this.worker
        .pause(true)
        .then(() => this.worker.resume())
        .catch((err: Error) => this.deps.logger.warn({ err: err.message, queue: this.queue }, 'could not apply the new concurrency at once'));
    }
  }

  /** Aborts the job if it runs here; otherwise remembers the request in case it starts soon. */
  cancel(jobId: string, reason: string): void {
    const running = this.active.get(jobId);
    if (running) running.abort(new JobCancelledError(reason));
    else {
      const now = Date.now();
      for (const [id, c] of this.earlyCancels) if (now - c.at > EARLY_CANCEL_MS) this.earlyCancels.delete(id);
      this.earlyCancels.set(jobId, { reason, at: now });
    }
  }

  /** The queue's processor_wait, as this runner applies it now. */
  get processorWaitMs(): number {
    return this.spec.processorWaitMs ?? DEFAULT_PROCESSOR_WAIT_MS;
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Ids of the jobs running here now. */
  activeIds(): string[] {
    return [...this.active.keys()];
  }

  private backoff(attemptsMade: number, err: Error | undefined, job: MinimalJob | undefined): number {
    const spec = job ? jobmeshOpts(job as BullJob).backoff : undefined;
    if (!spec) return 1000;
    if (spec.kind === 'custom') {
      // BullMQ calls this while moving the failed job; a throw there would leave the job active
      // until its lock expired, so a broken strategy falls back to the fixed delay.
      const fn = this.deps.processors.backoffs.get(spec.customStrategy ?? '');
      const log = { queue: this.queue, jobId: job!.id, strategy: spec.customStrategy };
      if (!fn) this.deps.logger.warn(log, 'unknown custom backoff strategy; using the fixed delay');
      else {
        try {
          const delay = fn(attemptsMade, err ?? new Error('unknown'), { id: job!.id ?? '', queue: this.queue, name: job!.name });
          if (Number.isFinite(delay)) return Math.max(0, Math.round(delay));
          this.deps.logger.warn({ ...log, delay }, 'custom backoff strategy returned no finite number; using the fixed delay');
        } catch (e) {
          this.deps.logger.warn({ ...log, err: (e as Error)?.message }, 'custom backoff strategy threw; using the fixed delay');
        }
      }
    }
    return computeBackoff(spec, attemptsMade);
  }

  private async run(job: BullJob, token: string | undefined): Promise<unknown> {
    const { metrics, processors } = this.deps;
    const def = processors.resolve(this.queue, job.name);
    const { dispatcher } = this.deps.remote;
    const remote = !def && !!token && dispatcher.canServe(this.queue, job.name);
    if (!def && !remote) await this.noProcessor(job, token);
    const id = job.id!;
    const run = new Attempt();
    this.active.set(id, run);
    const early = this.earlyCancels.get(id);
    if (early) {
      this.earlyCancels.delete(id);
      run.abort(new JobCancelledError(early.reason));
    }
    const timeoutMs = jobmeshOpts(job).timeoutMs;
    const timer = timeoutMs ? setTimeout(() => run.abort(new JobTimeoutError(timeoutMs)), timeoutMs) : undefined;
    const attempt = job.attemptsMade + 1;
    if (job.attemptsStarted <= 1) {
      const readyAt = job.timestamp + (job.opts.delay ?? 0);
      metrics.wait.observe({ queue: this.queue }, Math.max(0, Date.now() - readyAt) / 1000);
    }
    metrics.active.inc({ queue: this.queue });
    const started = process.hrtime.bigint();
    const ctx = new BullJobContext(job, token, run, attempt, this.deps.redis, this.deps.keys, this.deps.registry);
    const info: JobInfo = {
      id,
      queue: this.queue,
      name: job.name,
      data: job.data ?? {},
      attempt,
      maxAttempts: job.opts.attempts ?? 1,
      createdAt: new Date(job.timestamp),
      parent: parentRef(job),
      traceId: traceIdOf(jobmeshOpts(job).traceparent) || undefined,
    };
    try {
      const work = remote ? dispatcher.delegate(this.queue, job, token!, attempt, ctx) : Promise.resolve().then(() => def!.process(info, ctx));
      const result = await Promise.race([work, run.aborted]);
      await ctx.clear();
      metrics.completed.inc({ queue: this.queue, name: job.name });
      return result;
    } catch (thrown) {
      // Once the signal fired, its reason is why the attempt ended, whatever the processor threw.
      const err = asError(run.reason ?? thrown);
      if (remote && run.reason) dispatcher.withdraw(token!, run.reason instanceof JobCancelledError ? run.reason.reason : run.reason.message);
      if (err.name === 'WaitingChildrenError') throw err;
      if (err instanceof WorkerShutdownError || err instanceof LeaseLostError) {
        // Not the job's fault: back to the front of the queue at once, without using an attempt,
        // for another replica. BullMQ leaves a job alone after a WaitingError.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (err instanceof JobCancelledError) {
        await recordCancelled(this.deps.redis, this.deps.keys, toProtoJob(job, this.queue, 'active'), err.reason);
        if (remote) dispatcher.reportOutcome(job, { outcome: FailOutcome.FAIL_OUTCOME_CANCELLED });
        // The CANCELLED record replaces the job: BullMQ removes it in the same step that ends the
        // attempt, so it is never seen as FAILED, retried, or swept up as a dead letter.
        job.opts.removeOnFail = true;
        throw new UnrecoverableError(err.message);
      }
      if (isRateLimited(err)) {
        // Backs off the whole queue (every replica) and puts the job back without using an attempt.
        const backOffMs = Math.min(MAX_RATE_LIMIT_MS, Math.max(1, err.retryAfterMs ?? 1000));
        await this.worker.rateLimit(backOffMs);
        if (remote) dispatcher.reportOutcome(job, { outcome: FailOutcome.FAIL_OUTCOME_RATE_LIMITED, retryAt: new Date(Date.now() + backOffMs) });
        throw Worker.RateLimitError();
      }
      const final = isUnrecoverable(err) || attempt >= (job.opts.attempts ?? 1);
      metrics.failed.inc({ queue: this.queue, name: job.name, final: String(final) });
      throw err;
    } finally {
      clearTimeout(timer);
      this.active.delete(id);
      metrics.active.dec({ queue: this.queue });
      metrics.duration.observe({ queue: this.queue, name: job.name }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /**
   * A job nothing here can run, without using an attempt: if another replica serves its name, it
   * goes back to the queue shortly, for that replica. Else it waits for a processor (ProcessorWait:
   * delayed until its deadline, promoted as soon as something serves the name) for the queue's
   * processor_wait, counted from the first time it came up with nothing to serve it; past that,
   * or with processor_wait 0, it fails for good as PROCESSOR_NOT_FOUND.
   */
  private async noProcessor(job: BullJob, token: string | undefined): Promise<never> {
    const { directory, processorWait } = this.deps.remote;
    const waitMs = this.processorWaitMs;
    if (token && (await directory.servedElsewhere(this.queue, job.name))) {
      await processorWait.handBack(this.queue, job, token);
      throw new DelayedError();
    }
    if (token && waitMs > 0) {
      const now = Date.now();
      const deadline = await processorWait.deadline(this.queue, job, waitMs, now);
      if (deadline > now) {
        const outcome = await processorWait.park(this.queue, job, token, deadline);
        if (outcome === 'parked') this.logUnserved(job.name, waitMs);
        else {
          // A replica serves the name after all: the cached view was stale, or a worker just
          // connected here.
          directory.forget(this.queue);
          if (outcome === 'served') await processorWait.handBack(this.queue, job, token);
        }
        throw new DelayedError();
      }
    }
    this.deps.metrics.failed.inc({ queue: this.queue, name: job.name, final: 'true' });
    const waited = waitMs > 0 ? ` within the queue's processor_wait (${waitMs} ms)` : '';
    throw new UnrecoverableError(`${PROCESSOR_NOT_FOUND}: no processor for job "${job.name}" on queue "${this.queue}"${waited}`);
  }

  /** Once per job name (until who serves what changes), not per job: a backlog logs one line. */
  private logUnserved(name: string, waitMs: number): void {
    if (this.unserved.has(name)) return;
    this.unserved.add(name);
    this.deps.logger.info({ queue: this.queue, name, waitMs }, 'no processor or worker serves this job name; its jobs wait for one');
  }

  /**
   * Stops taking jobs and waits up to `graceMs` for the running ones; then aborts what is left
   * (WorkerShutdownError) and hands those jobs back to the queue.
   */
  async close(graceMs: number): Promise<void> {
    const closing = this.worker.close();
    let timer: NodeJS.Timeout | undefined;
    const expired = await Promise.race([
      closing.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (expired) {
      for (const run of this.active.values()) run.abort(new WorkerShutdownError());
      // The same close as above; it ends once the aborted jobs were handed back.
      await closing;
    }
  }
}

/**
 * One attempt's abort state. Its AbortSignal is made only when the processor reads ctx.signal:
 * an AbortController per job is a measurable share of a no-op job's cost.
 */
class Attempt {
  /** Why the attempt was aborted (timeout, cancel, shutdown), once it was. */
  reason?: Error;
  /** Rejects with the reason when the attempt is aborted; raced against the processor. */
  readonly aborted: Promise<never>;
  private controller?: AbortController;
  private rejectAborted!: (reason: Error) => void;

  constructor() {
    this.aborted = new Promise<never>((_, reject) => (this.rejectAborted = reject));
    // Observed by the race in run(); most attempts are never aborted and must not warn about it.
    this.aborted.catch(() => undefined);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller?.abort(reason);
    this.rejectAborted(reason);
  }
}

/**
 * What a processor threw, as an Error: BullMQ reads `name` and `message` of whatever fails a job
 * (a thrown undefined would break the move to failed and leave the job active until it stalled).
 */
function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  let shown: string;
  try {
    shown = JSON.stringify(thrown) ?? String(thrown);
  } catch {
    shown = String(thrown);
  }
  return new Error(`processor threw ${shown}`);
}

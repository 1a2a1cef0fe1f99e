import {
  computeBackoff,
  DEFAULT_PROCESSOR_WAIT_MS,
  isRateLimited,
  isUnrecoverable,
  JobCancelledError,
  JobTimeoutError,
  PROCESSOR_NOT_FOUND,
  type QueueSpec,
  UnrecoverableError,
} from '@jobmesh/core';
import {
  type Backbone,
  type BackoffSubject,
  type FailedAttempt,
  JobRunner,
  type JobRunnerSettings,
  JobSetAside,
  type ProcessorWait,
  type RunningJob,
  type ServedDirectory,
  type SharedFetch,
  recordCancelled,
  traceIdOf,
} from '@jobmesh/queue';
import { FailOutcome } from '@jobmesh/contracts';
import type { JobInfo } from '@jobmesh/sdk';
import { type AttemptSpan, type Logger, otelContext, startAttemptSpan } from '@jobmesh/telemetry';
import { AttemptContext } from './context';
import { QueueMetrics, type WorkerMetrics } from './metrics';
import type { ProcessorRegistry } from './processors';
import { LeaseLostError, type RemoteDispatcher } from './remote/dispatcher';

export type RunnerSettings = JobRunnerSettings;

export interface RunnerDeps {
  backbone: Backbone;
  processors: ProcessorRegistry;
  metrics: WorkerMetrics;
  logger: Logger;
  settings: RunnerSettings;
  /** Told of every attempt that completed or failed, with how long it ran (the monitor's figures). */
  onAttempt?: (outcome: 'completed' | 'failed', durationMs: number) => void;
  /** This replica's remote workers, who serves what on other replicas, and jobs waiting for a processor. */
  remote: { dispatcher: RemoteDispatcher; directory: ServedDirectory; processorWait: ProcessorWait };
  /** The Redis connections every runner of the replica shares. */
  shared?: SharedFetch;
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

/** Runs one queue's jobs with in-process processors and remote workers: a JobRunner, concurrency from the registry. */
export class QueueRunner {
  readonly jobs: JobRunner;
  private readonly active = new Map<string, Attempt>();
  private readonly earlyCancels = new Map<string, { reason: string; at: number }>();
  /** Job names found without a processor and logged as such, until something serves them. */
  private readonly unserved = new Set<string>();
  private readonly metrics: QueueMetrics;
  private spec: QueueSpec;

  constructor(
    readonly queue: string,
    spec: QueueSpec,
    private readonly deps: RunnerDeps,
  ) {
    this.spec = spec;
    this.metrics = new QueueMetrics(deps.metrics, queue);
    const { dispatcher } = deps.remote;
    this.jobs = new JobRunner(deps.backbone, queue, (job) => this.run(job), {
      ...deps.settings,
      shared: deps.shared,
      concurrency: this.slots(spec),
      rateLimit: spec.rateLimit,
      backoff: (attemptsMade, err, job) => this.backoff(attemptsMade, err, job),
      onError: (err) => deps.logger.warn({ err: err.message, queue }, 'worker error'),
      onStalled: () => this.metrics.stalled.inc(),
      // Tells a remote worker's Fail what became of the job (retry or final).
      onFailed: (job: RunningJob, attempt: FailedAttempt) => dispatcher.afterFailed(job, attempt),
    });
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
    this.jobs.rateLimit = spec.rateLimit;
    const before = this.jobs.concurrency;
    const after = this.slots(spec);
    if (before === after) return;
    this.jobs.concurrency = after;
    if (wake && after > before) {
      this.jobs.wake().catch((err: Error) => this.deps.logger.warn({ err: err.message, queue: this.queue }, 'could not apply the new concurrency at once'));
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

  /** The queue's rate limit, as this runner applies it now. */
  get rateLimit(): QueueSpec['rateLimit'] {
    return this.spec.rateLimit;
  }

  /** Slots not holding a job now: how many handed-off jobs this runner takes at once. */
  get freeSlots(): number {
    return Math.max(0, this.jobs.concurrency - this.active.size);
  }

  /** Whether this replica runs jobs named `name` here now: an in-process processor or a remote worker. */
  serves(name: string): boolean {
    return !!this.deps.processors.resolve(this.queue, name) || this.deps.remote.dispatcher.canServe(this.queue, name);
  }

  /** Ids of the jobs running here now. */
  activeIds(): string[] {
    return [...this.active.keys()];
  }

  private backoff(attemptsMade: number, err: Error | undefined, job: BackoffSubject): number {
    const spec = job.backoff;
    if (!spec) return 1000;
    if (spec.kind === 'custom') {
      // Asked while the failed job is being moved; a throw there would leave the job active
      // until its lock expired, so a broken strategy falls back to the fixed delay.
      const fn = this.deps.processors.backoffs.get(spec.customStrategy ?? '');
      const log = { queue: this.queue, jobId: job.id, strategy: spec.customStrategy };
      if (!fn) this.deps.logger.warn(log, 'unknown custom backoff strategy; using the fixed delay');
      else {
        try {
          const delay = fn(attemptsMade, err ?? new Error('unknown'), { id: job.id, queue: this.queue, name: job.name });
          if (Number.isFinite(delay)) return Math.max(0, Math.round(delay));
          this.deps.logger.warn({ ...log, delay }, 'custom backoff strategy returned no finite number; using the fixed delay');
        } catch (e) {
          this.deps.logger.warn({ ...log, err: (e as Error)?.message }, 'custom backoff strategy threw; using the fixed delay');
        }
      }
    }
    return computeBackoff(spec, attemptsMade);
  }

  private async run(job: RunningJob): Promise<unknown> {
    const { processors } = this.deps;
    const { dispatcher } = this.deps.remote;
    const def = processors.resolve(this.queue, job.name);
    const token = job.lockToken;
    const remote = !def && !!token && dispatcher.canServe(this.queue, job.name);
    if (!def && !remote) await this.noProcessor(job);
    const { id, attempt } = job;
    const run = new Attempt();
    this.active.set(id, run);
    const early = this.earlyCancels.get(id);
    if (early) {
      this.earlyCancels.delete(id);
      run.abort(new JobCancelledError(early.reason));
    }
    const options = job.options;
    const timeoutMs = options.timeoutMs;
    const timer = timeoutMs ? setTimeout(() => run.abort(new JobTimeoutError(timeoutMs)), timeoutMs) : undefined;
    const metrics = this.metrics;
    const waitMs = job.firstStart ? Math.max(0, Date.now() - job.readyAt) : undefined;
    if (waitMs !== undefined) metrics.wait.observe(waitMs / 1000);
    metrics.active.inc();
    const started = process.hrtime.bigint();
    const ctx = new AttemptContext(job, run, this.deps.backbone.registry);
    const span: AttemptSpan = startAttemptSpan({
      queue: this.queue,
      jobId: id,
      name: job.name,
      attempt,
      maxAttempts: job.maxAttempts,
      traceparent: options.traceparent,
      linkTraceparent: options.linkTraceparent,
      scheduleId: job.scheduleId,
      waitMs,
    });
    let outcome: 'completed' | 'failed' | undefined;
    try {
      let work: Promise<unknown>;
      if (remote) work = dispatcher.delegate(this.queue, job, ctx, span);
      else {
        const info: JobInfo = {
          id,
          queue: this.queue,
          name: job.name,
          data: job.data,
          attempt,
          maxAttempts: job.maxAttempts,
          createdAt: job.createdAt,
          parent: job.parent,
          traceId: traceIdOf(options.traceparent) || undefined,
        };
        // In the attempt's span, so the processor's own spans nest under it.
        work = otelContext.with(span.context, () => Promise.resolve().then(() => def!.process(info, ctx)));
      }
      const result = await Promise.race([work, run.aborted]);
      await ctx.clear();
      metrics.completed.inc();
      span.completed();
      outcome = 'completed';
      return result;
    } catch (thrown) {
      // Once the signal fired, its reason is why the attempt ended, whatever the processor threw.
      const err = asError(run.reason ?? thrown);
      if (remote && run.reason) {
        const cancelled = run.reason instanceof JobCancelledError;
        dispatcher.withdraw(token!, cancelled ? (run.reason as JobCancelledError).reason : run.reason.message, cancelled);
      }
      if (err instanceof JobSetAside) {
        span.setAside(err.kind);
        throw err;
      }
      if (err instanceof WorkerShutdownError || err instanceof LeaseLostError) {
        // Not the job's fault: back to the front of the queue at once, without using an attempt,
        // for another replica.
        span.setAside('requeued');
        await job.requeue();
        throw new JobSetAside('requeued', err.message);
      }
      if (err instanceof JobCancelledError) {
        span.setAside('cancelled');
        const { backbone } = this.deps;
        await recordCancelled(backbone.redis, backbone.registry.keys, job.snapshot('active'), err.reason);
        if (remote) dispatcher.reportOutcome(job, { outcome: FailOutcome.FAIL_OUTCOME_CANCELLED });
        // The CANCELLED record replaces the job: it is removed in the same step that ends the
        // attempt, so it is never seen as FAILED, retried, or swept up as a dead letter.
        job.removeOnFailure();
        throw new UnrecoverableError(err.message);
      }
      if (isRateLimited(err)) {
        // Backs off the whole queue (every replica) and puts the job back without using an attempt.
        const backOffMs = Math.min(MAX_RATE_LIMIT_MS, Math.max(1, err.retryAfterMs ?? 1000));
        await this.jobs.backOff(backOffMs);
        if (remote) dispatcher.reportOutcome(job, { outcome: FailOutcome.FAIL_OUTCOME_RATE_LIMITED, retryAt: new Date(Date.now() + backOffMs) });
        span.setAside('rate-limited');
        throw new JobSetAside('rate-limited', err.message);
      }
      const final = isUnrecoverable(err) || attempt >= job.maxAttempts;
      metrics.failure(err.name, final);
      span.failed(err, final);
      outcome = 'failed';
      throw err;
    } finally {
      clearTimeout(timer);
      this.active.delete(id);
      metrics.active.dec();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.duration.observe(seconds);
      if (outcome) this.deps.onAttempt?.(outcome, seconds * 1000);
    }
  }

  /**
   * A job nothing here can run, without using an attempt: if another replica serves its name, it
   * is handed off to the replicas that serve it (ProcessorWait.handOff). Else it waits for a processor (ProcessorWait:
   * delayed until its deadline, promoted as soon as something serves the name) for the queue's
   * processor_wait, counted from the first time it came up with nothing to serve it; past that,
   * or with processor_wait 0, it fails for good as PROCESSOR_NOT_FOUND. A job set aside gives
   * back what its fetch took from the queue's rate limit: it did not run.
   */
  private async noProcessor(job: RunningJob): Promise<never> {
    const { directory, processorWait } = this.deps.remote;
    const waitMs = this.processorWaitMs;
    const held = !!job.lockToken;
    if (held && (await directory.servedElsewhere(this.queue, job.name))) {
      // None serves it after all (the cached view was stale): it is back in the queue, and the
      // next look at the directory reads it afresh.
      if (!(await processorWait.handOff(job, this.spec.rateLimit))) directory.forget(this.queue);
      throw new JobSetAside('delayed', 'handed off to a replica that serves its name');
    }
    if (held && waitMs > 0) {
      const now = Date.now();
      const deadline = await processorWait.deadline(job, waitMs, now);
      if (deadline > now) {
        const outcome = await processorWait.park(job, deadline, this.spec.rateLimit);
        if (outcome === 'parked') this.logUnserved(job.name, waitMs);
        else {
          // A replica serves the name after all: the cached view was stale, or a worker just
          // connected here.
          directory.forget(this.queue);
          if (outcome === 'served') await processorWait.handOff(job, this.spec.rateLimit);
        }
        throw new JobSetAside('delayed', 'waits for a processor');
      }
    }
    this.metrics.failure('ProcessorNotFound', true);
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
    const closing = this.jobs.close();
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
 * What a processor threw, as an Error: the runner reads `name` and `message` of whatever fails a job
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

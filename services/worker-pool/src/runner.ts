import {
  computeBackoff,
  JobCancelledError,
  JobTimeoutError,
  PROCESSOR_NOT_FOUND,
  type QueueSpec,
  RateLimitError,
  UnrecoverableError,
} from '@jobmesh/core';
import { type Keys, type QueueRegistry, jobmeshOpts, parentRef, recordCancelled, toProtoJob, traceIdOf } from '@jobmesh/queue';
import type { JobInfo } from '@jobmesh/sdk';
import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, type Job as BullJob, type MinimalJob, Worker } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { BullJobContext } from './context';
import type { WorkerMetrics } from './metrics';
import type { ProcessorRegistry } from './processors';

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
}

/** Cancel requests that arrived before their job started here are kept this long. */
const EARLY_CANCEL_MS = 60_000;

/** Runs one queue's jobs with in-process processors: one BullMQ Worker, concurrency from the registry. */
export class QueueRunner {
  readonly worker: Worker;
  private readonly active = new Map<string, AbortController>();
  private readonly earlyCancels = new Map<string, { reason: string; at: number }>();
  private readonly cancelled = new Set<string>();

  constructor(
    readonly queue: string,
    spec: QueueSpec,
    private readonly deps: RunnerDeps,
  ) {
    const { settings } = deps;
    this.worker = new Worker(queue, (job, token, signal) => this.run(job, token, signal), {
      connection: deps.connection as ConnectionOptions,
      prefix: deps.keys.prefix,
      concurrency: spec.concurrency,
      lockDuration: settings.lockDurationMs,
      stalledInterval: settings.stalledIntervalMs,
      maxStalledCount: settings.maxStalledCount,
      settings: { backoffStrategy: (attemptsMade, _type, err, job) => this.backoff(attemptsMade, err, job) },
    });
    this.worker.on('error', (err) => deps.logger.warn({ err: err.message, queue }, 'worker error'));
    this.worker.on('failed', (job) => {
      // A cancelled job was recorded as CANCELLED before it failed; drop BullMQ's failed copy.
      if (job?.id && this.cancelled.delete(job.id)) void job.remove().catch(() => undefined);
    });
  }

  /** Applies a registry change live. */
  update(spec: QueueSpec): void {
    if (this.worker.concurrency !== spec.concurrency) this.worker.concurrency = spec.concurrency;
  }

  /** Aborts the job if it runs here; otherwise remembers the request in case it starts soon. */
  cancel(jobId: string, reason: string): void {
    const controller = this.active.get(jobId);
    if (controller) controller.abort(new JobCancelledError(reason));
    else {
      const now = Date.now();
      for (const [id, c] of this.earlyCancels) if (now - c.at > EARLY_CANCEL_MS) this.earlyCancels.delete(id);
      this.earlyCancels.set(jobId, { reason, at: now });
    }
  }

  get activeCount(): number {
    return this.active.size;
  }

  private backoff(attemptsMade: number, err: Error | undefined, job: MinimalJob | undefined): number {
    const spec = job ? jobmeshOpts(job as BullJob).b : undefined;
    if (!spec) return 1000;
    if (spec.kind === 'custom') {
      const fn = this.deps.processors.backoffs.get(spec.customStrategy ?? '');
      if (fn) return Math.max(0, fn(attemptsMade, err ?? new Error('unknown'), { id: job!.id ?? '', queue: this.queue, name: job!.name }));
      this.deps.logger.warn({ queue: this.queue, strategy: spec.customStrategy }, 'unknown custom backoff strategy; using the fixed delay');
    }
    return computeBackoff(spec, attemptsMade);
  }

  private async run(job: BullJob, token: string | undefined, bullSignal?: AbortSignal): Promise<unknown> {
    const { metrics, processors } = this.deps;
    const def = processors.resolve(this.queue, job.name);
    if (!def) {
      throw new UnrecoverableError(`${PROCESSOR_NOT_FOUND}: no processor for job "${job.name}" on queue "${this.queue}"`);
    }
    const id = job.id!;
    const controller = new AbortController();
    this.active.set(id, controller);
    bullSignal?.addEventListener('abort', () => controller.abort(bullSignal.reason), { once: true });
    const early = this.earlyCancels.get(id);
    if (early) {
      this.earlyCancels.delete(id);
      controller.abort(new JobCancelledError(early.reason));
    }
    const timeoutMs = jobmeshOpts(job).to;
    const timer = timeoutMs ? setTimeout(() => controller.abort(new JobTimeoutError(timeoutMs)), timeoutMs) : undefined;
    const attempt = job.attemptsMade + 1;
    if (job.attemptsStarted <= 1) {
      const readyAt = job.timestamp + (job.opts.delay ?? 0);
      metrics.wait.observe({ queue: this.queue }, Math.max(0, Date.now() - readyAt) / 1000);
    }
    metrics.active.inc({ queue: this.queue });
    const started = process.hrtime.bigint();
    const ctx = new BullJobContext(job, token, controller.signal, attempt, this.deps.redis, this.deps.keys, this.deps.registry);
    const info: JobInfo = {
      id,
      queue: this.queue,
      name: job.name,
      data: job.data ?? {},
      attempt,
      maxAttempts: job.opts.attempts ?? 1,
      createdAt: new Date(job.timestamp),
      parent: parentRef(job),
      traceId: traceIdOf(jobmeshOpts(job).tp) || undefined,
    };
    const aborted = new Promise<never>((_, reject) => {
      const fail = (): void => reject(controller.signal.reason);
      if (controller.signal.aborted) fail();
      else controller.signal.addEventListener('abort', fail, { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const result = await Promise.race([Promise.resolve().then(() => def.process(info, ctx)), aborted]);
      await ctx.clear();
      metrics.completed.inc({ queue: this.queue, name: job.name });
      return result;
    } catch (raw) {
      const err = controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason : (raw as Error);
      if (err?.name === 'WaitingChildrenError') throw err;
      if (err instanceof JobCancelledError) {
        this.cancelled.add(id);
        await recordCancelled(this.deps.redis, this.deps.keys, toProtoJob(job, this.queue, 'active'), err.reason);
        throw new UnrecoverableError(err.message);
      }
      if (err?.name === 'RateLimitError') {
        // Backs off the whole queue (every replica) and puts the job back without using an attempt.
        await this.worker.rateLimit(Math.max(1, (err as RateLimitError).retryAfterMs ?? 1000));
        throw Worker.RateLimitError();
      }
      const final = err?.name === 'UnrecoverableError' || attempt >= (job.opts.attempts ?? 1);
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
   * Stops taking jobs and waits up to `graceMs` for the running ones; then aborts what is left,
   * whose locks lapse so another replica picks them up as stalled.
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
      for (const c of this.active.values()) c.abort(new Error('worker shut down before the job finished'));
      await this.worker.close(true);
    }
  }
}


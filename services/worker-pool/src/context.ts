import { InvalidArgumentError, resolveJobOptions, validateJobId, validateJobName, validateJobOptions, validateQueueName } from '@jobmesh/core';
import { type Keys, type QueueRegistry, jobmeshOpts, toBullOptions } from '@jobmesh/queue';
import type { ChildJobSpec, JobContext } from '@jobmesh/sdk';
import { type Job as BullJob, WaitingChildrenError } from 'bullmq';
import type { Redis } from 'ioredis';

/** Step results outlive the job's retries by this much, then Redis drops them. */
const STEPS_TTL_MS = 7 * 24 * 3_600_000;

/** JobContext over a BullMQ job held by this worker. */
export class BullJobContext implements JobContext {
  /** The job's stored step results, once read; the record is removed when the job completes. */
  private steps?: Map<string, unknown>;

  constructor(
    private readonly job: BullJob,
    private readonly token: string | undefined,
    private readonly abortable: { readonly signal: AbortSignal },
    readonly attempt: number,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly registry: QueueRegistry,
  ) {}

  /** Made on first use (see Attempt in runner.ts). */
  get signal(): AbortSignal {
    return this.abortable.signal;
  }

  private get stepsKey(): string {
    return this.keys.steps(this.job.queueName, this.job.id!);
  }

  async progress(value: number | Record<string, unknown>): Promise<void> {
    await this.job.updateProgress(value);
  }

  async log(message: string): Promise<void> {
    await Promise.all([
      this.job.log(message),
      this.redis.xadd(this.keys.events(this.job.queueName), 'MAXLEN', '~', 10_000, '*', 'event', 'log', 'jobId', this.job.id!, 'message', message),
    ]);
  }

  private async loadSteps(): Promise<Map<string, unknown>> {
    if (!this.steps) {
      const stored = await this.redis.hgetall(this.stepsKey);
      this.steps = new Map(Object.entries(stored).map(([k, v]) => [k, JSON.parse(v) as unknown]));
    }
    return this.steps;
  }

  private async saveStep(name: string, value: unknown): Promise<void> {
    this.steps!.set(name, value);
    await this.redis.multi().hset(this.stepsKey, name, JSON.stringify(value ?? null)).pexpire(this.stepsKey, STEPS_TTL_MS).exec();
  }

  async step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    if (!name) throw new InvalidArgumentError('step name', 'is required');
    const steps = await this.loadSteps();
    if (steps.has(`step:${name}`)) return steps.get(`step:${name}`) as T;
    this.signal.throwIfAborted();
    const value = await fn();
    await this.saveStep(`step:${name}`, value);
    return value;
  }

  async runChildren(name: string, children: ChildJobSpec[]): Promise<Record<string, unknown>> {
    const steps = await this.loadSteps();
    const key = `children:${name}`;
    if (!steps.has(key)) {
      // Every child is checked before any is added, so a bad one cannot leave the others behind
      // to be added again by the next attempt.
      const traceparent = jobmeshOpts(this.job).tp;
      const prepared = await Promise.all(
        children.map(async (c, i) => {
          const queue = validateQueueName(c.queue ?? this.job.queueName, `children[${i}].queue`);
          validateJobName(c.name, `children[${i}].name`);
          if (c.jobId !== undefined) validateJobId(c.jobId, `children[${i}].jobId`);
          validateJobOptions({ attempts: c.attempts }, `children[${i}]`);
          // Like an enqueued job, a child takes its queue's default options (attempts, backoff, retention).
          const spec = await this.registry.get(queue);
          const opts = toBullOptions(resolveJobOptions({ attempts: c.attempts }, spec.defaultJobOptions), { jobId: c.jobId, traceparent, holdFailed: !spec.deadLetter.disabled });
          return { queue, name: c.name, data: c.data ?? {}, opts };
        }),
      );
      const parent = { id: this.job.id!, queue: this.job.queueQualifiedName };
      for (const c of prepared) await this.registry.bullQueue(c.queue).add(c.name, c.data, { ...c.opts, parent });
      await this.saveStep(key, children.length);
      if (this.token && (await this.job.moveToWaitingChildren(this.token))) throw new WaitingChildrenError();
    }
    return this.childrenResults();
  }

  async childrenResults(): Promise<Record<string, unknown>> {
    // BullMQ keys them by the child's Redis key, "<prefix>:<queue>:<id>"; the prefix is ours to hide.
    const values: Record<string, unknown> = (await this.job.getChildrenValues()) ?? {};
    const prefix = `${this.keys.prefix}:`;
    return Object.fromEntries(Object.entries(values).map(([key, v]) => [key.startsWith(prefix) ? key.slice(prefix.length) : key, v]));
  }

  /** Removes the job's step results, if it has any; called once it completed. */
  async clear(): Promise<void> {
    if (this.steps?.size) await this.redis.del(this.stepsKey);
  }
}

import { InvalidArgumentError, validateJobName, validateQueueName } from '@jobmesh/core';
import type { Keys, QueueRegistry } from '@jobmesh/queue';
import type { ChildJobSpec, JobContext } from '@jobmesh/sdk';
import { type Job as BullJob, WaitingChildrenError } from 'bullmq';
import type { Redis } from 'ioredis';

/** Step results outlive the job's retries by this much, then Redis drops them. */
const STEPS_TTL_MS = 7 * 24 * 3_600_000;

/** JobContext over a BullMQ job held by this worker. */
export class BullJobContext implements JobContext {
  private steps?: Map<string, unknown>;
  /** True once a step result was written, so the record is removed when the job completes. */
  usedSteps = false;

  constructor(
    private readonly job: BullJob,
    private readonly token: string | undefined,
    readonly signal: AbortSignal,
    readonly attempt: number,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly registry: QueueRegistry,
  ) {}

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
    this.usedSteps = true;
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
      const parent = { id: this.job.id!, queue: this.job.queueQualifiedName };
      for (const [i, c] of children.entries()) {
        const queue = validateQueueName(c.queue ?? this.job.queueName, `children[${i}].queue`);
        await this.registry.get(queue);
        validateJobName(c.name, `children[${i}].name`);
        await this.registry
          .bullQueue(queue)
          .add(c.name, c.data ?? {}, { parent, ...(c.jobId && { jobId: c.jobId }), ...(c.attempts && { attempts: c.attempts }) });
      }
      await this.saveStep(key, children.length);
      if (this.token && (await this.job.moveToWaitingChildren(this.token))) throw new WaitingChildrenError();
    }
    return this.job.getChildrenValues();
  }

  /** Removes the job's step results; called once it completed. */
  async clear(): Promise<void> {
    if (this.usedSteps) await this.redis.del(this.stepsKey);
  }
}

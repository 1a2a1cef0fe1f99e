import { InvalidArgumentError, resolveJobOptions, validateJobId, validateJobName, validateJobOptions, validateQueueName } from '@jobmesh/core';
import { type Keys, type NewChildJob, type QueueRegistry, addChildJobs, appendJobEvent, childJobId, jobmeshOpts, toBullOptions } from '@jobmesh/queue';
import type { ChildJobSpec, JobContext } from '@jobmesh/sdk';
import { type Job as BullJob, WaitingChildrenError } from 'bullmq';
import type { Redis } from 'ioredis';

/** Step results outlive the job's retries by this much, then Redis drops them. */
const STEPS_TTL_MS = 7 * 24 * 3_600_000;
const STEP = 'step:';
const CHILDREN = 'children:';

/** What earlier runs of a job left for this one: see {@link BullJobContext.resumeState}. */
export interface ResumeState {
  /** Step results by step name. */
  steps: Record<string, unknown>;
  /** The runChildren / AddChildren names whose children were added already. */
  childrenAdded: string[];
  /** The completed children's results, keyed "queue:id"; undefined when not read. */
  childrenResults?: Record<string, unknown>;
}

/** The outcome of adding children: whether the job now waits for them, and who they are. */
export interface ChildrenAdded {
  /** True when the job moved to WAITING_CHILDREN: this attempt is over. */
  waiting: boolean;
  /** The children, in the order given (empty when an earlier run added them). */
  children: { queue: string; id: string }[];
}

/**
 * JobContext over a BullMQ job held by this worker. The runner makes one per attempt; for a job
 * run by a remote worker, the dispatcher uses the same object to carry out the worker's SaveStep,
 * AddChildren and GetChildrenResults.
 */
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
      appendJobEvent(this.redis, this.keys, this.job.queueName, this.job.id!, 'log', { message }),
    ]);
  }

  private async loadSteps(): Promise<Map<string, unknown>> {
    if (!this.steps) {
      const stored = await this.redis.hgetall(this.stepsKey);
      this.steps = new Map(Object.entries(stored).map(([k, v]) => [k, JSON.parse(v) as unknown]));
    }
    return this.steps;
  }

  private async store(key: string, value: unknown): Promise<void> {
    (await this.loadSteps()).set(key, value);
    await this.redis.multi().hset(this.stepsKey, key, JSON.stringify(value ?? null)).pexpire(this.stepsKey, STEPS_TTL_MS).exec();
  }

  /**
   * What earlier runs of the job saved, for a remote worker's Assignment. A job's first run
   * (started once) cannot have anything saved, so nothing is read for it and the normal path costs
   * no Redis round trip; its children's results are then not read either (undefined).
   */
  async resumeState(): Promise<ResumeState> {
    if (this.job.attemptsStarted <= 1) {
      this.steps ??= new Map();
      return { steps: {}, childrenAdded: [] };
    }
    const [saved, childrenResults] = await Promise.all([this.loadSteps(), this.childrenResults()]);
    const steps: Record<string, unknown> = {};
    const childrenAdded: string[] = [];
    for (const [key, value] of saved) {
      if (key.startsWith(STEP)) steps[key.slice(STEP.length)] = value;
      else if (key.startsWith(CHILDREN)) childrenAdded.push(key.slice(CHILDREN.length));
    }
    return { steps, childrenAdded, childrenResults };
  }

  /** Stores a step's result, as ctx.step does once `fn` returned. */
  async saveStep(name: string, value: unknown): Promise<void> {
    if (!name) throw new InvalidArgumentError('step name', 'is required');
    await this.store(`${STEP}${name}`, value);
  }

  async step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    if (!name) throw new InvalidArgumentError('step name', 'is required');
    const steps = await this.loadSteps();
    if (steps.has(`${STEP}${name}`)) return steps.get(`${STEP}${name}`) as T;
    this.signal.throwIfAborted();
    const value = await fn();
    await this.saveStep(name, value);
    return value;
  }

  /**
   * Adds the children once per `name` (all or none, in one step) and moves the job to
   * WAITING_CHILDREN if any of them has not completed yet. A child without a `jobId` gets one
   * derived from this job, `name` and its position, so adding them again adds nothing.
   */
  async addChildren(name: string, children: ChildJobSpec[], field = 'children'): Promise<ChildrenAdded> {
    if (!name) throw new InvalidArgumentError(`${field} name`, 'is required');
    const steps = await this.loadSteps();
    const key = `${CHILDREN}${name}`;
    if (steps.has(key)) return { waiting: false, children: [] };
    // Every child is checked before any is added.
    const traceparent = jobmeshOpts(this.job).traceparent;
    const prepared: NewChildJob[] = await Promise.all(
      children.map(async (c, i) => {
        const queue = validateQueueName(c.queue ?? this.job.queueName, `${field}[${i}].queue`);
        validateJobName(c.name, `${field}[${i}].name`);
        const jobId = c.jobId !== undefined ? validateJobId(c.jobId, `${field}[${i}].job_id`) : childJobId(this.job.queueName, this.job.id!, name, i);
        validateJobOptions({ attempts: c.attempts }, `${field}[${i}]`);
        // Like an enqueued job, a child takes its queue's default options (attempts, backoff, retention).
        const spec = await this.registry.get(queue);
        const opts = toBullOptions(resolveJobOptions({ attempts: c.attempts }, spec.defaultJobOptions), { jobId, traceparent, holdFailed: !spec.deadLetter.disabled });
        return { queue, name: c.name, data: c.data ?? {}, opts };
      }),
    );
    const ids = await addChildJobs(this.redis, this.keys.prefix, { id: this.job.id!, queue: this.job.queueQualifiedName }, prepared);
    const refs = prepared.map((c, i) => ({ queue: c.queue, id: ids[i]! }));
    await this.store(key, refs.length);
    const waiting = !!this.token && (await this.job.moveToWaitingChildren(this.token));
    return { waiting, children: refs };
  }

  async runChildren(name: string, children: ChildJobSpec[]): Promise<Record<string, unknown>> {
    if ((await this.addChildren(name, children)).waiting) throw new WaitingChildrenError();
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

import { InvalidArgumentError, resolveJobOptions, validateJobId, validateJobName, validateJobOptions, validateQueueName } from '@jobmesh/core';
import { JobSetAside, type NewChildJob, type QueueRegistry, type RunningJob, childJobId, toBullOptions } from '@jobmesh/queue';
import type { ChildJobSpec, JobContext } from '@jobmesh/sdk';

const STEP = 'step:';
const CHILDREN = 'children:';

/** What earlier runs of a job left for this one: see {@link AttemptContext.resumeState}. */
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
 * JobContext over a job this replica runs. The runner makes one per attempt; for a job run by a
 * remote worker, the dispatcher uses the same object to carry out the worker's SaveStep,
 * AddChildren and GetChildrenResults.
 */
export class AttemptContext implements JobContext {
  constructor(
    readonly job: RunningJob,
    private readonly abortable: { readonly signal: AbortSignal },
    private readonly registry: QueueRegistry,
  ) {}

  get attempt(): number {
    return this.job.attempt;
  }

  /** Made on first use (see Attempt in runner.ts). */
  get signal(): AbortSignal {
    return this.abortable.signal;
  }

  progress(value: number | Record<string, unknown>): Promise<void> {
    return this.job.progress(value);
  }

  log(message: string): Promise<void> {
    return this.job.log(message);
  }

  /**
   * What earlier runs of the job saved, for a remote worker's Assignment. A job's first run
   * (started once) cannot have anything saved, so nothing is read for it and the normal path costs
   * no Redis round trip; its children's results are then not read either (undefined).
   */
  async resumeState(): Promise<ResumeState> {
    if (this.job.firstStart) {
      await this.job.resumedSteps();
      return { steps: {}, childrenAdded: [] };
    }
    const [saved, childrenResults] = await Promise.all([this.job.steps(), this.childrenResults()]);
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
    await this.job.saveStep(`${STEP}${name}`, value);
  }

  async step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    if (!name) throw new InvalidArgumentError('step name', 'is required');
    const steps = await this.job.steps();
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
    const steps = await this.job.steps();
    const key = `${CHILDREN}${name}`;
    if (steps.has(key)) return { waiting: false, children: [] };
    // Every child is checked before any is added.
    const { job } = this;
    const traceparent = job.options.traceparent;
    const prepared: NewChildJob[] = await Promise.all(
      children.map(async (c, i) => {
        const queue = validateQueueName(c.queue ?? job.queue, `${field}[${i}].queue`);
        validateJobName(c.name, `${field}[${i}].name`);
        const jobId = c.jobId !== undefined ? validateJobId(c.jobId, `${field}[${i}].job_id`) : childJobId(job.queue, job.id, name, i);
        validateJobOptions({ attempts: c.attempts }, `${field}[${i}]`);
        // Like an enqueued job, a child takes its queue's default options (attempts, backoff, retention).
        const spec = await this.registry.get(queue);
        const opts = toBullOptions(resolveJobOptions({ attempts: c.attempts }, spec.defaultJobOptions), { jobId, traceparent, holdFailed: !spec.deadLetter.disabled });
        return { queue, name: c.name, data: c.data ?? {}, opts };
      }),
    );
    const ids = await job.addChildren(prepared);
    const refs = prepared.map((c, i) => ({ queue: c.queue, id: ids[i]! }));
    await job.saveStep(key, refs.length);
    return { waiting: await job.waitForChildren(), children: refs };
  }

  async runChildren(name: string, children: ChildJobSpec[]): Promise<Record<string, unknown>> {
    if ((await this.addChildren(name, children)).waiting) throw new JobSetAside('waiting-children');
    return this.childrenResults();
  }

  childrenResults(): Promise<Record<string, unknown>> {
    return this.job.childrenResults();
  }

  /** Removes the job's step results, if it has any; called once it completed. */
  clear(): Promise<void> {
    return this.job.clearSteps();
  }
}

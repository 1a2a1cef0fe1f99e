import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, type Job, Queue, Worker } from 'bullmq';
import type { Backbone } from './backbone';

/** One run of a task: its data, and which attempt this is. */
export interface Task<T> {
  /** The id it was added with. */
  id: string;
  data: T;
  /** This attempt, from 1. */
  attempt: number;
  /** Attempts it has in all. */
  attempts: number;
}

export interface AddTaskOptions {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay before the first retry, ms; it doubles after each. */
  backoffMs: number;
  /** How many finished tasks are kept, and how long (for inspection), of each outcome. */
  keepDone: { count: number; ageMs: number };
  keepFailed: { count: number; ageMs: number };
}

/** Where a task is: waiting or between attempts (`pending`), `done`, or given up (`failed`). */
export type TaskState = 'pending' | 'done' | 'failed';

export interface TaskQueueOptions {
  logger: Logger;
  /** What the queue is for, in log lines ("dead-letter alert"). */
  what: string;
}

/**
 * A durable queue of Jobmesh's own background work, on BullMQ: a task survives a restart and is
 * retried with exponential backoff until it succeeds, throws an UnrecoverableError (libs/core's;
 * BullMQ knows it by name) or runs out of attempts. Its name starts with `_`, so its keys
 * (`<prefix>:<name>:…`) sit among Jobmesh's own, no user queue can take it, and the queue
 * registry never lists it (no worker-pool runs it, no dead letter is captured from it).
 */
export class TaskQueue<T> {
  // Untyped inside: BullMQ's generics cannot resolve a job name type for a type parameter.
  private readonly queue: Queue;
  private worker: Worker | undefined;

  constructor(
    private readonly name: string,
    private readonly backbone: Pick<Backbone, 'redis' | 'registry' | 'workerConnection'>,
    private readonly opts: TaskQueueOptions,
  ) {
    if (!name.startsWith('_')) throw new Error(`a task queue's name starts with "_" (Jobmesh's own keys), got "${name}"`);
    this.queue = new Queue(name, { connection: backbone.redis, prefix: backbone.registry.keys.queuePrefix(name), skipWaitingForReady: true });
    this.queue.on('error', (err) => opts.logger.warn({ err: err.message }, `${opts.what} queue error`));
  }

  /** Adds a task; one with this id already there (pending or kept) is left as it is, so a task is added at most once. */
  async add(id: string, data: T, o: AddTaskOptions): Promise<void> {
    await this.queue.add('task', data, {
      jobId: taskJobId(id),
      attempts: o.attempts,
      backoff: { type: 'exponential', delay: o.backoffMs },
      // BullMQ's `age` is in seconds.
      removeOnComplete: { count: o.keepDone.count, age: Math.ceil(o.keepDone.ageMs / 1000) },
      removeOnFail: { count: o.keepFailed.count, age: Math.ceil(o.keepFailed.ageMs / 1000) },
    });
  }

  /**
   * Starts running tasks, those added before a restart included, `concurrency` at once, on a
   * connection of its own that reconnects by itself. `handler` throws to have the task retried
   * (an UnrecoverableError: given up at once). Once only.
   */
  run(handler: (task: Task<T>) => Promise<void>, concurrency: number): void {
    if (this.worker) return;
    const runJob = (job: Job): Promise<void> =>
      handler({ id: taskIdOf(job.id ?? ''), data: job.data as T, attempt: job.attemptsMade + 1, attempts: job.opts.attempts ?? 1 });
    this.worker = new Worker(this.name, runJob, {
      connection: this.backbone.workerConnection as ConnectionOptions,
      prefix: this.backbone.registry.keys.queuePrefix(this.name),
      concurrency,
    });
    this.worker.on('error', (err) => this.opts.logger.warn({ err: err.message }, `${this.opts.what} worker error`));
  }

  /** Where task `id` is; undefined when there is none (never added, or no longer kept). */
  async state(id: string): Promise<TaskState | undefined> {
    const s = await this.queue.getJobState(taskJobId(id));
    if (s === 'unknown') return undefined;
    return s === 'completed' ? 'done' : s === 'failed' ? 'failed' : 'pending';
  }

  /** Why task `id` was given up (its last attempt's message); undefined unless it failed. */
  async failure(id: string): Promise<string | undefined> {
    const job = await this.queue.getJob(taskJobId(id));
    return job?.finishedOn && job.failedReason ? job.failedReason : undefined;
  }

  /** Stops running tasks (after those running now finish), then closes the queue. */
  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
  }
}

/** BullMQ refuses a custom job id with ':' (it takes it for a repeatable job's): escaped, reversibly. */
const taskJobId = (id: string): string => id.replace(/%/g, '%25').replace(/:/g, '%3A');
const taskIdOf = (jobId: string): string => jobId.replace(/%3A/g, ':').replace(/%25/g, '%');

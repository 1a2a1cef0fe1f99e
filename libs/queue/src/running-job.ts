// A job held by a JobRunner for one attempt, in Jobmesh's terms: what a processor may read and do.
import type * as pb from '@jobmesh/contracts';
import type { JobStateName } from '@jobmesh/core';
import type { Job as BullJob } from 'bullmq';
import type { RedisClient } from './connection';
import { addChildJobs, type NewChildJob } from './children';
import { appendJobEvent } from './events';
import { type JobmeshOpts, jobmeshOpts, parentRef, toProtoJob } from './job-mapping';
import type { Keys } from './keys';

/** A job's saved step results outlive its retries by this much, then Redis drops them. */
export const STEPS_TTL_MS = 7 * 24 * 3_600_000;

/** What a RunningJob needs of the backbone: the connection its own writes go through, and the keys. */
export interface JobStore {
  redis: RedisClient;
  keys: Keys;
}

/**
 * Why an attempt ended without completing or failing. A JobRunner's processor throws one (after
 * doing what its kind says); the runner then leaves the job where it was put, without using an
 * attempt and without recording a failure.
 * - `requeued`: the job was moved back to the front of waiting ({@link RunningJob.requeue}).
 * - `delayed`: the job was moved to the delayed set (ProcessorWait parked or handed it back).
 * - `waiting-children`: the job waits for its children ({@link RunningJob.waitForChildren} said so).
 * - `rate-limited`: the queue was backed off ({@link JobRunner.backOff}); the job goes back to
 *   waiting and runs when the back-off ends.
 */
export class JobSetAside extends Error {
  override readonly name = 'JobSetAside';
  constructor(
    readonly kind: 'requeued' | 'delayed' | 'waiting-children' | 'rate-limited',
    message: string = kind,
  ) {
    super(message);
  }
}

/**
 * One attempt of a job, held by this process under a lock token. Made by a JobRunner for each job
 * it fetches (one object, no Redis round trip); its methods write through to Redis.
 */
export class RunningJob {
  /** The job's saved step results, once read (see steps()). */
  private saved?: Map<string, unknown>;

  /** @internal Made by JobRunner; `job` is BullMQ's, locked with `lockToken`. */
  constructor(
    private readonly job: BullJob,
    /** The token this process holds the job's lock with; undefined when it holds none. */
    readonly lockToken: string | undefined,
    readonly queue: string,
    private readonly store: JobStore,
  ) {}

  get id(): string {
    return this.job.id!;
  }

  get name(): string {
    return this.job.name;
  }

  get data(): Record<string, unknown> {
    return (this.job.data ?? {}) as Record<string, unknown>;
  }

  /** This attempt's number, from 1. */
  get attempt(): number {
    return this.job.attemptsMade + 1;
  }

  /** Attempts the job may use in all. */
  get maxAttempts(): number {
    return this.job.opts.attempts ?? 1;
  }

  /** True on the job's first start: no earlier run can have saved anything. */
  get firstStart(): boolean {
    return this.job.attemptsStarted <= 1;
  }

  get createdAt(): Date {
    return new Date(this.job.timestamp);
  }

  /** When the job could first run (enqueue time plus its enqueue delay), ms. */
  get readyAt(): number {
    return this.job.timestamp + (this.job.opts.delay ?? 0);
  }

  /** The parent job, for a child of a flow. */
  get parent(): pb.JobRef | undefined {
    return parentRef(this.job);
  }

  /** The schedule that added the job, if one did. */
  get scheduleId(): string | undefined {
    return this.job.repeatJobKey || undefined;
  }

  /** Jobmesh's own options on the job: timeout, backoff, traceparent, … */
  get options(): JobmeshOpts {
    return jobmeshOpts(this.job);
  }

  /** The job as a jobmesh.v1 Job message, in `state`. */
  snapshot(state: JobStateName = 'active'): pb.Job {
    return toProtoJob(this.job, this.queue, state);
  }

  /** Stores the job's progress (GetJob shows it; WatchJob sends a PROGRESS event). */
  async progress(value: unknown): Promise<void> {
    await this.job.updateProgress(value as number);
  }

  /** Adds a line to the job's log and a LOG event to its queue's event stream (WatchJob). */
  async log(message: string): Promise<void> {
    await Promise.all([this.job.log(message), appendJobEvent(this.store.redis, this.store.keys, this.queue, this.id, 'log', { message })]);
  }

  private get stepsKey(): string {
    return this.store.keys.steps(this.queue, this.id);
  }

  /** What earlier runs of the job saved with saveStep, by key; read once per attempt. */
  async steps(): Promise<Map<string, unknown>> {
    if (!this.saved) {
      const stored = await this.store.redis.hgetall(this.stepsKey);
      this.saved ??= new Map(Object.entries(stored).map(([k, v]) => [k, JSON.parse(v) as unknown]));
    }
    return this.saved;
  }

  /**
   * As steps(), but on the job's first start reads nothing and takes it that nothing is saved: an
   * earlier run cannot have saved anything, and the normal path then costs no round trip.
   */
  async resumedSteps(): Promise<Map<string, unknown>> {
    if (!this.saved && this.firstStart) this.saved = new Map();
    return this.steps();
  }

  /** Saves a value under `key` for this and later runs of the job (for {@link STEPS_TTL_MS}). */
  async saveStep(key: string, value: unknown): Promise<void> {
    (await this.steps()).set(key, value);
    await this.store.redis.multi().hset(this.stepsKey, key, JSON.stringify(value ?? null)).pexpire(this.stepsKey, STEPS_TTL_MS).exec();
  }

  /** Removes the job's saved steps, if this attempt knows of any; call it once the job completed. */
  async clearSteps(): Promise<void> {
    if (this.saved?.size) await this.store.redis.del(this.stepsKey);
  }

  /** Adds children to this job, all or none (see addChildJobs); resolves with their ids, in order. */
  addChildren(children: NewChildJob[]): Promise<string[]> {
    return addChildJobs(this.store.redis, this.store.keys, { id: this.id, queue: this.job.queueQualifiedName }, this.queue, children);
  }

  /**
   * Moves the job to WAITING_CHILDREN if any child has not completed: true when it did, and this
   * attempt must end (throw `new JobSetAside('waiting-children')`). False without a lock.
   */
  async waitForChildren(): Promise<boolean> {
    return !!this.lockToken && (await this.job.moveToWaitingChildren(this.lockToken));
  }

  /** The completed children's results, keyed "<queue>:<id>". */
  async childrenResults(): Promise<Record<string, unknown>> {
    // BullMQ keys them by the child's Redis key, "<queue prefix>:<queue>:<id>"; the prefix is ours to hide.
    const values: Record<string, unknown> = (await this.job.getChildrenValues()) ?? {};
    return Object.fromEntries(
      Object.entries(values).map(([key, v]) => {
        const { queue, id } = this.store.keys.jobOfKey(key);
        return [`${queue}:${id}`, v];
      }),
    );
  }

  /**
   * Puts the job back at the front of waiting without using an attempt (for another replica, or
   * another worker). The attempt must then end with `new JobSetAside('requeued')`.
   */
  async requeue(): Promise<void> {
    await this.job.moveToWait(this.lockToken);
  }

  /** Moves the job to the delayed set until `at` (ms), without using an attempt; then JobSetAside('delayed'). */
  async delayUntil(at: number): Promise<void> {
    await this.job.moveToDelayed(at, this.lockToken);
  }

  /** If this attempt fails, the job is removed rather than kept as failed (its CANCELLED record replaces it). */
  removeOnFailure(): void {
    this.job.opts.removeOnFail = true;
  }

  /** @internal For libs/queue modules that run BullMQ calls on the job. */
  get bullJob(): BullJob {
    return this.job;
  }
}

// Runs one queue's jobs: BullMQ's Worker behind Jobmesh's vocabulary (RunningJob, JobSetAside).
import type { BackoffSpec } from '@jobmesh/core';
import { type BackendFactory, type ConnectionOptions, createRedisBackend, DelayedError, type Job as BullJob, type MinimalJob, QueueKeys, type RedisQueueBackend, WaitingChildrenError, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Backbone } from './backbone';
import { closeConnection, clusterNodes, createRedis, type RedisSettings } from './connection';
import { MarkerWatcher } from './marker-watcher';
import { jobmeshOpts } from './job-mapping';
import { type JobStore, JobSetAside, RunningJob } from './running-job';

/** How a JobRunner holds jobs; see the worker-pool's JOBMESH_LOCK_DURATION and friends. */
export interface JobRunnerSettings {
  /** How long a job's lock lasts before it must be renewed (renewed at half of it). */
  lockDurationMs: number;
  /** How often jobs whose lock expired (their worker died) are looked for. */
  stalledIntervalMs: number;
  /** How many times a job may stall before it fails. */
  maxStalledCount: number;
}

/** A queue's rate limit: at most `max` jobs start per `durationMs`, across every replica. */
export interface RateLimit {
  max: number;
  durationMs: number;
}

/** A failed attempt, once it was recorded: whether the job failed for good, else when it runs again. */
export interface FailedAttempt {
  final: boolean;
  retryAt?: Date;
}

/** The job a retry delay is asked for. */
export interface BackoffSubject {
  id: string;
  name: string;
  /** Jobmesh's backoff spec when BullMQ's own strategies could not express it (JOBMESH_BACKOFF). */
  backoff?: BackoffSpec;
}

/**
 * How long an idle runner on a SharedFetch waits for its queue's marker before it looks at the
 * queue itself, s (BullMQ's drainDelay, 5 s by default). A marker wakes it at once for a new job
 * or one whose delay is up, and a reconnect of the shared blocking connection ends every wait
 * (MarkerWatcher), so the look is only a last fallback. Each look re-arms the shared wait, so its
 * cost grows with the queues: 1,000 queues looking every 5 s kept the replica busy. Each wait is
 * cut to a random point in its second half (SharedFetch.backend), so that runners started
 * together do not all look at once.
 */
const SHARED_DRAIN_DELAY_S = 60;

/**
 * The connections a process's JobRunners share: one for BullMQ's commands and one blocking one,
 * on which a MarkerWatcher waits for every queue's marker. Without it, each runner's Worker opens
 * two of its own (a replica serving 1,000 queues held 2,000). The owner closes it after the
 * runners.
 */
export class SharedFetch {
  /** BullMQ's commands for every runner: a Worker given an ioredis instance shares it. */
  readonly connection: Redis;
  private readonly blocking: Redis;
  private readonly watcher: MarkerWatcher;

  /**
   * The shared connections for `settings`, or undefined on a Redis Cluster: there the queues'
   * markers are in hash slots of their own, which one BZPOPMIN cannot take together, so each
   * runner keeps its own connections.
   */
  static open(settings: RedisSettings, onError: (err: Error) => void): SharedFetch | undefined {
    return clusterNodes(settings) ? undefined : new SharedFetch(settings, onError);
  }

  private constructor(settings: RedisSettings, onError: (err: Error) => void) {
    this.connection = createRedis(settings, 'worker', 'jobmesh:worker') as Redis;
    this.blocking = createRedis(settings, 'worker', 'jobmesh:fetch') as Redis;
    // Both reconnect by themselves; the backbone's connection reports an outage.
    this.connection.on('error', () => undefined);
    this.blocking.on('error', () => undefined);
    this.watcher = new MarkerWatcher(this.blocking, this.connection, onError);
  }

  /**
   * BullMQ's Redis backend, without the blocking connection of its own: its wait for the
   * queue's marker goes to the watcher. Interrupting that wait (BullMQ does so to stop its fetch
   * loop) ends it with nothing.
   */
  backend(): BackendFactory<RedisQueueBackend> {
    return (name, opts, options) => {
      const backend = createRedisBackend(name, opts, { ...options, withBlockingConnection: false });
      const marker = new QueueKeys((opts as { prefix?: string }).prefix).toKey(name, 'marker');
      // BullMQ asks for drainDelay when nothing is delayed, else at most 10 s (its maximumBlockTimeout).
      backend.waitForJob = (timeoutS) => this.watcher.wait(marker, timeoutS >= SHARED_DRAIN_DELAY_S ? timeoutS * (0.5 + Math.random() / 2) : timeoutS);
      backend.disconnectBlocking = async () => this.watcher.cancel(marker);
      backend.reconnectBlocking = async () => undefined;
      return backend;
    };
  }

  async close(): Promise<void> {
    const stopped = this.watcher.stop();
    // Its BZPOPMIN in flight ends with the connection, also when Redis is gone.
    this.blocking.disconnect();
    await stopped;
    await closeConnection(this.connection);
  }
}

export interface JobRunnerOptions extends JobRunnerSettings {
  /** Connections shared with the process's other runners; without it, the runner's Worker opens its own. */
  shared?: SharedFetch;
  /** Jobs held at once. */
  concurrency: number;
  /** The queue's rate limit; none: unlimited. */
  rateLimit?: RateLimit;
  /** The retry delay (ms) after failed attempt `attemptsMade`, for jobs whose spec BullMQ cannot compute. */
  backoff(attemptsMade: number, err: Error | undefined, job: BackoffSubject): number;
  /** Called after a failed attempt was recorded. */
  onFailed?(job: RunningJob, attempt: FailedAttempt): void;
  /** A connection or script error the runner recovers from by itself. */
  onError(err: Error): void;
  /** A job of the queue stalled: its worker (on any replica) stopped renewing its lock; it runs again or fails. */
  onStalled?(jobId: string): void;
}

/** Runs one attempt: resolves with the job's result, or throws its failure or a JobSetAside. */
export type JobProcessor = (job: RunningJob) => Promise<unknown>;

/**
 * BullMQ honours a queue back-off (backOff) only when some limit is set, and a worker's limiter
 * overrides the queue's. So: the queue's own rate limit, or one too high to bite.
 */
function limiterOf(r: RateLimit | undefined): { max: number; duration: number } {
  return r && r.max > 0 ? { max: r.max, duration: r.durationMs } : { max: Number.MAX_SAFE_INTEGER, duration: 60_000 };
}

/**
 * How long a worker that found the queue's rate limit used up sleeps before it looks again. BullMQ
 * sleeps until the window ends (capped at 30 s), but a job set aside without running gives its
 * count back (ProcessorWait), possibly from another replica: a tenth of the window (50 ms to 1 s)
 * lets the served jobs use that room, at one round trip per look while the limit is reached.
 * Without a rate limit, only a back-off (backOff) can stop the worker, and nothing ends that
 * early: BullMQ's default.
 */
export function rateLimitPollMs(r: RateLimit | undefined): number {
  return r && r.max > 0 ? Math.min(1000, Math.max(50, Math.round(r.durationMs / 10))) : 30_000;
}

/** BullMQ's way of saying the same: it recognises these and leaves the job where it was put. */
function toBull(e: JobSetAside): Error {
  switch (e.kind) {
    case 'requeued':
      return new WaitingError(e.message);
    case 'delayed':
      return new DelayedError(e.message);
    case 'waiting-children':
      return new WaitingChildrenError(e.message);
    case 'rate-limited':
      return Worker.RateLimitError();
  }
}

/**
 * Fetches one queue's jobs (up to `concurrency` at once, within the queue's rate limit) and runs
 * each through the processor as a RunningJob. What the processor returns completes the attempt;
 * what it throws fails it (retried per the job's attempts and backoff), except a JobSetAside,
 * which ends the attempt without using it.
 */
export class JobRunner {
  private readonly worker: Worker;
  private readonly store: JobStore;
  /** Jobs whose attempt failed, until 'failed' says what became of them (onFailed only). */
  private readonly failing = new WeakMap<BullJob, RunningJob>();
  /** Attempts started by promoteAndRun, outside BullMQ's fetch loop, until BullMQ settled them. */
  private readonly fetched = new Set<Promise<unknown>>();
  private fetchedSeq = 0;
  private closing = false;

  constructor(
    backbone: Pick<Backbone, 'redis' | 'registry' | 'workerConnection'>,
    readonly queue: string,
    private readonly processor: JobProcessor,
    private readonly opts: JobRunnerOptions,
  ) {
    this.store = { redis: backbone.redis, keys: backbone.registry.keys };
    this.worker = new Worker(
      queue,
      (job, token) => this.run(job, token),
      {
        connection: (opts.shared?.connection ?? backbone.workerConnection) as ConnectionOptions,
        prefix: backbone.registry.keys.queuePrefix(queue),
        concurrency: opts.concurrency,
        lockDuration: opts.lockDurationMs,
        stalledInterval: opts.stalledIntervalMs,
        maxStalledCount: opts.maxStalledCount,
        limiter: limiterOf(opts.rateLimit),
        maximumRateLimitDelay: rateLimitPollMs(opts.rateLimit),
        settings: { backoffStrategy: (attemptsMade, _type, err, job) => this.backoff(attemptsMade, err, job) },
        // With every queue's wait on one watcher, each wait that times out re-arms it for all.
        ...(opts.shared && { drainDelay: SHARED_DRAIN_DELAY_S }),
      },
      opts.shared?.backend() ?? createRedisBackend,
    );
    this.worker.on('error', (err) => opts.onError(err));
    if (opts.onFailed) this.worker.on('failed', (job) => job && this.failed(job));
    if (opts.onStalled) this.worker.on('stalled', (jobId) => opts.onStalled!(jobId));
  }

  private backoff(attemptsMade: number, err: Error | undefined, job: MinimalJob | undefined): number {
    if (!job) return 1000;
    return this.opts.backoff(attemptsMade, err, { id: job.id ?? '', name: job.name, backoff: jobmeshOpts(job).backoff });
  }

  private async run(bull: BullJob, token: string | undefined): Promise<unknown> {
    const job = new RunningJob(bull, token, this.queue, this.store);
    try {
      return await this.processor(job);
    } catch (err) {
      if (err instanceof JobSetAside) throw toBull(err);
      if (this.opts.onFailed) {
        // moveToFailed sets `delay` only when it schedules a retry with a delay, and `finishedOn`
        // only when the job failed for good: from these blanks failed() tells which.
        bull.delay = 0;
        bull.finishedOn = undefined;
        this.failing.set(bull, job);
      }
      throw err;
    }
  }

  private failed(bull: BullJob): void {
    const job = this.failing.get(bull);
    if (!job) return;
    this.failing.delete(bull);
    this.opts.onFailed!(job, bull.finishedOn ? { final: true } : { final: false, retryAt: new Date(Date.now() + (bull.delay || 0)) });
  }

  /** Jobs held at once. Raising it takes effect on the fetch loop's next turn (see wake()). */
  get concurrency(): number {
    return this.worker.concurrency;
  }

  set concurrency(n: number) {
    this.worker.concurrency = n;
  }

  /** Applies a changed rate limit from the next fetch on. */
  set rateLimit(r: RateLimit | undefined) {
    this.worker.opts.limiter = limiterOf(r);
    this.worker.opts.maximumRateLimitDelay = rateLimitPollMs(r);
  }

  /** The settings the runner holds jobs with, as in force. */
  get settings(): JobRunnerSettings & { concurrency: number; lockRenewMs: number } {
    const o = this.worker.opts;
    return {
      concurrency: this.worker.concurrency,
      lockDurationMs: o.lockDuration!,
      stalledIntervalMs: o.stalledInterval!,
      maxStalledCount: o.maxStalledCount!,
      lockRenewMs: o.lockRenewTime!,
    };
  }

  /**
   * Makes a raised concurrency count now. With all slots busy, BullMQ's fetch loop sleeps until a
   * job ends before it looks at the concurrency again; a pause that does not wait for the running
   * jobs, then a resume, wakes it.
   */
  async wake(): Promise<void> {
    if (!this.worker.isRunning() || this.worker.isPaused()) return;
    await this.worker.pause(true);
    this.worker.resume();
  }

  /**
   * Backs the whole queue off for `ms` (every replica); the attempt that asked must then end with
   * `new JobSetAside('rate-limited')`, which puts its job back without using an attempt.
   */
  async backOff(ms: number): Promise<void> {
    await this.worker.rateLimit(ms);
  }

  /**
   * Puts these delayed jobs back in the queue and fetches as many jobs at once, on the runner's
   * own connection, so that its fetches run in Redis right after the promotions: for a replica
   * taking jobs handed off to it (ProcessorWait.takeHandoffs). Left to BullMQ's fetch loop, they
   * go to whichever blocked worker Redis wakes first, and with three replicas the one that put
   * them back can lose that race every time: its blocked fetch wakes for the delayed job each
   * hand-off leaves, and another replica takes the job and hands it off again. A fetch may get
   * another waiting job instead, which is run (or handed off) like any. Returns each promotion's
   * outcome, in order. Keep `ids` within the runner's free slots: the loop does not count these
   * attempts against the concurrency. With `fetch` off, only promotes.
   */
  async promoteAndRun(ids: string[], fetch = true): Promise<PromiseSettledResult<void>[]> {
    const promoted = Promise.allSettled(ids.map((id) => this.worker.backend.promote(id)));
    if (fetch && !this.closing && this.worker.isRunning() && !this.worker.isPaused()) {
      const fetches = ids.map(() => {
        const token = `${this.worker.id}:now-${this.fetchedSeq++}`;
        return this.worker.getNextJob(token, { block: false }).then(
          (job) => job && this.start(job, token),
          // A fetch that failed took nothing; the loop fetches the job (or the fallback brings it back).
          (err: Error) => this.opts.onError(err),
        );
      });
      await Promise.all(fetches);
    }
    return promoted;
  }

  /** Runs a job fetched outside BullMQ's loop, tracked until BullMQ settled it. */
  private start(job: BullJob, token: string): void {
    // Not fetching the next job on completion: that one would be nobody's to run.
    const attempt: Promise<unknown> = this.worker
      .processJob(job, token, () => false)
      .catch((err: Error) => this.opts.onError(err))
      .finally(() => this.fetched.delete(attempt));
    this.fetched.add(attempt);
  }

  /**
   * Stops fetching at once; resolves once the running attempts ended. Attempts promoteAndRun
   * started must end before BullMQ's close stops renewing locks and closes its connections.
   */
  async close(): Promise<void> {
    this.closing = true;
    if (this.fetched.size) {
      await this.worker.pause(true);
      await Promise.allSettled([...this.fetched]);
    }
    await this.worker.close();
  }
}

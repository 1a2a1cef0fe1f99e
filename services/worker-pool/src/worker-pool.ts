import * as pb from '@jobmesh/contracts';
import type { QueueSpec } from '@jobmesh/core';
import { type Backbone, CancelRequests, type JobRunner, ProcessorWait, ServedDirectory, type ServedPair, SharedFetch, WakeUps, WindowRecorder, WorkerDirectory } from '@jobmesh/queue';
import type { Logger, Registry } from '@jobmesh/telemetry';
import { type WorkerMetrics, workerMetrics } from './metrics';
import type { ProcessorRegistry } from './processors';
import { RemoteDispatcher } from './remote/dispatcher';
import { QueueRunner, type RunnerSettings } from './runner';

export interface WorkerPoolOptions {
  backbone: Backbone;
  processors: ProcessorRegistry;
  logger: Logger;
  metrics: Registry;
  settings: RunnerSettings;
  /** Only these queues; empty: every queue in the registry, including ones created later. */
  queues: string[];
  /** This replica's name, in ListWorkers and the remote-worker directory. */
  replica: string;
  /** Whether every queue's runner shares two Redis connections (SharedFetch), not two per queue (JOBMESH_SHARED_CONNECTIONS). */
  sharedConnections?: boolean;
  /** Remote workers: a lease lapses this long after the last heartbeat. */
  /** Remote workers: their lease TTL, and the largest result or step value they may store (default 256 KiB). */
  remote: { leaseTtlMs: number; maxPayloadBytes?: number };
}

/** Handed-off jobs taken per round at most, whatever the free slots. */
const MAX_TAKEN = 500;

/**
 * Runs in-process processors for the registry's queues: a QueueRunner per queue, started,
 * updated and stopped as queues are created, changed and deleted; cancel requests for active
 * jobs reach the runner holding them. Publishes which job names this replica serves (in-process
 * and through its remote workers), and when it starts serving a name, sends that name's jobs
 * that were waiting for a processor back to run. Takes the jobs other replicas fetched but could
 * not run and handed off to it (ProcessorWait.handOff), as its slots allow.
 */
export class WorkerPool {
  private readonly runners = new Map<string, QueueRunner>();
  private readonly cancels: CancelRequests;
  private readonly metrics: WorkerMetrics;
  private unsubscribe?: () => void;
  private closing = false;
  readonly dispatcher: RemoteDispatcher;
  private readonly directory: ServedDirectory;
  /** Every replica's workers; this replica publishes its own in it every heartbeat. */
  readonly workers: WorkerDirectory;
  /** The last minute's attempts, counted here and written for the monitor. */
  private readonly window: WindowRecorder;
  private readonly processorWait: ProcessorWait;
  private publishTimer?: NodeJS.Timeout;
  /** The publish-and-promote round in progress, and whether another was asked for meanwhile. */
  private publishing?: Promise<void>;
  private publishAgain = false;
  /** Newly served pairs whose waiting jobs are still to be promoted (kept until that succeeds). */
  private readonly toPromote = new Map<string, ServedPair>();
  /** Other replicas' word that they handed this one jobs of a name it serves. */
  private readonly wakeUps: WakeUps;
  /** Two Redis connections for every queue's runner, not two per queue, when asked for (never on a Redis Cluster). */
  private readonly shared: SharedFetch | undefined;
  /** Pairs whose handed-off jobs are being taken now, and whether to look once more after. */
  private readonly taking = new Map<string, { again: boolean }>();
  /** Pairs with handed-off jobs left when the runner had no free slot: looked at as slots free up. */
  private readonly roomWanted = new Map<string, ServedPair>();
  /** Per queue, a look at roomWanted due once the queue's rate limit has room again. */
  private readonly lookAgainTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly opts: WorkerPoolOptions) {
    this.cancels = new CancelRequests(opts.backbone, opts.logger);
    this.metrics = workerMetrics(opts.metrics);
    this.directory = new ServedDirectory(opts.backbone.redis, opts.backbone.registry.keys, opts.replica, opts.remote.leaseTtlMs);
    this.workers = new WorkerDirectory(opts.backbone.redis, opts.backbone.registry.keys, opts.replica, opts.remote.leaseTtlMs);
    this.window = new WindowRecorder(opts.backbone.redis, opts.backbone.registry.keys, (err) => opts.logger.warn({ err: err.message }, 'could not write the last minute’s job figures for the monitor'));
    this.processorWait = new ProcessorWait(opts.backbone.redis, opts.backbone.registry);
    this.wakeUps = new WakeUps(opts.backbone, opts.replica, opts.logger);
    this.shared = opts.sharedConnections ? SharedFetch.open(opts.backbone.settings, (err) => opts.logger.warn({ err: err.message }, 'waiting for jobs failed; retrying')) : undefined;
    if (opts.sharedConnections && !this.shared) opts.logger.warn('JOBMESH_SHARED_CONNECTIONS is ignored on a Redis Cluster: each queue keeps its own two connections');
    this.dispatcher = new RemoteDispatcher({
      leaseTtlMs: opts.remote.leaseTtlMs,
      maxPayloadBytes: opts.remote.maxPayloadBytes,
      logger: opts.logger,
      onCapacity: (queue) => {
        this.runners.get(queue)?.update();
        this.roomFreed(queue);
      },
      onServedChange: () => this.publishServed(),
    });
  }

  /** How often remote workers send heartbeats, and this replica refreshes the directory. */
  get heartbeatIntervalMs(): number {
    return Math.max(100, Math.floor(this.opts.remote.leaseTtlMs / 3));
  }

  /**
   * What this replica serves: each queue it runs, with its in-process processors' names and its
   * remote workers' (only queues it runs: it never fetches the others' jobs).
   */
  private servedPairs(): ServedPair[] {
    const pairs: ServedPair[] = [];
    for (const queue of this.runners.keys()) for (const name of this.opts.processors.names(queue)) pairs.push({ queue, name });
    for (const p of this.dispatcher.served()) if (this.runners.has(p.queue)) pairs.push(p);
    return pairs;
  }

  /**
   * Publishes the served pairs, then promotes the waiting jobs of pairs served for the first time
   * — in that order, which park-job-6.lua relies on. One round at a time; asks made during a
   * round run one more. A round that fails is repeated by the next (heartbeat interval at most).
   */
  private publishServed(): void {
    if (this.publishing) {
      this.publishAgain = true;
      return;
    }
    this.publishing = (async () => {
      do {
        this.publishAgain = false;
        await this.publishRound();
      } while (this.publishAgain && !this.closing);
    })().finally(() => (this.publishing = undefined));
  }

  private async publishRound(): Promise<void> {
    const { logger } = this.opts;
    try {
      await this.workers.publish(this.closing ? [] : this.localWorkers());
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not publish this replica’s workers; retrying');
    }
    try {
      for (const p of await this.directory.publish(this.closing ? [] : this.servedPairs())) this.toPromote.set(`${p.queue}\n${p.name}`, p);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not publish the job names this replica serves; retrying');
      return;
    }
    // Most newly served pairs have nothing waiting: one round trip tells which do.
    let waiting: Map<string, Set<string>>;
    try {
      waiting = await this.processorWait.waitingNames([...new Set([...this.toPromote.values()].map((p) => p.queue))]);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not read which jobs wait for a processor; retrying');
      return;
    }
    for (const [key, p] of this.toPromote) {
      if (this.closing) return;
      const names = waiting.get(p.queue);
      if (!names?.size || (p.name !== '*' && !names.has(p.name))) {
        this.toPromote.delete(key);
        continue;
      }
      try {
        const jobs = await this.processorWait.promote(p.queue, p.name);
        this.toPromote.delete(key);
        if (jobs) logger.info({ queue: p.queue, name: p.name, jobs }, 'jobs that waited for a processor run now');
      } catch (err) {
        logger.warn({ err: (err as Error).message, queue: p.queue, name: p.name }, 'could not promote jobs waiting for a processor; retrying');
      }
    }
  }

  /**
   * Takes jobs handed off to this replica for `name` on `queue` (another replica fetched them and
   * cannot run them), as many as the runner has free slots. One round per pair at a time; a wake-up
   * during a round runs one more. What is left waits for a slot to free up (roomFreed).
   */
  private takeHandoffs(queue: string, name: string): void {
    const runner = this.runners.get(queue);
    if (!runner || this.closing || !runner.serves(name)) return;
    const key = `${queue}\n${name}`;
    const current = this.taking.get(key);
    if (current) {
      current.again = true;
      return;
    }
    const round = { again: false };
    this.taking.set(key, round);
    void (async () => {
      do {
        round.again = false;
        this.roomWanted.delete(key);
        const free = runner.freeSlots;
        try {
          const { more, retryInMs } = await this.processorWait.takeHandoffs(runner.jobs, queue, name, Math.min(free, MAX_TAKEN), runner.rateLimit);
          if (more) this.roomWanted.set(key, { queue, name });
          // The rate limit held some back: nothing else may free a slot before it has room again.
          if (retryInMs !== undefined) this.lookAgain(queue, retryInMs);
        } catch (err) {
          // Asked again by the next wake-up or freed slot; the jobs come back by themselves anyway.
          this.roomWanted.set(key, { queue, name });
          this.opts.logger.warn({ err: (err as Error).message, queue, name }, 'could not take jobs handed off to this replica; retrying');
        }
      } while (round.again && !this.closing);
    })().finally(() => this.taking.delete(key));
  }

  /** Calls roomFreed(queue) in `ms`, unless a call is already due. */
  private lookAgain(queue: string, ms: number): void {
    if (this.lookAgainTimers.has(queue) || this.closing) return;
    const timer = setTimeout(() => {
      this.lookAgainTimers.delete(queue);
      this.roomFreed(queue);
    }, ms);
    timer.unref();
    this.lookAgainTimers.set(queue, timer);
  }

  /** A slot of `queue`'s runner may have freed up: takes handed-off jobs that were left for want of one. */
  private roomFreed(queue: string): void {
    if (!this.roomWanted.size) return;
    for (const p of this.roomWanted.values()) if (p.queue === queue) this.takeHandoffs(p.queue, p.name);
  }

  /** After the wake channel reconnected: wake-ups may have been missed; looks at every served pair. */
  private async checkHandoffs(): Promise<void> {
    try {
      for (const p of await this.processorWait.handedOff(this.servedPairs().filter((p) => p.name !== '*'))) this.takeHandoffs(p.queue, p.name);
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'could not look for jobs handed off to this replica; they come back by themselves');
    }
  }

  private wanted(name: string): boolean {
    return this.opts.queues.length === 0 || this.opts.queues.includes(name);
  }

  async start(): Promise<void> {
    const { backbone, logger } = this.opts;
    // Requests published while the subscriber was reconnecting never arrive; their stored copies do.
    await this.cancels.start(
      (req) => this.runners.get(req.queue)?.cancel(req.jobId, req.reason),
      () => void this.checkStoredCancels(),
    );
    await this.wakeUps.start(
      (queue, name) => this.takeHandoffs(queue, name),
      () => void this.checkHandoffs(),
    );
    this.unsubscribe = backbone.registry.onChange((name, spec) => this.sync(name, spec));
    for (const spec of backbone.registry.cached()) this.sync(spec.name, spec);
    this.publishTimer = setInterval(() => this.publishServed(), this.heartbeatIntervalMs);
    this.publishTimer.unref();
    for (const name of this.opts.queues) {
      if (!this.runners.has(name)) logger.warn({ queue: name }, 'JOBMESH_WORKER_QUEUES names a queue that is not in the registry (yet)');
    }
  }

  /** Cancels active jobs that have a stored cancel request: one round trip per queue with active jobs. */
  private async checkStoredCancels(): Promise<void> {
    for (const runner of this.runners.values()) {
      const ids = runner.activeIds();
      if (!ids.length) continue;
      try {
        const reasons = await this.cancels.storedReasons(runner.queue, ids);
        ids.forEach((id, i) => reasons[i] && runner.cancel(id, reasons[i]));
      } catch (err) {
        this.opts.logger.warn({ err: (err as Error).message, queue: runner.queue }, 'could not check for stored cancel requests');
      }
    }
  }

  private sync(name: string, spec: QueueSpec | undefined): void {
    if (this.closing || !this.wanted(name)) return;
    const runner = this.runners.get(name);
    if (spec && runner) {
      const waitBefore = runner.processorWaitMs;
      runner.update(spec);
      // Jobs already waiting for a processor are looked at again under the new processor_wait.
      if (runner.processorWaitMs !== waitBefore) {
        void this.processorWait
          .promote(name, '*')
          .catch((err: Error) => this.opts.logger.warn({ err: err.message, queue: name }, 'could not apply the new processor_wait to jobs waiting for a processor'));
      }
    } else if (spec) {
      const { backbone, processors, logger, settings } = this.opts;
      this.runners.set(
        name,
        new QueueRunner(name, spec, {
          backbone,
          processors,
          metrics: this.metrics,
          logger,
          settings,
          shared: this.shared,
          onAttempt: (outcome, ms) => {
            this.window.record(name, outcome, ms);
            this.roomFreed(name);
          },
          remote: { dispatcher: this.dispatcher, directory: this.directory, processorWait: this.processorWait },
        }),
      );
      logger.info({ queue: name, concurrency: spec.concurrency, processors: processors.names(name) }, 'serving queue');
      this.publishServed();
    } else if (runner) {
      this.runners.delete(name);
      void runner.close(0);
      this.publishServed();
    }
  }

  /**
   * This replica's workers: the remote workers connected to it, and an in-process pool per queue
   * it has processors for.
   */
  localWorkers(queue?: string): pb.WorkerInfo[] {
    const { replica } = this.opts;
    const workers: pb.WorkerInfo[] = [];
    for (const s of this.dispatcher.sessions.values()) {
      if (queue && !s.queues.has(queue)) continue;
      workers.push({
        workerId: s.workerId,
        kind: s.kind === 'stream' ? pb.WorkerKind.WORKER_KIND_STREAM : pb.WorkerKind.WORKER_KIND_UNARY,
        queues: [...s.queues],
        inFlight: s.leases.size,
        maxInFlight: s.maxInFlight,
        labels: s.labels,
        sdk: s.sdk,
        connectedAt: s.connectedAt,
        replica,
      });
    }
    for (const r of this.status()) {
      if (queue && r.queue !== queue) continue;
      // A replica without processors for the queue runs it only for its remote workers.
      if (!this.opts.processors.names(r.queue).length) continue;
      workers.push({
        workerId: `${replica}/${r.queue}`,
        kind: pb.WorkerKind.WORKER_KIND_IN_PROCESS,
        queues: [r.queue],
        inFlight: r.active,
        maxInFlight: r.concurrency,
        labels: {},
        sdk: 'jobmesh-worker-pool',
        connectedAt: undefined,
        replica,
      });
    }
    return workers;
  }

  /**
   * Every replica's workers (of `queue`, when given): this replica's as they are now, the others'
   * as they last published them (within a heartbeat).
   */
  async allWorkers(queue?: string): Promise<pb.WorkerInfo[]> {
    const others = (await this.workers.list(queue)).filter((w) => w.replica !== this.opts.replica);
    return [...this.localWorkers(queue), ...others];
  }

  /** Queues served now, with their active job counts. */
  status(): { queue: string; active: number; concurrency: number }[] {
    return [...this.runners.values()].map((r) => ({ queue: r.queue, active: r.activeCount, concurrency: r.jobs.concurrency }));
  }

  /** The JobRunner serving `queue` here, if this replica serves it. */
  worker(queue: string): JobRunner | undefined {
    return this.runners.get(queue)?.jobs;
  }

  /** Stops fetching everywhere at once and waits up to `graceMs` for active jobs. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    this.unsubscribe?.();
    clearInterval(this.publishTimer);
    for (const t of this.lookAgainTimers.values()) clearTimeout(t);
    // Remote workers hear Drain first, and get the same grace as in-process jobs.
    this.dispatcher.drain(graceMs);
    // Runners stop fetching at once (no await before this), then wait for their active jobs.
    const closing = Promise.all([...this.runners.values()].map((r) => r.close(graceMs)));
    // Other replicas stop handing jobs here. If Redis is unreachable the entries lapse by
    // themselves after a lease TTL, so the error is only logged.
    await this.publishing;
    await this.directory.clear().catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'could not withdraw the served job names; they lapse after the lease TTL'));
    await this.workers.clear().catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'could not withdraw this replica’s workers; they lapse after the lease TTL'));
    await closing;
    await this.window.close();
    this.runners.clear();
    // Nothing is in flight any more: end the streams, so the server's shutdown need not wait for them.
    this.dispatcher.endAll('the worker-pool stopped');
    await this.cancels.close();
    await this.wakeUps.close();
    await this.shared?.close();
  }
}

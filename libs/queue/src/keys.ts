/**
 * Redis keys Jobmesh owns besides BullMQ's. BullMQ's keys are `<prefix>:<queue>:…`; queue names
 * start with a letter or digit, so keys under `<prefix>:_…` can never collide with them.
 */
export class Keys {
  constructor(readonly prefix: string) {}
  /** BullMQ's event stream of a queue; Jobmesh adds its own events (cancelled, log, …) to it. */
  events(queue: string): string {
    return `${this.prefix}:${queue}:events`;
  }
  /** Hash: queue name → QueueSpec JSON. */
  get registry(): string {
    return `${this.prefix}:_registry`;
  }
  /** Pub/sub channel: the name of a queue whose registry entry changed. */
  get registryChanged(): string {
    return `${this.prefix}:_registry:changed`;
  }
  /**
   * String: idempotency key → job id, with a TTL, as schedulers before issue 9 wrote it. Read
   * (copied onto `deduplication`) until the last of them expires; no longer written.
   */
  idempotency(queue: string, key: string): string {
    return `${this.prefix}:_idem:${queue}:${key}`;
  }
  /**
   * String: idempotency key → job id, with a TTL. BullMQ's deduplication key, written by its add
   * script in the same step as the job (see AtomicAdder).
   */
  deduplication(queue: string, key: string): string {
    return `${this.prefix}:${queue}:de:${key}`;
  }
  /** Hash: the snapshot of a cancelled job, with a TTL. */
  cancelled(queue: string, jobId: string): string {
    return `${this.prefix}:_cancelled:${queue}:${jobId}`;
  }
  /** Sorted set: ids of cancelled jobs, scored by cancel time. */
  cancelledIndex(queue: string): string {
    return `${this.prefix}:_cancelled-index:${queue}`;
  }
  /** String: a pending cancel request for an active job, with a TTL. */
  cancelRequest(queue: string, jobId: string): string {
    return `${this.prefix}:_cancel:${queue}:${jobId}`;
  }
  /** Hash: a job's persisted step results (ctx.step, ctx.runChildren). */
  steps(queue: string, jobId: string): string {
    return `${this.prefix}:_steps:${queue}:${jobId}`;
  }
  /**
   * SCAN patterns and names of every Jobmesh key that belongs to `queue` (not BullMQ's, except
   * the deduplication keys, which BullMQ's obliterate leaves). Queue names hold no ':' or glob
   * characters, so a pattern never reaches into another queue.
   */
  ofQueue(queue: string): { patterns: string[]; keys: string[] } {
    return {
      patterns: [this.idempotency(queue, '*'), this.deduplication(queue, '*'), this.cancelled(queue, '*'), this.cancelRequest(queue, '*'), this.parked(queue, '*'), this.handoff(queue, '*')],
      keys: [this.cancelledIndex(queue), this.parkedNames(queue), this.served(queue)],
    };
  }
  /**
   * Hash: "<replica>|<job name or *>" → until when (ms) that worker-pool replica serves the job
   * name on the queue, with an in-process processor or a remote worker connected to it.
   */
  served(queue: string): string {
    return `${this.prefix}:_served:${queue}`;
  }
  /**
   * Hash: one 10-second slot of `queue`'s attempts, as worker-pool replicas counted them ("c"
   * completed, "f" failed, "d<i>" in processing-time bucket i), expiring after a minute and a half.
   */
  statsSlot(queue: string, slot: number): string {
    return `${this.prefix}:_stats:${queue}:${slot}`;
  }
  /** Hash: "<replica>|<worker id>" → the worker as that replica last published it, JSON, with its expiry. */
  get workers(): string {
    return `${this.prefix}:_workers`;
  }
  /** Set: the job names of `queue` that have jobs waiting for a processor. */
  parkedNames(queue: string): string {
    return `${this.prefix}:_parked:${queue}`;
  }
  /**
   * Sorted set: ids of `queue`'s jobs named `name` that wait for a processor, scored by when
   * they fail as PROCESSOR_NOT_FOUND if none appears (ms). BullMQ holds them as delayed until then.
   */
  parked(queue: string, name: string): string {
    return `${this.prefix}:_parked:${queue}:${name}`;
  }
  /**
   * Sorted set: ids of `queue`'s jobs named `name` that a replica which cannot run them handed to
   * the replicas that serve the name, scored by when they come back to the queue by themselves
   * (ms) if none of those takes them. BullMQ holds them as delayed until then.
   */
  handoff(queue: string, name: string): string {
    return `${this.prefix}:_handoff:${queue}:${name}`;
  }
  /** Pub/sub channel of one worker-pool replica: "<queue>\n<job name>" when jobs of that name were handed to it. */
  wakeChannel(replica: string): string {
    return `${this.prefix}:_wake:${replica}`;
  }
  /** Hash: one dead letter ("<queue>:<job id>:<attempt>"), written once (services/dead-letter). */
  deadLetter(id: string): string {
    return `${this.prefix}:_dlq:r:${id}`;
  }
  /** Sorted set: every dead letter id, scored by dead-lettered time (ms). */
  get deadLetterIndex(): string {
    return `${this.prefix}:_dlq:all`;
  }
  /** Sorted set: dead letter ids of one queue, scored by dead-lettered time (ms). */
  deadLetterQueueIndex(queue: string): string {
    return `${this.prefix}:_dlq:q:${queue}`;
  }
  /** Sorted set: dead letter ids of one category, scored by dead-lettered time (ms). */
  deadLetterCategoryIndex(category: string): string {
    return `${this.prefix}:_dlq:c:${category}`;
  }
  /** Hash: "<queue>|<category>" → how many dead letters are stored. */
  get deadLetterCounts(): string {
    return `${this.prefix}:_dlq:counts`;
  }
  /** Hash: "<queue>:<job id>" → the id of that job's latest dead letter. */
  get deadLetterJobs(): string {
    return `${this.prefix}:_dlq:jobs`;
  }
  /**
   * Sorted set: dead letters captured whose follow-ups (metrics, webhook) have not run yet, scored
   * by capture time; a replica that died in between leaves them here for the next sweep.
   */
  get deadLetterOutbox(): string {
    return `${this.prefix}:_dlq:outbox`;
  }
  /** Pub/sub channel: the id of each newly captured dead letter. */
  get deadLetterChannel(): string {
    return `${this.prefix}:_dlq:new`;
  }
  /** Pub/sub channel of cancel requests for active jobs: JSON {queue, jobId, reason}. */
  get cancelChannel(): string {
    return `${this.prefix}:_cancel`;
  }
}

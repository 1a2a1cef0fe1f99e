/**
 * Redis keys Jobmesh owns besides BullMQ's, and the prefix BullMQ's keys of each queue get. This
 * is the one place that decides where a key lives.
 *
 * On one server (standalone or Sentinel): BullMQ's keys are `<prefix>:<queue>:…`, Jobmesh's
 * `<prefix>:_…`. Queue names start with a letter or digit, so the two never collide.
 *
 * On a Redis Cluster (`cluster`), every key of a queue, BullMQ's and Jobmesh's, starts with the
 * hash tag `{<prefix>:<queue>}`, so they share one slot (BullMQ's scripts need that) and queues
 * spread over the masters; the global keys (registry, workers, dead letters) start with
 * `{<prefix>}` and so share another slot, which the dead-letter scripts need. The layout is
 * otherwise the same: a queue's BullMQ prefix is `{<prefix>:<queue>}` instead of `<prefix>`, and
 * each key below swaps `<prefix>` for its slot's tag. The few operations that touch a queue's
 * keys and a global key together are split by slot where they run (see docs/reliability.md).
 */
export class Keys {
  /** What global keys start with: the prefix, or its hash tag on a cluster. */
  private readonly global: string;

  constructor(
    readonly prefix: string,
    /** Redis Cluster layout. @default false */
    readonly cluster = false,
  ) {
    if (cluster && /[{}]/.test(prefix)) {
      throw new Error(`JOBMESH_REDIS_PREFIX "${prefix}" must not hold "{" or "}" with REDIS_CLUSTER_NODES: Jobmesh adds the hash tags itself, one per queue`);
    }
    this.global = cluster ? `{${prefix}}` : prefix;
  }

  /** The BullMQ prefix of `queue`'s keys (Queue, Worker, QueueEvents, FlowProducer `prefix`). */
  queuePrefix(queue: string): string {
    return this.cluster ? `{${this.prefix}:${queue}}` : this.prefix;
  }

  /**
   * The queue and job id of a BullMQ job key ("<queue prefix>:<queue>:<id>", as BullMQ names a
   * flow's children and parents). Queue names hold no ':' or braces.
   */
  jobOfKey(key: string): { queue: string; id: string } {
    let rest = key;
    if (this.cluster && key.startsWith(`{${this.prefix}:`)) rest = key.slice(key.indexOf('}:') + 2);
    else if (key.startsWith(`${this.prefix}:`)) rest = key.slice(this.prefix.length + 1);
    const cut = rest.indexOf(':');
    return { queue: rest.slice(0, cut), id: rest.slice(cut + 1) };
  }

  /** BullMQ's event stream of a queue; Jobmesh adds its own events (cancelled, log, …) to it. */
  events(queue: string): string {
    return `${this.queuePrefix(queue)}:${queue}:events`;
  }
  /** Hash: queue name → QueueSpec JSON. */
  get registry(): string {
    return `${this.global}:_registry`;
  }
  /** Pub/sub channel: the name of a queue whose registry entry changed. */
  get registryChanged(): string {
    return `${this.global}:_registry:changed`;
  }
  /**
   * String: idempotency key → job id, with a TTL, as schedulers before issue 9 wrote it. Read
   * (copied onto `deduplication`) until the last of them expires; no longer written.
   */
  idempotency(queue: string, key: string): string {
    return `${this.queuePrefix(queue)}:_idem:${queue}:${key}`;
  }
  /**
   * String: idempotency key → job id, with a TTL. BullMQ's deduplication key, written by its add
   * script in the same step as the job (see AtomicAdder).
   */
  deduplication(queue: string, key: string): string {
    return `${this.queuePrefix(queue)}:${queue}:de:${key}`;
  }
  /** Hash: the snapshot of a cancelled job, with a TTL. */
  cancelled(queue: string, jobId: string): string {
    return `${this.queuePrefix(queue)}:_cancelled:${queue}:${jobId}`;
  }
  /** Sorted set: ids of cancelled jobs, scored by cancel time. */
  cancelledIndex(queue: string): string {
    return `${this.queuePrefix(queue)}:_cancelled-index:${queue}`;
  }
  /** String: a pending cancel request for an active job, with a TTL. */
  cancelRequest(queue: string, jobId: string): string {
    return `${this.queuePrefix(queue)}:_cancel:${queue}:${jobId}`;
  }
  /** Hash: a job's persisted step results (ctx.step, ctx.runChildren). */
  steps(queue: string, jobId: string): string {
    return `${this.queuePrefix(queue)}:_steps:${queue}:${jobId}`;
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
    return `${this.queuePrefix(queue)}:_served:${queue}`;
  }
  /**
   * Hash: one 10-second slot of `queue`'s attempts, as worker-pool replicas counted them ("c"
   * completed, "f" failed, "d<i>" in processing-time bucket i), expiring after a minute and a half.
   */
  statsSlot(queue: string, slot: number): string {
    return `${this.queuePrefix(queue)}:_stats:${queue}:${slot}`;
  }
  /** Hash: "<replica>|<worker id>" → the worker as that replica last published it, JSON, with its expiry. */
  get workers(): string {
    return `${this.global}:_workers`;
  }
  /** Set: the job names of `queue` that have jobs waiting for a processor. */
  parkedNames(queue: string): string {
    return `${this.queuePrefix(queue)}:_parked:${queue}`;
  }
  /**
   * Sorted set: ids of `queue`'s jobs named `name` that wait for a processor, scored by when
   * they fail as PROCESSOR_NOT_FOUND if none appears (ms). BullMQ holds them as delayed until then.
   */
  parked(queue: string, name: string): string {
    return `${this.queuePrefix(queue)}:_parked:${queue}:${name}`;
  }
  /**
   * Sorted set: ids of `queue`'s jobs named `name` that a replica which cannot run them handed to
   * the replicas that serve the name, scored by when they come back to the queue by themselves
   * (ms) if none of those takes them. BullMQ holds them as delayed until then.
   */
  handoff(queue: string, name: string): string {
    return `${this.queuePrefix(queue)}:_handoff:${queue}:${name}`;
  }
  /** Pub/sub channel of one worker-pool replica: "<queue>\n<job name>" when jobs of that name were handed to it. */
  wakeChannel(replica: string): string {
    return `${this.global}:_wake:${replica}`;
  }
  /** Hash: one dead letter ("<queue>:<job id>:<attempt>"), written once (services/dead-letter). */
  deadLetter(id: string): string {
    return `${this.global}:_dlq:r:${id}`;
  }
  /** Sorted set: every dead letter id, scored by dead-lettered time (ms). */
  get deadLetterIndex(): string {
    return `${this.global}:_dlq:all`;
  }
  /** Sorted set: dead letter ids of one queue, scored by dead-lettered time (ms). */
  deadLetterQueueIndex(queue: string): string {
    return `${this.global}:_dlq:q:${queue}`;
  }
  /** Sorted set: dead letter ids of one category, scored by dead-lettered time (ms). */
  deadLetterCategoryIndex(category: string): string {
    return `${this.global}:_dlq:c:${category}`;
  }
  /** Hash: "<queue>|<category>" → how many dead letters are stored. */
  get deadLetterCounts(): string {
    return `${this.global}:_dlq:counts`;
  }
  /** Hash: "<queue>:<job id>" → the id of that job's latest dead letter. */
  get deadLetterJobs(): string {
    return `${this.global}:_dlq:jobs`;
  }
  /**
   * Sorted set: dead letters captured whose follow-ups (metrics, webhook) have not run yet, scored
   * by capture time; a replica that died in between leaves them here for the next sweep.
   */
  get deadLetterOutbox(): string {
    return `${this.global}:_dlq:outbox`;
  }
  /** Pub/sub channel: the id of each newly captured dead letter. */
  get deadLetterChannel(): string {
    return `${this.global}:_dlq:new`;
  }
  /** Pub/sub channel of cancel requests for active jobs: JSON {queue, jobId, reason}. */
  get cancelChannel(): string {
    return `${this.global}:_cancel`;
  }
}

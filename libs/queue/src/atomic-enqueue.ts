// Enqueues whose idempotency key or caller-chosen job id is written in the same atomic step as
// the job itself, so no timeout, dropped connection, Redis restart or crash can separate them.
import { randomUUID } from 'node:crypto';
import { FailedPreconditionError, UnavailableError } from '@jobmesh/core';
import type { FlowJob, FlowProducer, Job, JobNode, JobsOptions, Queue } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import { isCluster, type RedisClient } from './connection';
import { type JobData, SerializedFlowProducer, SerializedJob } from './job-data';
import type { Keys } from './keys';
import { TurnBatches } from './turn-batches';

/** One job for {@link AtomicAdder}. */
export interface AtomicJob {
  name: string;
  /** As JobData, the JSON already made is stored; it is not encoded again. */
  data: Record<string, unknown> | JobData;
  /** BullMQ options. A `jobId` here is the caller's: a job with that id that exists is a duplicate. */
  opts: JobsOptions;
  /** Remembered for `ttlMs` per queue: a later job with the same key is a duplicate of this one. */
  idempotencyKey?: string;
}

/** What became of one {@link AtomicJob}. */
export interface AtomicOutcome {
  /** The new job's id, or the id of the existing job the key or id matched. */
  id: string;
  /** True when nothing was added because the key or id matched an existing job. */
  deduplicated: boolean;
  /** The job as added; only when it was added. */
  job?: Job;
}

/** Requests with at least this many jobs go alone; smaller ones share a transaction. */
const COALESCE_MAX = 200;

interface Waiting {
  jobs: AtomicJob[];
  resolve: (outcomes: AtomicOutcome[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Adds jobs so that each request's jobs are written in ONE Redis transaction (MULTI/EXEC, one
 * round trip), all of them or none. Per job, inside the transaction:
 * - an idempotency key is BullMQ's deduplication key (`<prefix>:<queue>:de:<key>`, `SET NX PX`
 *   inside BullMQ's add script, so the key exists exactly when its job was created). The job
 *   gets a fresh UUID; the script answers the existing job's id when the key is taken.
 * - the key's record of the pre-issue-9 scheduler (`keys.idempotency`, a separate string) is
 *   COPYed onto the deduplication key first (a no-op unless one exists and the deduplication key
 *   does not), so keys given before an upgrade keep deduplicating until they expire. COPY keeps
 *   the TTL; it needs Redis 6.2 (the old `SET NX GET` needed 7.0).
 * - BullMQ deletes a deduplication key when the job it points at is removed (cancel, dead-letter
 *   trimming, `clean`), though not when the job completes or retention trims it. Jobmesh keys
 *   must outlive the job for their whole TTL, so the job's `deid` field, which that removal
 *   reads, is deleted right after the add, in the same transaction.
 * - a caller-chosen id: BullMQ's add of an existing id changes nothing and answers the same id
 *   as a creation would, so `EXISTS` of the job's key just before the add, in the transaction,
 *   tells the two apart.
 *
 * A repeat of a call whose answer was lost therefore finds what the first one wrote and is
 * answered `deduplicated`; a call that failed wrote nothing.
 *
 * An ioredis transaction costs about 130 µs of CPU to set up (it copies every script BullMQ
 * defined on the connection), three times a plain add. So small requests made in the same
 * turn of the event loop (concurrent EnqueueJob calls) share one transaction per queue:
 * "coalesced unary enqueues" (DESIGN §1.6). Each keeps its own answer and its own error.
 */
export class AtomicAdder {
  private readonly waiting = new TurnBatches<Queue, Waiting>((queue, batch) => this.flush(queue, batch));

  constructor(
    private readonly keys: Keys,
    /** How long idempotency keys are remembered, ms. */
    private readonly ttlMs: number,
  ) {}

  /**
   * Adds `jobs` to `queue` all or none, answering per job. Rejects with the error of the first
   * command Redis refused, or UnavailableError.
   */
  add(queue: Queue, jobs: AtomicJob[]): Promise<AtomicOutcome[]> {
    if (jobs.length >= COALESCE_MAX) return addGroups(queue, this.keys, [jobs], this.ttlMs).then(([r]) => unwrap(r!));
    return new Promise((resolve, reject) => this.waiting.push(queue, { jobs, resolve, reject }));
  }

  private flush(queue: Queue, batch: Waiting[]): void {
    addGroups(queue, this.keys, batch.map((w) => w.jobs), this.ttlMs).then(
      (results) =>
        results.forEach((r, i) => {
          if (r instanceof Error) batch[i]!.reject(r);
          else batch[i]!.resolve(r);
        }),
      (err: unknown) => batch.forEach((w) => w.reject(err)),
    );
  }
}

function unwrap(r: AtomicOutcome[] | Error): AtomicOutcome[] {
  if (r instanceof Error) throw r;
  return r;
}

interface Planned {
  job: Job;
  existsAt?: number;
  addAt: number;
}

/**
 * One transaction for several requests (groups): per group, its outcomes or its error. A group
 * BullMQ refuses before anything is sent (its option checks) is left out of the transaction.
 * Rejects when the transaction as a whole failed (Redis unreachable or discarded it).
 */
async function addGroups(queue: Queue, keys: Keys, groups: AtomicJob[][], ttlMs: number): Promise<(AtomicOutcome[] | Error)[]> {
  const client = await queue.getBackend().client;
  const results: (AtomicOutcome[] | Error | undefined)[] = new Array(groups.length);
  let multi: ChainableCommander & Parameters<Job['addJob']>[0];
  let plans: Planned[][];
  // Built again without a group BullMQ refuses, so no command of it is sent (a transaction is
  // sent only by exec).
  for (;;) {
    multi = client.multi() as unknown as typeof multi;
    plans = [];
    let n = 0;
    let refused = -1;
    for (let g = 0; g < groups.length && refused < 0; g++) {
      if (results[g]) continue;
      try {
        const plan: Planned[] = [];
        for (const spec of groups[g]!) {
          const step = queueJob(queue, keys, multi, spec, ttlMs, n);
          n = step.next;
          plan.push(step.planned);
        }
        plans[g] = plan;
      } catch (err) {
        results[g] = err instanceof Error ? err : new Error(String(err));
        refused = g;
      }
    }
    if (refused < 0) break;
  }
  if (!plans.some(Boolean)) return results as Error[];
  const replies = await multi.exec();
  if (!replies) throw new UnavailableError('Redis discarded the enqueue transaction; nothing was written');
  plans.forEach((plan, g) => {
    if (!plan) return;
    try {
      results[g] = plan.map((p) => outcome(replies, p));
    } catch (err) {
      results[g] = err as Error;
    }
  });
  return results as (AtomicOutcome[] | Error)[];
}

/**
 * Queues one job's commands on `multi` from reply index `n`. Throws BullMQ's option errors,
 * possibly after queuing a command of the job: the caller then builds the transaction again.
 */
function queueJob(queue: Queue, keys: Keys, multi: ChainableCommander & Parameters<Job['addJob']>[0], spec: AtomicJob, ttlMs: number, n: number): { planned: Planned; next: number } {
  const key = spec.idempotencyKey;
  const jobId = spec.opts.jobId ?? (key ? randomUUID() : undefined);
  // A TTL of 0 would make BullMQ forget the key when the job finishes; 1 ms is "at once".
  const opts: JobsOptions = key ? { ...spec.opts, jobId, deduplication: { id: key, ttl: Math.max(1, ttlMs) } } : { ...spec.opts, jobId };
  const job = new SerializedJob(queue, spec.name, spec.data, opts, jobId);
  let existsAt: number | undefined;
  if (key) {
    multi.copy(keys.idempotency(queue.name, key), keys.deduplication(queue.name, key));
    n += 1;
  }
  if (spec.opts.jobId) {
    multi.exists(queue.toKey(spec.opts.jobId));
    existsAt = n++;
  }
  // Throws BullMQ's option errors, or queues the add script on the transaction at once. On a
  // transaction the promise only resolves to the transaction: the script's answer and any error
  // come with the EXEC's replies, so nothing is lost by not waiting for it.
  job.addJob(multi).catch(() => undefined);
  const addAt = n++;
  if (key && jobId) {
    multi.hdel(queue.toKey(jobId), 'deid');
    n += 1;
  }
  return { planned: { job, existsAt, addAt }, next: n };
}

/** What one planned job's replies say; throws the error of a command of it that Redis refused. */
function outcome(replies: [Error | null, unknown][], { job, existsAt, addAt }: Planned): AtomicOutcome {
  for (const at of [existsAt, addAt]) if (at !== undefined && replies[at]![0]) throw replies[at]![0];
  const answer = replies[addAt]![1] as string | number;
  if (typeof answer === 'number' && answer < 0) throw new Error(`BullMQ refused to add job "${job.name}" (code ${answer})`);
  const id = String(answer);
  const existed = existsAt !== undefined && replies[existsAt]![1] === 1;
  // Without a key or id the job got the queue's next number, which BullMQ answers.
  const deduplicated = existed || (job.id !== undefined && id !== job.id);
  if (deduplicated) return { id, deduplicated };
  job.id = id;
  return { id, deduplicated, job };
}

/**
 * Adds flows through BullMQ's FlowProducer (the whole tree in one MULTI). A flow whose root has
 * a caller-chosen id is added only if no job has that id, all or nothing: BullMQ alone would
 * attach the new children to an existing root. BullMQ's deduplication cannot help here (it
 * refuses nodes with children), so the root's key is WATCHed: WATCH, EXISTS, then the flow's
 * MULTI/EXEC, which Redis discards if the root appeared in between. WATCH lives on a connection,
 * so these flows use a connection of their own, one at a time, that never reconnects: a WATCH
 * lost with a dropped connection can never be followed by an EXEC on a new one. A new
 * connection is opened for the next flow instead.
 */
export class FlowAdder {
  private readonly flows: FlowProducer;
  private guarded?: Promise<{ redis: RedisClient; flows: FlowProducer }>;
  private lane: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    /** Called after each flow written, with the connection that wrote it (see JobProducer's durable acks). */
    private readonly written: (redis: RedisClient) => Promise<void> = async () => undefined,
  ) {
    this.flows = new SerializedFlowProducer({ connection: redis, prefix: keys.prefix, skipWaitingForReady: true });
  }

  /**
   * The tree with each node's BullMQ prefix (its queue's). On a Redis Cluster a flow is one
   * MULTI, which Redis runs only within one hash slot, and each queue has a slot of its own: a
   * flow across queues is refused there, before anything is written.
   */
  private placed<T extends FlowJob>(tree: T): T {
    if (this.keys.cluster) {
      const other = queuesOf(tree).find((q) => q !== tree.queueName);
      if (other !== undefined) {
        throw new FailedPreconditionError(
          `a flow across queues ("${tree.queueName}" and "${other}") cannot be added on a Redis Cluster: each queue's keys are in a hash slot of their own, and a flow is written in one transaction, which Redis Cluster runs only within one slot. Put the whole flow in one queue (job names tell its steps apart), or use one Redis server (REDIS_URL or Sentinel) for cross-queue flows`,
        );
      }
    }
    const place = (n: FlowJob): FlowJob => ({ ...n, prefix: this.keys.queuePrefix(n.queueName), ...(n.children && { children: n.children.map(place) }) });
    return place(tree) as T;
  }

  /** Adds a flow whose root has no caller-chosen id. */
  async add(tree: FlowJob): Promise<JobNode> {
    const node = await this.flows.add(this.placed(tree));
    await this.written(this.redis);
    return node;
  }

  /**
   * Adds a flow whose root has the caller's `opts.jobId`, unless a job with that id exists on
   * the root's queue; then nothing is added and `existing` is true. Throws UnavailableError
   * when Redis could not be asked; the flow may then have been added, which a repeat tells.
   */
  addUnlessRootExists(tree: FlowJob & { opts: { jobId: string } }): Promise<{ node?: JobNode; existing: boolean }> {
    const placed = this.placed(tree);
    const run = this.lane.then(() => this.guardedAdd(placed));
    this.lane = run.catch(() => undefined); // each flow's own caller gets its error
    return run;
  }

  private async guardedAdd(tree: FlowJob & { opts: { jobId: string } }): Promise<{ node?: JobNode; existing: boolean }> {
    const rootKey = `${this.keys.queuePrefix(tree.queueName)}:${tree.queueName}:${tree.opts.jobId}`;
    for (let attempt = 1; ; attempt++) {
      const { redis, flows } = await this.connection();
      await redis.watch(rootKey);
      if (await redis.exists(rootKey)) {
        await redis.unwatch();
        return { existing: true };
      }
      let node: JobNode;
      try {
        node = await flows.add(tree);
      } catch (err) {
        // The EXEC did not apply: BullMQ refused the tree before sending it, or Redis discarded
        // the transaction because the root appeared (BullMQ then fails reading the empty
        // reply). Unless the connection is gone (then the EXEC may have applied, and only a
        // repeat on a new connection can tell), look again.
        if (redis.status !== 'ready' || attempt >= 3) throw err;
        await redis.unwatch();
        continue;
      }
      await this.written(redis);
      return { node, existing: false };
    }
  }

  /** The guarded flows' own connection, opened again after it closed. */
  private async connection(): Promise<{ redis: RedisClient; flows: FlowProducer }> {
    // A connection that failed to open was that caller's error; this call opens a new one.
    const current = await this.guarded?.catch(() => undefined);
    if (current && current.redis.status === 'ready') return current;
    if (current) void this.dispose(current);
    this.guarded = (async () => {
      const once = { autoResendUnfulfilledCommands: false, enableOfflineQueue: false, lazyConnect: true };
      const redis: RedisClient = isCluster(this.redis)
        ? this.redis.duplicate(undefined, { ...once, clusterRetryStrategy: () => null, redisOptions: { ...this.redis.options.redisOptions, retryStrategy: () => null } })
        : this.redis.duplicate({ ...once, retryStrategy: () => null });
      // Failures reach the caller as rejected commands; the event would only repeat them.
      redis.on('error', () => undefined);
      try {
        await redis.connect();
      } catch (err) {
        redis.disconnect();
        throw new UnavailableError(`Redis is unavailable: ${(err as Error).message}`);
      }
      const flows = new SerializedFlowProducer({ connection: redis, prefix: this.keys.prefix });
      flows.on('error', () => undefined); // as for the connection above
      await flows.waitUntilReady();
      return { redis, flows };
    })();
    return this.guarded;
  }

  private async dispose(c: { redis: RedisClient; flows: FlowProducer }): Promise<void> {
    await c.flows.close().catch(() => undefined); // closing a dead connection; nothing to lose
    c.redis.disconnect();
  }

  /** The flow rooted at `id` on `queueName`, as stored (children to 32 levels, 1000 per state). */
  async getFlow(queueName: string, id: string): Promise<JobNode | undefined> {
    try {
      return await this.flows.getFlow({ id, queueName, prefix: this.keys.queuePrefix(queueName), depth: 32, maxChildren: 1000 });
    } catch (err) {
      // BullMQ 6.7 reads the replies of getFlow's MULTI without looking at their errors, so a
      // read that failed (Redis too slow or gone) surfaces as a TypeError.
      if (err instanceof TypeError) throw new UnavailableError(`Redis did not answer while the flow of "${id}" was read: ${err.message}`);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.lane;
    // Never opened, or failed to: nothing to dispose of.
    const current = await this.guarded?.catch(() => undefined);
    if (current) await this.dispose(current);
    await this.flows.close();
  }
}

/** Every queue a flow's nodes are on, the root's first. */
function queuesOf(n: FlowJob): string[] {
  return [n.queueName, ...(n.children ?? []).flatMap(queuesOf)];
}

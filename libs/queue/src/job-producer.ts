// Adding jobs and flows, in Jobmesh's terms: what the scheduler's EnqueueJob, EnqueueJobs and
// EnqueueFlow write, and how.
import * as pb from '@jobmesh/contracts';
import { type JobStateName, type ResolvedJobOptions, UnavailableError } from '@jobmesh/core';
import type { FlowJob, Job as BullJob, JobNode, JobsOptions } from 'bullmq';
import { isCluster, type RedisClient } from './connection';
import { type AtomicJob, type AtomicOutcome, AtomicAdder, FlowAdder } from './atomic-enqueue';
import type { Backbone } from './backbone';
import { type JobData, SerializedJob } from './job-data';
import { stateFromBull, toBullOptions, toProtoJob } from './job-mapping';
import { isPlain, PlainAdder } from './plain-adds';

/** One job to enqueue: its options resolved (libs/core's resolveJobOptions), its data encoded. */
export interface NewJob {
  name: string;
  data: JobData;
  options: ResolvedJobOptions;
  /** W3C traceparent of the enqueue, stored with the job. */
  traceparent?: string;
  /**
   * The queue captures dead letters: BullMQ keeps the job when it fails for good, for the
   * dead-letter service to capture (see toBullOptions).
   */
  holdFailed: boolean;
}

/** What became of one {@link NewJob}. */
export interface Enqueued {
  /** The new job's id, or the id of the existing job its idempotency key or id matched. */
  id: string;
  /** True when nothing was added because the key or id matched an existing job. */
  deduplicated: boolean;
  /** The job as added, in the state it was added in; only when it was added. */
  job?: pb.Job;
}

/** A node of a flow to enqueue: a job on `queue`, run after its children. */
export interface NewFlowNode {
  queue: string;
  job: NewJob;
  children: NewFlowNode[];
}

/**
 * Acknowledge an enqueue only once `replicas` Redis replicas have its write: Redis WAIT, on the
 * connection that wrote it, for at most `timeoutMs`.
 */
export interface DurableAck {
  replicas: number;
  timeoutMs: number;
}

/**
 * Adds jobs and flows. A job with an idempotency key or its own id is written in one atomic step
 * with its key (AtomicAdder), so a repeat of the call finds it. A plain job (neither, and no delay
 * or priority) goes with the others of its turn in one script call (PlainAdder). A batch is one
 * transaction or one script call, all of it or none. A flow whose root has its own id is
 * added only if no job has that id (FlowAdder). With a {@link DurableAck}, every call that wrote
 * (or found its job deduplicated) answers only once the replicas have it, else UNAVAILABLE.
 */
export class JobProducer {
  private readonly adder: AtomicAdder;
  private readonly plain: PlainAdder;
  private readonly flows: FlowAdder;

  constructor(
    private readonly backbone: Pick<Backbone, 'redis' | 'registry'>,
    /** How long idempotency keys are remembered, ms. */
    idempotencyTtlMs: number,
    private readonly durable?: DurableAck,
  ) {
    const redis = backbone.redis;
    if (durable && isCluster(redis)) {
      // WAIT counts the replicas of the one server the connection wrote to; a Cluster connection
      // writes to many masters and sends WAIT to any of them, so it would confirm nothing.
      throw new Error('JOBMESH_DURABLE_ACK is not supported with REDIS_CLUSTER_NODES: Redis WAIT confirms the writes of one connection to one master, and a cluster enqueue goes to the master of its queue\'s slot');
    }
    const commandTimeoutMs = isCluster(redis) ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout;
    if (durable && commandTimeoutMs !== undefined && durable.timeoutMs >= commandTimeoutMs) {
      throw new Error(
        `JOBMESH_DURABLE_ACK_TIMEOUT (${durable.timeoutMs} ms) must be shorter than JOBMESH_REDIS_COMMAND_TIMEOUT (${commandTimeoutMs} ms): the wait for the replicas is one Redis command`,
      );
    }
    this.adder = new AtomicAdder(backbone.registry.keys, idempotencyTtlMs);
    this.plain = new PlainAdder(redis);
    this.flows = new FlowAdder(backbone.redis, backbone.registry.keys, (redis) => this.replicated(redis));
  }

  /** Adds one job to `queue` (not checked against the registry). */
  async add(queue: string, job: NewJob): Promise<Enqueued> {
    const bull = this.backbone.registry.bullQueue(queue);
    const opts = bullOptions(job);
    if (!job.options.idempotencyKey && !job.options.jobId) {
      // A plain job goes with the others of this turn, in one command (PlainAdder); a delayed or
      // prioritized one as Queue.add sends it, one EVALSHA, with no transaction to set up.
      const added = isPlain(opts) ? await this.plain.add(bull, { name: job.name, data: job.data, opts }) : await SerializedJob.create(bull, job.name, job.data, opts);
      await this.replicated(this.backbone.redis);
      return { id: added.id!, deduplicated: false, job: toProtoJob(added, queue, addedState(opts)) };
    }
    const [outcome] = await this.adder.add(bull, [atomicJob(job, opts)]);
    await this.replicated(this.backbone.redis);
    return enqueued(outcome!, queue);
  }

  /**
   * Adds `jobs` to `queue` in one transaction or one script call, all of them or none; answers
   * each one's id in request order (EnqueueJobs answers no more, so no Job is built for it).
   */
  async addAll(queue: string, jobs: NewJob[]): Promise<Array<Omit<Enqueued, 'job'>>> {
    const bull = this.backbone.registry.bullQueue(queue);
    const withOpts = jobs.map((j) => ({ job: j, opts: bullOptions(j) }));
    if (withOpts.every(({ job, opts }) => !job.options.idempotencyKey && isPlain(opts))) {
      // One script call, which Redis runs whole: all of them or none, as a transaction would.
      const added = await this.plain.addAll(bull, withOpts.map(({ job, opts }) => ({ name: job.name, data: job.data, opts })));
      await this.replicated(this.backbone.redis);
      return added.map((j) => ({ id: j.id!, deduplicated: false }));
    }
    const outcomes = await this.adder.add(
      bull,
      withOpts.map(({ job, opts }) => atomicJob(job, opts)),
    );
    await this.replicated(this.backbone.redis);
    return outcomes.map(({ id, deduplicated }) => ({ id, deduplicated }));
  }

  /**
   * With a durable ack: waits until the replicas have every write `redis` made so far (WAIT is
   * per connection, so it must be the one that wrote). The write stays when they do not confirm
   * it in time: the caller is told it may not survive a failover, and a retry with the same
   * idempotency key finds the job rather than adding another.
   */
  private async replicated(redis: RedisClient): Promise<void> {
    if (!this.durable) return;
    const { replicas, timeoutMs } = this.durable;
    const confirmed = await redis.wait(replicas, timeoutMs);
    if (confirmed < replicas) {
      throw new UnavailableError(
        `the enqueue was written to the Redis master, but ${confirmed} of the ${replicas} replicas JOBMESH_DURABLE_ACK asks for confirmed it within ${timeoutMs} ms, so a failover could lose it; retry with the same idempotency key, which finds the job if it was kept`,
      );
    }
  }

  /**
   * Adds a flow in one transaction. When the root has its own id and a job with that id exists,
   * nothing is added and the answer is the stored flow (or what is known of the root), deduplicated.
   */
  async addFlow(root: NewFlowNode): Promise<{ flow: pb.EnqueuedFlow; deduplicated: boolean }> {
    const tree = flowJob(root);
    const rootId = root.job.options.jobId;
    if (!rootId) return { flow: addedFlow(await this.flows.add(tree)), deduplicated: false };
    const { node, existing } = await this.flows.addUnlessRootExists({ ...tree, opts: { ...tree.opts, jobId: rootId } });
    if (!existing) return { flow: addedFlow(node!), deduplicated: false };
    const stored = await this.flows.getFlow(root.queue, rootId);
    const flow = stored
      ? await storedFlow(stored)
      : { job: pb.Job.fromPartial({ id: rootId, queue: root.queue, name: root.job.name, state: pb.JobState.JOB_STATE_UNSPECIFIED }), children: [] };
    return { flow, deduplicated: true };
  }

  async close(): Promise<void> {
    await this.flows.close();
  }
}

function bullOptions(job: NewJob): JobsOptions {
  return toBullOptions(job.options, { traceparent: job.traceparent, holdFailed: job.holdFailed });
}

function atomicJob(job: NewJob, opts: JobsOptions): AtomicJob {
  return { name: job.name, data: job.data, opts, idempotencyKey: job.options.idempotencyKey };
}

/** The state BullMQ adds a job in, by its options. */
function addedState(opts: JobsOptions): JobStateName {
  return opts.delay ? 'delayed' : opts.priority ? 'prioritized' : 'waiting';
}

function enqueued({ id, deduplicated, job }: AtomicOutcome, queue: string): Enqueued {
  return { id, deduplicated, ...(job && { job: toProtoJob(job, queue, addedState(job.opts)) }) };
}

function flowJob(n: NewFlowNode): FlowJob {
  const children = n.children.map(flowJob);
  return { name: n.job.name, queueName: n.queue, data: n.job.data, opts: bullOptions(n.job), ...(children.length && { children }) };
}

/** A flow just added. */
function addedFlow(n: JobNode): pb.EnqueuedFlow {
  const hasChildren = (n.children?.length ?? 0) > 0;
  const job = n.job as BullJob;
  return { job: toProtoJob(job, job.queueName, hasChildren ? 'waiting-children' : addedState(job.opts)), children: (n.children ?? []).map(addedFlow) };
}

/** A flow as stored now, each job in its current state. */
async function storedFlow(n: JobNode): Promise<pb.EnqueuedFlow> {
  const job = n.job as BullJob;
  const state = stateFromBull(await job.getState());
  return { job: toProtoJob(job, job.queueName, state), children: await Promise.all((n.children ?? []).filter((c) => c?.job).map(storedFlow)) };
}

import * as pb from '@jobmesh/contracts';
import {
  InvalidArgumentError,
  type JobOptionsSpec,
  type JobStateName,
  type QueueSpec,
  resolveJobOptions,
  validateJobName,
  validateJobOptions,
  validatePayload,
  validateQueueName,
} from '@jobmesh/core';
import { type QueueRegistry, AtomicAdder, FlowAdder, jobOptionsFromProto, readCancelled, stateFromBull, toBullOptions, toProtoJob } from '@jobmesh/queue';
import type { FlowJob, Job as BullJob, JobNode, JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';

export interface EnqueueSettings {
  maxPayloadBytes: number;
  idempotencyTtlMs: number;
}

/** At most this many jobs in one EnqueueJobs call. */
export const MAX_BULK = 10_000;

interface PreparedJob {
  name: string;
  data: Record<string, unknown>;
  /** BullMQ options; `jobId` only when the caller chose one. */
  opts: JobsOptions;
  idempotencyKey?: string;
  state: JobStateName;
}

/** The job has something a repeat can be recognised by: an idempotency key or its own id. */
const keyed = (j: PreparedJob): boolean => !!j.idempotencyKey || !!j.opts.jobId;

/**
 * Enqueues jobs, with idempotency keys, custom ids, bulk and flows. A key or caller-chosen id is
 * written in the same atomic step as its job (see AtomicAdder and FlowAdder in
 * libs/queue), so a repeat of any call, whatever happened to the first, either finds the job the
 * first one wrote or writes it now.
 */
export class Enqueuer {
  private readonly flows: FlowAdder;
  private readonly adder: AtomicAdder;

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
    private readonly settings: EnqueueSettings,
  ) {
    this.flows = new FlowAdder(redis, registry.keys.prefix);
    this.adder = new AtomicAdder(registry.keys, settings.idempotencyTtlMs);
  }

  /** Validates one spec against its queue; nothing is written. `field` prefixes error paths. */
  private prepare(queue: QueueSpec, spec: pb.JobSpec | undefined, field: string, traceparent?: string): PreparedJob {
    if (!spec) throw new InvalidArgumentError(field, 'is required');
    const name = validateJobName(spec.name, `${field}.name`);
    const data = spec.data ?? {};
    validatePayload(data, this.settings.maxPayloadBytes, `${field}.data`);
    const own: JobOptionsSpec = jobOptionsFromProto(spec.options);
    validateJobOptions(own, `${field}.options`);
    const resolved = resolveJobOptions(own, queue.defaultJobOptions);
    const opts = toBullOptions(resolved, { traceparent, holdFailed: !queue.deadLetter.disabled });
    const state: JobStateName = opts.delay ? 'delayed' : opts.priority ? 'prioritized' : 'waiting';
    return { name, data, opts, idempotencyKey: own.idempotencyKey, state };
  }

  async enqueue(req: pb.EnqueueJobRequest, traceparent?: string): Promise<pb.EnqueueJobResponse> {
    const queueName = validateQueueName(req.queue);
    const queue = await this.registry.get(queueName);
    const job = this.prepare(queue, req.job, 'job', traceparent);
    const bull = this.registry.bullQueue(queueName);
    if (!keyed(job)) {
      const added = await bull.add(job.name, job.data, job.opts);
      return { job: enqueued(added, queueName, job.state), deduplicated: false };
    }
    const [outcome] = await this.adder.add(bull, [job]);
    if (outcome!.job) return { job: enqueued(outcome!.job, queueName, job.state), deduplicated: false };
    return { job: await this.snapshot(queueName, outcome!.id, job), deduplicated: true };
  }

  /**
   * The job a key or id matched; if BullMQ no longer has it, its CANCELLED record, or else what
   * is known of it. Only deduplicated answers read this.
   */
  private async snapshot(queue: string, jobId: string, job: PreparedJob): Promise<pb.Job> {
    const found = await this.registry.bullQueue(queue).getJob(jobId);
    if (found) return toProtoJob(found, queue, await stateOf(found));
    const cancelled = await readCancelled(this.redis, this.registry.keys, queue, jobId);
    if (cancelled) return cancelled;
    return pb.Job.fromPartial({ id: jobId, queue, name: job.name, idempotencyKey: job.idempotencyKey, state: pb.JobState.JOB_STATE_UNSPECIFIED });
  }

  async enqueueBulk(req: pb.EnqueueJobsRequest, traceparent?: string): Promise<pb.EnqueueJobsResponse> {
    const queueName = validateQueueName(req.queue);
    if (req.jobs.length === 0) throw new InvalidArgumentError('jobs', 'must hold at least one job');
    if (req.jobs.length > MAX_BULK) throw new InvalidArgumentError('jobs', `holds ${req.jobs.length} jobs; at most ${MAX_BULK} per call`);
    const queue = await this.registry.get(queueName);
    const jobs = req.jobs.map((spec, i) => this.prepare(queue, spec, `jobs[${i}]`, traceparent));
    refuseRepeats(jobs, (j) => j.idempotencyKey, 'idempotency_key', 'key');
    refuseRepeats(jobs, (j) => j.opts.jobId, 'job_id', 'id');
    // One transaction, keyed or not: BullMQ 6.7's addBulk pipelines its adds, so a connection
    // lost part-way would leave the first ones added; a transaction costs no more (measured).
    const bull = this.registry.bullQueue(queueName);
    const outcomes = await this.adder.add(bull, jobs);
    return { jobs: outcomes.map(({ id, deduplicated }) => ({ id, deduplicated })) };
  }

  async enqueueFlow(req: pb.EnqueueFlowRequest, traceparent?: string): Promise<pb.EnqueueFlowResponse> {
    if (!req.root) throw new InvalidArgumentError('root', 'is required');
    const build = async (node: pb.FlowNode, field: string, depth: number): Promise<FlowJob> => {
      if (depth > 32) throw new InvalidArgumentError(field, 'flows may be at most 32 levels deep');
      const queueName = validateQueueName(node.queue, `${field}.queue`);
      const queue = await this.registry.get(queueName);
      const job = this.prepare(queue, node.job, `${field}.job`, traceparent);
      if (job.idempotencyKey) {
        throw new InvalidArgumentError(`${field}.job.options.idempotency_key`, 'is not supported in flows; give the root a job_id instead');
      }
      const children = await Promise.all(node.children.map((c, i) => build(c, `${field}.children[${i}]`, depth + 1)));
      return { name: job.name, queueName, data: job.data, opts: job.opts, ...(children.length && { children }) };
    };
    const tree = await build(req.root, 'root', 0);
    const rootId = tree.opts?.jobId;
    if (!rootId) return { flow: addedFlow(await this.flows.add(tree)), deduplicated: false };
    const { node, existing } = await this.flows.addUnlessRootExists({ ...tree, opts: { ...tree.opts, jobId: rootId } });
    if (!existing) return { flow: addedFlow(node!), deduplicated: false };
    const stored = await this.flows.getFlow(tree.queueName, rootId);
    const flow = stored
      ? await storedFlow(stored)
      : { job: pb.Job.fromPartial({ id: rootId, queue: tree.queueName, name: tree.name, state: pb.JobState.JOB_STATE_UNSPECIFIED }), children: [] };
    return { flow, deduplicated: true };
  }

  async close(): Promise<void> {
    await this.flows.close();
  }
}

/** An idempotency key or job id given twice in one batch is a mistake: refused before anything is written. */
function refuseRepeats(jobs: PreparedJob[], of: (j: PreparedJob) => string | undefined, field: string, what: string): void {
  const seen = new Map<string, number>();
  jobs.forEach((j, i) => {
    const v = of(j);
    if (!v) return;
    const prev = seen.get(v);
    if (prev !== undefined) throw new InvalidArgumentError(`jobs[${i}].options.${field}`, `repeats the ${what} of jobs[${prev}]`);
    seen.set(v, i);
  });
}

/** A flow just added, as EnqueueFlow returns it. */
function addedFlow(n: JobNode): pb.EnqueuedFlow {
  const hasChildren = (n.children?.length ?? 0) > 0;
  const state: JobStateName = hasChildren ? 'waiting-children' : n.job.opts.delay ? 'delayed' : n.job.opts.priority ? 'prioritized' : 'waiting';
  return { job: toProtoJob(n.job as BullJob, n.job.queueName, state), children: (n.children ?? []).map(addedFlow) };
}

/** A flow as stored now, each job in its current state. */
async function storedFlow(n: JobNode): Promise<pb.EnqueuedFlow> {
  const job = toProtoJob(n.job as BullJob, n.job.queueName, await stateOf(n.job as BullJob));
  return { job, children: await Promise.all((n.children ?? []).filter((c) => c?.job).map(storedFlow)) };
}

/** A fresh job as EnqueueJob returns it: without `data`, which the caller just sent. */
function enqueued(job: BullJob, queue: string, state: JobStateName): pb.Job {
  return { ...toProtoJob(job, queue, state), data: undefined };
}

export async function stateOf(job: BullJob): Promise<JobStateName | undefined> {
  return stateFromBull(await job.getState());
}

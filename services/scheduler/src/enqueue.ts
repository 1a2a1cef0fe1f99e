import { randomUUID } from 'node:crypto';
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
import { type QueueRegistry, jobOptionsFromProto, stateFromBull, toBullOptions, toProtoJob } from '@jobmesh/queue';
import { FlowProducer, type FlowJob, type Job as BullJob, type JobNode, type JobsOptions, type Queue } from 'bullmq';
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
  opts: JobsOptions;
  idempotencyKey?: string;
  state: JobStateName;
}

/** Enqueues jobs, with idempotency keys, custom ids, bulk and flows. */
export class Enqueuer {
  private readonly flows: FlowProducer;

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
    private readonly settings: EnqueueSettings,
  ) {
    this.flows = new FlowProducer({ connection: redis, prefix: registry.keys.prefix, skipWaitingForReady: true });
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
    // An idempotent job gets its id now, so the key can point at it before it exists.
    const jobId = own.jobId ?? (own.idempotencyKey ? randomUUID() : undefined);
    const opts = toBullOptions(resolved, { jobId, traceparent, holdFailed: !queue.deadLetter.disabled });
    const state: JobStateName = opts.delay ? 'delayed' : opts.priority ? 'prioritized' : 'waiting';
    return { name, data, opts, idempotencyKey: own.idempotencyKey, state };
  }

  async enqueue(req: pb.EnqueueJobRequest, traceparent?: string): Promise<pb.EnqueueJobResponse> {
    const queueName = validateQueueName(req.queue);
    const queue = await this.registry.get(queueName);
    const job = this.prepare(queue, req.job, 'job', traceparent);
    const bull = this.registry.bullQueue(queueName);

    if (job.idempotencyKey) {
      const key = this.registry.keys.idempotency(queueName, job.idempotencyKey);
      const existing = await this.claim(key, job.opts.jobId!);
      if (existing) return { job: await this.snapshot(queueName, existing, job), deduplicated: true };
      try {
        const added = await bull.add(job.name, job.data, job.opts);
        return { job: enqueued(added, queueName, job.state), deduplicated: false };
      } catch (err) {
        await this.redis.del(key).catch(() => undefined);
        throw err;
      }
    }

    if (job.opts.jobId) {
      // BullMQ ignores an add with an id that exists; tell the caller it was a duplicate.
      const found = await bull.getJob(job.opts.jobId);
      if (found) return { job: toProtoJob(found, queueName, await stateOf(found)), deduplicated: true };
    }
    const added = await bull.add(job.name, job.data, job.opts);
    return { job: enqueued(added, queueName, job.state), deduplicated: false };
  }

  /** SET NX of the idempotency key; returns the job id already holding it, if any. */
  private async claim(key: string, jobId: string): Promise<string | undefined> {
    const reply = await this.redis.set(key, jobId, 'PX', this.settings.idempotencyTtlMs, 'NX', 'GET');
    return reply ?? undefined;
  }

  /** The job an idempotency key points at; if it was removed, what is known of it. */
  private async snapshot(queue: string, jobId: string, job: PreparedJob): Promise<pb.Job> {
    const found = await this.registry.bullQueue(queue).getJob(jobId);
    if (found) return toProtoJob(found, queue, await stateOf(found));
    return pb.Job.fromPartial({ id: jobId, queue, name: job.name, idempotencyKey: job.idempotencyKey, state: pb.JobState.JOB_STATE_UNSPECIFIED });
  }

  async enqueueBulk(req: pb.EnqueueJobsRequest, traceparent?: string): Promise<pb.EnqueueJobsResponse> {
    const queueName = validateQueueName(req.queue);
    if (req.jobs.length === 0) throw new InvalidArgumentError('jobs', 'must hold at least one job');
    if (req.jobs.length > MAX_BULK) throw new InvalidArgumentError('jobs', `holds ${req.jobs.length} jobs; at most ${MAX_BULK} per call`);
    const queue = await this.registry.get(queueName);
    const jobs = req.jobs.map((spec, i) => this.prepare(queue, spec, `jobs[${i}]`, traceparent));
    const bull = this.registry.bullQueue(queueName);

    // Claim every idempotency key in one round trip; jobs whose key is taken are not added.
    const out: pb.EnqueuedJob[] = new Array(jobs.length);
    const claimed: string[] = [];
    const keyed = jobs.map((j, i) => ({ j, i })).filter(({ j }) => j.idempotencyKey);
    if (keyed.length) {
      const seen = new Map<string, number>();
      for (const { j, i } of keyed) {
        const prev = seen.get(j.idempotencyKey!);
        if (prev !== undefined) throw new InvalidArgumentError(`jobs[${i}].options.idempotency_key`, `repeats the key of jobs[${prev}]`);
        seen.set(j.idempotencyKey!, i);
      }
      const pipe = this.redis.multi();
      for (const { j } of keyed) pipe.set(this.registry.keys.idempotency(queueName, j.idempotencyKey!), j.opts.jobId!, 'PX', this.settings.idempotencyTtlMs, 'NX', 'GET');
      const replies = (await pipe.exec()) ?? [];
      keyed.forEach(({ j, i }, n) => {
        const [err, existing] = replies[n] ?? [];
        if (err) throw err;
        if (existing) out[i] = { id: existing as string, deduplicated: true };
        else claimed.push(this.registry.keys.idempotency(queueName, j.idempotencyKey!));
      });
    }
    try {
      await this.markExistingIds(bull, jobs, out);
      const toAdd = jobs.map((j, i) => ({ j, i })).filter(({ i }) => !out[i]);
      const added = toAdd.length ? await bull.addBulk(toAdd.map(({ j }) => ({ name: j.name, data: j.data, opts: j.opts }))) : [];
      added.forEach((a: BullJob, n) => (out[toAdd[n]!.i] = { id: a.id ?? '', deduplicated: false }));
    } catch (err) {
      if (claimed.length) await this.redis.del(...claimed).catch(() => undefined);
      throw err;
    }
    return { jobs: out };
  }

  /**
   * A caller-chosen id that exists is a duplicate, as in EnqueueJob (BullMQ would silently skip
   * the add). One round trip for the whole batch; an id repeated within the batch is an error.
   */
  private async markExistingIds(bull: Queue, jobs: PreparedJob[], out: pb.EnqueuedJob[]): Promise<void> {
    const custom = jobs.map((j, i) => ({ id: j.opts.jobId, i })).filter(({ id, i }) => id && !jobs[i]!.idempotencyKey && !out[i]);
    if (!custom.length) return;
    const seen = new Map<string, number>();
    for (const { id, i } of custom) {
      const prev = seen.get(id!);
      if (prev !== undefined) throw new InvalidArgumentError(`jobs[${i}].options.job_id`, `repeats the id of jobs[${prev}]`);
      seen.set(id!, i);
    }
    const replies = (await this.redis.pipeline(custom.map(({ id }) => ['exists', bull.toKey(id!)])).exec()) ?? [];
    custom.forEach(({ id, i }, n) => {
      const [err, exists] = replies[n] ?? [];
      if (err) throw err;
      if (exists) out[i] = { id: id!, deduplicated: true };
    });
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
    const node = await this.flows.add(tree);
    const toProto = (n: JobNode): pb.EnqueuedFlow => {
      const hasChildren = (n.children?.length ?? 0) > 0;
      const state: JobStateName = hasChildren ? 'waiting-children' : n.job.opts.delay ? 'delayed' : n.job.opts.priority ? 'prioritized' : 'waiting';
      return { job: toProtoJob(n.job as BullJob, n.job.queueName, state), children: (n.children ?? []).map(toProto) };
    };
    return { flow: toProto(node) };
  }

  async close(): Promise<void> {
    await this.flows.close();
  }
}

/** A fresh job as EnqueueJob returns it: without `data`, which the caller just sent. */
function enqueued(job: BullJob, queue: string, state: JobStateName): pb.Job {
  return { ...toProtoJob(job, queue, state), data: undefined };
}

export async function stateOf(job: BullJob): Promise<JobStateName | undefined> {
  return stateFromBull(await job.getState());
}

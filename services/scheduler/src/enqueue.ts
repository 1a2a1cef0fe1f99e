import * as pb from '@jobmesh/contracts';
import {
  InvalidArgumentError,
  type JobOptionsSpec,
  type QueueSpec,
  resolveJobOptions,
  validateJobName,
  validateJobOptions,
  validateQueueName,
} from '@jobmesh/core';
import { type Backbone, type DurableAck, type JobAdmin, type NewFlowNode, type NewJob, JobData, JobProducer, jobOptionsFromProto } from '@jobmesh/queue';
import { type FlowNodeRef, startEnqueueSpan, startFlowSpans } from '@jobmesh/telemetry';

export interface EnqueueSettings {
  maxPayloadBytes: number;
  idempotencyTtlMs: number;
  durableAck?: DurableAck;
}

/** At most this many jobs in one EnqueueJobs call. */
export const MAX_BULK = 10_000;
/** At most this many jobs in one flow, the root included. */
export const MAX_FLOW_NODES = 10_000;
/** At most this many levels in one flow: a root with no children is one level. */
export const MAX_FLOW_DEPTH = 32;

/**
 * EnqueueJob, EnqueueJobs and EnqueueFlow: each job is validated against its queue (nothing is
 * written for a call with one bad job), then added by libs/queue's JobProducer, which writes an
 * idempotency key or caller-chosen id in the same atomic step as its job, so a repeat of any
 * call, whatever happened to the first, either finds the job the first one wrote or writes it now.
 */
export class Enqueuer {
  private readonly producer: JobProducer;

  constructor(
    private readonly backbone: Backbone,
    private readonly admin: JobAdmin,
    private readonly settings: EnqueueSettings,
  ) {
    this.producer = new JobProducer(backbone, settings.idempotencyTtlMs, settings.durableAck);
  }

  private get registry(): Backbone['registry'] {
    return this.backbone.registry;
  }

  /** Validates one spec against its queue; nothing is written. `field` prefixes error paths. */
  private prepare(queue: QueueSpec, spec: pb.JobSpec | undefined, field: string): NewJob {
    if (!spec) throw new InvalidArgumentError(field, 'is required');
    const name = validateJobName(spec.name, `${field}.name`);
    // Encoded once: measured here, stored as it is.
    const data = JobData.encode(spec.data ?? {}, this.settings.maxPayloadBytes, `${field}.data`);
    const own: JobOptionsSpec = jobOptionsFromProto(spec.options, `${field}.options`);
    validateJobOptions(own, `${field}.options`);
    return { name, data, options: resolveJobOptions(own, queue.defaultJobOptions), holdFailed: !queue.deadLetter.disabled };
  }

  async enqueue(req: pb.EnqueueJobRequest, traceparent?: string): Promise<pb.EnqueueJobResponse> {
    const queueName = validateQueueName(req.queue);
    const queue = await this.registry.get(queueName);
    const job = this.prepare(queue, req.job, 'job');
    const span = startEnqueueSpan(queueName, [{ name: job.name, id: job.options.jobId }], traceparent);
    job.traceparent = span.traceparents[0];
    const outcome = await this.producer.add(queueName, job).catch((err: unknown) => {
      span.end({ err });
      throw err;
    });
    span.end({ ids: [outcome.id] });
    // A fresh job is answered without `data`, which the caller just sent.
    if (outcome.job) return { job: { ...outcome.job, data: undefined }, deduplicated: false };
    return { job: await this.snapshot(queueName, outcome.id, job), deduplicated: true };
  }

  /** The job a key or id matched as it is now (also CANCELLED), or else what is known of it. */
  private async snapshot(queue: string, jobId: string, job: NewJob): Promise<pb.Job> {
    const found = await this.admin.read(queue, jobId);
    if (found) return found.job;
    return pb.Job.fromPartial({ id: jobId, queue, name: job.name, idempotencyKey: job.options.idempotencyKey, state: pb.JobState.JOB_STATE_UNSPECIFIED });
  }

  async enqueueBulk(req: pb.EnqueueJobsRequest, traceparent?: string): Promise<pb.EnqueueJobsResponse> {
    const queueName = validateQueueName(req.queue);
    if (req.jobs.length === 0) throw new InvalidArgumentError('jobs', 'must hold at least one job');
    if (req.jobs.length > MAX_BULK) throw new InvalidArgumentError('jobs', `holds ${req.jobs.length} jobs; at most ${MAX_BULK} per call`);
    const queue = await this.registry.get(queueName);
    const jobs = req.jobs.map((spec, i) => this.prepare(queue, spec, `jobs[${i}]`));
    refuseRepeats(jobs, (j) => j.options.idempotencyKey, 'idempotency_key', 'key');
    refuseRepeats(jobs, (j) => j.options.jobId, 'job_id', 'id');
    const span = startEnqueueSpan(queueName, jobs.map((j) => ({ name: j.name, id: j.options.jobId })), traceparent);
    jobs.forEach((j, i) => (j.traceparent = span.traceparents[i]));
    // One transaction, keyed or not: BullMQ 6.7's addBulk pipelines its adds, so a connection
    // lost part-way would leave the first ones added; a transaction costs no more (measured).
    const outcomes = await this.producer.addAll(queueName, jobs).catch((err: unknown) => {
      span.end({ err });
      throw err;
    });
    span.end({ ids: outcomes.map((o) => o.id) });
    return { jobs: outcomes };
  }

  async enqueueFlow(req: pb.EnqueueFlowRequest, traceparent?: string): Promise<pb.EnqueueFlowResponse> {
    if (!req.root) throw new InvalidArgumentError('root', 'is required');
    checkFlowShape(req.root);
    const build = async (node: pb.FlowNode, field: string): Promise<NewFlowNode> => {
      const queueName = validateQueueName(node.queue, `${field}.queue`);
      const queue = await this.registry.get(queueName);
      const job = this.prepare(queue, node.job, `${field}.job`);
      if (job.options.idempotencyKey) {
        throw new InvalidArgumentError(`${field}.job.options.idempotency_key`, 'is not supported in flows; give the root a job_id instead');
      }
      const children = await Promise.all(node.children.map((c, i) => build(c, `${field}.children[${i}]`)));
      return { queue: queueName, job, children };
    };
    const root = await build(req.root, 'root');
    // Each node stores its own span's context; a parent's span links its children's.
    const ref = (n: NewFlowNode): FlowNodeRef => ({ queue: n.queue, name: n.job.name, id: n.job.options.jobId, children: n.children.map(ref) });
    const spans = startFlowSpans(ref(root), traceparent);
    let i = 0;
    const assign = (n: NewFlowNode): void => {
      n.job.traceparent = spans.traceparents[i++];
      n.children.forEach(assign);
    };
    assign(root);
    try {
      const res = await this.producer.addFlow(root);
      spans.end({});
      return res;
    } catch (err) {
      spans.end({ err });
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.producer.close();
  }
}

/**
 * Refuses a flow over {@link MAX_FLOW_NODES} jobs or {@link MAX_FLOW_DEPTH} levels before anything
 * else is looked at, so nothing is validated, encoded or written for it (a flow of 100,000 jobs
 * once wrote all of them and then timed out). Walks the tree without recursion.
 */
function checkFlowShape(root: pb.FlowNode): void {
  const stack: Array<{ node: pb.FlowNode; depth: number; field: string }> = [{ node: root, depth: 1, field: 'root' }];
  let nodes = 0;
  for (let next = stack.pop(); next; next = stack.pop()) {
    const top = next;
    nodes += 1;
    if (nodes > MAX_FLOW_NODES) throw new InvalidArgumentError('root', `holds more than ${MAX_FLOW_NODES} jobs; at most ${MAX_FLOW_NODES} per flow`);
    if (top.node.children.length === 0) continue;
    if (top.depth >= MAX_FLOW_DEPTH) {
      throw new InvalidArgumentError(`${top.field}.children`, `flows may be at most ${MAX_FLOW_DEPTH} levels deep; this would be level ${top.depth + 1}`);
    }
    top.node.children.forEach((node, i) => stack.push({ node, depth: top.depth + 1, field: `${top.field}.children[${i}]` }));
  }
}

/** An idempotency key or job id given twice in one batch is a mistake: refused before anything is written. */
function refuseRepeats(jobs: NewJob[], of: (j: NewJob) => string | undefined, field: string, what: string): void {
  const seen = new Map<string, number>();
  jobs.forEach((j, i) => {
    const v = of(j);
    if (!v) return;
    const prev = seen.get(v);
    if (prev !== undefined) throw new InvalidArgumentError(`jobs[${i}].options.${field}`, `repeats the ${what} of jobs[${prev}]`);
    seen.set(v, i);
  });
}

// Conversions between BullMQ jobs and jobmesh.v1 Job messages.
import type * as pb from '@jobmesh/contracts';
import type { BackoffSpec, JobOptionsSpec, JobStateName, ResolvedJobOptions, RetentionSpec } from '@jobmesh/core';
import type { Job as BullJob, JobsOptions, KeepJobs } from 'bullmq';
import { jobOptionsToProto, stateToProto } from './proto-mapping';

/**
 * What Jobmesh keeps in a BullMQ job's opts beyond BullMQ's own fields, under the `jobmesh` key
 * (BullMQ round-trips unknown opts keys unchanged). Jobs stored before these names had them
 * under `jm` with short keys; jobmeshOpts reads both.
 */
export interface JobmeshOpts {
  /** The backoff spec, when BullMQ's built-in strategies cannot express it. */
  backoff?: BackoffSpec;
  /** Per-attempt timeout, ms. */
  timeoutMs?: number;
  /** Idempotency key. */
  idempotencyKey?: string;
  /** W3C traceparent of the enqueue. */
  traceparent?: string;
  /**
   * A traceparent for the job's attempts to link to rather than continue: a schedule's, so that
   * each run starts a trace of its own instead of all runs joining one endless trace.
   */
  linkTraceparent?: string;
  /** The dead letter this job replays. */
  replayOf?: string;
  /**
   * keep_failed, when BullMQ's removeOnFail is off because the dead-letter service captures the
   * job first and then applies this retention (see holdFailed).
   */
  keepFailed?: RetentionSpec;
}

/** The short keys of jobs stored before JobmeshOpts had names (under opts.jm). */
interface LegacyJobmeshOpts {
  b?: BackoffSpec;
  to?: number;
  ik?: string;
  tp?: string;
  rf?: string;
  kf?: RetentionSpec;
}

/** The backoff strategy name the worker-pool registers for specs BullMQ cannot express. */
export const JOBMESH_BACKOFF = 'jobmesh';

function keepToBull(r: RetentionSpec): KeepJobs | boolean {
  if (r.count === 0 && !r.ageMs) return true; // remove at once
  if (r.ageMs !== undefined) return { age: Math.ceil(r.ageMs / 1000), ...(r.count !== undefined && { count: r.count }) };
  return r.count !== undefined ? { count: r.count } : false;
}

function keepFromBull(k: boolean | number | KeepJobs | undefined): RetentionSpec | undefined {
  if (k === undefined || k === false) return undefined;
  if (k === true) return { count: 0 };
  if (typeof k === 'number') return { count: k };
  return 'age' in k ? { count: k.count, ageMs: k.age * 1000 } : { count: k.count };
}

/**
 * BullMQ options for a job with resolved options. `now` anchors `runAt`. With `holdFailed` (the
 * queue captures dead letters), BullMQ keeps the job when it fails for good, whatever keep_failed
 * says: removing it before the dead-letter service read it would lose it. The dead-letter service
 * applies keep_failed (kept in `jobmesh.keepFailed`) once it has captured the job.
 */
export function toBullOptions(o: ResolvedJobOptions, extra: { jobId?: string; traceparent?: string; linkTraceparent?: string; holdFailed?: boolean }, now = Date.now()): JobsOptions {
  const jm: JobmeshOpts = {};
  const b = o.backoff;
  // BullMQ's own fixed/exponential (with its jitter) match ours exactly; the rest need our strategy.
  const builtin = (b.kind === 'fixed' || b.kind === 'exponential') && !b.maxDelayMs;
  if (!builtin) jm.backoff = b;
  if (o.timeoutMs) jm.timeoutMs = o.timeoutMs;
  if (o.idempotencyKey) jm.idempotencyKey = o.idempotencyKey;
  if (extra.traceparent) jm.traceparent = extra.traceparent;
  if (extra.linkTraceparent) jm.linkTraceparent = extra.linkTraceparent;
  if (o.replayOf) jm.replayOf = o.replayOf;
  if (extra.holdFailed) jm.keepFailed = o.keepFailed;
  const delay = o.runAt ? Math.max(0, o.runAt.getTime() - now) : o.delayMs;
  const opts: JobsOptions & { jobmesh?: JobmeshOpts } = {
    attempts: o.attempts,
    backoff: builtin ? { type: b.kind, delay: b.delayMs, ...(b.jitter ? { jitter: b.jitter } : {}) } : { type: JOBMESH_BACKOFF, delay: b.delayMs },
    removeOnComplete: keepToBull(o.keepCompleted),
    removeOnFail: extra.holdFailed ? false : keepToBull(o.keepFailed),
  };
  if (delay) opts.delay = delay;
  if (o.priority) opts.priority = o.priority;
  const jobId = extra.jobId ?? o.jobId;
  if (jobId) opts.jobId = jobId;
  if (Object.keys(jm).length) opts.jobmesh = jm;
  return opts;
}

export function jobmeshOpts(job: Pick<BullJob, 'opts'>): JobmeshOpts {
  const opts = job.opts as { jobmesh?: JobmeshOpts; jm?: LegacyJobmeshOpts };
  if (opts.jobmesh) return opts.jobmesh;
  const old = opts.jm;
  if (!old) return {};
  return { backoff: old.b, timeoutMs: old.to, idempotencyKey: old.ik, traceparent: old.tp, replayOf: old.rf, keepFailed: old.kf };
}

/** The options a stored job runs with, in domain terms. */
export function optionsOfBullJob(job: BullJob): JobOptionsSpec {
  const jm = jobmeshOpts(job);
  const o = job.opts;
  const bb = typeof o.backoff === 'number' ? { type: 'fixed', delay: o.backoff } : o.backoff;
  const backoff: BackoffSpec | undefined =
    jm.backoff ?? (bb && (bb.type === 'fixed' || bb.type === 'exponential') ? { kind: bb.type as 'fixed' | 'exponential', delayMs: bb.delay ?? 0, jitter: bb.jitter } : undefined);
  return {
    attempts: o.attempts,
    backoff,
    delayMs: o.delay || undefined,
    priority: o.priority || undefined,
    timeoutMs: jm.timeoutMs,
    idempotencyKey: jm.idempotencyKey,
    jobId: isCustomId(job.id) ? job.id : undefined,
    keepCompleted: keepFromBull(o.removeOnComplete),
    keepFailed: jm.keepFailed ?? keepFromBull(o.removeOnFail),
    replayOf: jm.replayOf,
  };
}

function isCustomId(id: string | undefined): id is string {
  return !!id && !/^\d+$/.test(id);
}

/** The trace id (32 hex) of a W3C traceparent, or ''. */
export function traceIdOf(traceparent: string | undefined): string {
  return traceparent?.split('-')[1] ?? '';
}

/** Splits a BullMQ parent key "prefix:queue:id" into a JobRef. */
export function parentRef(job: BullJob): pb.JobRef | undefined {
  if (!job.parent) return undefined;
  const queueKey = job.parent.queueKey;
  return { queue: queueKey.slice(queueKey.lastIndexOf(':') + 1), id: job.parent.id ?? '' };
}

/** Maps BullMQ's getState() answer to Jobmesh's. */
export function stateFromBull(state: string): JobStateName | undefined {
  switch (state) {
    case 'waiting':
    case 'paused':
      return 'waiting';
    case 'delayed':
    case 'prioritized':
    case 'active':
    case 'waiting-children':
    case 'completed':
    case 'failed':
      return state;
    default:
      return undefined;
  }
}

/**
 * A Job message for a BullMQ job in `state`. `processorWaitUntil`: the job waits for a processor
 * (BullMQ holds it as delayed until then; it reads WAITING).
 */
export function toProtoJob(job: BullJob, queue: string, state: JobStateName | undefined, processorWaitUntil?: Date): pb.Job {
  const jm = jobmeshOpts(job);
  // The delay it was enqueued with: BullMQ's `job.delay` is overwritten by retries and set-asides.
  const delay = job.opts.delay || 0;
  return {
    id: job.id ?? '',
    queue,
    name: job.name,
    data: (job.data ?? {}) as Record<string, unknown>,
    options: jobOptionsToProto(optionsOfBullJob(job)),
    state: stateToProto(state),
    attemptsMade: job.attemptsMade ?? 0,
    progress: job.progress ?? undefined,
    result: job.returnvalue ?? undefined,
    failureReason: job.failedReason ?? '',
    stacktrace: job.stacktrace ?? [],
    createdAt: new Date(job.timestamp),
    processedAt: job.processedOn ? new Date(job.processedOn) : undefined,
    finishedAt: job.finishedOn ? new Date(job.finishedOn) : undefined,
    runAt: delay ? new Date(job.timestamp + delay) : undefined,
    parent: parentRef(job),
    traceId: traceIdOf(jm.traceparent),
    idempotencyKey: jm.idempotencyKey ?? '',
    processorWaitUntil,
  };
}

// Reading and steering single jobs as their users see them: a job's state is BullMQ's, unless
// Jobmesh's own records say more (it waits for a processor, it was cancelled, it became a dead letter).
import * as pb from '@jobmesh/contracts';
import { JobNotFoundError, type JobStateName } from '@jobmesh/core';
import { Job as BullJob, type JobType, type Queue } from 'bullmq';
import type { Backbone } from './backbone';
import { isCancelledRecordInForce, recordCancelled, recordCancelledAhead } from './cancellation';
import { deadLetterLinks, decodeDeadLetterLink, isDeadLetterOf } from './dead-letters';
import { stateFromBull, toProtoJob } from './job-mapping';
import { ProcessorWait } from './processor-wait';

/** How long a cancel request for an active job waits for its worker to see it. */
const CANCEL_REQUEST_TTL_MS = 24 * 3_600_000;

/** BullMQ's sets and lists behind the states BullMQ holds. */
const BULL_TYPE: Partial<Record<JobStateName, JobType[]>> = {
  waiting: ['waiting'],
  delayed: ['delayed'],
  prioritized: ['prioritized'],
  active: ['active'],
  'waiting-children': ['waiting-children'],
  completed: ['completed'],
  failed: ['failed'],
};

/** The states that are not over yet: a queue holding jobs in them is not empty. */
const UNFINISHED: JobType[] = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'];

/** A job as GetJob answers it, with its state in Jobmesh's terms. */
export interface JobView {
  job: pb.Job;
  /**
   * 'waiting' also for a job that waits for a processor (BullMQ holds it as delayed; then
   * `job.processorWaitUntil` is set); undefined when BullMQ could not tell.
   */
  state: JobStateName | undefined;
  /** The dead letter the job became, when `state` is 'dead-lettered'. */
  deadLetterId?: string;
}

/** One page of one state: its jobs, and the offset to go on from if the state has more. */
export interface JobPage {
  jobs: pb.Job[];
  next?: number;
}

/** What CancelJob did: removed the job (CANCELLED), or asked its worker to stop it (pending). */
export interface CancelOutcome {
  job: pb.Job;
  pending: boolean;
}

/**
 * Reads, lists, cancels, retries and promotes single jobs. Queue names are not checked against
 * the registry here; the caller does that.
 */
export class JobAdmin {
  private readonly processorWait: ProcessorWait;

  constructor(private readonly backbone: Pick<Backbone, 'redis' | 'registry'>) {
    this.processorWait = new ProcessorWait(backbone.redis, backbone.registry);
  }

  private bull(queue: string): Queue {
    return this.backbone.registry.bullQueue(queue);
  }

  /**
   * The job `id` of `queue`, or undefined if nothing is known of it. In one round trip: BullMQ's
   * state and data of the job, its CANCELLED record and its dead-letter link, sent together on
   * one connection. A second only for a job BullMQ holds as delayed (does it wait for a
   * processor?) or for a dead-lettered job BullMQ no longer holds (the dead letter's snapshot).
   */
  async read(queue: string, id: string): Promise<JobView | undefined> {
    const { redis, registry } = this.backbone;
    const keys = registry.keys;
    const bull = this.bull(queue);
    // The state is asked before the data (each waits for BullMQ's connection once, so they go
    // out in this order): a job the state calls finished is read with its finishedOn.
    const [bullState, job, recorded, link] = await Promise.all([
      bull.getJobState(id),
      bull.getJob(id),
      redis.get(keys.cancelled(queue, id)),
      redis.hget(keys.deadLetterJobs, `${queue}:${id}`),
    ]);
    // The CANCELLED record may have been read before BullMQ's copy (BullMQ's reads wait a tick
    // for its connection; on a Redis Cluster they may go out later still), and a job cancelled
    // while active is recorded, then removed, in between. So for a job BullMQ lacks the record is
    // read again, together with the dead letter's snapshot (what answers once BullMQ's copy is
    // gone, trimmed by keep_failed): one more round trip, only for such a job.
    const dead = decodeDeadLetterLink(link);
    const [cancelled, snapshot] = job
      ? [recorded, undefined]
      : await Promise.all([recorded ?? redis.get(keys.cancelled(queue, id)), dead ? redis.hget(keys.deadLetter(dead.id), 'job') : undefined]);
    const state = stateFromBull(bullState);
    if (job && state === 'delayed') {
      // BullMQ holds a job that waits for a processor as delayed; it is WAITING to its users.
      const until = await this.processorWait.until(queue, job.name, id);
      if (until) return { job: toProtoJob(job, queue, 'waiting', until), state: 'waiting' };
    }
    if (job && state !== 'failed') return { job: toProtoJob(job, queue, state), state };
    // A job cancelled while active fails in BullMQ just after it is recorded as cancelled. A
    // record written ahead of a removal that did not happen does not count (recordCancelledAhead).
    if (cancelled && isCancelledRecordInForce(cancelled, !!job)) return { job: pb.Job.fromJSON(JSON.parse(cancelled)), state: 'cancelled' };
    // A failed job the dead-letter service captured reads DEAD_LETTERED, also once BullMQ's copy
    // is gone (trimmed by keep_failed); the dead letter keeps its snapshot.
    if (job) {
      if (!isDeadLetterOf(dead, job.finishedOn)) return { job: toProtoJob(job, queue, 'failed'), state: 'failed' };
      return { job: toProtoJob(job, queue, 'dead-lettered'), state: 'dead-lettered', deadLetterId: dead.id };
    }
    if (!dead || !snapshot) return undefined; // no dead letter, or purged between the two reads
    return { job: { ...pb.Job.fromJSON(JSON.parse(snapshot)), state: pb.JobState.JOB_STATE_DEAD_LETTERED }, state: 'dead-lettered', deadLetterId: dead.id };
  }

  /** The newest `max` log lines of job `id` (oldest first), and how many it has in all; none once BullMQ no longer holds it. */
  async logs(queue: string, id: string, max: number): Promise<{ logs: string[]; total: number }> {
    const { logs, count } = await this.bull(queue).getJobLogs(id, -max, -1, true);
    return { logs, total: count };
  }

  /**
   * The flow children of job `id`, done (completed, failed or ignored) and pending, as "<queue>"
   * and id, ordered by queue then id; at most `max`. None for a job that has none or is gone.
   */
  async children(queue: string, id: string, max = 1000): Promise<pb.JobRef[]> {
    const job = await BullJob.fromId(this.bull(queue), id);
    if (!job) return [];
    const deps = await job.getDependencies();
    const keys = [...Object.keys(deps.processed ?? {}), ...(deps.unprocessed ?? []), ...(deps.failed ?? []), ...Object.keys(deps.ignored ?? {})];
    // BullMQ names a child by its key, "<queue prefix>:<queue>:<id>".
    const refs = [...new Set(keys)].map((key) => this.backbone.registry.keys.jobOfKey(key));
    refs.sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return refs.slice(0, max);
  }

  /**
   * Up to `want` jobs of `queue` in `state`, from `offset`. 'waiting' lists BullMQ's wait list,
   * then the jobs waiting for a processor; 'delayed' leaves those out (a page may come out
   * short); 'failed' marks the dead-lettered ones; 'cancelled' and 'dead-lettered' come from
   * Jobmesh's records, newest first.
   */
  async list(queue: string, state: JobStateName, offset: number, want: number): Promise<JobPage> {
    const page = (found: pb.Job[]): JobPage => ({ jobs: found.slice(0, want), next: found.length > want ? offset + want : undefined });
    switch (state) {
      case 'cancelled':
        return page(await this.listCancelled(queue, offset, want + 1));
      case 'dead-lettered':
        return page(await this.listDeadLettered(queue, offset, want + 1));
      case 'waiting':
        return this.listWaiting(queue, offset, want);
      case 'delayed': {
        const found = await this.listBull(queue, state, offset, want + 1);
        const waiting = await this.processorWait.untilOf(queue, found.slice(0, want));
        return { jobs: found.slice(0, want).filter((j) => !waiting.has(j.id)), next: found.length > want ? offset + want : undefined };
      }
      default:
        return page(await this.listBull(queue, state, offset, want + 1));
    }
  }

  /** Waiting jobs: BullMQ's wait list, then the jobs waiting for a processor, as one list. */
  private async listWaiting(queue: string, offset: number, want: number): Promise<JobPage> {
    const ready = await this.listBull(queue, 'waiting', offset, want + 1);
    if (ready.length > want) return { jobs: ready.slice(0, want), next: offset + want };
    const bull = this.bull(queue);
    const readyCount = await bull.getWaitingCount();
    const need = want - ready.length;
    const parked = await this.processorWait.list(queue, Math.max(0, offset - readyCount), need + 1);
    const found = await Promise.all(parked.slice(0, need).map(async (p) => ({ p, job: await bull.getJob(p.id) })));
    const jobs = [...ready, ...found.flatMap(({ p, job }) => (job ? [toProtoJob(job, queue, 'waiting', p.until)] : []))];
    return { jobs, next: parked.length > need ? offset + want : undefined };
  }

  private async listBull(queue: string, state: JobStateName, offset: number, count: number): Promise<pb.Job[]> {
    // A job can finish between reading ids and reading it; skip the gaps.
    const found = ((await this.bull(queue).getJobs(BULL_TYPE[state]!, offset, offset + count - 1, false)) as BullJob[]).filter(Boolean);
    const { redis, registry } = this.backbone;
    const dead = state === 'failed' ? await deadLetterLinks(redis, registry.keys, queue, found.map((j) => j.id ?? '')) : undefined;
    return found.map((j) => {
      const link = dead?.get(j.id ?? '');
      return toProtoJob(j, queue, isDeadLetterOf(link, j.finishedOn) ? 'dead-lettered' : state);
    });
  }

  /** Dead-lettered jobs of `queue`, newest first, from the dead-letter store's queue index. */
  private async listDeadLettered(queue: string, offset: number, count: number): Promise<pb.Job[]> {
    const { redis, registry } = this.backbone;
    const ids = await redis.zrevrange(registry.keys.deadLetterQueueIndex(queue), offset, offset + count - 1);
    if (!ids.length) return [];
    const pipe = redis.pipeline();
    for (const id of ids) pipe.hget(registry.keys.deadLetter(id), 'job');
    const values = (await pipe.exec()) ?? [];
    return values.flatMap(([err, v]) => (!err && typeof v === 'string' ? [{ ...pb.Job.fromJSON(JSON.parse(v)), state: pb.JobState.JOB_STATE_DEAD_LETTERED }] : []));
  }

  private async listCancelled(queue: string, offset: number, count: number): Promise<pb.Job[]> {
    const { redis, registry } = this.backbone;
    const ids = await redis.zrevrange(registry.keys.cancelledIndex(queue), offset, offset + count - 1);
    if (!ids.length) return [];
    const values = await redis.mget(ids.map((id) => registry.keys.cancelled(queue, id)));
    return values.flatMap((v) => (v ? [pb.Job.fromJSON(JSON.parse(v))] : []));
  }

  /**
   * Cancels the job `view` shows (just read; its state one of CANCELLABLE_NOW, or 'active'). A
   * job that has not started is removed, with its children that have not run, and recorded as
   * CANCELLED. An active one, also one that started since `view` was read, is asked to stop by
   * the worker that holds it: the request is stored (for a worker that checks on its next
   * heartbeat) and published (for workers listening now), and the answer is `pending`.
   */
  async cancel(view: JobView, reason: string): Promise<CancelOutcome> {
    const job: pb.Job = { ...view.job, processorWaitUntil: undefined };
    const keys = this.backbone.registry.keys;
    let ahead = false;
    if (view.state !== 'active') {
      // The record first, so a fault after the removal leaves the job CANCELLED, not unknown.
      await recordCancelledAhead(this.backbone.redis, keys, job, reason);
      ahead = true;
      // BullMQ answers 0 instead of removing a job that is locked: a worker holds it.
      const removed = await this.bull(job.queue).remove(job.id);
      if (removed === 1) {
        // A job waiting for a processor is held as delayed, and filed as waiting: unfile it.
        if (view.job.processorWaitUntil) await this.processorWait.forget(job.queue, job.name, [job.id]);
        return { job: await recordCancelled(this.backbone.redis, keys, job, reason), pending: false };
      }
    }
    const multi = this.backbone.redis.multi();
    // The job is a worker's now: the record written ahead does not stand (and is ignored if this fails).
    if (ahead) multi.del(keys.cancelled(job.queue, job.id));
    await multi
      .set(keys.cancelRequest(job.queue, job.id), reason, 'PX', CANCEL_REQUEST_TTL_MS)
      .publish(keys.cancelChannel, JSON.stringify({ queue: job.queue, jobId: job.id, reason }))
      .exec();
    return { job: { ...job, state: pb.JobState.JOB_STATE_ACTIVE }, pending: true };
  }

  /** Moves a failed job back to waiting, its attempts counted from zero again. */
  async retry(queue: string, id: string): Promise<void> {
    const job = await this.bull(queue).getJob(id);
    if (!job) throw new JobNotFoundError(queue, id);
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
  }

  /** Moves a delayed job to waiting now. */
  async promote(queue: string, id: string): Promise<void> {
    await this.bull(queue).backend.promote(id);
  }

  /** How many of `queue`'s jobs are not finished yet (waiting, delayed, prioritized, active, waiting for children). */
  async unfinishedCount(queue: string): Promise<number> {
    const counts = await this.bull(queue).getJobCounts(...UNFINISHED);
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }
}

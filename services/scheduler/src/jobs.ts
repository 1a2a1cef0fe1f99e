import * as pb from '@jobmesh/contracts';
import {
  CANCELLABLE_NOW,
  FailedPreconditionError,
  InvalidArgumentError,
  JobNotFoundError,
  type JobStateName,
  validateQueueName,
} from '@jobmesh/core';
import {
  ProcessorWait,
  type QueueRegistry,
  deadLetterLinks,
  isDeadLetterOf,
  readCancelled,
  readDeadLettered,
  recordCancelled,
  stateFromProto,
  toProtoJob,
} from '@jobmesh/queue';
import type { Job as BullJob, JobType } from 'bullmq';
import type { Redis } from 'ioredis';
import { stateOf } from './enqueue';

/** How long a cancel request for an active job waits for its worker to see it. */
const CANCEL_REQUEST_TTL_MS = 24 * 3_600_000;

const BULL_TYPE: Partial<Record<JobStateName, JobType[]>> = {
  waiting: ['waiting'],
  delayed: ['delayed'],
  prioritized: ['prioritized'],
  active: ['active'],
  'waiting-children': ['waiting-children'],
  completed: ['completed'],
  failed: ['failed'],
};
const LISTABLE: JobStateName[] = ['active', 'waiting', 'prioritized', 'delayed', 'waiting-children', 'failed', 'completed', 'cancelled', 'dead-lettered'];
/**
 * What an empty `states` lists. Not 'dead-lettered': those jobs are listed under 'failed' while
 * BullMQ still holds them, and would come twice; asked for by name, they come from the
 * dead-letter store, also after BullMQ's copy was trimmed.
 */
const LIST_ALL: JobStateName[] = LISTABLE.filter((s) => s !== 'dead-lettered');

interface PageToken {
  /** Index into the requested states. */
  s: number;
  /** Offset within that state. */
  o: number;
}

function decodeToken(token: string): PageToken {
  if (!token) return { s: 0, o: 0 };
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString()) as PageToken;
    if (Number.isInteger(t.s) && Number.isInteger(t.o) && t.s >= 0 && t.o >= 0) return t;
  } catch {
    // fall through
  }
  throw new InvalidArgumentError('page_token', 'is not a token returned by this call');
}

const encodeToken = (t: PageToken): string => Buffer.from(JSON.stringify(t)).toString('base64url');

/** One page of one state: its jobs, and the offset to go on from if the state has more. */
interface StatePage {
  jobs: pb.Job[];
  next?: number;
}

/** Reading and steering single jobs: get, list, cancel, retry, promote. */
export class Jobs {
  private readonly processorWait: ProcessorWait;

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
  ) {
    this.processorWait = new ProcessorWait(redis, registry);
  }

  /** A job CancelJob, RetryJob or PromoteJob may act on. */
  private async find(queue: string, id: string): Promise<BullJob> {
    if (!id) throw new InvalidArgumentError('id', 'is required');
    await this.registry.get(validateQueueName(queue));
    const job = await this.registry.bullQueue(queue).getJob(id);
    if (job) return job;
    // A cancelled job is gone from BullMQ but still known: acting on it is a precondition failure.
    if (await this.redis.exists(this.registry.keys.cancelled(queue, id))) {
      throw new FailedPreconditionError(`job "${id}" is cancelled; it cannot be changed any more`);
    }
    throw new JobNotFoundError(queue, id);
  }

  /** The stored record of a cancelled job, if it was cancelled. */
  private cancelled(queue: string, id: string): Promise<pb.Job | undefined> {
    return readCancelled(this.redis, this.registry.keys, queue, id);
  }

  async get(queue: string, id: string): Promise<pb.Job> {
    if (!id) throw new InvalidArgumentError('id', 'is required');
    await this.registry.get(validateQueueName(queue));
    const bull = this.registry.bullQueue(queue);
    let job = await bull.getJob(id);
    const state = job && (await stateOf(job));
    // The job may have finished between the two reads: read it again so data and state agree.
    if (job && (state === 'completed' || state === 'failed') && !job.finishedOn) job = (await bull.getJob(id)) ?? job;
    // BullMQ holds a job that waits for a processor as delayed; it is WAITING to its users.
    const waitUntil = state === 'delayed' && job ? await this.processorWait.until(queue, job.name, id) : undefined;
    if (waitUntil) return toProtoJob(job!, queue, 'waiting', waitUntil);
    if (job && state !== 'failed') return toProtoJob(job, queue, state);
    // A job cancelled while active fails in BullMQ just after it is recorded as cancelled.
    const cancelled = await this.cancelled(queue, id);
    if (cancelled) return cancelled;
    // A failed job the dead-letter service captured reads DEAD_LETTERED, also once BullMQ's copy
    // is gone (trimmed by keep_failed); the dead letter keeps its snapshot.
    const dead = await readDeadLettered(this.redis, this.registry.keys, queue, id);
    if (job) return toProtoJob(job, queue, isDeadLetterOf(dead, job.finishedOn) ? 'dead-lettered' : state);
    if (dead) return dead.job;
    throw new JobNotFoundError(queue, id);
  }

  async list(req: pb.ListJobsRequest): Promise<pb.ListJobsResponse> {
    const queue = validateQueueName(req.queue);
    await this.registry.get(queue);
    if (req.pageSize > 1000) throw new InvalidArgumentError('page_size', `must be at most 1000, got ${req.pageSize}`);
    const pageSize = req.pageSize || 50;
    const states = req.states.length
      ? req.states.map((s, i) => {
          const name = stateFromProto(s);
          if (!name || !LISTABLE.includes(name)) throw new InvalidArgumentError(`states[${i}]`, `cannot list jobs in state ${pb.jobStateToJSON(s)}`);
          return name;
        })
      : LIST_ALL;
    const token = decodeToken(req.pageToken);
    const jobs: pb.Job[] = [];
    const bull = this.registry.bullQueue(queue);
    let { s, o } = token;
    while (s < states.length && jobs.length < pageSize) {
      const page = await this.listState(bull, states[s]!, o, pageSize - jobs.length);
      jobs.push(...page.jobs);
      if (page.next !== undefined) return { jobs, nextPageToken: encodeToken({ s, o: page.next }) };
      s += 1;
      o = 0;
    }
    return { jobs, nextPageToken: s < states.length ? encodeToken({ s, o }) : '' };
  }

  /** Up to `want` jobs of one state from `offset`; one more is read to tell whether it has more. */
  private async listState(bull: ReturnType<QueueRegistry['bullQueue']>, state: JobStateName, offset: number, want: number): Promise<StatePage> {
    const page = (found: pb.Job[]): StatePage => ({ jobs: found.slice(0, want), next: found.length > want ? offset + want : undefined });
    switch (state) {
      case 'cancelled':
        return page(await this.listCancelled(bull.name, offset, want + 1));
      case 'dead-lettered':
        return page(await this.listDeadLettered(bull.name, offset, want + 1));
      case 'waiting':
        return this.listWaiting(bull, offset, want);
      case 'delayed': {
        // Without the jobs that wait for a processor (listed as waiting): a page may come out short.
        const found = await this.listBull(bull, state, offset, want + 1);
        const waiting = await this.processorWait.untilOf(bull.name, found.slice(0, want));
        return { jobs: found.slice(0, want).filter((j) => !waiting.has(j.id)), next: found.length > want ? offset + want : undefined };
      }
      default:
        return page(await this.listBull(bull, state, offset, want + 1));
    }
  }

  /** Waiting jobs: BullMQ's wait list, then the jobs waiting for a processor, as one list. */
  private async listWaiting(bull: ReturnType<QueueRegistry['bullQueue']>, offset: number, want: number): Promise<StatePage> {
    const ready = await this.listBull(bull, 'waiting', offset, want + 1);
    if (ready.length > want) return { jobs: ready.slice(0, want), next: offset + want };
    const readyCount = await bull.getWaitingCount();
    const need = want - ready.length;
    const parked = await this.processorWait.list(bull.name, Math.max(0, offset - readyCount), need + 1);
    const found = await Promise.all(parked.slice(0, need).map(async (p) => ({ p, job: await bull.getJob(p.id) })));
    const jobs = [...ready, ...found.flatMap(({ p, job }) => (job ? [toProtoJob(job, bull.name, 'waiting', p.until)] : []))];
    return { jobs, next: parked.length > need ? offset + want : undefined };
  }

  private async listBull(bull: ReturnType<QueueRegistry['bullQueue']>, state: JobStateName, offset: number, count: number): Promise<pb.Job[]> {
    // A job can finish between reading ids and reading it; skip the gaps.
    const found = ((await bull.getJobs(BULL_TYPE[state]!, offset, offset + count - 1, false)) as BullJob[]).filter(Boolean);
    const dead = state === 'failed' ? await deadLetterLinks(this.redis, this.registry.keys, bull.name, found.map((j) => j.id ?? '')) : undefined;
    return found.map((j) => {
      const link = dead?.get(j.id ?? '');
      return toProtoJob(j, bull.name, isDeadLetterOf(link, j.finishedOn) ? 'dead-lettered' : state);
    });
  }

  /** Dead-lettered jobs of `queue`, newest first, from the dead-letter store's queue index. */
  private async listDeadLettered(queue: string, offset: number, count: number): Promise<pb.Job[]> {
    const keys = this.registry.keys;
    const ids = await this.redis.zrevrange(keys.deadLetterQueueIndex(queue), offset, offset + count - 1);
    if (!ids.length) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hget(keys.deadLetter(id), 'job');
    const values = (await pipe.exec()) ?? [];
    return values.flatMap(([err, v]) => (!err && typeof v === 'string' ? [{ ...pb.Job.fromJSON(JSON.parse(v)), state: pb.JobState.JOB_STATE_DEAD_LETTERED }] : []));
  }

  private async listCancelled(queue: string, offset: number, count: number): Promise<pb.Job[]> {
    const index = this.registry.keys.cancelledIndex(queue);
    const ids = await this.redis.zrevrange(index, offset, offset + count - 1);
    if (!ids.length) return [];
    const values = await this.redis.mget(ids.map((id) => this.registry.keys.cancelled(queue, id)));
    return values.flatMap((v) => (v ? [pb.Job.fromJSON(JSON.parse(v))] : []));
  }

  async cancel(req: pb.CancelJobRequest): Promise<pb.CancelJobResponse> {
    const job = await this.find(req.queue, req.id);
    const state = await stateOf(job);
    const reason = req.reason || 'cancelled by request';
    if (state && CANCELLABLE_NOW.has(state)) {
      try {
        await job.remove();
      } catch (err) {
        // It became active between the read and the remove: ask its worker instead.
        if (!/locked|active/i.test((err as Error).message)) throw err;
        return this.requestCancel(job, req.queue, reason);
      }
      // A job waiting for a processor is held as delayed, and filed as waiting: unfile it.
      if (state === 'delayed') await this.processorWait.forget(req.queue, job.name, [job.id!]);
      const record = await recordCancelled(this.redis, this.registry.keys, toProtoJob(job, req.queue, 'cancelled'), reason);
      return { job: record, pending: false };
    }
    if (state === 'active') return this.requestCancel(job, req.queue, reason);
    throw new FailedPreconditionError(
      `job "${req.id}" is ${state ?? 'gone'}; only waiting, delayed, prioritized, waiting-children or active jobs can be cancelled`,
    );
  }

  /**
   * An active job is aborted by the worker that holds it: the request is stored (for a worker
   * that checks on its next heartbeat) and published (for workers listening now).
   */
  private async requestCancel(job: BullJob, queue: string, reason: string): Promise<pb.CancelJobResponse> {
    const keys = this.registry.keys;
    await this.redis
      .multi()
      .set(keys.cancelRequest(queue, job.id ?? ''), reason, 'PX', CANCEL_REQUEST_TTL_MS)
      .publish(keys.cancelChannel, JSON.stringify({ queue, jobId: job.id, reason }))
      .exec();
    return { job: toProtoJob(job, queue, 'active'), pending: true };
  }

  async retry(queue: string, id: string): Promise<pb.Job> {
    const job = await this.find(queue, id);
    const state = await stateOf(job);
    if (state !== 'failed') throw new FailedPreconditionError(`job "${id}" is ${state ?? 'gone'}; only failed jobs can be retried`);
    // Run again, it would fail into the same dead letter id, which capture then skips; a replay
    // makes a new job and keeps the history.
    const dead = await readDeadLettered(this.redis, this.registry.keys, queue, id);
    if (isDeadLetterOf(dead, job.finishedOn)) {
      throw new FailedPreconditionError(`job "${id}" is dead-lettered as "${dead.id}"; replay it with DeadLetterService.ReplayDeadLetters`);
    }
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    return this.get(queue, id);
  }

  async promote(queue: string, id: string): Promise<pb.Job> {
    const job = await this.find(queue, id);
    const state = await stateOf(job);
    if (state === 'delayed' && (await this.processorWait.until(queue, job.name, id))) {
      throw new FailedPreconditionError(`job "${id}" is waiting for a processor of "${job.name}"; it runs as soon as one serves that name`);
    }
    if (state !== 'delayed') throw new FailedPreconditionError(`job "${id}" is ${state ?? 'gone'}; only delayed jobs can be promoted`);
    await job.promote();
    return this.get(queue, id);
  }
}

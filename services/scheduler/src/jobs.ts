import * as pb from '@jobmesh/contracts';
import { CANCELLABLE_NOW, FailedPreconditionError, InvalidArgumentError, JobNotFoundError, type JobStateName, validateQueueName, validateReason } from '@jobmesh/core';
import { type JobAdmin, type JobView, type QueueRegistry, stateFromProto } from '@jobmesh/queue';

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
    if (Number.isSafeInteger(t.s) && Number.isSafeInteger(t.o) && t.s >= 0 && t.o >= 0) return t;
  } catch {
    // fall through
  }
  throw new InvalidArgumentError('page_token', 'is not a token returned by this call');
}

/** GetJob's include_logs: lines returned by default, and at most. */
const DEFAULT_LOGS = 1000;
const MAX_LOGS = 10_000;

const encodeToken = (t: PageToken): string => Buffer.from(JSON.stringify(t)).toString('base64url');

/** GetJob, ListJobs, CancelJob, RetryJob, PromoteJob: the requests checked, the work done by libs/queue's JobAdmin. */
export class Jobs {
  constructor(
    private readonly registry: QueueRegistry,
    private readonly admin: JobAdmin,
  ) {}

  /** The job `id` of `queue` (a queue in the registry). Throws NOT_FOUND. */
  private async view(queue: string, id: string): Promise<JobView> {
    if (!id) throw new InvalidArgumentError('id', 'is required');
    await this.registry.get(validateQueueName(queue));
    const view = await this.admin.read(queue, id);
    if (!view) throw new JobNotFoundError(queue, id);
    return view;
  }

  /** A job CancelJob, RetryJob or PromoteJob may act on: a cancelled one is known, but final. */
  private async changeable(queue: string, id: string): Promise<JobView> {
    const view = await this.view(queue, id);
    if (view.state === 'cancelled') throw new FailedPreconditionError(`job "${id}" is cancelled; it cannot be changed any more`);
    return view;
  }

  async get(queue: string, id: string): Promise<pb.Job> {
    return (await this.view(queue, id)).job;
  }

  /** GetJob: the job, and with include_logs / include_children its log lines and flow children. */
  async getWith(req: pb.GetJobRequest): Promise<pb.GetJobResponse> {
    if (req.maxLogs > MAX_LOGS) throw new InvalidArgumentError('max_logs', `is at most ${MAX_LOGS}; got ${req.maxLogs}`);
    const job = await this.get(req.queue, req.id);
    const [logs, children] = await Promise.all([
      req.includeLogs ? this.admin.logs(req.queue, req.id, req.maxLogs || DEFAULT_LOGS) : undefined,
      req.includeChildren ? this.admin.children(req.queue, req.id) : undefined,
    ]);
    return { job, logs: logs?.logs ?? [], logsTotal: logs?.total ?? 0, children: children ?? [] };
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
    const jobs: pb.Job[] = [];
    let { s, o } = decodeToken(req.pageToken);
    while (s < states.length && jobs.length < pageSize) {
      const page = await this.admin.list(queue, states[s]!, o, pageSize - jobs.length);
      jobs.push(...page.jobs);
      if (page.next !== undefined) return { jobs, nextPageToken: encodeToken({ s, o: page.next }) };
      s += 1;
      o = 0;
    }
    return { jobs, nextPageToken: s < states.length ? encodeToken({ s, o }) : '' };
  }

  async cancel(req: pb.CancelJobRequest): Promise<pb.CancelJobResponse> {
    validateReason(req.reason);
    const view = await this.changeable(req.queue, req.id);
    if (view.state !== 'active' && !(view.state && CANCELLABLE_NOW.has(view.state))) {
      throw new FailedPreconditionError(
        `job "${req.id}" is ${view.state ?? 'gone'}; only waiting, delayed, prioritized, waiting-children or active jobs can be cancelled`,
      );
    }
    return this.admin.cancel(view, req.reason || 'cancelled by request');
  }

  async retry(queue: string, id: string): Promise<pb.Job> {
    const view = await this.changeable(queue, id);
    // Run again, it would fail into the same dead letter id, which capture then skips; a replay
    // makes a new job and keeps the history.
    if (view.state === 'dead-lettered') {
      throw new FailedPreconditionError(`job "${id}" is dead-lettered as "${view.deadLetterId}"; replay it with DeadLetterService.ReplayDeadLetters`);
    }
    if (view.state !== 'failed') throw new FailedPreconditionError(`job "${id}" is ${view.state ?? 'gone'}; only failed jobs can be retried`);
    await this.admin.retry(queue, id);
    return this.get(queue, id);
  }

  async promote(queue: string, id: string): Promise<pb.Job> {
    const view = await this.changeable(queue, id);
    if (view.job.processorWaitUntil) {
      throw new FailedPreconditionError(`job "${id}" is waiting for a processor of "${view.job.name}"; it runs as soon as one serves that name`);
    }
    if (view.state !== 'delayed') throw new FailedPreconditionError(`job "${id}" is ${view.state ?? 'gone'}; only delayed jobs can be promoted`);
    await this.admin.promote(queue, id);
    return this.get(queue, id);
  }
}

import * as pb from '@jobmesh/contracts';
import { type Dial, dialCredentials, dialOptions } from '@jobmesh/grpc-kit';
import { JOB_STATES, type JobStateName } from '@jobmesh/core';
import { stateToProto } from '@jobmesh/queue';
import { Caller, type DeepPartial, JobmeshClient, NotFoundError } from '@jobmesh/sdk';

/** Where the dashboard's gRPC clients call. A function is read at each call (`jobmesh up` knows its port only after listen). */
export type Address = string | (() => string);

export interface DashboardAddresses {
  /** SchedulerService: queues, jobs, pause/resume, retry, promote, cancel. */
  scheduler: Address;
  /** DeadLetterService: dead letters, replay, quarantine, purge. */
  deadLetter: Address;
  /** WorkerService: ListWorkers. */
  workerPool: Address;
  /** MonitorService: queue figures, WatchQueueStats. */
  monitor: Address;
}

/** How many jobs a search or an action on a filter reads through at most, so one request stays bounded. */
export const SCAN_LIMIT = 5000;
/** The most items one action on a filter changes. */
export const ACTION_LIMIT = 1000;


/** What selects a queue's jobs for a search or an action: a state and a substring of the name or the JSON data. */
export interface JobFilter {
  state?: string;
  search?: string;
}

export type JobAction = 'retry' | 'promote' | 'cancel';

/** One item's outcome in an action on many. */
export interface ItemResult {
  id: string;
  ok: boolean;
  error?: string;
}

const read = (a: Address): string => (typeof a === 'function' ? a() : a);

/**
 * The dashboard's view of Jobmesh, through the services' gRPC APIs only (the SDK's JobmeshClient
 * with its `deadLetters` and `monitor`, and WorkerService's generated client with the SDK's
 * Caller for ListWorkers): it never reads Redis.
 * Clients are made on first use, so that addresses known only after listen work.
 */
/** undefined for a NOT_FOUND (the job, or its queue, is gone: there is nothing to show); other errors go on. */
function orNotFound(err: unknown): undefined {
  if (err instanceof NotFoundError) return undefined;
  throw err;
}

export class DashboardApi {
  private clients?: { jobs: JobmeshClient; workers: pb.WorkerServiceClient };
  private readonly caller: Caller;

  /** `dial`: the TLS and API key of every call; plaintext without a key when unset. */
  constructor(
    private readonly addresses: DashboardAddresses,
    private readonly dial: Dial = {},
  ) {
    this.caller = new Caller({ timeoutMs: 10_000, apiKey: dial.apiKey });
  }

  private get c(): NonNullable<DashboardApi['clients']> {
    if (!this.clients) {
      const a = this.addresses;
      this.clients = {
        jobs: new JobmeshClient({ address: read(a.scheduler), deadLetterAddress: read(a.deadLetter), monitorAddress: read(a.monitor), credentials: this.dial.credentials, apiKey: this.dial.apiKey }),
        workers: new pb.WorkerServiceClient(read(a.workerPool), dialCredentials(this.dial), dialOptions(this.dial)),
      };
    }
    return this.clients;
  }

  /** Every queue's figures (MonitorService.ListQueueStats) and the dead-letter counts. */
  async overview(): Promise<{ stats: pb.QueueStats[]; deadLetters: pb.GetDeadLetterStatsResponse | { error: string } }> {
    const [stats, deadLetters] = await Promise.all([
      this.c.jobs.monitor.listQueueStats(),
      // The overview answers without the dead-letter service; its counts then say why they are missing.
      this.c.jobs.deadLetters.stats().catch((err: Error) => ({ error: err.message })),
    ]);
    return { stats, deadLetters };
  }

  /** WatchQueueStats: the figures of `queues` (all when empty) now and then every `intervalMs`, until `signal` aborts. */
  watchStats(intervalMs: number, signal: AbortSignal, queues: string[] = []): AsyncGenerator<pb.QueueStats[]> {
    return this.c.jobs.monitor.watchQueueStats({ intervalMs, queues }, { signal });
  }

  /** A queue's settings (SchedulerService.GetQueue) and figures (MonitorService.GetQueueStats). */
  async queue(name: string): Promise<{ queue: pb.QueueConfig; stats: pb.QueueStats | undefined }> {
    const [queue, stats] = await Promise.all([this.c.jobs.getQueue(name), this.c.jobs.monitor.queueStats(name)]);
    return { queue, stats };
  }

  pause = (name: string): Promise<pb.QueueConfig> => this.c.jobs.pauseQueue(name);
  resume = (name: string): Promise<pb.QueueConfig> => this.c.jobs.resumeQueue(name);

  /**
   * One page of a queue's jobs in a state (all but dead-lettered when none). With `search`, pages
   * through ListJobs keeping the jobs whose name or JSON data contains it (case-insensitive), until
   * `pageSize` are found or SCAN_LIMIT jobs are read; `scanned` says how many were.
   */
  async jobs(queue: string, f: JobFilter, pageSize: number, pageToken = ''): Promise<{ jobs: pb.Job[]; nextPageToken: string; scanned: number }> {
    const states = stateList(f.state);
    const needle = f.search?.trim().toLowerCase();
    if (!needle) {
      const r = await this.c.jobs.listJobs({ queue, states, pageSize, pageToken });
      return { jobs: r.jobs, nextPageToken: r.nextPageToken, scanned: r.jobs.length };
    }
    const found: pb.Job[] = [];
    let token = pageToken;
    let scanned = 0;
    do {
      const r = await this.c.jobs.listJobs({ queue, states, pageSize: 500, pageToken: token });
      scanned += r.jobs.length;
      found.push(...r.jobs.filter((j) => matches(j, needle)));
      token = r.nextPageToken;
    } while (token && found.length < pageSize && scanned < SCAN_LIMIT);
    return { jobs: found, nextPageToken: token, scanned };
  }

  job = (queue: string, id: string): Promise<pb.Job> => this.c.jobs.getJob(queue, id);

  /** The job with its stored log lines and its flow children. */
  jobDetails = (queue: string, id: string): Promise<pb.GetJobResponse> => this.c.jobs.getJobDetails(queue, id);

  /** A job's flow parent, when it has one and it is still kept. */
  async parentOf(job: pb.Job): Promise<pb.Job | undefined> {
    if (!job.parent?.id) return undefined;
    return this.c.jobs.getJob(job.parent.queue, job.parent.id).catch(orNotFound);
  }

  /** The job's events from WatchJob: its current state first, then what happens, until it finishes or `signal` aborts. */
  watchJob(queue: string, id: string, signal: AbortSignal): AsyncGenerator<pb.JobEvent> {
    return this.c.jobs.watchJob(queue, id, { signal });
  }

  /** The queues holding a job of this id (GetJob on every queue; at most 1000 queues). */
  async findJob(id: string): Promise<pb.Job[]> {
    const { queues } = await this.c.jobs.listQueues({ pageSize: 1000 });
    // A queue deleted since it was listed holds no job; any other error fails the search (the
    // caller logs it), rather than report "not found" for a job it could not look for.
    const found = await Promise.all(queues.map((q) => this.c.jobs.getJob(q.name, id).catch(orNotFound)));
    // A job read back UNSPECIFIED is one no longer retained: only its id is known.
    return found.filter((j): j is pb.Job => !!j && j.state !== pb.JobState.JOB_STATE_UNSPECIFIED);
  }

  /**
   * Retry, promote or cancel the jobs named, or (with no ids) every job the filter selects, up to
   * ACTION_LIMIT; each job's outcome is reported, so one that cannot be changed (a job no longer
   * delayed, say) does not stop the others.
   */
  async jobAction(queue: string, action: JobAction, ids: string[] | undefined, f: JobFilter): Promise<ItemResult[]> {
    const targets = ids ?? (await this.selectJobIds(queue, f));
    const run = async (id: string): Promise<ItemResult> => {
      try {
        if (action === 'retry') await this.c.jobs.retryJob(queue, id);
        else if (action === 'promote') await this.c.jobs.promoteJob(queue, id);
        else await this.c.jobs.cancelJob(queue, id, 'cancelled from the dashboard');
        return { id, ok: true };
      } catch (err) {
        return { id, ok: false, error: (err as Error).message };
      }
    };
    const out: ItemResult[] = [];
    // A few at a time: enough to be quick, few enough not to flood the scheduler.
    for (let i = 0; i < targets.length; i += 20) out.push(...(await Promise.all(targets.slice(i, i + 20).map(run))));
    return out;
  }

  private async selectJobIds(queue: string, f: JobFilter): Promise<string[]> {
    const ids: string[] = [];
    let token = '';
    let scanned = 0;
    const needle = f.search?.trim().toLowerCase();
    do {
      const r = await this.c.jobs.listJobs({ queue, states: stateList(f.state), pageSize: 500, pageToken: token });
      scanned += r.jobs.length;
      ids.push(...r.jobs.filter((j) => !needle || matches(j, needle)).map((j) => j.id));
      token = r.nextPageToken;
    } while (token && ids.length < ACTION_LIMIT && scanned < SCAN_LIMIT);
    return ids.slice(0, ACTION_LIMIT);
  }

  workers = async (queue = ''): Promise<pb.WorkerInfo[]> => {
    const w = this.c.workers;
    return (await this.caller.unary(w, w.listWorkers, { queue }, undefined, true)).workers;
  };

  deadLetters = (filter: DeepPartial<pb.DeadLetterFilter>, pageSize: number, pageToken = ''): Promise<pb.ListDeadLettersResponse> =>
    this.c.jobs.deadLetters.list({ filter, pageSize, pageToken });
  deadLetter = (id: string): Promise<pb.DeadLetter> => this.c.jobs.deadLetters.get(id);
  deadLetterStats = (queue = ''): Promise<pb.GetDeadLetterStatsResponse> => this.c.jobs.deadLetters.stats(queue);

  /** Replays by ids or by filter, with a data patch merged into each job's data; paced by the service, so no deadline. */
  replay = (req: { ids?: string[]; filter?: DeepPartial<pb.DeadLetterFilter>; dataPatch?: Record<string, unknown>; targetQueue?: string }): Promise<pb.ReplayDeadLettersResponse> =>
    this.c.jobs.deadLetters.replay({ ids: req.ids ?? [], filter: req.ids ? undefined : req.filter, dataPatch: req.dataPatch, targetQueue: req.targetQueue ?? '' }, { timeoutMs: 120_000 });

  /** Quarantines or releases the dead letters named, or those the filter selects (up to ACTION_LIMIT). */
  async quarantine(req: { ids?: string[]; filter?: DeepPartial<pb.DeadLetterFilter>; quarantined: boolean; reason?: string }): Promise<pb.QuarantineDeadLettersResponse> {
    let ids = req.ids;
    if (!ids) {
      ids = [];
      let token = '';
      do {
        const page = await this.c.jobs.deadLetters.list({ filter: req.filter ?? {}, pageSize: 1000, pageToken: token });
        ids.push(...page.deadLetters.filter((d) => d.quarantined !== req.quarantined).map((d) => d.id));
        token = page.nextPageToken;
      } while (token && ids.length < ACTION_LIMIT);
      ids = ids.slice(0, ACTION_LIMIT);
      if (!ids.length) return { updated: 0 };
    }
    return this.c.jobs.deadLetters.quarantine({ ids, quarantined: req.quarantined, reason: req.reason ?? '' });
  }

  purge = (req: { ids?: string[]; filter?: DeepPartial<pb.DeadLetterFilter> }): Promise<pb.PurgeDeadLettersResponse> =>
    this.c.jobs.deadLetters.purge(req.ids ? { ids: req.ids } : { filter: req.filter ?? {} });

  close(): void {
    if (!this.clients) return;
    this.clients.jobs.close();
    this.clients.workers.close();
    this.clients = undefined;
  }
}

/** The state a dashboard URL names (Jobmesh's state names, e.g. `waiting-children`); all for none or `all`. */
function stateList(state: string | undefined): pb.JobState[] {
  if (!state || state === 'all') return [];
  if (!(JOB_STATES as readonly string[]).includes(state)) throw new BadRequestError(`unknown state "${state}"; one of ${JOB_STATES.join(', ')}`);
  return [stateToProto(state as JobStateName)];
}

/** Whether a job's name or JSON data contains `needle` (lower case). */
function matches(j: pb.Job, needle: string): boolean {
  return j.name.toLowerCase().includes(needle) || JSON.stringify(j.data ?? {}).toLowerCase().includes(needle);
}

/** A request the dashboard's API refuses before calling any service: 400. */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
}

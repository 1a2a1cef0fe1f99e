import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { FailedPreconditionError, InvalidArgumentError } from '@jobmesh/core';
import { type Dial, dialCredentials, dialOptions, dialMetadata, toStatus } from '@jobmesh/grpc-kit';
import { type DeadLetterCursor, type DeadLetterFilter, DeadLetterNotFoundError, type DeadLetterStore, redisUnavailable } from '@jobmesh/queue';
import { inReplaySpan } from '@jobmesh/telemetry';
import { ReplayStoppedError } from './errors';

/** Enqueues a job on the scheduler; a seam so replay needs no real scheduler in unit tests. */
export type EnqueueFn = (req: pb.EnqueueJobRequest, signal?: AbortSignal, traceparent?: string) => Promise<pb.EnqueueJobResponse>;

/** An EnqueueFn calling SchedulerService.EnqueueJob at `address` over gRPC, with `dial`'s TLS and API key. */
export function schedulerEnqueuer(address: string, timeoutMs: number, dial?: Dial): { enqueue: EnqueueFn; close(): void } {
  const client = new pb.SchedulerServiceClient(address, dialCredentials(dial), dialOptions(dial));
  const enqueue: EnqueueFn = (req, signal, traceparent) =>
    new Promise((resolve, reject) => {
      const cancel = (): void => call.cancel();
      const metadata = dialMetadata(dial, traceparent ? { traceparent } : {});
      const call = client.enqueueJob(req, metadata, { deadline: new Date(Date.now() + timeoutMs) }, (err: ServiceError | null, res) => {
        signal?.removeEventListener('abort', cancel);
        if (err) reject(err);
        else resolve(res);
      });
      signal?.addEventListener('abort', cancel, { once: true });
    });
  return { enqueue, close: () => client.close() };
}

/** Default and ceiling of `max_per_second`. */
export const DEFAULT_REPLAY_RATE = 100;
const MAX_REPLAY_RATE = 10_000;
/**
 * Dead letters read from the store at once. A replay holds one page of records in memory,
 * whatever the number of matches.
 */
export const REPLAY_PAGE = 100;

/** The idempotency key of every replay of dead letter `id`: one per dead letter, not per run. */
export const replayKey = (id: string): string => `replay:${id}`;

/** What a replay reports as it goes (see runReplay). */
export interface ReplayObserver {
  /** Once, before the first dead letter: how many it will examine (progress.total). */
  onStart?(progress: Readonly<pb.ReplayProgress>): void;
  /**
   * After each dead letter examined, with the job when it was replayed; `pageEnd` after the last
   * of a page of the store.
   */
  onStep?(progress: Readonly<pb.ReplayProgress>, replayed: pb.ReplayedJob | undefined, pageEnd: boolean): void;
}

export interface ReplayRun {
  /** Aborted when the client cancels: the replay stops between two dead letters and returns. */
  signal?: AbortSignal;
  /** Aborted when the service shuts down: the replay stops and fails with UNAVAILABLE. */
  shutdown?: AbortSignal;
  observer?: ReplayObserver;
}

/**
 * Replays dead letters through SchedulerService.EnqueueJob: same name and options (without the
 * job id, and with the idempotency key "replay:<dead letter id>" instead of the original's),
 * data with the patch merged at the top level, on `target_queue` or the original queue, one at a
 * time and at most `max_per_second`. The new job names its dead letter in `options.replay_of`;
 * each replay is recorded on its dead letter, so the link goes both ways.
 *
 * Resumable: a filter reads the store a page at a time, oldest first, and skips dead letters
 * with a recorded replay (unless `include_replayed`); a dead letter whose job was enqueued but
 * not recorded (the run was interrupted in between) gets its job back from the scheduler under
 * the same key. So the same request run again after an interruption replays nothing twice.
 *
 * Ids are all checked before anything is enqueued (NOT_FOUND, FAILED_PRECONDITION for a
 * quarantined one). A failure part-way is a ReplayStoppedError: the failing call's own status
 * code, and how many were replayed before it (those stay replayed and recorded).
 */
export async function runReplay(store: DeadLetterStore, enqueue: EnqueueFn, req: pb.ReplayDeadLettersRequest, filter: DeadLetterFilter | undefined, run: ReplayRun = {}): Promise<pb.ReplayProgress> {
  if (req.ids.length && filter) throw new InvalidArgumentError('ids', 'give ids or a filter, not both');
  if (!req.ids.length && !filter) throw new InvalidArgumentError('filter', 'give ids or a filter');
  const progress: pb.ReplayProgress = { replayed: 0, skippedQuarantined: 0, skippedReplayed: 0, examined: 0, total: 0 };
  const rate = Math.min(MAX_REPLAY_RATE, req.maxPerSecond || DEFAULT_REPLAY_RATE);
  const stopped = (): boolean => !!(run.signal?.aborted || run.shutdown?.aborted);
  let started = 0;
  let current = '';

  const begin = (total: number): void => {
    progress.total = total;
    started = Date.now();
    run.observer?.onStart?.(progress);
  };

  /** Examines `d` (undefined: purged meanwhile) and replays it unless skipped; false once the run is stopped. */
  const one = async (d: pb.DeadLetter | undefined, pageEnd: boolean, skipReplayed: boolean): Promise<boolean> => {
    if (stopped()) return false;
    let replayed: pb.ReplayedJob | undefined;
    if (d && !d.quarantined && !(skipReplayed && d.replays.length)) {
      const due = started + (progress.replayed * 1000) / rate;
      if (due > Date.now()) await sleep(due - Date.now(), run.signal, run.shutdown);
      if (stopped()) return false;
      current = d.id;
      replayed = await replayOne(store, enqueue, req, d, run.signal);
      if (!replayed) return false; // cancelled during the call
      current = '';
      progress.replayed++;
    } else if (d?.quarantined) progress.skippedQuarantined++;
    else if (d) progress.skippedReplayed++;
    progress.examined++;
    run.observer?.onStep?.(progress, replayed, pageEnd);
    return true;
  };

  const byIds = async (): Promise<void> => {
    const ids = [...new Set(req.ids)];
    const facts = await store.inspect(ids);
    ids.forEach((id, i) => {
      if (!facts[i]) throw new DeadLetterNotFoundError(id);
      if (facts[i].quarantined) throw new FailedPreconditionError(`dead letter "${id}" is quarantined; release it with QuarantineDeadLetters first`);
    });
    begin(ids.length);
    for (let i = 0; i < ids.length; i += REPLAY_PAGE) {
      const chunk = ids.slice(i, i + REPLAY_PAGE);
      // A dead letter purged since the check is passed over (examined, not replayed).
      const byId = new Map((await store.getMany(chunk)).map((d) => [d.id, d]));
      for (const [j, id] of chunk.entries()) if (!(await one(byId.get(id), j === chunk.length - 1, false))) return;
    }
  };

  const byFilter = async (f: DeadLetterFilter): Promise<void> => {
    const span = await store.span(f);
    begin(span.total);
    let cursor: DeadLetterCursor | undefined;
    do {
      const page = await store.page(span, f, REPLAY_PAGE, cursor);
      for (const [j, e] of page.entries.entries()) if (!(await one(page.matches.get(e.id), j === page.entries.length - 1, !req.includeReplayed))) return;
      cursor = page.next;
    } while (cursor);
  };

  try {
    await (filter ? byFilter(filter) : byIds());
  } catch (err) {
    // Before the start (validation, the first read) nothing was done: the error as it is.
    throw started ? stoppedError(err, progress, current) : err;
  }
  if (run.shutdown?.aborted && !run.signal?.aborted) {
    throw new ReplayStoppedError(status.UNAVAILABLE, `replay stopped after ${progress.replayed} replayed: the dead-letter service is shutting down. ${again(progress.replayed)}`, progress.replayed);
  }
  return progress;
}

/** How a stopped replay goes on. */
const again = (replayed: number): string =>
  replayed ? `Those stay replayed and recorded: run the same replay again to go on from there.` : 'Nothing was replayed.';

/** Enqueues the replay of `d` and records it; undefined when `signal` cancelled the call. */
async function replayOne(store: DeadLetterStore, enqueue: EnqueueFn, req: pb.ReplayDeadLettersRequest, d: pb.DeadLetter, signal?: AbortSignal): Promise<pb.ReplayedJob | undefined> {
  const job = d.job!;
  // The key names the dead letter: a replay whose enqueue was applied but not recorded (a
  // timeout, a crash, an interrupted run) finds the job it made when it is run again.
  const options = pb.JobOptions.fromPartial({ ...job.options, jobId: '', idempotencyKey: replayKey(d.id), delay: undefined, runAt: undefined, replayOf: d.id });
  const queue = req.targetQueue || job.queue;
  let res: pb.EnqueueJobResponse;
  try {
    // In a replay span of its own, linked to the dead letter's trace; the new job's enqueue continues it.
    res = await inReplaySpan({ id: d.id, queue, traceparent: d.traceparent || undefined }, (traceparent) =>
      enqueue({ queue, job: { name: job.name, data: { ...(job.data ?? {}), ...(req.dataPatch ?? {}) }, options } }, signal, traceparent),
    );
  } catch (err) {
    if (signal?.aborted) return undefined;
    throw err;
  }
  const ref = { queue, id: res.job?.id ?? '' };
  await store.addReplay(d.id, { job: ref, replayedAt: new Date() });
  return { deadLetterId: d.id, job: ref, deduplicated: res.deduplicated };
}

/**
 * The error a replay fails with. Before the first enqueue (validation), the error itself. After,
 * the same status code with a message that names the dead letter it stopped at and counts what
 * was replayed; a status from the scheduler is passed on as its own code (NOT_FOUND,
 * INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...). Unexpected errors stay as they are,
 * so that grpc-kit logs them and answers INTERNAL.
 */
function stoppedError(err: unknown, progress: pb.ReplayProgress, current: string): unknown {
  const mapped = toStatus(err, redisUnavailable);
  if (!mapped.expected) return err;
  const why = isServiceError(err) ? `the scheduler refused its enqueue with ${status[mapped.code]}` : status[mapped.code];
  const at = current ? ` at dead letter "${current}"` : '';
  return new ReplayStoppedError(
    mapped.code,
    `replay stopped${at} after ${progress.replayed} replayed: ${why}: ${mapped.details.replace(/\.?$/, '.')} ${again(progress.replayed)}`,
    progress.replayed,
    { cause: err },
  );
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof (err as ServiceError)?.code === 'number' && (err as ServiceError).metadata instanceof Metadata;
}

/** Waits `ms`, or less when a signal aborts. */
function sleep(ms: number, ...signals: Array<AbortSignal | undefined>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const s of signals) s?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s?.addEventListener('abort', done, { once: true });
  });
}

/** ReplayDeadLetters: runs the replay and answers with every job it enqueued. */
export async function replay(store: DeadLetterStore, enqueue: EnqueueFn, req: pb.ReplayDeadLettersRequest, filter: DeadLetterFilter | undefined, run: Omit<ReplayRun, 'observer'> = {}): Promise<pb.ReplayDeadLettersResponse> {
  const replayed: pb.ReplayedJob[] = [];
  const progress = await runReplay(store, enqueue, req, filter, { ...run, observer: { onStep: (_p, r) => r && replayed.push(r) } });
  return { replayed, skippedQuarantined: progress.skippedQuarantined, skippedReplayed: progress.skippedReplayed };
}

/** How often a streamed replay reports at most, ms, unless a page of the store ends first. */
export const REPORT_EVERY_MS = 250;

/**
 * StreamReplayDeadLetters: runs the replay and sends its progress: once at the start (the total),
 * after the first dead letter, then every REPORT_EVERY_MS or page of the store, whichever comes
 * first, and once at the end; each message carries the jobs enqueued since the previous one.
 * On a failure, what was replayed until then is sent before the error ends the stream.
 */
export async function streamReplay(
  store: DeadLetterStore,
  enqueue: EnqueueFn,
  req: pb.ReplayDeadLettersRequest,
  filter: DeadLetterFilter | undefined,
  run: Omit<ReplayRun, 'observer'>,
  send: (res: pb.StreamReplayDeadLettersResponse) => void,
): Promise<void> {
  let pending: pb.ReplayedJob[] = [];
  let last = 0;
  let dirty = false;
  const flush = (progress: Readonly<pb.ReplayProgress>): void => {
    send({ replayed: pending, progress: { ...progress } });
    pending = [];
    dirty = false;
    last = Date.now();
  };
  let latest: pb.ReplayProgress | undefined;
  try {
    latest = await runReplay(store, enqueue, req, filter, {
      ...run,
      observer: {
        onStart: (p) => {
          latest = p;
          flush(p);
        },
        onStep: (p, r, pageEnd) => {
          latest = p;
          if (r) pending.push(r);
          dirty = true;
          if (p.examined === 1 || pageEnd || Date.now() - last >= REPORT_EVERY_MS) flush(p);
        },
      },
    });
  } finally {
    if (latest && dirty) flush(latest);
  }
}

import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { FailedPreconditionError, InvalidArgumentError, QueueNotFoundError, UnavailableError, isJobmeshError } from '@jobmesh/core';
import type { DeadLetterStore, Filter } from './store';

/** Enqueues a job on the scheduler; a seam so replay needs no real scheduler in unit tests. */
export type EnqueueFn = (req: pb.EnqueueJobRequest, signal?: AbortSignal) => Promise<pb.EnqueueJobResponse>;

/** An EnqueueFn calling SchedulerService.EnqueueJob at `address` over gRPC. */
export function schedulerEnqueuer(address: string, timeoutMs: number): { enqueue: EnqueueFn; close(): void } {
  const client = new pb.SchedulerServiceClient(address, credentials.createInsecure());
  const enqueue: EnqueueFn = (req, signal) =>
    new Promise((resolve, reject) => {
      const cancel = (): void => call.cancel();
      const call = client.enqueueJob(req, new Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err: ServiceError | null, res) => {
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
 * Replays dead letters through SchedulerService.EnqueueJob: same name and options (without the
 * job id, and with an idempotency key of the replay's own instead of the original's), data with
 * the patch merged at the top level, on `target_queue` or the original queue, at most `max_per_second`.
 * The new job names its dead letter in `options.replay_of`; each replay is recorded on its dead
 * letter, so the link goes both ways.
 */
export async function replay(
  store: DeadLetterStore,
  enqueue: EnqueueFn,
  req: pb.ReplayDeadLettersRequest,
  filter: Filter | undefined,
  signal?: AbortSignal,
): Promise<pb.ReplayDeadLettersResponse> {
  if (req.ids.length && filter) throw new InvalidArgumentError('ids', 'give ids or a filter, not both');
  if (!req.ids.length && !filter) throw new InvalidArgumentError('filter', 'give ids or a filter');
  const rate = Math.min(MAX_REPLAY_RATE, req.maxPerSecond || DEFAULT_REPLAY_RATE);
  let targets: pb.DeadLetter[] = [];
  let skippedQuarantined = 0;
  if (req.ids.length) {
    for (const id of req.ids) {
      const d = await store.get(id);
      if (d.quarantined) throw new FailedPreconditionError(`dead letter "${id}" is quarantined; release it with QuarantineDeadLetters first`);
      targets.push(d);
    }
  } else {
    for await (const d of store.scan(filter!)) {
      if (d.quarantined) skippedQuarantined++;
      else targets.push(d);
    }
    targets = targets.reverse(); // oldest first, the order they failed in
  }
  const replayed: pb.ReplayedJob[] = [];
  const started = Date.now();
  for (const [i, d] of targets.entries()) {
    if (signal?.aborted) break;
    const due = started + (i * 1000) / rate;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const job = d.job!;
    // The idempotency key names this replay of this dead letter: a replay retried after an
    // enqueue whose record was lost (timeout, crash) finds the job it made instead of making two.
    const idempotencyKey = `replay:${d.id}:${d.replays.length + 1}`;
    const options = pb.JobOptions.fromPartial({ ...job.options, jobId: '', idempotencyKey, delay: undefined, runAt: undefined, replayOf: d.id });
    const queue = req.targetQueue || job.queue;
    let res: pb.EnqueueJobResponse;
    try {
      res = await enqueue({ queue, job: { name: job.name, data: { ...(job.data ?? {}), ...(req.dataPatch ?? {}) }, options } }, signal);
    } catch (err) {
      if (isJobmeshError(err)) throw err;
      const e = err as ServiceError;
      // The scheduler's answer, as is: NOT_FOUND for an unknown target queue, and so on.
      if (e.code === 5) throw new QueueNotFoundError(queue);
      throw new UnavailableError(`scheduler refused the replay of "${d.id}": ${e.details || e.message}`, { cause: err });
    }
    const ref = { queue, id: res.job?.id ?? '' };
    await store.addReplay(d.id, { job: ref, replayedAt: new Date() });
    replayed.push({ deadLetterId: d.id, job: ref });
  }
  return { replayed, skippedQuarantined };
}

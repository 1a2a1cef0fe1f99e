import * as pb from '@jobmesh/contracts';
import type { RedisClient } from './connection';
import { queueJobEvent } from './events';
import type { Keys } from './keys';

/** How long a cancelled job's record is kept. */
export const CANCELLED_TTL_MS = 7 * 24 * 3_600_000;

/**
 * Records a job as CANCELLED in one transaction: its snapshot (GetJob and ListJobs read it), the
 * index of cancelled jobs, the end of any pending cancel request, and a `cancelled` event on the
 * queue's event stream (WatchJob ends on it). Used by CancelJob and by workers that abort a job.
 */
export async function recordCancelled(redis: RedisClient, keys: Keys, job: pb.Job, reason: string): Promise<pb.Job> {
  const record = cancelledRecord(job, reason);
  const now = Date.now();
  const multi = redis
    .multi()
    .set(keys.cancelled(job.queue, job.id), JSON.stringify(pb.Job.toJSON(record)), 'PX', CANCELLED_TTL_MS)
    .zadd(keys.cancelledIndex(job.queue), now, job.id)
    .zremrangebyscore(keys.cancelledIndex(job.queue), 0, now - CANCELLED_TTL_MS)
    .del(keys.cancelRequest(job.queue, job.id));
  queueJobEvent(multi, keys, job.queue, job.id, 'cancelled', { reason });
  await multi.exec();
  return record;
}

function cancelledRecord(job: pb.Job, reason: string): pb.Job {
  return { ...job, state: pb.JobState.JOB_STATE_CANCELLED, failureReason: reason, finishedAt: new Date() };
}

/**
 * Before CancelJob removes a job that has not started, it stores the job's CANCELLED record
 * marked as written ahead of the removal. The removal and the rest of the record (recordCancelled)
 * are two writes, since BullMQ removes a job in a script of its own; a fault between them leaves
 * the job gone and this record, which GetJob then answers with. A marked record counts only once
 * BullMQ no longer holds the job: while it does (the removal did not happen, or the job was
 * locked by a worker), the record is ignored (`isCancelledRecordInForce`).
 */
export async function recordCancelledAhead(redis: RedisClient, keys: Keys, job: pb.Job, reason: string): Promise<void> {
  const record = { ...pb.Job.toJSON(cancelledRecord(job, reason)) as object, [AHEAD]: true };
  await redis.set(keys.cancelled(job.queue, job.id), JSON.stringify(record), 'PX', CANCELLED_TTL_MS);
}

/** The property that marks a record written ahead of its job's removal; pb.Job.fromJSON ignores it. */
const AHEAD = 'jobmeshBeforeRemoval';

/** Whether a stored CANCELLED record (as JSON) stands, given whether BullMQ still holds the job. */
export function isCancelledRecordInForce(json: string, bullHoldsJob: boolean): boolean {
  return !bullHoldsJob || !(JSON.parse(json) as Record<string, unknown>)[AHEAD];
}

/** The stored record of a cancelled job, if there is one. */
export async function readCancelled(redis: RedisClient, keys: Keys, queue: string, id: string): Promise<pb.Job | undefined> {
  const json = await redis.get(keys.cancelled(queue, id));
  return json ? pb.Job.fromJSON(JSON.parse(json)) : undefined;
}

/** A cancel request as published on `keys.cancelChannel`. */
export interface CancelRequest {
  queue: string;
  jobId: string;
  reason: string;
}

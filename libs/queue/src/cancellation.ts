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
  const record: pb.Job = { ...job, state: pb.JobState.JOB_STATE_CANCELLED, failureReason: reason, finishedAt: new Date() };
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

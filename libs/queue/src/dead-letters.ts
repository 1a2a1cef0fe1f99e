import * as pb from '@jobmesh/contracts';
import type { Redis } from 'ioredis';
import type { Keys } from './keys';

/** What the dead-letter store knows about one job: its latest dead letter. */
export interface DeadLetteredJob {
  /** The dead letter id, "<queue>:<job id>:<attempt>". */
  id: string;
  /** The job as it was when it failed for good, in state DEAD_LETTERED. */
  job: pb.Job;
}

/**
 * The latest dead letter of a job, if it has one (services/dead-letter writes it). The scheduler
 * reads it so that GetJob answers DEAD_LETTERED, also after BullMQ's copy was removed.
 */
export async function readDeadLettered(redis: Redis, keys: Keys, queue: string, jobId: string): Promise<DeadLetteredJob | undefined> {
  const id = await redis.hget(keys.deadLetterJobs, `${queue}:${jobId}`);
  if (!id) return undefined;
  const json = await redis.hget(keys.deadLetter(id), 'job');
  if (!json) return undefined; // purged between the two reads
  const job = pb.Job.fromJSON(JSON.parse(json));
  return { id, job: { ...job, state: pb.JobState.JOB_STATE_DEAD_LETTERED } };
}

/** Which of `jobIds` of `queue` have a dead letter: job id → dead letter id. */
export async function deadLetterIdsOf(redis: Redis, keys: Keys, queue: string, jobIds: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!jobIds.length) return out;
  const ids = await redis.hmget(keys.deadLetterJobs, ...jobIds.map((j) => `${queue}:${j}`));
  ids.forEach((id, i) => id && out.set(jobIds[i]!, id));
  return out;
}

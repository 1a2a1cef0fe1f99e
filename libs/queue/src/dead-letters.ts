import * as pb from '@jobmesh/contracts';
import type { RedisClient } from './connection';
import type { Keys } from './keys';

/**
 * A job's link to its latest dead letter, kept in `keys.deadLetterJobs` as "<at>:<dead letter id>".
 * `at` is the job's final failure time (BullMQ's finishedOn, also its score in the failed set), so
 * a failed job is the one its dead letter was made from exactly when the two times agree: a job
 * id used again later fails at another time.
 */
export interface DeadLetterLink {
  /** The dead letter id, "<queue>:<job id>:<attempt>". */
  id: string;
  /** When the job failed for good, ms. */
  at: number;
}

/**
 * A dead letter's id: "<queue>:<job id>:<attempt>", or with "~<failure time, ms>" when a job id
 * used again failed at the same attempt as an earlier job of that id.
 */
export const deadLetterId = (queue: string, jobId: string, attempt: number, at?: number): string => `${queue}:${jobId}:${attempt}${at === undefined ? '' : `~${at}`}`;

/**
 * Whether a failed job (its BullMQ `finishedOn`) is the failure `link` was made from: the one rule
 * that tells a dead-lettered job from a later job with the same id.
 */
export const isDeadLetterOf = (link: DeadLetterLink | undefined, finishedOn: number | undefined): link is DeadLetterLink => !!link && link.at === finishedOn;

export const encodeDeadLetterLink = (l: DeadLetterLink): string => `${l.at}:${l.id}`;

export function decodeDeadLetterLink(v: string | null | undefined): DeadLetterLink | undefined {
  const sep = v ? v.indexOf(':') : -1;
  return sep > 0 ? { at: Number(v!.slice(0, sep)), id: v!.slice(sep + 1) } : undefined;
}

/** What the dead-letter store knows about one job: its latest dead letter. */
export interface DeadLetteredJob extends DeadLetterLink {
  /** The job as it was when it failed for good, in state DEAD_LETTERED. */
  job: pb.Job;
}

/**
 * The latest dead letter of a job, if it has one (services/dead-letter writes it). The scheduler
 * reads it so that GetJob answers DEAD_LETTERED, also after BullMQ's copy was removed.
 */
export async function readDeadLettered(redis: RedisClient, keys: Keys, queue: string, jobId: string): Promise<DeadLetteredJob | undefined> {
  const link = decodeDeadLetterLink(await redis.hget(keys.deadLetterJobs, `${queue}:${jobId}`));
  if (!link) return undefined;
  const json = await redis.hget(keys.deadLetter(link.id), 'job');
  if (!json) return undefined; // purged between the two reads
  const job = pb.Job.fromJSON(JSON.parse(json));
  return { ...link, job: { ...job, state: pb.JobState.JOB_STATE_DEAD_LETTERED } };
}

/** The dead-letter links of `jobIds` of `queue` that have one: job id → link. */
export async function deadLetterLinks(redis: RedisClient, keys: Keys, queue: string, jobIds: string[]): Promise<Map<string, DeadLetterLink>> {
  const out = new Map<string, DeadLetterLink>();
  if (!jobIds.length) return out;
  const values = await redis.hmget(keys.deadLetterJobs, ...jobIds.map((j) => `${queue}:${j}`));
  values.forEach((v, i) => {
    const link = decodeDeadLetterLink(v);
    if (link) out.set(jobIds[i]!, link);
  });
  return out;
}

import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from './connection';
import type { Keys } from './keys';

/** How many entries a queue's event stream keeps (approximately), as BullMQ's default does. */
export const EVENTS_MAX_LEN = 10_000;

/**
 * The events Jobmesh adds to a queue's event stream besides BullMQ's own, with their fields. WatchJob
 * (services/scheduler/src/watch.ts) reads them; Lua scripts that write one (park-job-6, dlq-capture)
 * use the same names.
 */
export interface JobEventFields {
  cancelled: { reason: string };
  log: { message: string };
  requeued: { reason: string };
  /** Written by dlq-capture-9 (or, on a Redis Cluster, by DeadLetterStore after dlq-store-7). */
  'dead-lettered': { reason: string };
}

/** The XADD arguments of one of Jobmesh's job events on `queue`'s event stream. */
export function jobEventArgs<E extends keyof JobEventFields>(keys: Keys, queue: string, jobId: string, event: E, fields: JobEventFields[E]): [string, ...(string | number)[]] {
  return [keys.events(queue), 'MAXLEN', '~', EVENTS_MAX_LEN, '*', 'event', event, 'jobId', jobId, ...(Object.entries(fields).flat() as string[])];
}

/** Appends one of Jobmesh's job events to `queue`'s event stream. */
export function appendJobEvent<E extends keyof JobEventFields>(redis: RedisClient, keys: Keys, queue: string, jobId: string, event: E, fields: JobEventFields[E]): Promise<unknown> {
  return redis.call('XADD', ...jobEventArgs(keys, queue, jobId, event, fields));
}

/** Queues the same on a transaction or pipeline. */
export function queueJobEvent<E extends keyof JobEventFields>(multi: ChainableCommander, keys: Keys, queue: string, jobId: string, event: E, fields: JobEventFields[E]): void {
  multi.call('XADD', ...jobEventArgs(keys, queue, jobId, event, fields));
}

import { type CommonEnv, commonEnvSchema, durationMs, parseEnv } from '@jobmesh/config';
import type { DurableAck } from '@jobmesh/queue';
import { z } from 'zod';

/** The scheduler's own settings, also read by `jobmesh up`. */
export const schedulerOwnEnvShape = {
  /** Schedules one queue may hold; UpsertSchedule of one more is RESOURCE_EXHAUSTED. @default 1000 */
  JOBMESH_MAX_SCHEDULES_PER_QUEUE: z.coerce.number().int().min(1).default(1000),
  /** The shortest interval a schedule may fire at (every, or a cron's first two fires). @default 1s */
  JOBMESH_MIN_SCHEDULE_INTERVAL: durationMs.default(1000),
};

/** The scheduler's settings: the common ones (libs/config) and its own. */
export const schedulerEnvSchema = commonEnvSchema.extend(schedulerOwnEnvShape);

export type SchedulerEnv = z.infer<typeof schedulerEnvSchema>;

/** JOBMESH_DURABLE_ACK and its timeout, or undefined when enqueues do not wait for replicas. */
export function durableAck(env: Pick<CommonEnv, 'JOBMESH_DURABLE_ACK' | 'JOBMESH_DURABLE_ACK_TIMEOUT'>): DurableAck | undefined {
  return env.JOBMESH_DURABLE_ACK === undefined ? undefined : { replicas: env.JOBMESH_DURABLE_ACK, timeoutMs: env.JOBMESH_DURABLE_ACK_TIMEOUT };
}

export function loadSchedulerEnv(env: NodeJS.ProcessEnv = process.env): SchedulerEnv {
  return parseEnv(schedulerEnvSchema, env);
}

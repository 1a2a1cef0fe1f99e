import { type CommonEnv, commonEnvSchema, parseEnv } from '@jobmesh/config';
import type { DurableAck } from '@jobmesh/queue';
import type { z } from 'zod';

/** The scheduler's settings: the common ones (libs/config) are all it needs. */
export const schedulerEnvSchema = commonEnvSchema;

export type SchedulerEnv = z.infer<typeof schedulerEnvSchema>;

/** JOBMESH_DURABLE_ACK and its timeout, or undefined when enqueues do not wait for replicas. */
export function durableAck(env: Pick<CommonEnv, 'JOBMESH_DURABLE_ACK' | 'JOBMESH_DURABLE_ACK_TIMEOUT'>): DurableAck | undefined {
  return env.JOBMESH_DURABLE_ACK === undefined ? undefined : { replicas: env.JOBMESH_DURABLE_ACK, timeoutMs: env.JOBMESH_DURABLE_ACK_TIMEOUT };
}

export function loadSchedulerEnv(env: NodeJS.ProcessEnv = process.env): SchedulerEnv {
  return parseEnv(schedulerEnvSchema, env);
}

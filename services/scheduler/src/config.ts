import { commonEnvSchema, parseEnv } from '@jobmesh/config';
import type { z } from 'zod';

/** The scheduler's settings: the common ones (libs/config) are all it needs. */
export const schedulerEnvSchema = commonEnvSchema;

export type SchedulerEnv = z.infer<typeof schedulerEnvSchema>;

export function loadSchedulerEnv(env: NodeJS.ProcessEnv = process.env): SchedulerEnv {
  return parseEnv(schedulerEnvSchema, env);
}

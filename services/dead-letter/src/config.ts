import { commonEnvSchema, durationMs, parseEnv } from '@jobmesh/config';
import type { z } from 'zod';

/** The dead-letter service's settings: the common ones plus its own. */
export const deadLetterEnvSchema = commonEnvSchema.extend({
  /** How often every queue's failed set is swept for dead letters. @default 10s */
  JOBMESH_DLQ_SWEEP_INTERVAL: durationMs.default(10_000),
  /** The scheduler replays go through (SchedulerService.EnqueueJob). @default 127.0.0.1:50051 */
  JOBMESH_SCHEDULER_ADDRESS: commonEnvSchema.shape.JOBMESH_GRPC_ADDRESS,
});

export type DeadLetterEnv = z.infer<typeof deadLetterEnvSchema>;

export function loadDeadLetterEnv(env: NodeJS.ProcessEnv = process.env): DeadLetterEnv {
  return parseEnv(deadLetterEnvSchema, env);
}

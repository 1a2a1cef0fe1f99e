import { durationMs, parseEnv } from '@jobmesh/config';
import { z } from 'zod';

/** What the operator commands read from the environment; flags override it. */
export const cliEnvSchema = z.object({
  /** The Jobmesh gRPC endpoint. @default 127.0.0.1:50051 */
  JOBMESH_ADDRESS: z.string().default('127.0.0.1:50051'),
  /** Sent as `authorization: Bearer …`. */
  JOBMESH_API_KEY: z.string().optional(),
  /** DeadLetterService, when it is not served at JOBMESH_ADDRESS (a separate deployment). */
  JOBMESH_DLQ_ADDRESS: z.string().optional(),
  /** Deadline of each call. @default 10s */
  JOBMESH_TIMEOUT: durationMs.default(10_000),
});

export const loadCliEnv = (env: NodeJS.ProcessEnv = process.env): z.infer<typeof cliEnvSchema> => parseEnv(cliEnvSchema, env);

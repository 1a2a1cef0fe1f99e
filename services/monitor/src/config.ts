import { commonEnvSchema, durationMs, parseEnv } from '@jobmesh/config';
import { z } from 'zod';

const address = commonEnvSchema.shape.JOBMESH_GRPC_ADDRESS;

/** The monitor settings that do not depend on where it runs; `jobmesh up` reads them too. */
export const monitorOwnEnvShape = {
  /** How long GetSystemHealth waits for each service's health check. @default 1s */
  JOBMESH_HEALTH_TIMEOUT: durationMs.pipe(z.number().min(1)).default(1000),
  /** The web dashboard shows everything and changes nothing: its actions are hidden and answer 403. @default false */
  JOBMESH_DASHBOARD_READ_ONLY: z.stringbool().default(false),
  /** A trace viewer's page for one trace, e.g. Jaeger's `http://localhost:16686/trace/{trace_id}`: the dashboard links each job's trace there. */
  JOBMESH_TRACE_UI_URL: z
    .string()
    .refine((v) => v.includes('{trace_id}'), 'must contain {trace_id} where the trace id goes, e.g. http://localhost:16686/trace/{trace_id}')
    .optional(),
};

/** The monitor's settings: the common ones, its own, and where the services it checks listen. */
export const monitorEnvSchema = commonEnvSchema.extend({
  ...monitorOwnEnvShape,
  /** The scheduler's gRPC address, for GetSystemHealth and the dashboard. @default 127.0.0.1:50051 */
  JOBMESH_SCHEDULER_ADDRESS: address,
  /** A worker-pool's gRPC address (a Kubernetes Service in front of its replicas), for GetSystemHealth and the dashboard's workers page. @default 127.0.0.1:50052 */
  JOBMESH_WORKER_POOL_ADDRESS: address.default('127.0.0.1:50052'),
  /** The dead-letter service's gRPC address, for GetSystemHealth and the dashboard. @default 127.0.0.1:50053 */
  JOBMESH_DEAD_LETTER_ADDRESS: address.default('127.0.0.1:50053'),
});

export type MonitorEnv = z.infer<typeof monitorEnvSchema>;

export function loadMonitorEnv(env: NodeJS.ProcessEnv = process.env): MonitorEnv {
  return parseEnv(monitorEnvSchema, env);
}

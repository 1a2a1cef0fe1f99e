import { commonEnvSchema, durationMs, parseEnv } from '@jobmesh/config';
import { z } from 'zod';

const list = z
  .string()
  .optional()
  .transform((v) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean));

/** The worker-pool's settings: the common ones plus how it runs jobs. */
export const workerPoolEnvSchema = commonEnvSchema.extend({
  /** Processor modules to load, comma-separated paths, besides those in the config file. */
  JOBMESH_PROCESSORS: list,
  /** Only these queues (comma-separated). Empty: every queue in the registry. */
  JOBMESH_WORKER_QUEUES: list,
  /** How long a worker's lock on a running job lasts before it must be renewed. @default 30s */
  JOBMESH_LOCK_DURATION: durationMs.default(30_000),
  /** How often stalled jobs (lock expired: worker died) are looked for. @default 30s */
  JOBMESH_STALLED_INTERVAL: durationMs.default(30_000),
  /** How many times a job may stall before it fails. @default 1 */
  JOBMESH_MAX_STALLED_COUNT: z.coerce.number().int().min(0).default(1),
  /** SMTP server for email.send, e.g. smtps://user:pass@mail.example.com:465 (overrides the config file). */
  JOBMESH_SMTP_URL: z.string().url().optional(),
  /** Default sender for email.send. */
  JOBMESH_SMTP_FROM: z.string().optional(),
  /** A remote worker's lease lapses this long after its last heartbeat; the job goes back to waiting. @default 30s */
  JOBMESH_LEASE_TTL: durationMs.default(30_000),
  /**
   * Replaced by the queue option `processor_wait`; only read to warn that it is no longer used.
   * @deprecated
   */
  JOBMESH_REMOTE_GRACE: z.string().optional(),
  /** A Connect stream that has not sent Hello this long after opening is ended (INVALID_ARGUMENT). @default 10s */
  JOBMESH_HELLO_TIMEOUT: durationMs.default(10_000),
  /**
   * `true`: every queue's runner shares two Redis connections (one for commands, one blocking wait
   * on every queue's marker) instead of two per queue. For replicas that serve many queues; not on
   * a Redis Cluster, where it is ignored. See docs/architecture.md, step 8. @default false
   */
  JOBMESH_SHARED_CONNECTIONS: z
    .enum(['true', 'false'], { message: 'JOBMESH_SHARED_CONNECTIONS must be true or false' })
    .default('false')
    .transform((v) => v === 'true'),
  /** This replica's name in logs and ListWorkers; unique among replicas. @default hostname-pid-random */
  JOBMESH_REPLICA_ID: z.string().optional(),
});

export type WorkerPoolEnv = z.infer<typeof workerPoolEnvSchema>;

export function loadWorkerPoolEnv(env: NodeJS.ProcessEnv = process.env): WorkerPoolEnv {
  return parseEnv(workerPoolEnvSchema, env);
}

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { WorkerServiceService } from '@jobmesh/contracts';
import type { LoadedConfigFile } from '@jobmesh/config';
import type { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import type { Backbone } from '@jobmesh/queue';
import type { Logger, Registry } from '@jobmesh/telemetry';
import { builtinProcessors } from './builtins';
import type { WorkerPoolEnv } from './config';
import { ProcessorRegistry } from './processors';
import { workerHandlers } from './remote/worker-service';
import { WorkerPool } from './worker-pool';

export interface WorkerPoolDeps {
  backbone: Backbone;
  kit: RpcKit;
  logger: Logger;
  metrics: Registry;
  env: WorkerPoolEnv;
  config: LoadedConfigFile;
  /** Processors given in code (tests, embedding); added to those loaded from modules. */
  processors?: ProcessorRegistry;
}

export interface RegisteredWorkerPool {
  pool: WorkerPool;
  processors: ProcessorRegistry;
  /** Stops taking jobs and waits up to the grace period for active ones. */
  close(): Promise<void>;
}

/** Loads processors, starts the pool, and mounts worker-pool's gRPC services on `server`. */
export async function register(server: GrpcServer, deps: WorkerPoolDeps): Promise<RegisteredWorkerPool> {
  const { env, config, logger } = deps;
  const processors = deps.processors ?? new ProcessorRegistry();
  // Unique even for two pools in one process (tests, embedding): replicas tell each other apart
  // by it in the served-names directory.
  const replica = env.JOBMESH_REPLICA_ID ?? `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  for (const def of builtinProcessors({ config, smtpUrl: env.JOBMESH_SMTP_URL, smtpFrom: env.JOBMESH_SMTP_FROM, mode: env.JOBMESH_MODE })) processors.add(def);
  await processors.load([...config.processors.modules, ...env.JOBMESH_PROCESSORS]);
  const pool = new WorkerPool({
    backbone: deps.backbone,
    processors,
    logger,
    metrics: deps.metrics,
    queues: env.JOBMESH_WORKER_QUEUES,
    settings: {
      lockDurationMs: env.JOBMESH_LOCK_DURATION,
      stalledIntervalMs: env.JOBMESH_STALLED_INTERVAL,
      maxStalledCount: env.JOBMESH_MAX_STALLED_COUNT,
    },
    replica,
    sharedConnections: env.JOBMESH_SHARED_CONNECTIONS,
    remote: { leaseTtlMs: env.JOBMESH_LEASE_TTL, maxPayloadBytes: env.JOBMESH_MAX_PAYLOAD_BYTES },
  });
  if (env.JOBMESH_REMOTE_GRACE !== undefined) {
    logger.warn(
      { JOBMESH_REMOTE_GRACE: env.JOBMESH_REMOTE_GRACE },
      'JOBMESH_REMOTE_GRACE is no longer read: a job whose name nothing serves waits for a processor for its queue\'s processor_wait (default 1h); set that instead',
    );
  }
  await pool.start();
  server.add(
    'jobmesh.v1.WorkerService',
    WorkerServiceService,
    workerHandlers(deps.kit, { dispatcher: pool.dispatcher, registry: deps.backbone.registry, pool, replica, heartbeatIntervalMs: pool.heartbeatIntervalMs, helloTimeoutMs: env.JOBMESH_HELLO_TIMEOUT }) as never,
  );
  return { pool, processors, close: () => pool.close(env.JOBMESH_SHUTDOWN_GRACE) };
}

import { loadConfigFile, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { openBackbone } from '@jobmesh/queue';
import { type Logger, createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
import type { WorkerPoolEnv } from './config';
import type { ProcessorRegistry } from './processors';
import { type RegisteredWorkerPool, register } from './register';

export interface RunningWorkerPool {
  grpcPort: number;
  httpPort: number;
  worker: RegisteredWorkerPool;
  /** SIGTERM behaviour: NOT_SERVING, stop fetching, let active jobs finish within the grace period. Idempotent. */
  stop(): Promise<void>;
}

/** Starts worker-pool as its own process would. */
export async function startWorkerPool(env: WorkerPoolEnv, opts: { logger?: Logger; processors?: ProcessorRegistry } = {}): Promise<RunningWorkerPool> {
  const logger = opts.logger ?? createLogger({ name: 'worker-pool', level: env.LOG_LEVEL });
  const metrics = createRegistry();
  const config = loadConfigFile(env.JOBMESH_CONFIG);
  const backbone = await openBackbone({
    settings: {
      url: env.REDIS_URL,
      sentinels: env.REDIS_SENTINELS,
      masterName: env.REDIS_MASTER_NAME,
      prefix: env.JOBMESH_REDIS_PREFIX,
      commandTimeoutMs: env.JOBMESH_REDIS_COMMAND_TIMEOUT,
    },
    mode: env.JOBMESH_MODE,
    logger,
    declared: config.queues,
  });
  const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
  const kit = new RpcKit({ logger, registry: metrics });
  const worker = await register(server, { backbone, kit, logger, metrics, env, config, processors: opts.processors });
  const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
  const ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
  const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
  logger.info({ grpc: grpcPort, http: ops.address, queues: worker.pool.status().map((s) => s.queue) }, 'worker-pool running');
  let stopping: Promise<void> | undefined;
  return {
    grpcPort,
    httpPort: ops.port,
    worker,
    stop: () =>
      (stopping ??= (async () => {
        server.setStatus('NOT_SERVING');
        await worker.close();
        await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
        await ops.close();
        await backbone.close();
      })()),
  };
}

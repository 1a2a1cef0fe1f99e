import { loadConfigFile, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { openBackboneFromEnv } from '@jobmesh/queue';
import { type Logger, type OpsServer, createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
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
  const backbone = await openBackboneFromEnv(env, logger, config.queues);
  const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
  const kit = new RpcKit({ logger, registry: metrics });
  let worker: RegisteredWorkerPool | undefined;
  let ops: OpsServer | undefined;
  let grpcPort: number;
  try {
    worker = await register(server, { backbone, kit, logger, metrics, env, config, processors: opts.processors });
    const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
    ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
    grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
  } catch (err) {
    // Whatever opened before the failure is closed, so an embedding process is not kept alive.
    await worker?.close().catch(() => undefined);
    await ops?.close().catch(() => undefined);
    server.server.forceShutdown();
    await backbone.close().catch(() => undefined);
    throw err;
  }
  const running = { worker, ops };
  logger.info({ grpc: grpcPort, http: running.ops.address, queues: running.worker.pool.status().map((s) => s.queue) }, 'worker-pool running');
  let stopping: Promise<void> | undefined;
  return {
    grpcPort,
    httpPort: running.ops.port,
    worker: running.worker,
    stop: () =>
      (stopping ??= (async () => {
        server.setStatus('NOT_SERVING');
        await running.worker.close();
        await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
        await running.ops.close();
        await backbone.close();
      })()),
  };
}

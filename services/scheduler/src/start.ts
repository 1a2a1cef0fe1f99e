import { loadConfigFile, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { openBackboneFromEnv } from '@jobmesh/queue';
import { type Logger, createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
import type { SchedulerEnv } from './config';
import { register } from './register';

export interface RunningScheduler {
  /** The bound gRPC port (useful with port 0). */
  grpcPort: number;
  httpPort: number;
  logger: Logger;
  /** Graceful stop: NOT_SERVING, drain calls within the grace period, close Redis. */
  stop(): Promise<void>;
}

/** Starts the scheduler as its own process would: Redis, gRPC, ops HTTP. */
export async function startScheduler(env: SchedulerEnv, opts: { logger?: Logger } = {}): Promise<RunningScheduler> {
  const logger = opts.logger ?? createLogger({ name: 'scheduler', level: env.LOG_LEVEL });
  const metrics = createRegistry();
  const config = loadConfigFile(env.JOBMESH_CONFIG);
  const backbone = await openBackboneFromEnv(env, logger, config.queues);
  const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
  const kit = new RpcKit({ logger, registry: metrics });
  const scheduler = register(server, {
    backbone,
    kit,
    logger,
    maxPayloadBytes: env.JOBMESH_MAX_PAYLOAD_BYTES,
    idempotencyTtlMs: env.JOBMESH_IDEMPOTENCY_TTL,
  });
  const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
  const ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
  const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
  logger.info({ grpc: `${splitHostPort(env.JOBMESH_GRPC_ADDRESS).host}:${grpcPort}`, http: ops.address, config: config.path }, 'scheduler listening');
  return {
    grpcPort,
    httpPort: ops.port,
    logger,
    stop: async () => {
      await scheduler.close();
      await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
      await ops.close();
      await backbone.close();
    },
  };
}

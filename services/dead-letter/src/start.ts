import { loadConfigFile, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { openBackboneFromEnv } from '@jobmesh/queue';
import { type Logger, createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
import type { DeadLetterEnv } from './config';
import { register } from './register';

export interface RunningDeadLetter {
  /** The bound gRPC port (useful with port 0). */
  grpcPort: number;
  httpPort: number;
  logger: Logger;
  /** Runs one sweep of every queue's failed set now (tests, and after an outage). */
  sweep(): Promise<void>;
  /** Graceful stop: NOT_SERVING, drain calls within the grace period, close Redis. */
  stop(): Promise<void>;
}

/** Starts the dead-letter service as its own process would: Redis, capture, gRPC, ops HTTP. */
export async function startDeadLetter(env: DeadLetterEnv, opts: { logger?: Logger } = {}): Promise<RunningDeadLetter> {
  const logger = opts.logger ?? createLogger({ name: 'dead-letter', level: env.LOG_LEVEL });
  const metrics = createRegistry();
  const config = loadConfigFile(env.JOBMESH_CONFIG);
  const backbone = await openBackboneFromEnv(env, logger, config.queues);
  const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
  const kit = new RpcKit({ logger, registry: metrics });
  const deadLetter = register(server, {
    backbone,
    kit,
    logger,
    sweepIntervalMs: env.JOBMESH_DLQ_SWEEP_INTERVAL,
    schedulerAddress: env.JOBMESH_SCHEDULER_ADDRESS,
  });
  await deadLetter.start();
  const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
  const ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
  const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
  logger.info({ grpc: `${http.host}:${grpcPort}`, http: ops.address, scheduler: env.JOBMESH_SCHEDULER_ADDRESS }, 'dead-letter listening');
  return {
    grpcPort,
    httpPort: ops.port,
    logger,
    sweep: () => deadLetter.capturer.sweep(),
    stop: async () => {
      await deadLetter.close();
      await server.shutdown(env.JOBMESH_SHUTDOWN_GRACE);
      await ops.close();
      await backbone.close();
    },
  };
}

import { loadConfigFile, splitHostPort } from '@jobmesh/config';
import { GrpcServer, RpcKit } from '@jobmesh/grpc-kit';
import { openBackboneFromEnv } from '@jobmesh/queue';
import { type Logger, createLogger, createRegistry, startOpsServer } from '@jobmesh/telemetry';
import { type DeadLetterEnv, webhookSettings } from './config';
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

/** Starts the dead-letter service as its own process would: Redis, capture, alerts, gRPC, ops HTTP. */
export async function startDeadLetter(env: DeadLetterEnv, opts: { logger?: Logger } = {}): Promise<RunningDeadLetter> {
  const logger = opts.logger ?? createLogger({ name: 'dead-letter', level: env.LOG_LEVEL });
  const metrics = createRegistry();
  const config = loadConfigFile(env.JOBMESH_CONFIG);
  const backbone = await openBackboneFromEnv(env, logger, config.queues);
  const server = new GrpcServer({ logger, maxMessageBytes: env.JOBMESH_MAX_MESSAGE_BYTES });
  const kit = new RpcKit({ logger, registry: metrics });
  const webhooks = webhookSettings(env);
  const deadLetter = register(server, {
    backbone,
    kit,
    logger,
    metrics,
    sweepIntervalMs: env.JOBMESH_DLQ_SWEEP_INTERVAL,
    schedulerAddress: env.JOBMESH_SCHEDULER_ADDRESS,
    webhooks,
  });
  const http = splitHostPort(env.JOBMESH_HTTP_ADDRESS);
  const ops = await startOpsServer({ host: http.host, port: http.port, registry: metrics, ready: backbone.ping });
  const grpcPort = await server.listen(env.JOBMESH_GRPC_ADDRESS);
  // Serving first, then capture: the first sweep may take a while after an outage (every failed
  // job since), and the service answers, is ready, and stops on SIGTERM meanwhile.
  await deadLetter.start();
  logger.info(
    { grpc: `${splitHostPort(env.JOBMESH_GRPC_ADDRESS).host}:${grpcPort}`, http: ops.address, scheduler: env.JOBMESH_SCHEDULER_ADDRESS, webhooks: Object.keys(webhooks.urls) },
    'dead-letter listening',
  );
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

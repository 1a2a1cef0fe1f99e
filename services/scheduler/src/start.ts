import { openServiceHost } from '@jobmesh/host';
import type { Logger } from '@jobmesh/telemetry';
import { type SchedulerEnv, durableAck } from './config';
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
  const host = await openServiceHost(env, { name: 'scheduler', logger: opts.logger });
  try {
    const { backbone, kit, logger } = host;
    const scheduler = register(host.server, {
      backbone,
      kit,
      logger,
      maxPayloadBytes: env.JOBMESH_MAX_PAYLOAD_BYTES,
      idempotencyTtlMs: env.JOBMESH_IDEMPOTENCY_TTL,
      durableAck: durableAck(env),
      scheduleLimits: { maxPerQueue: env.JOBMESH_MAX_SCHEDULES_PER_QUEUE, minIntervalMs: env.JOBMESH_MIN_SCHEDULE_INTERVAL },
    });
    host.onStop(() => scheduler.close());
    const { grpcPort, grpcHost, ops } = await host.listen();
    logger.info({ grpc: `${grpcHost}:${grpcPort}`, http: ops.address, config: host.config.path }, 'scheduler listening');
    return { grpcPort, httpPort: ops.port, logger: host.logger, stop: host.stop };
  } catch (err) {
    await host.stop();
    throw err;
  }
}

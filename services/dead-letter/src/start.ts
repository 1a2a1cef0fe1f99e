import type { Alerts } from './alerts';
import { openServiceHost } from '@jobmesh/host';
import type { Logger } from '@jobmesh/telemetry';
import { type DeadLetterEnv, webhookSettings } from './config';
import { register } from './register';

export interface RunningDeadLetter {
  /** The bound gRPC port (useful with port 0). */
  grpcPort: number;
  httpPort: number;
  logger: Logger;
  /** Runs one sweep of every queue's failed set now (tests, and after an outage). */
  sweep(): Promise<void>;
  /** Where the webhook alert of a dead letter is, and why it was given up; undefined when no severity has a webhook. */
  alerts?: Pick<Alerts, 'state' | 'failure'>;
  /** Graceful stop: NOT_SERVING, drain calls within the grace period, close Redis. */
  stop(): Promise<void>;
}

/** Starts the dead-letter service as its own process would: Redis, capture, alerts, gRPC, ops HTTP. */
export async function startDeadLetter(env: DeadLetterEnv, opts: { logger?: Logger } = {}): Promise<RunningDeadLetter> {
  const host = await openServiceHost(env, { name: 'dead-letter', logger: opts.logger });
  try {
    const { backbone, kit, logger, metrics } = host;
    const webhooks = webhookSettings(env);
    const deadLetter = register(host.server, {
      backbone,
      kit,
      logger,
      metrics,
      sweepIntervalMs: env.JOBMESH_DLQ_SWEEP_INTERVAL,
      schedulerAddress: env.JOBMESH_SCHEDULER_ADDRESS,
      dial: host.dial,
      webhooks,
    });
    host.onStop(() => deadLetter.close());
    const { grpcPort, grpcHost, ops } = await host.listen();
    // Serving first, then capture: the first sweep may take a while after an outage (every failed
    // job since), and the service answers, is ready, and stops on SIGTERM meanwhile.
    await deadLetter.start();
    logger.info(
      { grpc: `${grpcHost}:${grpcPort}`, http: ops.address, scheduler: env.JOBMESH_SCHEDULER_ADDRESS, webhooks: Object.keys(webhooks.urls) },
      'dead-letter listening',
    );
    return { grpcPort, httpPort: ops.port, logger, sweep: () => deadLetter.capturer.sweep(), alerts: deadLetter.alerts, stop: host.stop };
  } catch (err) {
    await host.stop();
    throw err;
  }
}

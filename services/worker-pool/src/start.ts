import { openServiceHost } from '@jobmesh/host';
import type { Logger } from '@jobmesh/telemetry';
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
  const host = await openServiceHost(env, { name: 'worker-pool', logger: opts.logger });
  try {
    const { backbone, kit, logger, metrics, config } = host;
    const worker = await register(host.server, { backbone, kit, logger, metrics, env, config, processors: opts.processors });
    host.onStop(() => worker.close());
    const { grpcPort, ops } = await host.listen();
    logger.info({ grpc: grpcPort, http: ops.address, queues: worker.pool.status().map((s) => s.queue) }, 'worker-pool running');
    return { grpcPort, httpPort: ops.port, worker, stop: host.stop };
  } catch (err) {
    // Whatever opened before the failure is closed, so an embedding process is not kept alive.
    await host.stop();
    throw err;
  }
}

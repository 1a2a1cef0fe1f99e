import { silentLogger } from '@jobmesh/telemetry';
import type { AnyProcessorDefinition } from '@jobmesh/sdk';
import { type SchedulerHarness, startSchedulerHarness } from '@jobmesh/scheduler/testing';
import { loadWorkerPoolEnv, ProcessorRegistry, type RunningWorkerPool, startWorkerPool } from './index';

export { uniqueQueue } from '@jobmesh/testing';
export { eventually } from '@jobmesh/testing';

export interface PoolHarness extends SchedulerHarness {
  /** Starts a worker-pool replica on the same Redis and prefix. */
  startPool(processors: AnyProcessorDefinition[], env?: Record<string, string>): Promise<RunningWorkerPool>;
}

/** A scheduler (own Redis, port 0) plus worker-pool replicas started on demand; stop() stops all. */
export async function startPoolHarness(opts: { ownRedis?: boolean } = {}): Promise<PoolHarness> {
  const h = await startSchedulerHarness({ ownRedis: opts.ownRedis });
  const pools: RunningWorkerPool[] = [];
  return {
    ...h,
    startPool: async (defs, env = {}) => {
      const processors = new ProcessorRegistry();
      for (const d of defs) processors.add(d);
      const pool = await startWorkerPool(
        loadWorkerPoolEnv({
          REDIS_URL: h.redis.url,
          JOBMESH_REDIS_PREFIX: h.prefix,
          JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
          JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
          JOBMESH_SHUTDOWN_GRACE: '5s',
          JOBMESH_CONFIG: '',
          ...env,
        }),
        { logger: silentLogger(), processors },
      );
      pools.push(pool);
      return pool;
    },
    stop: async () => {
      await Promise.all(pools.map((p) => p.stop()));
      await h.stop();
    },
  };
}


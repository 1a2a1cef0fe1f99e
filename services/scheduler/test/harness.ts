import { randomUUID } from 'node:crypto';
import { JobmeshClient } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '../src';

export interface SchedulerHarness {
  redis: RedisHandle;
  scheduler: RunningScheduler;
  client: JobmeshClient;
  address: string;
  prefix: string;
  stop(): Promise<void>;
}

/** A scheduler on port 0 against its own Redis (or `redis`), with a unique key prefix. */
export async function startSchedulerHarness(
  opts: { redis?: RedisHandle; env?: Record<string, string>; ownRedis?: boolean } = {},
): Promise<SchedulerHarness> {
  const redis = opts.redis ?? (await startRedis({ own: opts.ownRedis }));
  const prefix = `t${randomUUID().slice(0, 8)}`;
  const env = loadSchedulerEnv({
    REDIS_URL: redis.url,
    JOBMESH_REDIS_PREFIX: prefix,
    JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
    JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
    JOBMESH_SHUTDOWN_GRACE: '2s',
    JOBMESH_CONFIG: '',
    ...opts.env,
  });
  const scheduler = await startScheduler(env, { logger: silentLogger() });
  const address = `127.0.0.1:${scheduler.grpcPort}`;
  const client = new JobmeshClient({ address, timeoutMs: 5000 });
  return {
    redis,
    scheduler,
    client,
    address,
    prefix,
    stop: async () => {
      client.close();
      await scheduler.stop();
      if (!opts.redis) await redis.stop();
    },
  };
}

/** A fresh queue name for one test. */
export const uniqueQueue = (label = 'q'): string => `${label}-${randomUUID().slice(0, 8)}`;

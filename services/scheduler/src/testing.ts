// @jobmesh/scheduler/testing: a scheduler on port 0 for tests, here and in the packages built on
// it (worker-pool, dead-letter, the system tests). Not part of the service: only tests import it.
import type * as pb from '@jobmesh/contracts';
import { type DeepPartial, JobmeshClient } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, type RedisProxy, RawRedis, startRedis, startRedisProxy, uniquePrefix, uniqueQueue, useHarness } from '@jobmesh/testing';
import { loadSchedulerEnv } from './config';
import { type RunningScheduler, startScheduler } from './start';

export { deferred, eventually, keyspace, uniqueQueue, waitFor } from '@jobmesh/testing';

export interface SchedulerHarness {
  redis: RedisHandle;
  /** With `throughProxy`: the proxy between the scheduler and Redis. */
  proxy?: RedisProxy;
  scheduler: RunningScheduler;
  client: JobmeshClient;
  address: string;
  prefix: string;
  /** A plain BullMQ Worker on `queue` with the scheduler's prefix; closed by stop(). */
  worker: RawRedis['worker'];
  /** A plain ioredis connection to the harness's Redis; closed by stop(). */
  redisClient: RawRedis['client'];
  /** Runs `fn` with a plain BullMQ Queue on `name`, as a worker process would see it. */
  withBullQueue: RawRedis['withQueue'];
  /** Creates a queue named `label`-<random> (with `config` on top of the defaults); returns its name. */
  newQueue(label?: string, config?: Omit<DeepPartial<pb.QueueConfig>, 'name'>): Promise<string>;
  /** Stops workers, clients, the scheduler and (unless it was given) Redis. Idempotent. */
  stop(): Promise<void>;
}

export interface SchedulerHarnessOptions {
  /** A Redis to use (not stopped by stop()); by default the harness starts one. */
  redis?: RedisHandle;
  /** Settings on top of the harness's (port 0, a fresh key prefix, a 2 s grace period, no config file). */
  env?: Record<string, string>;
  /** A Redis of the test's own, which it may stop and restart. */
  ownRedis?: boolean;
  /** With the append-only file, so the data survives a restart. */
  appendonly?: boolean;
  /**
   * The scheduler reaches Redis through a TCP proxy that counts round trips and can cut the
   * connection (harness.proxy); the harness's own workers and clients go straight to Redis.
   */
  throughProxy?: boolean;
}

/** A scheduler on port 0 against its own Redis (or `opts.redis`), with a unique key prefix. */
export async function startSchedulerHarness(opts: SchedulerHarnessOptions = {}): Promise<SchedulerHarness> {
  const redis = opts.redis ?? (await startRedis({ own: opts.ownRedis, appendonly: opts.appendonly }));
  const proxy = opts.throughProxy ? await startRedisProxy({ port: redis.port }) : undefined;
  const prefix = uniquePrefix();
  const env = loadSchedulerEnv({
    REDIS_URL: proxy?.url ?? redis.url,
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
  const raw = new RawRedis(redis, prefix);
  let stopping: Promise<void> | undefined;
  return {
    redis,
    proxy,
    scheduler,
    client,
    address,
    prefix,
    worker: (queue, processor, wopts) => raw.worker(queue, processor, wopts),
    redisClient: (url) => raw.client(url),
    withBullQueue: (name, fn) => raw.withQueue(name, fn),
    newQueue: async (label, config = {}) => {
      const name = uniqueQueue(label);
      await client.createQueue({ queue: { ...config, name } });
      return name;
    },
    // Idempotent, so a test may stop the harness itself and afterAll still call it.
    stop: () =>
      (stopping ??= (async () => {
        await raw.close();
        client.close();
        await scheduler.stop();
        await proxy?.close();
        if (!opts.redis) await redis.stop();
      })()),
  };
}

/**
 * A harness for the whole test file: started in beforeAll, stopped in afterAll. The object
 * returned stands for it; use it inside tests and hooks, once beforeAll has run.
 */
export function useSchedulerHarness(opts: SchedulerHarnessOptions = {}): SchedulerHarness {
  return useHarness('scheduler', () => startSchedulerHarness(opts));
}

import { randomUUID } from 'node:crypto';
import { JobmeshClient } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { type Processor, Worker } from 'bullmq';
import Redis from 'ioredis';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '../src';

export interface SchedulerHarness {
  redis: RedisHandle;
  scheduler: RunningScheduler;
  client: JobmeshClient;
  address: string;
  prefix: string;
  /** A plain BullMQ Worker on `queue` with the scheduler's prefix; closed by stop(). */
  worker(queue: string, processor: Processor, opts?: { concurrency?: number }): Worker;
  /** A plain ioredis connection to the harness's Redis; closed by stop(). */
  redisClient(): Redis;
  /** Stops workers, clients, the scheduler and (unless it was given) Redis. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A scheduler on port 0 against its own Redis (or `redis`), with a unique key prefix. `ownRedis`
 * gives a Redis the test may stop and restart; `appendonly` keeps its data across the restart.
 */
export async function startSchedulerHarness(
  opts: { redis?: RedisHandle; env?: Record<string, string>; ownRedis?: boolean; appendonly?: boolean } = {},
): Promise<SchedulerHarness> {
  const redis = opts.redis ?? (await startRedis({ own: opts.ownRedis, appendonly: opts.appendonly }));
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
  const workers: Worker[] = [];
  const clients: Redis[] = [];
  let stopping: Promise<void> | undefined;
  return {
    redis,
    scheduler,
    client,
    address,
    prefix,
    worker(queue, processor, wopts = {}) {
      const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
      const w = new Worker(queue, processor, { connection, prefix, concurrency: wopts.concurrency ?? 1 });
      w.on('error', () => undefined); // a worker reconnects by itself; tests assert on outcomes
      workers.push(w);
      return w;
    },
    redisClient() {
      const c = new Redis(redis.url, { maxRetriesPerRequest: null });
      c.on('error', () => undefined); // reconnects by itself; tests that stop Redis assert on outcomes
      clients.push(c);
      return c;
    },
    // Idempotent, so a test may stop the harness itself and afterAll still call it.
    stop: () =>
      (stopping ??= (async () => {
        await Promise.all(workers.map((w) => w.close()));
        await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
        client.close();
        await scheduler.stop();
        if (!opts.redis) await redis.stop();
      })()),
  };
}

/** A fresh queue name for one test. */
export const uniqueQueue = (label = 'q'): string => `${label}-${randomUUID().slice(0, 8)}`;

export { waitFor } from '@jobmesh/testing';

/** A promise with its resolve function, for "wait until the processor has started" hand-offs. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * A fingerprint of every key under `prefix`: its type, size and, for hashes, each field's length,
 * for streams, the last entry id. Two equal fingerprints mean nothing was written in between (for
 * the checks tests need). Values are not read, so big job payloads do not travel.
 */
export async function keyspace(redis: Redis, prefix: string): Promise<Record<string, string>> {
  const keys = (await redis.keys(`${prefix}:*`)).sort();
  const out: Record<string, string> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    let size: string | number = '';
    if (type === 'string') size = await redis.strlen(key);
    else if (type === 'hash') {
      const fields = (await redis.hkeys(key)).sort();
      size = (await Promise.all(fields.map(async (f) => `${f}=${await redis.hstrlen(key, f)}`))).join(',');
    }
    else if (type === 'list') size = await redis.llen(key);
    else if (type === 'set') size = await redis.scard(key);
    else if (type === 'zset') size = await redis.zcard(key);
    else if (type === 'stream') size = `${await redis.xlen(key)}@${(await redis.xrevrange(key, '+', '-', 'COUNT', 1))[0]?.[0] ?? ''}`;
    out[key] = `${type}:${size}`;
  }
  return out;
}

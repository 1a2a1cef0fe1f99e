// Plain BullMQ and ioredis for tests: what another process on the same Redis (a BullMQ worker,
// an operator with redis-cli) would use. Services reach Redis through libs/queue only; tests may
// look underneath, to act as a worker or to check what was stored.
import { type Processor, Queue, QueueKeys, Worker, type WorkerOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

/** An ioredis connection, as RawRedis.client() opens it. */
export type RedisClient = Redis;

/** A plain ioredis connection to `url` (retrying forever unless `opts` say otherwise), for a test to close. */
export function connectRedis(url: string, opts: RedisOptions = {}): RedisClient {
  return new Redis(url, { maxRetriesPerRequest: null, ...opts });
}

/** The keys BullMQ keeps for each queue (as its QueueKeys names them), for a test to look at. */
export type BullKeyType =
  | 'wait'
  | 'active'
  | 'paused'
  | 'delayed'
  | 'prioritized'
  | 'waiting-children'
  | 'completed'
  | 'failed'
  | 'stalled'
  | 'events'
  | 'meta'
  | 'id'
  | 'limiter'
  | 'marker'
  | 'repeat';

/**
 * The name of one of `queue`'s BullMQ keys under `prefix` (`bullKey(prefix, q, 'failed')`, the
 * sorted set of failed job ids), built by BullMQ's own QueueKeys, so a test need not know its
 * layout. Jobmesh's own keys (dead letters, steps, parked jobs, …) are @jobmesh/queue's `Keys`.
 */
export function bullKey(prefix: string, queue: string, type: BullKeyType): string {
  return new QueueKeys(prefix).toKey(queue, type);
}

/** Where RawRedis connects: BullMQ to `port` on 127.0.0.1 (never through a test's proxy), clients to `url`. */
export interface RawRedisTarget {
  url: string;
  port: number;
}

/** BullMQ workers, BullMQ queues and ioredis clients on a test's Redis, all closed by close(). */
export class RawRedis {
  private readonly workers: Worker[] = [];
  private readonly clients: Redis[] = [];

  constructor(
    private readonly target: RawRedisTarget,
    /** The key prefix of the Jobmesh under test. */
    readonly prefix: string,
  ) {}

  private get connection(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.target.port };
  }

  /**
   * A plain BullMQ Worker on `queue` that runs `processor`, as a worker process of the queue would;
   * `opts` are BullMQ's (lockDuration, stalledInterval, …), concurrency 1 unless given.
   */
  worker(queue: string, processor: Processor, opts: Omit<Partial<WorkerOptions>, 'connection' | 'prefix'> = {}): Worker {
    const w = new Worker(queue, processor, { concurrency: 1, ...opts, connection: { ...this.connection, maxRetriesPerRequest: null }, prefix: this.prefix });
    w.on('error', () => undefined); // a worker reconnects by itself; tests assert on outcomes
    this.workers.push(w);
    return w;
  }

  /** A new ioredis connection to `url` (the target's by default). */
  client(url = this.target.url): RedisClient {
    const c = new Redis(url, { maxRetriesPerRequest: null });
    c.on('error', () => undefined); // reconnects by itself; tests that stop Redis assert on outcomes
    this.clients.push(c);
    return c;
  }

  /** Runs `fn` with a BullMQ Queue on `name`, as a worker process would see the queue; closes it after. */
  async withQueue<T>(name: string, fn: (q: Queue) => Promise<T>): Promise<T> {
    const q = new Queue(name, { connection: this.connection, prefix: this.prefix });
    try {
      return await fn(q);
    } finally {
      await q.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await Promise.all(this.clients.map((c) => c.quit().catch(() => c.disconnect())));
  }
}

/**
 * A fingerprint of every key under `prefix`: its type, size and, for hashes, each field's length,
 * for streams, the last entry id. Two equal fingerprints mean nothing was written in between (for
 * the checks tests need). Values are not read, so big job payloads do not travel.
 */
export async function keyspace(redis: RedisClient, prefix: string): Promise<Record<string, string>> {
  const keys = (await redis.keys(`${prefix}:*`)).sort();
  const out: Record<string, string> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    let size: string | number = '';
    if (type === 'string') size = await redis.strlen(key);
    else if (type === 'hash') {
      const fields = (await redis.hkeys(key)).sort();
      size = (await Promise.all(fields.map(async (f) => `${f}=${await redis.hstrlen(key, f)}`))).join(',');
    } else if (type === 'list') size = await redis.llen(key);
    else if (type === 'set') size = await redis.scard(key);
    else if (type === 'zset') size = await redis.zcard(key);
    else if (type === 'stream') size = `${await redis.xlen(key)}@${(await redis.xrevrange(key, '+', '-', 'COUNT', 1))[0]?.[0] ?? ''}`;
    out[key] = `${type}:${size}`;
  }
  return out;
}

/** The number of jobs in BullMQ's failed set of `queue`, as a BullMQ worker process sees it. */
export function failedCount(redis: RedisClient, prefix: string, queue: string): Promise<number> {
  return redis.zcard(bullKey(prefix, queue, 'failed'));
}

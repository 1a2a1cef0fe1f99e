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
  // Pipelined, a few round trips in all rather than one or two a key: the fuzz test takes a
  // fingerprint around every rejected call.
  const types = await run<string>(redis, keys.map((k) => ['type', k]));
  const hashFields = await run<string[]>(redis, keys.filter((_, i) => types[i] === 'hash').map((k) => ['hkeys', k]));
  const sizeOf: Record<string, (k: string) => string[][]> = {
    string: (k) => [['strlen', k]],
    list: (k) => [['llen', k]],
    set: (k) => [['scard', k]],
    zset: (k) => [['zcard', k]],
    stream: (k) => [['xlen', k], ['xrevrange', k, '+', '-', 'COUNT', '1']],
  };
  let h = 0;
  const plan = keys.map((k, i) => {
    const type = types[i]!;
    if (type === 'hash') {
      const fields = hashFields[h++]!.sort();
      return { type, fields, commands: fields.map((f) => ['hstrlen', k, f]) };
    }
    return { type, fields: [] as string[], commands: sizeOf[type]?.(k) ?? [] };
  });
  const replies = await run<unknown>(redis, plan.flatMap((p) => p.commands));
  const out: Record<string, string> = {};
  let r = 0;
  plan.forEach((p, i) => {
    const got = replies.slice(r, (r += p.commands.length));
    let size: string | number = '';
    if (p.type === 'hash') size = p.fields.map((f, j) => `${f}=${String(got[j])}`).join(',');
    else if (p.type === 'stream') size = `${String(got[0])}@${(got[1] as [string, unknown][])[0]?.[0] ?? ''}`;
    else if (got.length) size = Number(got[0]);
    out[keys[i]!] = `${p.type}:${size}`;
  });
  return out;
}

/** Runs `commands` in one pipeline; throws the first command error. */
async function run<T>(redis: RedisClient, commands: string[][]): Promise<T[]> {
  if (!commands.length) return [];
  const results = (await redis.pipeline(commands).exec()) ?? [];
  return results.map(([err, value]) => {
    if (err) throw err;
    return value as T;
  });
}

/** The number of jobs in BullMQ's failed set of `queue`, as a BullMQ worker process sees it. */
export function failedCount(redis: RedisClient, prefix: string, queue: string): Promise<number> {
  return redis.zcard(bullKey(prefix, queue, 'failed'));
}

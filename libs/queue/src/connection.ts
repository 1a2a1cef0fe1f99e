import { UnavailableError } from '@jobmesh/core';
import type { Logger } from '@jobmesh/telemetry';
import { Redis, type RedisOptions } from 'ioredis';

export interface RedisSettings {
  /** redis:// or rediss:// URL; user and password may be in it. @default redis://127.0.0.1:6379 */
  url?: string;
  /** Sentinel endpoints "host:port,host:port"; with `masterName`, used instead of `url`. */
  sentinels?: string;
  masterName?: string;
  /** Prefix of every key. @default jobmesh */
  prefix: string;
  /** A command slower than this fails. @default 5000 */
  commandTimeoutMs?: number;
}

/**
 * `producer`: fails fast when Redis is down (no offline queue, one retry, a command timeout), so
 * an RPC answers UNAVAILABLE within its deadline instead of hanging. A command whose answer the
 * lost connection took with it is not sent again after the reconnect: Redis may have run it, and
 * an unkeyed enqueue run twice is two jobs. The caller hears UNAVAILABLE and decides (a keyed
 * enqueue is safe to repeat).
 * `worker`: blocking commands and long-lived subscribers; retries forever and recovers by itself.
 */
export type ConnectionRole = 'producer' | 'worker';

/**
 * After QUIT or disconnect(), ioredis waits `disconnectTimeout` for the socket's 'close' before
 * destroying it. When Redis is already gone that event never comes, and the 2 s default holds
 * the process open after shutdown (ioredis#1247). The option exists but is missing from the types.
 */
const DISCONNECT_TIMEOUT = { disconnectTimeout: 200 } as RedisOptions;

export function redisOptions(settings: RedisSettings, role: ConnectionRole, name?: string): RedisOptions {
  const common: RedisOptions = {
    ...DISCONNECT_TIMEOUT,
    connectionName: name,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    ...(role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, autoResendUnfulfilledCommands: false, commandTimeout: settings.commandTimeoutMs ?? 5000 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true }),
  };
  if (settings.sentinels || settings.masterName) {
    if (!settings.sentinels || !settings.masterName) {
      throw new Error(
        settings.sentinels
          ? 'REDIS_SENTINELS is set but REDIS_MASTER_NAME is not: name the master the sentinels watch (their "sentinel monitor <name> ..." line)'
          : 'REDIS_MASTER_NAME is set but REDIS_SENTINELS is not: list the sentinels as "host:port,host:port"',
      );
    }
    const auth = settings.url ? new URL(settings.url) : undefined;
    return {
      ...common,
      ...followTheMaster(role),
      sentinels: parseSentinels(settings.sentinels),
      name: settings.masterName,
      username: auth?.username ? decodeURIComponent(auth.username) : undefined,
      password: auth?.password ? decodeURIComponent(auth.password) : undefined,
    };
  }
  const url = new URL(settings.url ?? 'redis://127.0.0.1:6379');
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must start with redis:// or rediss://, got ${url.protocol}//`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : undefined;
  if (db !== undefined && !(Number.isInteger(db) && db >= 0)) {
    throw new Error(`REDIS_URL's path must be a database number, e.g. redis://host:6379/0, got "${url.pathname}"`);
  }
  return {
    ...common,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 6379),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db,
    ...(url.protocol === 'rediss:' && { tls: { servername: url.hostname } }),
  };
}

/**
 * "host:port,host:port" (port 26379 when left out, IPv6 in brackets) as ioredis wants it; a clear
 * error naming the entry that is not an address.
 */
export function parseSentinels(spec: string): Array<{ host: string; port: number }> {
  return spec.split(',').map((entry) => {
    const hp = entry.trim();
    const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/.exec(hp);
    const port = Number(m?.[2] ?? 26379);
    if (!m || port < 1 || port > 65535) {
      throw new Error(`REDIS_SENTINELS must be "host:port,host:port" (e.g. 10.0.0.1:26379,10.0.0.2:26379), but "${hp}" is not a host:port`);
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
}

/** An old master demoted to replica answers every write with this; nothing was applied. */
const READONLY = /^READONLY /;

/**
 * What a Sentinel connection needs to follow a failover by itself. It asks the sentinels for the
 * master on every (re)connect, and its ready check refuses a node that is not the master. The
 * sentinels cut the clients of a master they demote (CLIENT KILL), and a killed master's
 * connections close by themselves; a connection still open to a demoted master meets READONLY
 * and then reconnects, through the sentinels. A READONLY command was not applied, so a worker
 * connection sends it again on the new master; a producer's caller hears UNAVAILABLE and decides,
 * as after any lost connection.
 *
 * Not ioredis's `failoverDetector` (which would also drop a connection to an old master that a
 * partition keeps alive): its sentinel subscriptions outlive a connection closed with QUIT
 * (ioredis 5.11 cleans them up only on disconnect()), reconnecting every minute for ever.
 */
function followTheMaster(role: ConnectionRole): RedisOptions {
  return {
    reconnectOnError: (err) => (READONLY.test(err.message) ? (role === 'producer' ? 1 : 2) : false),
    // A sentinel that accepts the connection but does not answer must not stall a reconnect.
    sentinelCommandTimeout: 2000,
    // Asking every sentinel again after all failed: quickly at first, then every 2 s.
    sentinelRetryStrategy: (times) => Math.min(times * 100, 2000),
  };
}

/** A new ioredis connection for `role`. The caller closes it. */
export function createRedis(settings: RedisSettings, role: ConnectionRole, name?: string): Redis {
  const redis = new Redis(redisOptions(settings, role, name));
  if (role === 'producer') failUnansweredOnClose(redis);
  return redis;
}

/**
 * With autoResendUnfulfilledCommands off, ioredis keeps the commands a lost connection left
 * unanswered (in `prevCommandQueue`) and, once reconnected, drops them without settling them:
 * their callers would wait for the command timeout. Fail them as soon as the connection closes.
 * The test of an unkeyed enqueue whose answer is lost (services/scheduler/test/idempotency)
 * catches a change of this ioredis internal.
 */
function failUnansweredOnClose(redis: Redis): void {
  type Unanswered = { length: number; shift(): { command: { reject(err: Error): void } } | undefined };
  redis.on('close', () => {
    const unanswered = (redis as unknown as { prevCommandQueue?: Unanswered | null }).prevCommandQueue;
    const err = new UnavailableError('the connection to Redis was lost before it answered; the command may or may not have been applied');
    while (unanswered?.length) unanswered.shift()!.command.reject(err);
  });
}

/** Waits until the connection is ready, or throws UnavailableError after `timeoutMs`. */
/**
 * Closes a connection: QUIT when it is connected, so what it sent is answered first; otherwise
 * drops it at once. A QUIT on a connection that is reconnecting waits behind whatever is in its
 * offline queue (a SUBSCRIBE, say) until Redis is back, which with Redis gone is never.
 */
export async function closeConnection(c: Redis): Promise<void> {
  if (c.status !== 'ready') {
    c.disconnect();
    return;
  }
  await c.quit().catch(() => c.disconnect());
}

export async function waitUntilReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new UnavailableError(`Redis did not answer within ${timeoutMs} ms (${describe(redis)}); is it running?`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

function describe(redis: Redis): string {
  const o = redis.options;
  return o.sentinels ? `sentinel master ${o.name}` : `${o.host}:${o.port}`;
}

/**
 * BullMQ loses jobs if Redis evicts keys. In production a policy other than `noeviction` is a
 * start-up error; in development it is a warning.
 */
export async function checkMaxmemoryPolicy(redis: Redis, mode: 'development' | 'production', logger: Logger): Promise<void> {
  let policy: string | undefined;
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    policy = reply[1];
  } catch (err) {
    // Managed Redis often disables CONFIG; say so rather than guess.
    logger.warn({ err: (err as Error).message }, 'cannot read maxmemory-policy (CONFIG GET refused); make sure it is noeviction');
    return;
  }
  if (policy === undefined || policy === 'noeviction') return;
  const message = `Redis maxmemory-policy is "${policy}": Redis may evict job keys and lose jobs. Set it to noeviction (CONFIG SET maxmemory-policy noeviction).`;
  if (mode === 'production') throw new Error(message);
  logger.warn(message);
}

/** Redis's memory figures, from INFO memory (which managed Redis allows where CONFIG is refused). */
export interface RedisMemory {
  usedBytes: number;
  /** 0: no limit. */
  maxBytes: number;
  policy: string;
}

export async function redisMemory(redis: Redis): Promise<RedisMemory> {
  const info = await redis.info('memory');
  const field = (name: string): string => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
  return { usedBytes: Number(field('used_memory')) || 0, maxBytes: Number(field('maxmemory')) || 0, policy: field('maxmemory_policy') };
}

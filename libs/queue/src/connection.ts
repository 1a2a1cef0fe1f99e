import { UnavailableError } from '@jobmesh/core';
import type { Logger } from '@jobmesh/telemetry';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/**
 * A connection to Redis: one server (standalone, or the master Sentinel names) or a Redis Cluster.
 * Both speak the same commands; a Cluster routes each by its key's hash slot, and needs every
 * key of one script, transaction or pipeline in one slot (see Keys).
 */
export type RedisClient = Redis | Cluster;

export interface RedisSettings {
  /** redis:// or rediss:// URL; user and password may be in it. @default redis://127.0.0.1:6379 */
  url?: string;
  /** Sentinel endpoints "host:port,host:port"; with `masterName`, used instead of `url`. */
  sentinels?: string;
  masterName?: string;
  /**
   * Redis Cluster seed nodes "host:port,host:port"; used instead of `url` (whose user, password
   * and rediss:// still apply to every node).
   */
  clusterNodes?: string;
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

/** The Redis Cluster seed nodes of `settings`, or undefined when it names no cluster. */
export function clusterNodes(settings: RedisSettings): Array<{ host: string; port: number }> | undefined {
  if (!settings.clusterNodes) return undefined;
  if (settings.sentinels) throw new Error('REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other: a Redis Cluster has no Sentinel');
  return settings.clusterNodes.split(',').map((hp) => {
    const cut = hp.trim().lastIndexOf(':');
    return { host: hp.trim().slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(hp.trim().slice(cut + 1)) };
  });
}

/**
 * ioredis Cluster options for `role`: each node connection gets the role's options (and the
 * URL's credentials and TLS); the offline queue and retries are the Cluster's own.
 */
export function clusterOptions(settings: RedisSettings, role: ConnectionRole, name?: string): ClusterOptions {
  const node = redisOptions({ ...settings, clusterNodes: undefined, sentinels: undefined, masterName: undefined }, role, name);
  // The seed nodes replace host, port and db (a Cluster has only db 0).
  const { host: _host, port: _port, db: _db, retryStrategy: _retry, tls, ...redisOpts } = node;
  return {
    // TLS with each node's own name (Node's default), not REDIS_URL's host.
    redisOptions: { ...redisOpts, ...(tls && { tls: {} }) },
    // Every read goes to the master: a replica may lag, and BullMQ reads what it just wrote.
    scaleReads: 'master',
    clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
    enableOfflineQueue: role !== 'producer',
    enableReadyCheck: true,
    ...(role === 'producer' ? { maxRedirections: 16, retryDelayOnFailover: 100 } : {}),
  };
}

/** A new ioredis connection (or Cluster) for `role`. The caller closes it. */
export function createRedis(settings: RedisSettings, role: ConnectionRole, name?: string): RedisClient {
  const nodes = clusterNodes(settings);
  if (nodes) return new Cluster(nodes, clusterOptions(settings, role, name));
  const redis = new Redis(redisOptions(settings, role, name));
  if (role === 'producer') failUnansweredOnClose(redis);
  return redis;
}

/** True when `redis` is a Redis Cluster connection. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as Cluster).isCluster === true;
}

/** The masters of `redis`: every master of a cluster, else the one server. */
export function masters(redis: RedisClient): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}

/**
 * Subscribes `sub` to `channel`, and again each time it is ready after a reconnect. ioredis
 * resubscribes by itself, but not always: after a Sentinel failover this test suite has seen a
 * subscriber connected to the new master, ready, and subscribed to nothing
 * (libs/queue/test/sentinel.int.test.ts). SUBSCRIBE to a channel already subscribed changes
 * nothing, so asking again is safe; one that fails is asked again on the next 'ready'.
 */
export async function keepSubscribed(sub: RedisClient, channel: string): Promise<void> {
  sub.on('ready', () => {
    sub.subscribe(channel).catch(() => undefined);
  });
  await sub.subscribe(channel);
}

/** A new connection like `like` (same server or cluster, same options), named `name`; the caller closes it. */
export function duplicateConnection(like: RedisOptions | Cluster, name: string): RedisClient {
  if (like instanceof Cluster) return like.duplicate(undefined, { redisOptions: { ...like.options.redisOptions, connectionName: name } });
  return new Redis({ ...like, connectionName: name });
}

/**
 * Runs `commands` ([name, ...args], each with its key first) in one round trip where Redis
 * allows it: as a pipeline on one server; on a cluster, where a pipeline must stay in one hash
 * slot and these keys may not, as separate commands sent together. Answers as a pipeline does.
 */
export async function runEach(redis: RedisClient, commands: Array<[string, ...(string | number)[]]>): Promise<Array<[Error | null, unknown]>> {
  if (!isCluster(redis)) return ((await redis.pipeline(commands).exec()) ?? []) as Array<[Error | null, unknown]>;
  return Promise.all(
    commands.map(([name, ...args]) =>
      redis.call(name, ...args).then(
        (v): [Error | null, unknown] => [null, v],
        (err: Error): [Error | null, unknown] => [err, null],
      ),
    ),
  );
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
export async function closeConnection(c: RedisClient): Promise<void> {
  if (c.status !== 'ready') {
    c.disconnect();
    return;
  }
  await c.quit().catch(() => c.disconnect());
}

export async function waitUntilReady(redis: RedisClient, timeoutMs = 10_000): Promise<void> {
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

function describe(redis: RedisClient): string {
  if (isCluster(redis)) return 'the Redis Cluster of REDIS_CLUSTER_NODES';
  const o = redis.options;
  return o.sentinels ? `sentinel master ${o.name}` : `${o.host}:${o.port}`;
}

/**
 * BullMQ loses jobs if Redis evicts keys. In production a policy other than `noeviction` is a
 * start-up error; in development it is a warning. On a cluster, every master is asked.
 */
export async function checkMaxmemoryPolicy(redis: RedisClient, mode: 'development' | 'production', logger: Logger): Promise<void> {
  for (const node of masters(redis)) await checkNodeMaxmemoryPolicy(node, mode, logger, isCluster(redis) ? ` on cluster master ${node.options.host}:${node.options.port}` : '');
}

async function checkNodeMaxmemoryPolicy(redis: Redis, mode: 'development' | 'production', logger: Logger, where: string): Promise<void> {
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
  const message = `Redis maxmemory-policy is "${policy}"${where}: Redis may evict job keys and lose jobs. Set it to noeviction (CONFIG SET maxmemory-policy noeviction).`;
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

/**
 * Redis's memory figures. On a cluster, those of the fullest master (the highest share of its
 * maxmemory, else the most used): the one that refuses writes first.
 */
export async function redisMemory(redis: RedisClient): Promise<RedisMemory> {
  const all = await Promise.all(masters(redis).map(nodeMemory));
  const share = (m: RedisMemory): number => (m.maxBytes ? m.usedBytes / m.maxBytes : 0);
  return all.reduce((a, b) => (share(b) > share(a) || (share(b) === share(a) && b.usedBytes > a.usedBytes) ? b : a));
}

async function nodeMemory(redis: Redis): Promise<RedisMemory> {
  const info = await redis.info('memory');
  const field = (name: string): string => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
  return { usedBytes: Number(field('used_memory')) || 0, maxBytes: Number(field('maxmemory')) || 0, policy: field('maxmemory_policy') };
}

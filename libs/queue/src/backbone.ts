import type { Logger } from '@jobmesh/telemetry';
import type { Cluster, RedisOptions } from 'ioredis';
import { checkMaxmemoryPolicy, closeConnection, createRedis, isCluster, masters, type RedisClient, redisOptions, type RedisSettings, waitUntilReady } from './connection';
import { QueueRegistry } from './registry';
import type { CommonEnv, DeclaredQueue } from '@jobmesh/config';

/** The Redis side of a Jobmesh process: connections, the queue registry, and their shutdown. */
export interface Backbone {
  settings: RedisSettings;
  /** Fail-fast connection for request paths (a Cluster with REDIS_CLUSTER_NODES). */
  redis: RedisClient;
  registry: QueueRegistry;
  /**
   * What BullMQ's Workers and QueueEvents connect with: retry forever. On one server, options
   * (BullMQ opens and closes its connections); on a cluster, where BullMQ needs a Cluster
   * instance, one shared Cluster that BullMQ duplicates for its blocking reads and that the
   * backbone closes. Make other connections from it with duplicateConnection.
   */
  workerConnection: RedisOptions | Cluster;
  /** True when Redis answers PING. */
  ping(): Promise<boolean>;
  /** Readiness: Redis answers and the queue registry is up to date; else why not. */
  ready(): Promise<{ ok: boolean; reason?: string }>;
  close(): Promise<void>;
}

export interface BackboneOptions {
  settings: RedisSettings;
  mode: 'development' | 'production';
  logger: Logger;
  /** Queues from the config file, upserted at start. */
  declared?: DeclaredQueue[];
  /** How long to wait for Redis at start. @default 10000 */
  connectTimeoutMs?: number;
}

export async function openBackbone(opts: BackboneOptions): Promise<Backbone> {
  const { settings, logger } = opts;
  const redis = createRedis(settings, 'producer', 'jobmesh:producer');
  const subscriber = createRedis(settings, 'worker', 'jobmesh:registry-sub');
  // ioredis reports every failed reconnect; one line per state change is enough.
  let down = false;
  redis.on('error', (err: Error) => {
    if (!down) logger.warn({ err: err.message }, 'Redis connection lost; calls fail with UNAVAILABLE until it is back');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.info('Redis connection restored');
    down = false;
  });
  // The subscriber reconnects by itself, and the producer connection above reports the outage;
  // a listener is needed so that ioredis does not print every failed reconnect.
  subscriber.on('error', () => undefined);
  const workers = isCluster(redis) ? (createRedis(settings, 'worker', 'jobmesh:worker') as Cluster) : undefined;
  workers?.on('error', () => undefined); // reconnects by itself; the producer connection reports outages
  try {
    // The subscriber too: were it still connecting (through the sentinels, say), its first
    // 'ready' would come after the registry's start and read as a reconnect, and readiness would
    // say the registry is being reloaded.
    await Promise.all([waitUntilReady(redis, opts.connectTimeoutMs), waitUntilReady(subscriber, opts.connectTimeoutMs)]);
    await checkMaxmemoryPolicy(redis, opts.mode, logger);
  } catch (err) {
    redis.disconnect();
    subscriber.disconnect();
    workers?.disconnect();
    throw err;
  }
  const registry = new QueueRegistry({ redis, subscriber, prefix: settings.prefix, logger });
  await registry.start();
  for (const { spec, setsPaused } of opts.declared ?? []) {
    const existing = registry.cached().find((q) => q.name === spec.name);
    await registry.upsert({ ...spec, paused: setsPaused ? spec.paused : (existing?.paused ?? false) });
  }
  return {
    settings,
    redis,
    registry,
    workerConnection: workers ?? redisOptions(settings, 'worker', 'jobmesh:worker'),
    // A failed PING is the answer (false), not an error to report. On a cluster every master
    // must answer: each holds the queues of its slots.
    ping: async () => (await pingAll(redis)) === undefined,
    ready: async () => {
      const down = await pingAll(redis);
      if (down !== undefined) return { ok: false, reason: down };
      if (!registry.upToDate) return { ok: false, reason: 'the queue registry is being reloaded after a Redis reconnect' };
      return { ok: true };
    },
    close: async () => {
      await registry.close();
      await Promise.all([closeConnection(redis), closeConnection(subscriber), ...(workers ? [closeConnection(workers)] : [])]);
    },
  };
}

/** Undefined when Redis (every master of a cluster) answers PING; else what does not. */
async function pingAll(redis: RedisClient): Promise<string | undefined> {
  if (!isCluster(redis)) return (await redis.ping().catch(() => '')) === 'PONG' ? undefined : 'Redis is not reachable';
  if (redis.status !== 'ready') return `the Redis Cluster connection is ${redis.status}`;
  const nodes = masters(redis);
  if (!nodes.length) return 'the Redis Cluster has no reachable master';
  const replies = await Promise.all(nodes.map((n) => n.ping().catch(() => '')));
  const down = nodes.filter((_, i) => replies[i] !== 'PONG').map((n) => `${n.options.host}:${n.options.port}`);
  return down.length ? `Redis Cluster master(s) ${down.join(', ')} not reachable` : undefined;
}

/**
 * Opens the backbone from the common environment (libs/config), as every service does. `url`
 * overrides REDIS_URL, for `jobmesh up`'s own redis-server.
 */
export function openBackboneFromEnv(env: CommonEnv, logger: Logger, declared: DeclaredQueue[], url = env.REDIS_URL): Promise<Backbone> {
  return openBackbone({
    settings: {
      url,
      sentinels: env.REDIS_SENTINELS,
      masterName: env.REDIS_MASTER_NAME,
      clusterNodes: env.REDIS_CLUSTER_NODES,
      prefix: env.JOBMESH_REDIS_PREFIX,
      commandTimeoutMs: env.JOBMESH_REDIS_COMMAND_TIMEOUT,
    },
    mode: env.JOBMESH_MODE,
    logger,
    declared,
  });
}

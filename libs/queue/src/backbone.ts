import type { Logger } from '@jobmesh/telemetry';
import type { Redis, RedisOptions } from 'ioredis';
import { checkMaxmemoryPolicy, closeConnection, createRedis, redisOptions, type RedisSettings, waitUntilReady } from './connection';
import { QueueRegistry } from './registry';
import type { CommonEnv, DeclaredQueue } from '@jobmesh/config';

/** The Redis side of a Jobmesh process: connections, the queue registry, and their shutdown. */
export interface Backbone {
  settings: RedisSettings;
  /** Fail-fast connection for request paths. */
  redis: Redis;
  registry: QueueRegistry;
  /** Options for connections BullMQ opens itself (QueueEvents, Workers): retry forever. */
  workerConnection: RedisOptions;
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
  try {
    await waitUntilReady(redis, opts.connectTimeoutMs);
    await checkMaxmemoryPolicy(redis, opts.mode, logger);
  } catch (err) {
    redis.disconnect();
    subscriber.disconnect();
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
    workerConnection: redisOptions(settings, 'worker', 'jobmesh:worker'),
    // A failed PING is the answer (false), not an error to report.
    ping: async () => (await redis.ping().catch(() => '')) === 'PONG',
    ready: async () => {
      if ((await redis.ping().catch(() => '')) !== 'PONG') return { ok: false, reason: 'Redis is not reachable' };
      if (!registry.upToDate) return { ok: false, reason: 'the queue registry is being reloaded after a Redis reconnect' };
      return { ok: true };
    },
    close: async () => {
      await registry.close();
      await Promise.all([closeConnection(redis), closeConnection(subscriber)]);
    },
  };
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
      prefix: env.JOBMESH_REDIS_PREFIX,
      commandTimeoutMs: env.JOBMESH_REDIS_COMMAND_TIMEOUT,
    },
    mode: env.JOBMESH_MODE,
    logger,
    declared,
  });
}

import { AlreadyExistsError, QueueNotFoundError, type QueueSpec } from '@jobmesh/core';
import type { Logger } from '@jobmesh/telemetry';
import { Queue } from 'bullmq';
import { isCluster, masters, type RedisClient } from './connection';
import { Keys } from './keys';

export interface QueueRegistryOptions {
  /** Fail-fast connection for reads and writes. */
  redis: RedisClient;
  /** A connection this registry may put into subscriber mode (it is not used for anything else). */
  subscriber: RedisClient;
  prefix: string;
  logger: Logger;
}

export type RegistryListener = (name: string, spec: QueueSpec | undefined) => void;

/** The first retry of a failed reload after a reconnect, doubling up to the ceiling. */
const RELOAD_RETRY_MS = 200;
const RELOAD_RETRY_MAX_MS = 10_000;

/**
 * The queue registry: QueueSpecs stored in one Redis hash, cached in memory and kept fresh by
 * pub/sub, so the enqueue path costs no extra round trip. Also owns one BullMQ `Queue` per name,
 * sharing the producer connection.
 */
export class QueueRegistry {
  readonly keys: Keys;
  private readonly cache = new Map<string, QueueSpec>();
  private readonly queues = new Map<string, Queue>();
  private readonly listeners = new Set<RegistryListener>();
  /** False from a subscriber reconnect until the reload after it succeeded: the cache may be stale. */
  private current = true;
  private reloadTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: QueueRegistryOptions) {
    this.keys = new Keys(opts.prefix, isCluster(opts.redis));
  }

  /** Loads every queue and subscribes to changes made by other processes. */
  async start(): Promise<void> {
    this.opts.subscriber.on('message', (channel: string, name: string) => {
      if (channel === this.keys.registryChanged) void this.refresh(name);
    });
    // Changes announced while the subscriber was away were missed: on every reconnect, subscribe
    // again and reload everything, retrying until it works (see resync).
    this.opts.subscriber.on('ready', () => {
      this.current = false;
      this.resync(RELOAD_RETRY_MS);
    });
    if (this.opts.subscriber.status === 'ready') await this.opts.subscriber.subscribe(this.keys.registryChanged);
    await this.reload();
  }

  /**
   * Whether the cache is known to be up to date: false after a Redis reconnect until the reload
   * that follows it succeeded. Readiness (/readyz) reports it.
   */
  get upToDate(): boolean {
    return this.current;
  }

  private resync(delayMs: number): void {
    clearTimeout(this.reloadTimer);
    void this.opts.subscriber
      .subscribe(this.keys.registryChanged)
      .then(() => this.reload())
      .then(() => {
        if (!this.current) this.opts.logger.info('queue registry reloaded after a Redis reconnect');
        this.current = true;
      })
      .catch((err: Error) => {
        if (this.closed) return;
        this.opts.logger.warn({ err: err.message, retryInMs: delayMs }, 'could not reload the queue registry after a Redis reconnect; retrying');
        this.reloadTimer = setTimeout(() => this.resync(Math.min(delayMs * 2, RELOAD_RETRY_MAX_MS)), delayMs);
        this.reloadTimer.unref();
      });
  }

  private async reload(): Promise<void> {
    const all = await this.opts.redis.hgetall(this.keys.registry);
    const names = new Set(Object.keys(all));
    for (const [name, json] of Object.entries(all)) this.store(name, JSON.parse(json) as QueueSpec);
    for (const name of [...this.cache.keys()]) if (!names.has(name)) this.store(name, undefined);
  }

  private async refresh(name: string): Promise<void> {
    try {
      const json = await this.opts.redis.hget(this.keys.registry, name);
      this.store(name, json ? (JSON.parse(json) as QueueSpec) : undefined);
    } catch (err) {
      this.opts.logger.warn({ err, queue: name }, 'could not refresh queue registry entry');
    }
  }

  private store(name: string, spec: QueueSpec | undefined): void {
    const before = this.cache.get(name);
    if (spec) this.cache.set(name, spec);
    else this.cache.delete(name);
    if (JSON.stringify(before) !== JSON.stringify(spec)) for (const l of this.listeners) l(name, spec);
  }

  /** Called with (name, spec) whenever a queue is created, changed or (spec undefined) deleted. */
  onChange(listener: RegistryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The queue's spec; reads Redis on a cache miss. Throws QueueNotFoundError. */
  async get(name: string): Promise<QueueSpec> {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const json = await this.opts.redis.hget(this.keys.registry, name);
    if (!json) throw new QueueNotFoundError(name);
    const spec = JSON.parse(json) as QueueSpec;
    this.store(name, spec);
    return spec;
  }

  /**
   * Every queue, read from Redis, ordered by name in code-point order (the order of `<`), so a
   * page token "after this name" means the same thing as the sort.
   */
  async list(): Promise<QueueSpec[]> {
    await this.reload();
    return [...this.cache.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every cached queue, without a round trip. */
  cached(): QueueSpec[] {
    return [...this.cache.values()];
  }

  async create(spec: QueueSpec): Promise<QueueSpec> {
    const created = await this.opts.redis.hsetnx(this.keys.registry, spec.name, JSON.stringify(spec));
    if (!created) throw new AlreadyExistsError(`queue "${spec.name}" already exists`);
    await this.applyToBullmq(spec, undefined);
    await this.announce(spec);
    return spec;
  }

  /** Replaces an existing queue's spec. Throws QueueNotFoundError. */
  async update(spec: QueueSpec): Promise<QueueSpec> {
    const before = await this.get(spec.name);
    await this.opts.redis.hset(this.keys.registry, spec.name, JSON.stringify(spec));
    await this.applyToBullmq(spec, before);
    await this.announce(spec);
    return spec;
  }

  /** Creates or replaces, for seeding from the config file. */
  async upsert(spec: QueueSpec): Promise<QueueSpec> {
    const json = await this.opts.redis.hget(this.keys.registry, spec.name);
    const before = json ? (JSON.parse(json) as QueueSpec) : undefined;
    await this.opts.redis.hset(this.keys.registry, spec.name, JSON.stringify(spec));
    await this.applyToBullmq(spec, before);
    await this.announce(spec);
    return spec;
  }

  /**
   * Removes the queue from the registry and deletes all its data: BullMQ's, and Jobmesh's own
   * idempotency keys, cancelled-job records and cancel requests, so a queue created later under
   * the same name starts clean.
   */
  async delete(name: string): Promise<void> {
    await this.get(name);
    await this.bullQueue(name).obliterate({ force: true });
    await this.deleteOwnKeys(name);
    await this.opts.redis.hdel(this.keys.registry, name);
    this.store(name, undefined);
    await this.opts.redis.publish(this.keys.registryChanged, name);
    const q = this.queues.get(name);
    this.queues.delete(name);
    await q?.close();
  }

  private async deleteOwnKeys(name: string): Promise<void> {
    const { patterns, keys } = this.keys.ofQueue(name);
    await this.opts.redis.del(...keys);
    // SCAN reads one server; on a cluster the queue's keys are on the master of its slot, so
    // each master is scanned (the others find nothing). The keys found share the queue's slot.
    for (const node of masters(this.opts.redis)) {
      for (const match of patterns) {
        let cursor = '0';
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
          if (found.length) await node.unlink(...found);
          cursor = next;
        } while (cursor !== '0');
      }
    }
  }

  /** Pause and the global rate limit live in BullMQ's queue meta, where every worker sees them. */
  private async applyToBullmq(spec: QueueSpec, before: QueueSpec | undefined): Promise<void> {
    const q = this.bullQueue(spec.name);
    if (spec.paused !== (before?.paused ?? false)) await (spec.paused ? q.pause() : q.resume());
    const rl = spec.rateLimit;
    if (rl && rl.max > 0) await q.setGlobalRateLimit(rl.max, rl.durationMs);
    else if (before?.rateLimit) await q.removeGlobalRateLimit();
  }

  private async announce(spec: QueueSpec): Promise<void> {
    this.store(spec.name, spec);
    await this.opts.redis.publish(this.keys.registryChanged, spec.name);
  }

  /** The BullMQ Queue for `name` (no registry check), sharing the producer connection. */
  bullQueue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.opts.redis, prefix: this.keys.queuePrefix(name), skipWaitingForReady: true });
      q.on('error', (err) => this.opts.logger.warn({ err: err.message, queue: name }, 'queue error'));
      this.queues.set(name, q);
    }
    return q;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reloadTimer);
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    this.listeners.clear();
  }
}

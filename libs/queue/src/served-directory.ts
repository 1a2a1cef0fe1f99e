import { isCluster, type RedisClient } from './connection';
import type { Keys } from './keys';

/** How long a cached answer about other replicas is used. */
const CACHE_MS = 1000;

/** A (queue, job name) pair; name '*' stands for every name on the queue. */
export interface ServedPair {
  queue: string;
  name: string;
}

const pairKey = (p: ServedPair): string => `${p.queue}\n${p.name}`;

/**
 * Which (queue, job name) pairs each worker-pool replica serves, with an in-process processor or
 * a remote worker connected to it: one Redis hash per queue, "<replica>|<name>" → until when (ms).
 * A replica that fetched a job only another replica can run hands it back instead of letting it
 * wait; a job waits for a processor only while no replica serves its name (see ProcessorWait).
 */
export class ServedDirectory {
  private readonly cache = new Map<string, { at: number; fields: Record<string, string> }>();
  private published = new Map<string, ServedPair>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    readonly replica: string,
    private readonly ttlMs: number,
  ) {}

  /**
   * Writes this replica's pairs (valid for the TTL, so a replica that dies drops out) and removes
   * those it no longer serves, in one transaction (on a Redis Cluster, one per queue: each
   * queue's hash is in its own slot). Returns the pairs it did not publish before.
   */
  async publish(served: ServedPair[]): Promise<ServedPair[]> {
    const until = String(Date.now() + this.ttlMs);
    const now = new Map(served.map((p) => [pairKey(p), p]));
    const perQueue = isCluster(this.redis);
    const multis = new Map<string, ReturnType<RedisClient['multi']>>();
    const multi = (queue: string): ReturnType<RedisClient['multi']> => {
      const at = perQueue ? queue : '';
      let m = multis.get(at);
      if (!m) multis.set(at, (m = this.redis.multi()));
      return m;
    };
    for (const p of now.values()) multi(p.queue).hset(this.keys.served(p.queue), `${this.replica}|${p.name}`, until);
    for (const [key, p] of this.published) if (!now.has(key)) multi(p.queue).hdel(this.keys.served(p.queue), `${this.replica}|${p.name}`);
    await Promise.all([...multis.values()].map((m) => m.exec()));
    const added = [...now].filter(([key]) => !this.published.has(key)).map(([, p]) => p);
    this.published = now;
    return added;
  }

  /** Whether a replica other than this one serves `name` on `queue` now (cached for a second). */
  async servedElsewhere(queue: string, name: string): Promise<boolean> {
    let entry = this.cache.get(queue);
    if (!entry || Date.now() - entry.at > CACHE_MS) {
      entry = { at: Date.now(), fields: await this.redis.hgetall(this.keys.served(queue)) };
      this.cache.set(queue, entry);
    }
    const now = Date.now();
    return Object.entries(entry.fields).some(([field, until]) => {
      const bar = field.lastIndexOf('|');
      const served = field.slice(bar + 1);
      return field.slice(0, bar) !== this.replica && (served === name || served === '*') && Number(until) > now;
    });
  }

  /** Drops the cached view of `queue`: Redis just said it changed. */
  forget(queue: string): void {
    this.cache.delete(queue);
  }

  /** Removes every pair this replica published. */
  async clear(): Promise<void> {
    await this.publish([]);
  }
}

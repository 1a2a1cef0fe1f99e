import type { Keys } from '@jobmesh/queue';
import type { Redis } from 'ioredis';

/** How long a cached answer about other replicas' workers is used. */
const CACHE_MS = 1000;

/**
 * Which (queue, job name) pairs remote workers serve on any replica, in Redis, so a replica that
 * fetched a job only another replica's workers can run hands it back instead of failing it.
 */
export class RemoteDirectory {
  private readonly cache = new Map<string, { at: number; fields: Record<string, string> }>();
  private published = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly replica: string,
    private readonly ttlMs: number,
  ) {}

  /** Writes this replica's served pairs (expiring after the TTL) and removes pairs it no longer serves. */
  async publish(served: { queue: string; name: string }[]): Promise<void> {
    const until = String(Date.now() + this.ttlMs);
    const now = new Set(served.map((s) => `${s.queue}\n${s.name}`));
    const multi = this.redis.multi();
    for (const key of now) {
      const [queue, name] = key.split('\n') as [string, string];
      multi.hset(this.keys.remoteWorkers(queue), `${this.replica}|${name}`, until);
    }
    for (const key of this.published) {
      if (now.has(key)) continue;
      const [queue, name] = key.split('\n') as [string, string];
      multi.hdel(this.keys.remoteWorkers(queue), `${this.replica}|${name}`);
    }
    this.published = now;
    await multi.exec();
  }

  /** Whether a worker on another replica serves this job name on this queue now. */
  async servedElsewhere(queue: string, name: string): Promise<boolean> {
    let entry = this.cache.get(queue);
    if (!entry || Date.now() - entry.at > CACHE_MS) {
      entry = { at: Date.now(), fields: await this.redis.hgetall(this.keys.remoteWorkers(queue)) };
      this.cache.set(queue, entry);
    }
    const now = Date.now();
    return Object.entries(entry.fields).some(([field, until]) => {
      const [replica, served] = field.split('|');
      return replica !== this.replica && (served === name || served === '*') && Number(until) > now;
    });
  }

  async clear(): Promise<void> {
    await this.publish([]);
  }
}

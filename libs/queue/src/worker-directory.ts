import * as pb from '@jobmesh/contracts';
import type { RedisClient } from './connection';
import type { Keys } from './keys';

/**
 * Every worker of every worker-pool replica, in one Redis hash: each replica publishes its own
 * (remote workers connected to it and its in-process pools) every heartbeat, valid for a TTL, so
 * that a replica that dies drops out by itself. ListWorkers and the monitor read it, so any
 * replica answers for all of them.
 */
export class WorkerDirectory {
  private published = new Set<string>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    readonly replica: string,
    private readonly ttlMs: number,
  ) {}

  /** Writes this replica's workers and removes those it no longer has, in one transaction. */
  async publish(workers: pb.WorkerInfo[], now = Date.now()): Promise<void> {
    const until = now + this.ttlMs;
    const fields = new Map(workers.map((w) => [`${this.replica}|${w.workerId}`, JSON.stringify({ until, worker: pb.WorkerInfo.toJSON(w) })]));
    const multi = this.redis.multi();
    if (fields.size) multi.hset(this.keys.workers, Object.fromEntries(fields));
    const gone = [...this.published].filter((f) => !fields.has(f));
    if (gone.length) multi.hdel(this.keys.workers, ...gone);
    await multi.exec();
    this.published = new Set(fields.keys());
  }

  /** Every live worker of every replica (those of `queue` only, when given), by replica then id. */
  async list(queue?: string, now = Date.now()): Promise<pb.WorkerInfo[]> {
    const all = await this.redis.hgetall(this.keys.workers);
    const live: pb.WorkerInfo[] = [];
    const expired: string[] = [];
    for (const [field, json] of Object.entries(all)) {
      const entry = JSON.parse(json) as { until: number; worker: unknown };
      if (entry.until <= now) expired.push(field);
      else {
        const w = pb.WorkerInfo.fromJSON(entry.worker);
        if (!queue || w.queues.includes(queue)) live.push(w);
      }
    }
    // Left by a replica that died; whoever reads first tidies up.
    if (expired.length) await this.redis.hdel(this.keys.workers, ...expired).catch(() => 0);
    return live.sort((a, b) => (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : a.workerId < b.workerId ? -1 : a.workerId > b.workerId ? 1 : 0));
  }

  /** Removes this replica's workers (at shutdown). */
  async clear(): Promise<void> {
    await this.publish([]);
  }
}

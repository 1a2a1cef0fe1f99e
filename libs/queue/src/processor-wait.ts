import type { Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from './keys';
import type { QueueRegistry } from './registry';
import { LuaScript } from './scripts';

const DEADLINE = new LuaScript<[job: string, parked: string], [id: string, attemptsMade: number, waitMs: number, now: number]>('processor-wait-deadline-2');
const PARK = new LuaScript<[served: string, names: string, parked: string], [replica: string, name: string, id: string, deadline: number, now: number]>('park-job-3');
const UNPARK = new LuaScript<[parked: string, names: string], [name: string, ...ids: string[]]>('unpark-jobs-2');

/** Jobs promoted per round trip when a processor appears. */
const PROMOTE_BATCH = 500;

/** Why BullMQ refuses to promote a job that is not (or no longer) delayed: it ran, or is gone. */
const NOT_DELAYED = /not in the delayed state|Missing key for job/;

/**
 * Jobs waiting for a processor. A job whose name nothing serves is moved to BullMQ's delayed set
 * until its deadline and filed in a sorted set per (queue, name), so waiting costs nothing per job:
 * no polling, no round trip while it waits. A replica that starts serving a name promotes the
 * name's jobs (after publishing that it serves it, see ServedDirectory and park-job-3.lua); a job
 * still unserved at its deadline comes back from the delayed set by itself and fails.
 */
export class ProcessorWait {
  /** `replica` names the worker-pool replica that parks jobs; readers (the scheduler) leave it out. */
  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
    private readonly replica = '',
  ) {}

  private get keys(): Keys {
    return this.registry.keys;
  }

  /**
   * Until when `job` (active, fetched by this replica) may wait for a processor in this attempt:
   * `waitMs` (the queue's processor_wait) from the first time it came up with nothing to serve
   * it, which the first look records. A passed deadline also unfiles the job.
   */
  async deadline(queue: string, job: BullJob, waitMs: number, now = Date.now()): Promise<number> {
    const reply = await DEADLINE.run(this.redis, [this.registry.bullQueue(queue).toKey(job.id!), this.keys.parked(queue, job.name)], [job.id!, job.attemptsMade, waitMs, now]);
    return Number(reply);
  }

  /**
   * Lets the active job wait for a processor until `deadline`, without using an attempt. Returns
   * false when another replica serves its name after all: the job is then back in the queue at
   * once for it. Either way the caller must let BullMQ leave the job alone (DelayedError).
   */
  async park(queue: string, job: BullJob, token: string, deadline: number): Promise<boolean> {
    await job.moveToDelayed(deadline, token);
    const parked = await PARK.run(
      this.redis,
      [this.keys.served(queue), this.keys.parkedNames(queue), this.keys.parked(queue, job.name)],
      [this.replica, job.name, job.id!, deadline, Date.now()],
    );
    if (Number(parked) === 1) return true;
    await this.promoteIds(queue, job.name, [job.id!]);
    return false;
  }

  /**
   * Sends the jobs waiting for `name` on `queue` ('*': every name) back to the queue to run now.
   * Call it only after the replica's ServedDirectory published that it serves them. Returns how
   * many were promoted.
   */
  async promote(queue: string, name: string): Promise<number> {
    const names = name === '*' ? await this.redis.smembers(this.keys.parkedNames(queue)) : [name];
    let promoted = 0;
    for (const n of names) {
      for (;;) {
        const ids = await this.redis.zrange(this.keys.parked(queue, n), 0, PROMOTE_BATCH - 1);
        if (!ids.length) break;
        promoted += await this.promoteIds(queue, n, ids);
        if (ids.length < PROMOTE_BATCH) break;
      }
    }
    return promoted;
  }

  private async promoteIds(queue: string, name: string, ids: string[]): Promise<number> {
    const backend = this.registry.bullQueue(queue).backend;
    const results = await Promise.allSettled(ids.map((id) => backend.promote(id)));
    // A job that is no longer delayed ran or went away: it does not wait any more either way.
    const settled = ids.filter((_, i) => {
      const r = results[i]!;
      return r.status === 'fulfilled' || NOT_DELAYED.test((r.reason as Error)?.message ?? '');
    });
    if (settled.length) await this.forget(queue, name, settled);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !NOT_DELAYED.test((r.reason as Error)?.message ?? ''));
    if (failed) throw failed.reason;
    return results.filter((r) => r.status === 'fulfilled').length;
  }

  /** Takes jobs that are gone (cancelled, removed) out of the waiting set of their name. */
  async forget(queue: string, name: string, ids: string[]): Promise<void> {
    await UNPARK.run(this.redis, [this.keys.parked(queue, name), this.keys.parkedNames(queue)], [name, ...ids]);
  }

  /** When the job would fail for want of a processor, if it waits for one now. */
  async until(queue: string, name: string, id: string): Promise<Date | undefined> {
    const score = await this.redis.zscore(this.keys.parked(queue, name), id);
    return score === null ? undefined : new Date(Number(score));
  }

  /** Of these (name, id) jobs, which wait for a processor: id → deadline. One round trip. */
  async untilOf(queue: string, jobs: { name: string; id: string }[]): Promise<Map<string, Date>> {
    const out = new Map<string, Date>();
    if (!jobs.length) return out;
    const replies = (await this.redis.pipeline(jobs.map((j) => ['zscore', this.keys.parked(queue, j.name), j.id])).exec()) ?? [];
    jobs.forEach((j, i) => {
      const [err, score] = replies[i] ?? [];
      if (!err && score !== null && score !== undefined) out.set(j.id, new Date(Number(score)));
    });
    return out;
  }

  /** How many jobs wait for a processor, per job name. */
  async counts(queue: string): Promise<Map<string, number>> {
    const names = (await this.redis.smembers(this.keys.parkedNames(queue))).sort();
    const out = new Map<string, number>();
    if (!names.length) return out;
    const replies = (await this.redis.pipeline(names.map((n) => ['zcard', this.keys.parked(queue, n)])).exec()) ?? [];
    names.forEach((n, i) => out.set(n, Number(replies[i]?.[1] ?? 0) || 0));
    return out;
  }

  /**
   * Jobs waiting for a processor, `count` from `offset`, ordered by name then deadline: the ids
   * and names, for ListJobs to read.
   */
  async list(queue: string, offset: number, count: number): Promise<{ id: string; name: string; until: Date }[]> {
    const counts = await this.counts(queue);
    const out: { id: string; name: string; until: Date }[] = [];
    let skip = offset;
    for (const [name, n] of counts) {
      if (out.length >= count) break;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      const page = await this.redis.zrange(this.keys.parked(queue, name), skip, skip + (count - out.length) - 1, 'WITHSCORES');
      for (let i = 0; i < page.length; i += 2) out.push({ id: page[i]!, name, until: new Date(Number(page[i + 1])) });
      skip = 0;
    }
    return out;
  }
}

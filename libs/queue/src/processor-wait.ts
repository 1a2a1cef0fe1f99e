import { type RedisClient, runEach } from './connection';
import { queueJobEvent } from './events';
import { type JobRunner, type RateLimit, rateLimitPollMs } from './job-runner';
import type { Keys } from './keys';
import type { QueueRegistry } from './registry';
import type { RunningJob } from './running-job';
import { LuaScript } from './scripts';

const DEADLINE = new LuaScript<[job: string, parked: string], [id: string, attemptsMade: number, waitMs: number, now: number]>('processor-wait-deadline-2');
const PARK = new LuaScript<
  [served: string, names: string, parked: string, events: string, job: string, limiter: string],
  [name: string, id: string, deadline: number, now: number, limitMax: number, limitMs: number]
>('park-job-6');
const REFUND = new LuaScript<[limiter: string, job: string], [limitMax: number, limitMs: number, now: number]>('refund-rate-limit-2');
const RECHECK = new LuaScript<[served: string, names: string, parked: string], [name: string, id: string, now: number]>('recheck-parked-3');
const UNPARK = new LuaScript<[parked: string, names: string], [name: string, keepLockedUnder: string, ...ids: string[]]>('unpark-jobs-2');
const HAND_OFF = new LuaScript<[served: string, handoff: string], [name: string, id: string, until: number, now: number, channelPrefix: string, message: string]>('hand-off-2');
const UNFILE_HANDOFFS = new LuaScript<[handoff: string], string[]>('unfile-handoffs-1');

/**
 * How long a job handed to the replicas that serve its name stays delayed if none of them takes
 * it: the wake-up was lost (a subscriber reconnecting) or they stopped. Then it comes back to the
 * queue by itself and is looked at again. Those replicas take handed-off jobs as they have free
 * slots, so a job may also wait this long behind a busy one before it is offered around again.
 */
export const HANDOFF_FALLBACK_MS = 5000;

/** Jobs promoted per round trip when a processor appears. */
const PROMOTE_BATCH = 500;

/** Why BullMQ refuses to promote a job that is not (or no longer) delayed: it ran, or is gone. */
const NOT_DELAYED = /not in the delayed state|Missing key for job/;

/** A rate limit as the refund scripts take it: jobs per window and the window (0, 0: none). */
function limitArgs(limit: RateLimit | undefined): [number, number] {
  return limit && limit.max > 0 && limit.durationMs > 0 ? [limit.max, limit.durationMs] : [0, 0];
}

/**
 * Jobs waiting for a processor. A job whose name nothing serves is filed in a sorted set per
 * (queue, name) and moved to BullMQ's delayed set until its deadline, so waiting costs nothing per
 * job: no polling, no round trip while it waits. A replica that starts serving a name promotes the
 * name's jobs after publishing that it serves it (ServedDirectory); filing, moving and asking again
 * in that order (park-job-6.lua) means no job is left waiting beside a replica that serves it. A
 * job still unserved at its deadline comes back from the delayed set by itself and fails.
 *
 * BullMQ counts a job against the queue's rate limit when it fetches it (moves it to active),
 * before anyone can tell whether it will run. A job set aside here (parked or handed off) gives
 * that count back in the same step (lua/includes/refund-rate-limit.lua), so jobs that wait for a
 * processor do not use up the limit of those that have one. The alternative, keeping unserved
 * names from being fetched at all, would need a wait list per name, which BullMQ does not have.
 */
export class ProcessorWait {
  constructor(
    private readonly redis: RedisClient,
    private readonly registry: QueueRegistry,
  ) {}

  private get keys(): Keys {
    return this.registry.keys;
  }

  /**
   * Until when `job` (active, fetched by this replica) may wait for a processor in this attempt:
   * `waitMs` (the queue's processor_wait) from the first time it came up with nothing to serve
   * it, which the first look records. A passed deadline also unfiles the job.
   */
  async deadline(job: RunningJob, waitMs: number, now = Date.now()): Promise<number> {
    const { queue } = job;
    const reply = await DEADLINE.run(this.redis, [this.registry.bullQueue(queue).toKey(job.id), this.keys.parked(queue, job.name)], [job.id, job.attempt - 1, waitMs, now]);
    return Number(reply);
  }

  /**
   * Lets the active job wait for a processor until `deadline`, without using an attempt:
   * 'parked'. 'served': a replica (this one too: a worker may just have connected) serves its
   * name, and the job is still active here (the caller hands it off). 'promoted': a replica
   * started serving it meanwhile, and the job is back in the queue for it. After 'parked' and 'promoted' BullMQ must leave the job alone
   * (JobSetAside 'delayed'). A filed job gives back its count in the queue's rate `limit`.
   */
  async park(job: RunningJob, deadline: number, limit?: RateLimit): Promise<'parked' | 'served' | 'promoted'> {
    const { queue } = job;
    const bull = this.registry.bullQueue(queue);
    const keys: [string, string, string] = [this.keys.served(queue), this.keys.parkedNames(queue), this.keys.parked(queue, job.name)];
    const filed = await PARK.run(this.redis, [...keys, this.keys.events(queue), bull.toKey(job.id), bull.toKey('limiter')], [job.name, job.id, deadline, Date.now(), ...limitArgs(limit)]);
    if (Number(filed) === 0) return 'served';
    await job.delayUntil(deadline);
    if (Number(await RECHECK.run(this.redis, keys, [job.name, job.id, Date.now()])) === 1) return 'parked';
    await bull.backend.promote(job.id);
    return 'promoted';
  }

  /** The job names with jobs waiting for a processor, per queue: one round trip for all queues. */
  async waitingNames(queues: string[]): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    if (!queues.length) return out;
    const replies = await runEach(this.redis, queues.map((q) => ['smembers', this.keys.parkedNames(q)]));
    queues.forEach((q, i) => {
      const [err, names] = replies[i] ?? [];
      if (err) throw err;
      out.set(q, new Set(names as string[]));
    });
    return out;
  }

  /**
   * Hands an active job that this replica cannot run to the replicas that serve its name, without
   * using an attempt: it is moved to the delayed set (for {@link HANDOFF_FALLBACK_MS} at most),
   * filed in the name's hand-off set, and only those replicas are woken (their wake channel), to
   * take it as they have room ({@link takeHandoffs}). A job no longer goes round the replicas at
   * random until one that serves it happens to fetch it. A 'requeued' event first tells WatchJob
   * that the 'delayed' one that follows is no retry. The job gives back its count in the queue's
   * rate `limit`. False when no replica serves the name any more: the job is then back in the
   * queue at once, to be looked at again. Either way the attempt ends with JobSetAside('delayed').
   */
  async handOff(job: RunningJob, limit?: RateLimit): Promise<boolean> {
    const { queue } = job;
    const bull = this.registry.bullQueue(queue);
    const multi = this.redis.multi();
    queueJobEvent(multi, this.keys, queue, job.id, 'requeued', { reason: 'a replica serves its name' });
    REFUND.queue(this.redis, multi, [bull.toKey('limiter'), bull.toKey(job.id)], [...limitArgs(limit), Date.now()]);
    for (const [err] of (await multi.exec()) ?? []) if (err) throw err;
    const until = Date.now() + HANDOFF_FALLBACK_MS;
    await job.delayUntil(until);
    const woken = await HAND_OFF.run(this.redis, [this.keys.served(queue), this.keys.handoff(queue, job.name)], [job.name, job.id, until, Date.now(), this.keys.wakeChannel(''), `${queue}\n${job.name}`]);
    if (Number(woken) > 0) return true;
    await bull.backend.promote(job.id).catch((err: Error) => {
      // Not delayed any more: it is gone (cancelled, removed) meanwhile; nothing to bring back.
      if (!NOT_DELAYED.test(err.message)) throw err;
    });
    return false;
  }

  /**
   * Sends up to `max` of the jobs handed off for `name` on `queue` back to the queue to run now,
   * oldest first, and has `runner` (the queue's, on this replica) fetch them at once: called by a
   * replica that serves the name, with `max` its free slots. Within the
   * queue's rate `limit`, only as many as the limit has room for now: more would only go round
   * the replicas that cannot run them while it is used up. Another replica may still fetch some
   * first; it hands them off again. Returns how many were sent, whether more may be left, and,
   * when the limit held some back, when to look again (ms).
   */
  async takeHandoffs(runner: Pick<JobRunner, 'promoteAndRun'>, queue: string, name: string, max: number, limit?: RateLimit): Promise<{ taken: number; more: boolean; retryInMs?: number }> {
    if (max <= 0) return { taken: 0, more: true };
    const key = this.keys.handoff(queue, name);
    const bull = this.registry.bullQueue(queue);
    const limiter = bull.toKey('limiter');
    // Jobs past their time came back to the queue by themselves (or will at BullMQ's next look):
    // they are no longer anyone's to take. A job handed off again since is filed with a later time.
    const replies = (await this.redis.multi().zremrangebyscore(key, '-inf', Date.now()).get(limiter).pttl(limiter).zrange(key, 0, max - 1, 'WITHSCORES').exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    const page = (replies[3]?.[1] ?? []) as string[];
    if (!page.length) return { taken: 0, more: false };
    const [limitMax] = limitArgs(limit);
    // Above the limit's max: a back-off holds the key (JobRunner.backOff).
    const room = limitMax > 0 ? Math.max(0, limitMax - Number(replies[1]?.[1] ?? 0)) : Infinity;
    const entries: [string, string][] = [];
    for (let i = 0; i < page.length && entries.length < room; i += 2) entries.push([page[i]!, page[i + 1]!]);
    const heldBack = entries.length < page.length / 2;
    const pttl = Number(replies[2]?.[1] ?? -2);
    const retryInMs = heldBack && limitMax > 0 ? (pttl > 0 ? Math.min(pttl, rateLimitPollMs(limit)) : rateLimitPollMs(limit)) : undefined;
    if (!entries.length) return { taken: 0, more: true, retryInMs };
    // Under a rate limit the fetches are left to BullMQ's loop, which waits out the limit
    // itself: a fetch of ours that found it reached would leave the job to the loop's next look,
    // up to its block timeout (5 s) later.
    const results = await runner.promoteAndRun(entries.map(([id]) => id), limitMax === 0);
    const settled = entries.filter((_, i) => {
      const r = results[i]!;
      return r.status === 'fulfilled' || NOT_DELAYED.test((r.reason as Error)?.message ?? '');
    });
    if (settled.length) await UNFILE_HANDOFFS.run(this.redis, [key], settled.flat());
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !NOT_DELAYED.test((r.reason as Error)?.message ?? ''));
    if (failed) throw failed.reason;
    return { taken: results.filter((r) => r.status === 'fulfilled').length, more: heldBack || page.length / 2 === max, retryInMs };
  }

  /** Of these (queue, name) pairs, those with jobs handed off: one round trip. */
  async handedOff(pairs: { queue: string; name: string }[]): Promise<{ queue: string; name: string }[]> {
    if (!pairs.length) return [];
    const replies = await runEach(this.redis, pairs.map((p) => ['zcard', this.keys.handoff(p.queue, p.name)]));
    return pairs.filter((_, i) => {
      const [err, n] = replies[i] ?? [];
      if (err) throw err;
      return Number(n) > 0;
    });
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
      // Jobs left filed (being filed right now) stay at the front; read on past them.
      for (let skip = 0; ; ) {
        const ids = await this.redis.zrange(this.keys.parked(queue, n), skip, skip + PROMOTE_BATCH - 1);
        if (!ids.length) break;
        const done = await this.promoteIds(queue, n, ids);
        promoted += done.promoted;
        skip += done.kept;
        if (ids.length < PROMOTE_BATCH) break;
      }
    }
    return promoted;
  }

  private async promoteIds(queue: string, name: string, ids: string[]): Promise<{ promoted: number; kept: number }> {
    const bull = this.registry.bullQueue(queue);
    const results = await Promise.allSettled(ids.map((id) => bull.backend.promote(id)));
    const promoted = ids.filter((_, i) => results[i]!.status === 'fulfilled');
    // Not delayed: it ran or went away, or (still locked) is being filed right now and its parker
    // settles it; the unpark script leaves locked jobs filed.
    const notDelayed = ids.filter((_, i) => {
      const r = results[i]!;
      return r.status === 'rejected' && NOT_DELAYED.test((r.reason as Error)?.message ?? '');
    });
    if (promoted.length) await this.forget(queue, name, promoted);
    const kept = notDelayed.length ? Number(await UNPARK.run(this.redis, [this.keys.parked(queue, name), this.keys.parkedNames(queue)], [name, bull.toKey(''), ...notDelayed])) : 0;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !NOT_DELAYED.test((r.reason as Error)?.message ?? ''));
    if (failed) throw failed.reason;
    return { promoted: promoted.length, kept };
  }

  /** Takes jobs that are gone (cancelled, removed) out of the waiting set of their name. */
  async forget(queue: string, name: string, ids: string[]): Promise<void> {
    await UNPARK.run(this.redis, [this.keys.parked(queue, name), this.keys.parkedNames(queue)], [name, '', ...ids]);
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

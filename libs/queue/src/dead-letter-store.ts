import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, NotFoundError, type RetentionSpec, type SeverityName } from '@jobmesh/core';
import type { Cluster, RedisOptions } from 'ioredis';
import type { Backbone } from './backbone';
import { closeConnection, duplicateConnection, isCluster, keepSubscribed, type RedisClient } from './connection';
import { appendJobEvent } from './events';
import { deadLetterId } from './dead-letters';
import type { Keys } from './keys';
import { severityToProto } from './proto-mapping';
import type { QueueRegistry } from './registry';
import { LuaScript } from './scripts';

export class DeadLetterNotFoundError extends NotFoundError {
  constructor(readonly id: string) {
    super(`dead letter "${id}" not found`);
  }
}

/**
 * A dead letter's id: "<queue>:<job id>:<attempt>". Capture is idempotent on it. A job id used
 * again, by a later job that fails at the same attempt, gets "~<failure time>" added, so that it
 * is a dead letter of its own rather than taken for the first.
 */

/** The job id and attempt of a dead letter id of `queue`. */
export function parseDeadLetterId(queue: string, id: string): { jobId: string; attempt: number } {
  const cut = id.lastIndexOf(':');
  return { jobId: id.slice(queue.length + 1, cut), attempt: Number(id.slice(cut + 1).split('~')[0]) };
}

/** A dead letter about to be stored. */
export interface NewDeadLetter {
  queue: string;
  job: pb.Job;
  errors: pb.AttemptError[];
  category: string;
  severity: SeverityName;
  /** When the job failed for good. */
  at: Date;
  traceId: string;
  /** The W3C traceparent a replay links to (its capture span's), if known. */
  traceparent?: string;
  /** Quarantined from the start, for this reason. */
  quarantine?: string;
}

export interface DeadLetterFilter {
  queue?: string;
  jobName?: string;
  category?: string;
  /** ms, inclusive. */
  since?: number;
  /** ms, exclusive. */
  until?: number;
}

// The store's scripts (libs/queue/lua/dlq-*.lua). Batch operations cost one call of each script
// they use whatever the batch size, and their keys are built in the script from the prefixes of
// Keys (on a Redis Cluster, all in the dead letters' slot, which the index's key names).
const CAPTURE = new LuaScript<string[], string[]>('dlq-capture-9');
const STORE = new LuaScript<string[], string[]>('dlq-store-7');
const INSPECT = new LuaScript<[index: string], string[]>('dlq-inspect-1');
const PURGE = new LuaScript<[index: string, counts: string, jobs: string], string[]>('dlq-purge-3');
const QUARANTINE = new LuaScript<[index: string], string[]>('dlq-quarantine-1');
const ADD_REPLAY = new LuaScript<[record: string], [replay: string, queue: string, jobId: string]>('dlq-add-replay-1');
const PAGE = new LuaScript<[index: string], [min: string, max: string, limit: number, score: string, id: string]>('dlq-page-1');

/** What a batch operation needs to know of one stored dead letter (see dlq-inspect-0.lua). */
export interface DeadLetterFacts {
  queue: string;
  category: string;
  /** The failure time, ms. */
  at: number;
  quarantined: boolean;
  /** BullMQ's failed set still holds the job as this very failure (asked for with `copies`). */
  held: boolean;
}

/** The part of an index a filter reads, fixed when a bulk operation starts (see span()). */
export interface DeadLetterSpan {
  index: string;
  /** Inclusive bounds of the score (failure time, ms). */
  min: string;
  max: string;
  /** The index entries between the bounds when the span was taken. */
  total: number;
}

/** A position in an index: after the entry (score, id). */
export interface DeadLetterCursor {
  score: string;
  id: string;
}

/** One page of a span: the index entries read, and the records among them that match the filter. */
export interface DeadLetterPage {
  /** Index entries read, in order (a record may have been purged since). */
  entries: DeadLetterCursor[];
  /** The stored records of `entries` that match the filter, by id. */
  matches: Map<string, pb.DeadLetter>;
  /** Where the next page starts; undefined after the last page. */
  next?: DeadLetterCursor;
}

/** Entries one retention pass removes at most, per queue and kind (the next pass goes on). */
const RETENTION_BATCH = 1000;

/**
 * Dead letters in Redis: a hash per dead letter, sorted-set indexes by dead-lettered time (all,
 * per queue, per category) and a counter per (queue, category), all under `<prefix>:_dlq…`.
 * Capture also links the job to its dead letter, takes it out of BullMQ's failed set when that is
 * due, and announces the new id on a pub/sub channel (see onNew).
 */
export class DeadLetterStore {
  private readonly keys: Keys;
  private readonly redis: RedisClient;
  private readonly registry: QueueRegistry;
  private readonly subscriberConnection: RedisOptions | Cluster;
  private readonly listeners = new Set<(d: pb.DeadLetter) => void>();
  private subscriber: Promise<RedisClient> | undefined;

  /** On the backbone's fail-fast connection; new dead letters are heard on a connection of its own. */
  constructor(backbone: Pick<Backbone, 'redis' | 'registry' | 'workerConnection'>) {
    this.redis = backbone.redis;
    this.registry = backbone.registry;
    this.subscriberConnection = backbone.workerConnection;
    this.keys = backbone.registry.keys;
  }

  /**
   * Calls `listener` with each dead letter captured from now on, by whichever replica (each new
   * id is announced once, by the replica that stored it). Resolves once subscribed; call the
   * result to stop listening.
   */
  async onNew(listener: (d: pb.DeadLetter) => void): Promise<() => void> {
    this.listeners.add(listener);
    if (!this.subscriber) {
      // Its own connection: a subscribed connection runs no other command.
      const sub = duplicateConnection(this.subscriberConnection, 'jobmesh:dlq-sub');
      // It reconnects by itself; its outages are reported by the service's main connection.
      sub.on('error', () => undefined);
      sub.on('message', (_channel: string, id: string) => {
        void this.get(id).then(
          (d) => {
            for (const l of this.listeners) l(d);
          },
          () => undefined, // purged already
        );
      });
      this.subscriber = keepSubscribed(sub, this.keys.deadLetterChannel).then(() => sub);
    }
    await this.subscriber;
    return () => this.listeners.delete(listener);
  }

  /** Closes the connection onNew opened, if any (the backbone's is closed by its owner). */
  async close(): Promise<void> {
    // A subscriber that never connected has nothing to close.
    const sub = await this.subscriber?.catch(() => undefined);
    this.subscriber = undefined;
    this.listeners.clear();
    if (sub) await closeConnection(sub);
  }

  /**
   * Stores a dead letter unless this failure is stored already. `created` when this call stored
   * it, with `deadLetter` as stored (so the caller need not read it back).
   */
  async capture(d: NewDeadLetter): Promise<{ id: string; created: boolean; deadLetter: pb.DeadLetter }> {
    let res = await this.captureAs(deadLetterId(d.queue, d.job.id, d.job.attemptsMade), d);
    if (res.outcome === 'taken') res = await this.captureAs(deadLetterId(d.queue, d.job.id, d.job.attemptsMade, d.at.getTime()), d);
    const deadLetter = pb.DeadLetter.fromPartial({
      id: res.id,
      job: d.job,
      errors: d.errors,
      category: d.category,
      severity: severityToProto(d.severity),
      deadLetteredAt: d.at,
      traceId: d.traceId,
      traceparent: d.traceparent ?? '',
      quarantined: !!d.quarantine,
      quarantineReason: d.quarantine ?? '',
    });
    return { id: res.id, created: res.outcome === 'created', deadLetter };
  }

  /** `taken`: `id` belongs to another failure; `gone`: the job is not this failure in the failed set any more. */
  private async captureAs(id: string, d: NewDeadLetter): Promise<{ id: string; outcome: 'created' | 'exists' | 'taken' | 'gone' }> {
    const fields: Record<string, string> = {
      id,
      queue: d.queue,
      name: d.job.name,
      category: d.category,
      severity: d.severity,
      counter: `${d.queue}|${d.category}`,
      at: String(d.at.getTime()),
      trace_id: d.traceId,
      traceparent: d.traceparent ?? '',
      job: JSON.stringify(pb.Job.toJSON(d.job)),
      errors: JSON.stringify(d.errors.map((e) => pb.AttemptError.toJSON(e))),
      quarantined: d.quarantine ? '1' : '0',
      quarantine_reason: d.quarantine ?? '',
      replays: '[]',
    };
    const keys = [
      this.keys.deadLetter(id),
      this.keys.deadLetterIndex,
      this.keys.deadLetterQueueIndex(d.queue),
      this.keys.deadLetterCategoryIndex(d.category),
      this.keys.deadLetterCounts,
      this.keys.deadLetterJobs,
      this.keys.deadLetterOutbox,
    ];
    const args = [
      String(d.at.getTime()),
      id,
      fields.counter!,
      `${d.queue}:${d.job.id}`,
      String(Date.now()),
      this.keys.deadLetterChannel,
      d.job.id,
      d.job.failureReason,
      ...Object.entries(fields).flat(),
    ];
    const failed = this.registry.bullQueue(d.queue).keys.failed!;
    let created: unknown;
    if (!isCluster(this.redis)) {
      created = await CAPTURE.run(this.redis, [...keys, this.keys.events(d.queue), failed], args);
    } else {
      // The failed set and the event stream are in the queue's slot, the dead letter in the dead
      // letters': check, store, announce in three steps. A retry or removal between the check
      // and the store leaves a dead letter of a failure BullMQ no longer holds (as if it had been
      // retried after capture); a crash between the store and the event leaves WatchJob without
      // its 'dead-lettered' event (GetJob still answers DEAD_LETTERED from the link).
      if ((await this.redis.zscore(failed, d.job.id)) !== args[0]) return { id, outcome: 'gone' };
      created = await STORE.run(this.redis, keys, args);
      if (created === 1) await appendJobEvent(this.redis, this.keys, d.queue, d.job.id, 'dead-lettered', { reason: d.job.failureReason });
    }
    const outcome = ({ 1: 'created', 0: 'exists', [-1]: 'taken', [-2]: 'gone' } as const)[created as 1 | 0 | -1 | -2];
    return { id, outcome };
  }

  async get(id: string): Promise<pb.DeadLetter> {
    const h = await this.redis.hgetall(this.keys.deadLetter(id));
    if (!h.id) throw new DeadLetterNotFoundError(id);
    return decode(h);
  }

  /** The stored dead letters among `ids`, in order; missing ones are left out. One round trip. */
  async getMany(ids: string[]): Promise<pb.DeadLetter[]> {
    if (!ids.length) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.deadLetter(id));
    const res = (await pipe.exec()) ?? [];
    const out: pb.DeadLetter[] = [];
    for (const [err, h] of res) {
      if (err) throw err;
      const rec = h as Record<string, string>;
      if (rec.id) out.push(decode(rec));
    }
    return out;
  }

  /**
   * What a batch operation needs to know of each of `ids` (undefined: not stored), in one call.
   * With `copies`, also whether BullMQ still holds each job as the failure its dead letter holds.
   */
  async inspect(ids: string[], { copies = false } = {}): Promise<Array<DeadLetterFacts | undefined>> {
    if (!ids.length) return [];
    // On a cluster each failed set is in its queue's slot, out of the script's reach: asked after.
    const cluster = isCluster(this.redis);
    const args = [this.keys.deadLetter('')];
    for (const id of ids) args.push(id, copies && !cluster ? this.failedKeyOf(id) : '');
    const res = (await INSPECT.run(this.redis, [this.keys.deadLetterIndex], args)) as Array<0 | [string, string, string, string, number]>;
    const facts = res.map((r) => (r === 0 ? undefined : { queue: r[0], category: r[1], at: Number(r[2]), quarantined: r[3] === '1', held: r[4] === 1 }));
    if (copies && cluster) {
      await Promise.all(
        facts.map(async (f, i) => {
          if (!f) return;
          const { jobId } = splitDeadLetterId(ids[i]!);
          f.held = (await this.redis.zscore(this.failedKeyOf(ids[i]!), jobId)) === String(f.at);
        }),
      );
    }
    return facts;
  }

  /** The BullMQ failed set of the queue a dead letter id names (queue names have no ':'). */
  private failedKeyOf(id: string): string {
    const queue = id.slice(0, id.indexOf(':'));
    return queue ? this.registry.bullQueue(queue).keys.failed! : '';
  }

  /** One page of dead letters matching `f`, newest first. */
  async list(f: DeadLetterFilter, pageSize: number, pageToken: string): Promise<{ deadLetters: pb.DeadLetter[]; next: string }> {
    const after = pageToken ? parseToken(pageToken) : undefined;
    const out: pb.DeadLetter[] = [];
    for await (const d of this.scan(f, after)) {
      if (out.length === pageSize) {
        const last = out[out.length - 1]!;
        return { deadLetters: out, next: `${last.deadLetteredAt!.getTime()}|${last.id}` };
      }
      out.push(d);
    }
    return { deadLetters: out, next: '' };
  }

  /**
   * Dead letters matching `f`, newest first, read in batches from the most selective index (for
   * ListDeadLetters). With `after`, starts after that position (a page token): entries with one
   * score come in descending member order, so those ≥ the token's id at the token's score were
   * already seen.
   */
  private async *scan(f: DeadLetterFilter, after?: { at: number; id: string }): AsyncGenerator<pb.DeadLetter> {
    const key = indexOf(this.keys, f);
    let max = f.until !== undefined ? `(${f.until}` : '+inf';
    if (after && (f.until === undefined || after.at < f.until)) max = String(after.at);
    const min = f.since !== undefined ? String(f.since) : '-inf';
    const batch = 200;
    for (let offset = 0; ; offset += batch) {
      const flat = await this.redis.zrevrangebyscore(key, max, min, 'WITHSCORES', 'LIMIT', offset, batch);
      if (!flat.length) return;
      const ids: string[] = [];
      for (let i = 0; i < flat.length; i += 2) {
        const id = flat[i]!;
        if (after && Number(flat[i + 1]) === after.at && id >= after.id) continue;
        ids.push(id);
      }
      for (const d of await this.getMany(ids)) if (matchesFilter(f, d)) yield d;
      if (flat.length < batch * 2) return;
    }
  }

  /**
   * The part of the most selective index that `f` reads, fixed now: up to the newest entry stored
   * at this moment, so that a bulk operation does not chase dead letters made while it runs (a
   * replay's own jobs failing again). Scores are whole ms, so the filter's exclusive `until`
   * is `until - 1` inclusive.
   */
  async span(f: DeadLetterFilter): Promise<DeadLetterSpan> {
    const index = indexOf(this.keys, f);
    const min = f.since !== undefined ? String(f.since) : '-inf';
    const newest = await this.redis.zrevrange(index, 0, 0, 'WITHSCORES');
    let max = newest.length ? Number(newest[1]) : -Infinity;
    if (f.until !== undefined) max = Math.min(max, f.until - 1);
    if (max === -Infinity || (f.since !== undefined && max < f.since)) return { index, min, max: min, total: 0 };
    return { index, min, max: String(max), total: await this.redis.zcount(index, min, String(max)) };
  }

  /**
   * The page of `span` after `cursor` (from its start without one), oldest first: at most `limit`
   * index entries, in two round trips (the entries, then their records).
   */
  async page(span: DeadLetterSpan, f: DeadLetterFilter, limit: number, cursor?: DeadLetterCursor): Promise<DeadLetterPage> {
    const flat = (await PAGE.run(this.redis, [span.index], [span.min, span.max, limit, cursor?.score ?? '', cursor?.id ?? ''])) as string[];
    const entries: DeadLetterCursor[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ id: flat[i]!, score: flat[i + 1]! });
    const matches = new Map<string, pb.DeadLetter>();
    for (const d of await this.getMany(entries.map((e) => e.id))) if (matchesFilter(f, d)) matches.set(d.id, d);
    return { entries, matches, next: entries.length < limit ? undefined : entries[entries.length - 1] };
  }

  /** Marks a dead letter's follow-ups (metrics, webhook) as done. */
  async settle(id: string): Promise<void> {
    await this.redis.zrem(this.keys.deadLetterOutbox, id);
  }

  /** Dead letters captured before `before` (ms) whose follow-ups never ran: their replica died. */
  unsettled(before: number, limit = 100): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.deadLetterOutbox, '-inf', `(${before}`, 'LIMIT', 0, limit);
  }

  /**
   * Deletes dead letters by id; returns how many it deleted. `unknown: 'not-found'` checks every
   * id first and throws NOT_FOUND, deleting nothing, if one is not stored; `'skip'` passes over
   * those. With `before` (ms), only those that failed earlier are deleted.
   *
   * A fixed number of round trips whatever the batch size: one read of the batch, BullMQ's own
   * removal of the jobs it still holds as the failures the dead letters hold (sent together), one
   * delete of the batch. BullMQ's copies go first: left in the failed set, they would be captured
   * again by the next sweep; and if this stops half-way, what is left is consistent (dead letters
   * whose BullMQ copy is gone, as after keep_failed).
   */
  async purge(ids: string[], opts: { unknown: 'not-found' | 'skip'; before?: number }): Promise<number> {
    const unique = [...new Set(ids)];
    const facts = await this.inspect(unique, { copies: true });
    if (opts.unknown === 'not-found') {
      const missing = unique.find((_, i) => !facts[i]);
      if (missing !== undefined) throw new DeadLetterNotFoundError(missing);
    }
    const doomed: string[] = [];
    const held: string[] = [];
    unique.forEach((id, i) => {
      const f = facts[i];
      if (!f || (opts.before !== undefined && f.at >= opts.before)) return;
      doomed.push(id);
      if (f.held) held.push(id);
    });
    if (!doomed.length) return 0;
    await Promise.all(
      held.map((id) => {
        const { queue, jobId } = splitDeadLetterId(id);
        return this.registry.bullQueue(queue).remove(jobId);
      }),
    );
    const k = this.keys;
    return (await PURGE.run(this.redis, [k.deadLetterIndex, k.deadLetterCounts, k.deadLetterJobs], [k.deadLetter(''), k.deadLetterQueueIndex(''), k.deadLetterCategoryIndex(''), ...doomed])) as number;
  }

  /**
   * Marks or unmarks dead letters, all or nothing, in one call: an unknown id → NOT_FOUND and
   * nothing changes. Returns how many changed.
   */
  async quarantine(ids: string[], quarantined: boolean, reason: string): Promise<number> {
    const r = (await QUARANTINE.run(this.redis, [this.keys.deadLetterIndex], [this.keys.deadLetter(''), quarantined ? '1' : '0', reason, ...new Set(ids)])) as number | [string, string];
    if (Array.isArray(r)) throw new DeadLetterNotFoundError(r[1]);
    return r;
  }

  /**
   * Records a replay on the dead letter: `recorded`; `exists` when that job is recorded already
   * (the scheduler deduplicated the enqueue); `gone` when the dead letter was purged meanwhile.
   */
  async addReplay(id: string, replay: pb.Replay): Promise<'recorded' | 'exists' | 'gone'> {
    const r = await ADD_REPLAY.run(this.redis, [this.keys.deadLetter(id)], [JSON.stringify(pb.Replay.toJSON(replay)), replay.job?.queue ?? '', replay.job?.id ?? '']);
    return r === 1 ? 'recorded' : r === 2 ? 'exists' : 'gone';
  }

  /**
   * Purges `queue`'s dead letters older than `keep.ageMs` and beyond the newest `keep.count`, at
   * most RETENTION_BATCH of each per call (the next call goes on).
   */
  async applyRetention(queue: string, keep: RetentionSpec, now = Date.now()): Promise<void> {
    const index = this.keys.deadLetterQueueIndex(queue);
    if (keep.ageMs !== undefined) {
      const old = await this.redis.zrangebyscore(index, '-inf', `(${now - keep.ageMs}`, 'LIMIT', 0, RETENTION_BATCH);
      if (old.length) await this.purge(old, { unknown: 'skip' });
    }
    if (keep.count !== undefined) {
      const excess = Math.min(RETENTION_BATCH, (await this.redis.zcard(index)) - keep.count);
      if (excess > 0) await this.purge(await this.redis.zrange(index, 0, excess - 1), { unknown: 'skip' });
    }
  }

  /** Counts by queue and category (only `queue` when given). */
  async stats(queue?: string): Promise<pb.GetDeadLetterStatsResponse> {
    const all = await this.redis.hgetall(this.keys.deadLetterCounts);
    const counts: pb.DeadLetterCount[] = [];
    let total = 0;
    for (const [field, v] of Object.entries(all)) {
      const sep = field.indexOf('|');
      const q = field.slice(0, sep);
      const count = Number(v);
      if ((queue && q !== queue) || count <= 0) continue;
      counts.push({ queue: q, category: field.slice(sep + 1), count });
      total += count;
    }
    counts.sort((a, b) => a.queue.localeCompare(b.queue) || a.category.localeCompare(b.category));
    return { counts, total };
  }
}

/** The queue and job id a dead letter id names ("<queue>:<job id>:<attempt>[~<time>]"; queue names have no ':'). */
function splitDeadLetterId(id: string): { queue: string; jobId: string } {
  const queue = id.slice(0, id.indexOf(':'));
  return { queue, jobId: parseDeadLetterId(queue, id).jobId };
}

/** The most selective index for `f`: its queue's, else its category's, else the one of every dead letter. */
function indexOf(keys: Keys, f: DeadLetterFilter): string {
  return f.queue ? keys.deadLetterQueueIndex(f.queue) : f.category ? keys.deadLetterCategoryIndex(f.category) : keys.deadLetterIndex;
}

/** Whether `d` matches `f` apart from its time range (the index read already applies that). */
export function matchesFilter(f: DeadLetterFilter, d: pb.DeadLetter): boolean {
  return (!f.queue || d.job?.queue === f.queue) && (!f.category || d.category === f.category) && (!f.jobName || d.job?.name === f.jobName);
}

function parseToken(token: string): { at: number; id: string } {
  const sep = token.indexOf('|');
  const at = Number(token.slice(0, sep));
  if (sep < 0 || !Number.isFinite(at)) throw new InvalidArgumentError('page_token', 'is not a token this service gave out');
  return { at, id: token.slice(sep + 1) };
}

function decode(h: Record<string, string>): pb.DeadLetter {
  return pb.DeadLetter.fromPartial({
    id: h.id,
    job: pb.Job.fromJSON(JSON.parse(h.job ?? '{}')),
    errors: (JSON.parse(h.errors ?? '[]') as unknown[]).map((e) => pb.AttemptError.fromJSON(e)),
    category: h.category,
    severity: severityToProto(h.severity as SeverityName | undefined),
    deadLetteredAt: new Date(Number(h.at)),
    traceId: h.trace_id ?? '',
    traceparent: h.traceparent ?? '',
    quarantined: h.quarantined === '1',
    quarantineReason: h.quarantined === '1' ? (h.quarantine_reason ?? '') : '',
    replays: (JSON.parse(h.replays ?? '[]') as unknown[]).map((r) => pb.Replay.fromJSON(r)),
  });
}

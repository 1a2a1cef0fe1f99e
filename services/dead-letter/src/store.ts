import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, type SeverityName } from '@jobmesh/core';
import { type Keys, type QueueRegistry, severityToProto } from '@jobmesh/queue';
import type { Redis } from 'ioredis';
import { DeadLetterNotFoundError } from './errors';

/**
 * A dead letter's id: "<queue>:<job id>:<attempt>". Capture is idempotent on it. A job id used
 * again, by a later job that fails at the same attempt, gets "~<failure time>" added, so that it
 * is a dead letter of its own rather than taken for the first.
 */
export const deadLetterId = (queue: string, jobId: string, attempt: number, at?: number): string => `${queue}:${jobId}:${attempt}${at === undefined ? '' : `~${at}`}`;

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
  /** Quarantined from the start, for this reason. */
  quarantine?: string;
}

export interface Filter {
  queue?: string;
  jobName?: string;
  category?: string;
  /** ms, inclusive. */
  since?: number;
  /** ms, exclusive. */
  until?: number;
}

// Writes the record, its three index entries, its counter, the job → dead letter link, its outbox
// entry, the job's 'dead-lettered' event and the announcement to watchers, all or nothing and
// once: a second capture of the same failure (another replica, the sweep after the event)
// changes nothing (0), and a capture is never stored without being announced. An id taken by
// another failure (a job id used again) changes nothing either (-1), nor does a job that is no
// longer that failure in the queue's failed set (KEYS[9]; retried, removed) (-2).
// ARGV: score (the failure time), id, counter field, job field ("<queue>:<job id>"), now,
// channel, job id, reason, then the record's fields.
const CAPTURE = `
if redis.call('ZSCORE', KEYS[9], ARGV[7]) ~= ARGV[1] then return -2 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'at') == ARGV[1] then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
redis.call('HSET', KEYS[6], ARGV[4], ARGV[1] .. ':' .. ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[5], ARGV[2])
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'event', 'dead-lettered', 'jobId', ARGV[7], 'reason', ARGV[8])
redis.call('PUBLISH', ARGV[6], ARGV[2])
return 1`;

// Deletes the record and, only if this call deleted it, its index entries, counter and job link
// (if the link still points at it: the job's id is the dead letter id without ":<attempt>").
const PURGE = `
local queue = redis.call('HGET', KEYS[1], 'queue')
if not queue then return 0 end
local counter = redis.call('HGET', KEYS[1], 'counter')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('HINCRBY', KEYS[5], counter, -1) <= 0 then redis.call('HDEL', KEYS[5], counter) end
local job = string.match(ARGV[1], '^(.*):[^:]*$')
local link = job and redis.call('HGET', KEYS[6], job)
if link and string.sub(link, string.find(link, ':', 1, true) + 1) == ARGV[1] then redis.call('HDEL', KEYS[6], job) end
return 1`;

const QUARANTINE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'quarantined') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'quarantined', ARGV[1], 'quarantine_reason', ARGV[2])
return 1`;

const ADD_REPLAY = `
local replays = redis.call('HGET', KEYS[1], 'replays')
if not replays then return 0 end
local list = cjson.decode(replays)
table.insert(list, cjson.decode(ARGV[1]))
redis.call('HSET', KEYS[1], 'replays', cjson.encode(list))
return 1`;

type Script = (numKeys: number, ...args: string[]) => Promise<unknown>;

/**
 * A Lua script run by EVALSHA (ioredis sends the text once, on the first NOSCRIPT): capture runs
 * for every dead letter, and sending its text each time was the largest cost of a capture.
 */
function script(redis: Redis, name: string, lua: string): Script {
  const commands = redis as unknown as Record<string, Script>;
  if (typeof commands[name] !== 'function') redis.defineCommand(name, { lua });
  return (numKeys, ...args) => commands[name]!.call(redis, numKeys, ...args);
}

/**
 * Dead letters in Redis: a hash per dead letter, sorted-set indexes by dead-lettered time (all,
 * per queue, per category) and a counter per (queue, category), all under `<prefix>:_dlq…`.
 */
export class DeadLetterStore {
  private readonly keys: Keys;
  private readonly scripts: Record<'capture' | 'purge' | 'quarantine' | 'addReplay', Script>;

  constructor(
    private readonly redis: Redis,
    private readonly registry: QueueRegistry,
  ) {
    this.keys = registry.keys;
    this.scripts = {
      capture: script(redis, 'jobmeshDlqCapture', CAPTURE),
      purge: script(redis, 'jobmeshDlqPurge', PURGE),
      quarantine: script(redis, 'jobmeshDlqQuarantine', QUARANTINE),
      addReplay: script(redis, 'jobmeshDlqAddReplay', ADD_REPLAY),
    };
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
      job: JSON.stringify(pb.Job.toJSON(d.job)),
      errors: JSON.stringify(d.errors.map((e) => pb.AttemptError.toJSON(e))),
      quarantined: d.quarantine ? '1' : '0',
      quarantine_reason: d.quarantine ?? '',
      replays: '[]',
    };
    const created = await this.scripts.capture(
      9,
      this.keys.deadLetter(id),
      this.keys.deadLetterIndex,
      this.keys.deadLetterQueueIndex(d.queue),
      this.keys.deadLetterCategoryIndex(d.category),
      this.keys.deadLetterCounts,
      this.keys.deadLetterJobs,
      this.keys.deadLetterOutbox,
      this.keys.events(d.queue),
      this.registry.bullQueue(d.queue).keys.failed!,
      String(d.at.getTime()),
      id,
      fields.counter!,
      `${d.queue}:${d.job.id}`,
      String(Date.now()),
      this.keys.deadLetterChannel,
      d.job.id,
      d.job.failureReason,
      ...Object.entries(fields).flat(),
    );
    const outcome = ({ 1: 'created', 0: 'exists', [-1]: 'taken', [-2]: 'gone' } as const)[created as 1 | 0 | -1 | -2];
    return { id, outcome };
  }

  async get(id: string): Promise<pb.DeadLetter> {
    const h = await this.redis.hgetall(this.keys.deadLetter(id));
    if (!h.id) throw new DeadLetterNotFoundError(id);
    return decode(h);
  }

  /** The stored dead letters among `ids`, in order; missing ones are left out. */
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

  /** One page of dead letters matching `f`, newest first. */
  async list(f: Filter, pageSize: number, pageToken: string): Promise<{ deadLetters: pb.DeadLetter[]; next: string }> {
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
   * Every dead letter matching `f`, newest first, read in batches from the most selective index.
   * With `after`, starts after that position (a page token): entries with one score come in
   * descending member order, so those ≥ the token's id at the token's score were already seen.
   */
  async *scan(f: Filter, after?: { at: number; id: string }): AsyncGenerator<pb.DeadLetter> {
    const key = f.queue ? this.keys.deadLetterQueueIndex(f.queue) : f.category ? this.keys.deadLetterCategoryIndex(f.category) : this.keys.deadLetterIndex;
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
      for (const d of await this.getMany(ids)) {
        if (f.queue && d.job?.queue !== f.queue) continue;
        if (f.category && d.category !== f.category) continue;
        if (f.jobName && d.job?.name !== f.jobName) continue;
        yield d;
      }
      if (flat.length < batch * 2) return;
    }
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
   * Deletes dead letters by id; returns how many existed. BullMQ's copy of the job goes first, if
   * it is still the failed job the dead letter was made from: left in the failed set, the next
   * sweep would capture it again.
   */
  async purge(ids: string[]): Promise<number> {
    let n = 0;
    for (const id of ids) {
      const h = await this.redis.hmget(this.keys.deadLetter(id), 'queue', 'category', 'at');
      if (!h[0] || !h[1]) continue;
      await this.removeBullCopy(h[0], id, h[2] ?? '');
      const deleted = await this.scripts.purge(
        6,
        this.keys.deadLetter(id),
        this.keys.deadLetterIndex,
        this.keys.deadLetterQueueIndex(h[0]),
        this.keys.deadLetterCategoryIndex(h[1]),
        this.keys.deadLetterCounts,
        this.keys.deadLetterJobs,
        id,
      );
      n += deleted === 1 ? 1 : 0;
    }
    return n;
  }

  private async removeBullCopy(queue: string, id: string, at: string): Promise<void> {
    const { jobId } = parseDeadLetterId(queue, id);
    const bull = this.registry.bullQueue(queue);
    // The failed set's score is the failure time: equal, it is the failure this dead letter holds.
    if ((await this.redis.zscore(bull.keys.failed!, jobId)) === at) await bull.remove(jobId);
  }

  /** Marks or unmarks dead letters; unknown ids → NOT_FOUND. Returns how many changed. */
  async quarantine(ids: string[], quarantined: boolean, reason: string): Promise<number> {
    let n = 0;
    for (const id of ids) {
      const r = await this.scripts.quarantine(1, this.keys.deadLetter(id), quarantined ? '1' : '0', reason);
      if (r === -1) throw new DeadLetterNotFoundError(id);
      n += r === 1 ? 1 : 0;
    }
    return n;
  }

  /** Records a replay on the dead letter. */
  async addReplay(id: string, replay: pb.Replay): Promise<void> {
    await this.scripts.addReplay(1, this.keys.deadLetter(id), JSON.stringify(pb.Replay.toJSON(replay)));
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
    quarantined: h.quarantined === '1',
    quarantineReason: h.quarantined === '1' ? (h.quarantine_reason ?? '') : '',
    replays: (JSON.parse(h.replays ?? '[]') as unknown[]).map((r) => pb.Replay.fromJSON(r)),
  });
}

// What the monitor reads of every queue: counts by state in one script call for all queues (one
// per queue on a Redis Cluster, sent together), and
// the last minute's completions, failures and processing times, which each worker-pool replica
// adds up in memory and writes to Redis every couple of seconds (one pipelined write per replica
// and queue, whatever the job rate), in 10-second slots that expire by themselves.
import { isCluster, type RedisClient, runEach } from './connection';
import type { Keys } from './keys';
import { LuaScript } from './scripts';

const STATS = new LuaScript<[slot: string], (string | number)[]>('queue-stats-1');
const NAME_BACKLOG = new LuaScript<[slot: string], (string | number)[]>('name-backlog-1');

/** How many jobs of each list a per-name count reads at most; beyond, it estimates from them. */
export const NAME_SCAN_CAP = 1000;

/** A queue's backlog of some job names, by state (see QueueStatsReader.nameBacklog). */
export interface NameBacklog {
  waiting: number;
  prioritized: number;
  dueDelayed: number;
  active: number;
  waitingForProcessor: number;
  /** True when a list held more than NAME_SCAN_CAP jobs, so its count is an estimate. */
  estimated: boolean;
}

/** A queue's jobs by state, as the monitor reports them. */
export interface QueueCounts {
  waiting: number;
  /** Delayed, not counting the jobs waiting for a processor. */
  delayed: number;
  /** Delayed jobs whose time has come, not yet moved to waiting. */
  dueDelayed: number;
  prioritized: number;
  active: number;
  waitingChildren: number;
  completed: number;
  failed: number;
  deadLettered: number;
  /** Jobs waiting for a processor or remote worker that serves their name (see ProcessorWait). */
  waitingForProcessor: number;
}

export interface QueueSnapshot {
  queue: string;
  counts: QueueCounts;
  paused: boolean;
  /** How long the longest-waiting job has waited, ms (0: nothing waits). */
  oldestWaitingMs: number;
}

/** Upper bounds (ms) of the processing-time buckets; a last, open bucket holds the rest. */
export const DURATION_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000];

/** The window figures are written in: slots this long, kept a little over a minute and a slot. */
export const SLOT_MS = 10_000;
/** The window read: the current slot and the six before it. */
const WINDOW_SLOTS = 7;
const SLOT_TTL_MS = (WINDOW_SLOTS + 2) * SLOT_MS;

/** A queue's last minute, as every replica wrote it. */
export interface QueueWindow {
  completed: number;
  failed: number;
  /** The span the counts cover, ms (between 60 and 70 s once the service has run that long). */
  spanMs: number;
  /** Per bucket of DURATION_BUCKETS_MS (plus the open one), attempts that ran that long. */
  durations: number[];
}

/** The `q`-quantile (0..1) of a bucketed distribution, interpolated within its bucket; undefined without samples. */
export function quantileMs(buckets: number[], q: number): number | undefined {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (!total) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i]!;
    if (n && seen + n >= rank) {
      const lo = i === 0 ? 0 : DURATION_BUCKETS_MS[i - 1]!;
      const hi = DURATION_BUCKETS_MS[i] ?? lo * 2;
      return lo + ((hi - lo) * (rank - seen)) / n;
    }
    seen += n;
  }
  return DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.length - 1];
}

/** Counts and windows of queues, for the monitor. */
export class QueueStatsReader {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** The BullMQ key base of `queue` ("<queue prefix>:<queue>:"). */
  private base(queue: string): string {
    return `${this.keys.queuePrefix(queue)}:${queue}:`;
  }

  /**
   * Every queue's counts in one round trip whatever the number of queues: one script call on
   * one server; on a cluster one per queue (each in its slot) and the dead-letter counts (in
   * theirs), sent together.
   */
  async snapshots(queues: string[], now = Date.now()): Promise<QueueSnapshot[]> {
    if (!queues.length) return [];
    const args = (q: string, dlq: boolean): string[] => [this.base(q), this.keys.parkedNames(q), dlq ? this.keys.deadLetterQueueIndex(q) : ''];
    let rows: number[][];
    if (!isCluster(this.redis)) {
      rows = (await STATS.run(this.redis, [this.base(queues[0]!) + 'meta'], [now, ...queues.flatMap((q) => args(q, true))])) as number[][];
    } else {
      const [counts, dead] = await Promise.all([
        Promise.all(queues.map(async (q) => ((await STATS.run(this.redis, [this.base(q) + 'meta'], [now, ...args(q, false)])) as number[][])[0]!)),
        runEach(this.redis, queues.map((q) => ['zcard', this.keys.deadLetterQueueIndex(q)])),
      ]);
      rows = counts.map((r, i) => {
        const [err, n] = dead[i]!;
        if (err) throw err;
        const row = [...r];
        row[8] = Number(n);
        return row;
      });
    }
    return rows.map((r, i) => {
      const [waiting, delayed, dueDelayed, prioritized, active, waitingChildren, completed, failed, deadLettered, waitingForProcessor, paused, oldest] = r.map(Number);
      return {
        queue: queues[i]!,
        counts: { waiting: waiting!, delayed: Math.max(0, delayed!), dueDelayed: dueDelayed!, prioritized: prioritized!, active: active!, waitingChildren: waitingChildren!, completed: completed!, failed: failed!, deadLettered: deadLettered!, waitingForProcessor: waitingForProcessor! },
        paused: paused === 1,
        oldestWaitingMs: oldest! >= 0 ? Math.max(0, now - oldest!) : 0,
      };
    });
  }

  /**
   * The backlog of `names` on `queue`, in one script call. Jobs waiting for a processor are
   * counted exactly; each other list is read from its oldest job, at most `cap` of them, and a
   * longer list's count is scaled up from the share of those that have one of the names.
   */
  async nameBacklog(queue: string, names: string[], now = Date.now(), cap = NAME_SCAN_CAP): Promise<NameBacklog> {
    const rows = (await NAME_BACKLOG.run(this.redis, [this.base(queue) + 'meta'], [this.base(queue), this.keys.parkedNames(queue), now, cap, ...names])) as number[][];
    let estimated = false;
    const [waiting, prioritized, dueDelayed, active, parked] = rows.map(([matched, lookedAt, total]) => {
      if (!lookedAt) return 0;
      if (lookedAt < total!) estimated = true;
      return Math.round((matched! * total!) / lookedAt!);
    });
    return { waiting: waiting!, prioritized: prioritized!, dueDelayed: dueDelayed!, active: active!, waitingForProcessor: parked!, estimated };
  }

  /** Every queue's last minute, in one pipelined round trip (commands sent together on a cluster). */
  async windows(queues: string[], now = Date.now()): Promise<QueueWindow[]> {
    if (!queues.length) return [];
    const current = Math.floor(now / SLOT_MS);
    const commands: Array<[string, string]> = [];
    for (const q of queues) for (let s = current - WINDOW_SLOTS + 1; s <= current; s++) commands.push(['hgetall', this.keys.statsSlot(q, s)]);
    const replies = await runEach(this.redis, commands);
    const spanMs = now - (current - WINDOW_SLOTS + 1) * SLOT_MS;
    return queues.map((_, i) => {
      const w: QueueWindow = { completed: 0, failed: 0, spanMs, durations: new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0) };
      for (let s = 0; s < WINDOW_SLOTS; s++) {
        const [err, h] = replies[i * WINDOW_SLOTS + s] ?? [];
        if (err) throw err;
        for (const [field, v] of Object.entries((h ?? {}) as Record<string, string>)) {
          if (field === 'c') w.completed += Number(v);
          else if (field === 'f') w.failed += Number(v);
          else if (field[0] === 'd') {
            const b = Number(field.slice(1));
            if (b >= 0 && b < w.durations.length) w.durations[b]! += Number(v);
          }
        }
      }
      return w;
    });
  }
}

/**
 * A worker-pool replica's share of the window figures: attempts are counted in memory and written
 * every `flushMs` (HINCRBY into the current slot), so recording an attempt costs no Redis call.
 */
export class WindowRecorder {
  private pending = new Map<string, { slot: number; fields: Map<string, number> }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly onError: (err: Error) => void,
    private readonly flushMs = 2000,
  ) {}

  /** Counts one finished attempt of `queue`: completed, or failed, and how long it ran. */
  record(queue: string, outcome: 'completed' | 'failed', durationMs: number, now = Date.now()): void {
    const slot = Math.floor(now / SLOT_MS);
    let p = this.pending.get(queue);
    if (p && p.slot !== slot) {
      // A new slot: what the old one holds is written with it on the next flush.
      this.pending.set(`${queue}\n${p.slot}`, p);
      p = undefined;
    }
    if (!p) this.pending.set(queue, (p = { slot, fields: new Map() }));
    const add = (f: string): void => {
      p.fields.set(f, (p.fields.get(f) ?? 0) + 1);
    };
    add(outcome === 'completed' ? 'c' : 'f');
    let b = DURATION_BUCKETS_MS.findIndex((ub) => durationMs <= ub);
    if (b < 0) b = DURATION_BUCKETS_MS.length;
    add(`d${b}`);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushMs).unref();
  }

  /** Writes what was counted since the last flush (also at shutdown). A failed write is dropped and reported. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (!this.pending.size) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    const commands: Array<[string, ...(string | number)[]]> = [];
    for (const [name, p] of batch) {
      const queue = name.split('\n')[0]!;
      const key = this.keys.statsSlot(queue, p.slot);
      for (const [f, n] of p.fields) commands.push(['hincrby', key, f, n]);
      commands.push(['pexpire', key, SLOT_TTL_MS]);
    }
    // One pipeline; on a cluster, whose pipelines stay in one slot, the commands sent together.
    this.flushing = runEach(this.redis, commands)
      .then(
        (replies) => {
          const err = replies?.find(([e]) => e)?.[0];
          if (err) this.onError(err);
        },
        (err: Error) => this.onError(err),
      )
      .finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

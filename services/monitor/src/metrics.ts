import type * as pb from '@jobmesh/contracts';
import { durationToMs } from '@jobmesh/contracts';
import { type Backbone, redisMemory } from '@jobmesh/queue';
import { Gauge, type Logger, type Registry } from '@jobmesh/telemetry';
import type { QueueFigures } from './figures';

/** One scrape reads the figures once, however many gauges ask for them. */
const SHARED_FOR_MS = 500;

const STATES = ['waiting', 'delayed', 'prioritized', 'active', 'waitingChildren', 'completed', 'failed', 'deadLettered', 'waitingForProcessor'] as const;
/** The `state` label of each count: GetJob's state names, in snake case. */
const STATE_LABEL: Record<(typeof STATES)[number], string> = {
  waiting: 'waiting',
  delayed: 'delayed',
  prioritized: 'prioritized',
  active: 'active',
  waitingChildren: 'waiting_children',
  completed: 'completed',
  failed: 'failed',
  deadLettered: 'dead_lettered',
  waitingForProcessor: 'waiting_for_processor',
};

/**
 * The queue-level gauges, read from Redis at scrape time by the monitor alone, so that N
 * worker-pool replicas do not export N copies of them (per-process counters stay with the
 * process that counts):
 * - `jobmesh_queue_length{queue}`: waiting + prioritized + delayed;
 * - `jobmesh_active_jobs{queue}`;
 * - `jobmesh_queue_jobs{queue,state}`: every count of GetQueueStats;
 * - `jobmesh_queue_oldest_waiting_age_seconds{queue}`;
 * - `jobmesh_queue_paused{queue}`: 1 while paused;
 * - `jobmesh_workers{queue,kind}`: kind `remote` or `in_process`.
 * - `jobmesh_redis_up`: 1 when Redis answered INFO within the command timeout, else 0;
 * - `jobmesh_redis_memory_used_bytes`, `jobmesh_redis_memory_max_bytes` (0: no limit).
 * A scrape that cannot read Redis gets no queue series (rather than stale ones); the rest answers.
 */
export function monitorMetrics(registry: Registry, backbone: Backbone, figures: QueueFigures, logger: Logger): void {
  let last: { at: number; stats: Promise<pb.QueueStats[] | undefined> } | undefined;
  const read = (): Promise<pb.QueueStats[] | undefined> => {
    if (!last || Date.now() - last.at > SHARED_FOR_MS) {
      last = {
        at: Date.now(),
        stats: figures.list().catch((err: Error) => {
          logger.warn({ err: err.message }, 'cannot read queue figures for /metrics');
          return undefined;
        }),
      };
    }
    return last.stats;
  };
  const define = <T extends string>(name: string, help: string, labelNames: readonly T[], fill: (g: Gauge<T>, s: pb.QueueStats) => void): void => {
    registry.removeSingleMetric(name);
    new Gauge<T>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const stats = await read();
        this.reset();
        for (const s of stats ?? []) fill(this, s);
      },
    });
  };
  define('jobmesh_queue_length', 'Jobs waiting to run: waiting + prioritized + delayed (read from Redis at scrape time)', ['queue'], (g, s) =>
    g.labels({ queue: s.queue }).set((s.counts?.waiting ?? 0) + (s.counts?.prioritized ?? 0) + (s.counts?.delayed ?? 0)),
  );
  define('jobmesh_active_jobs', 'Jobs running now, on any worker', ['queue'], (g, s) => g.labels({ queue: s.queue }).set(s.counts?.active ?? 0));
  define('jobmesh_queue_jobs', "A queue's jobs by state (waiting_for_processor: no worker serves their name yet)", ['queue', 'state'], (g, s) => {
    for (const k of STATES) g.labels({ queue: s.queue, state: STATE_LABEL[k] }).set(s.counts?.[k] ?? 0);
  });
  define('jobmesh_queue_oldest_waiting_age_seconds', 'How long the longest-waiting job has waited; 0 when none waits', ['queue'], (g, s) =>
    g.labels({ queue: s.queue }).set((durationToMs(s.oldestWaitingAge) ?? 0) / 1000),
  );
  define('jobmesh_queue_paused', '1 while the queue is paused', ['queue'], (g, s) => g.labels({ queue: s.queue }).set(s.paused ? 1 : 0));
  define('jobmesh_workers', 'Workers serving the queue: remote workers, and worker-pool replicas running it in-process', ['queue', 'kind'], (g, s) => {
    g.labels({ queue: s.queue, kind: 'remote' }).set(s.remoteWorkers);
    g.labels({ queue: s.queue, kind: 'in_process' }).set(s.inProcessWorkers);
  });

  // A failed read is the figure: jobmesh_redis_up reads 0 and the memory gauges have no sample
  // (as documented above), so the error itself is safe to drop; it would only repeat every scrape.
  const memory = (): Promise<{ usedBytes: number; maxBytes: number } | undefined> => redisMemory(backbone.redis).catch(() => undefined);
  const redisGauge = (name: string, help: string, value: (m: { usedBytes: number; maxBytes: number } | undefined) => number | undefined): void => {
    registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const v = value(await memory());
        this.reset();
        if (v !== undefined) this.set(v);
      },
    });
  };
  redisGauge('jobmesh_redis_up', '1 when Redis answers the monitor, else 0', (m) => (m ? 1 : 0));
  redisGauge('jobmesh_redis_memory_used_bytes', "Redis's used_memory", (m) => m?.usedBytes);
  redisGauge('jobmesh_redis_memory_max_bytes', "Redis's maxmemory; 0 when it has no limit", (m) => m?.maxBytes);
}

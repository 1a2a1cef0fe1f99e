import * as pb from '@jobmesh/contracts';
import { msToDuration } from '@jobmesh/contracts';
import { QueueNotFoundError, type QueueSpec, validateQueueName } from '@jobmesh/core';
import { type Backbone, type QueueSnapshot, QueueStatsReader, type QueueWindow, WorkerDirectory, quantileMs } from '@jobmesh/queue';

/** A queue's workers, by kind. */
export interface WorkerCount {
  remote: number;
  inProcess: number;
}

/** Counts each queue's workers in a directory listing: remote workers, and replicas running it in-process. */
export function countWorkers(workers: pb.WorkerInfo[]): Map<string, WorkerCount> {
  const out = new Map<string, WorkerCount>();
  for (const w of workers) {
    const inProcess = w.kind === pb.WorkerKind.WORKER_KIND_IN_PROCESS;
    for (const q of w.queues) {
      let c = out.get(q);
      if (!c) out.set(q, (c = { remote: 0, inProcess: 0 }));
      if (inProcess) c.inProcess++;
      else c.remote++;
    }
  }
  return out;
}

/** One queue's QueueStats from what Redis holds. */
export function toQueueStats(s: QueueSnapshot, w: QueueWindow, workers: WorkerCount | undefined, now: Date): pb.QueueStats {
  const c = s.counts;
  const p50 = quantileMs(w.durations, 0.5);
  const p95 = quantileMs(w.durations, 0.95);
  const seconds = w.spanMs / 1000;
  return {
    queue: s.queue,
    counts: {
      waiting: c.waiting,
      delayed: c.delayed,
      prioritized: c.prioritized,
      active: c.active,
      waitingChildren: c.waitingChildren,
      completed: c.completed,
      failed: c.failed,
      deadLettered: c.deadLettered,
      waitingForProcessor: c.waitingForProcessor,
      dueDelayed: c.dueDelayed,
    },
    completedPerSecond: seconds > 0 ? w.completed / seconds : 0,
    failedPerSecond: seconds > 0 ? w.failed / seconds : 0,
    oldestWaitingAge: msToDuration(s.oldestWaitingMs),
    processingP50: p50 === undefined ? undefined : msToDuration(Math.round(p50)),
    processingP95: p95 === undefined ? undefined : msToDuration(Math.round(p95)),
    workers: (workers?.remote ?? 0) + (workers?.inProcess ?? 0),
    remoteWorkers: workers?.remote ?? 0,
    inProcessWorkers: workers?.inProcess ?? 0,
    paused: s.paused,
    observedAt: now,
  };
}

/**
 * The figures of many queues at once, in a bounded number of Redis round trips whatever their
 * number: the registry, one script call for every queue's counts, one pipeline for every queue's
 * last minute, and the worker directory.
 */
export class QueueFigures {
  private readonly reader: QueueStatsReader;
  private readonly workers: WorkerDirectory;

  constructor(private readonly backbone: Backbone) {
    this.reader = new QueueStatsReader(backbone.redis, backbone.registry.keys);
    // Read-only here: the monitor publishes no workers.
    this.workers = new WorkerDirectory(backbone.redis, backbone.registry.keys, '', 0);
  }

  /** One queue's figures; NOT_FOUND when it is not in the registry. */
  async get(queue: string): Promise<pb.QueueStats> {
    const name = validateQueueName(queue);
    return (await this.of([await this.backbone.registry.get(name)]))[0]!;
  }

  /**
   * Every registry queue's figures (those named in `only`, when given), ordered by name. A name
   * in `only` that is not a queue is NOT_FOUND, or left out with `skipMissing` (a watched queue
   * deleted meanwhile).
   */
  async list(only: string[] = [], { skipMissing = false } = {}): Promise<pb.QueueStats[]> {
    only.forEach((q, i) => validateQueueName(q, `queues[${i}]`));
    const known = await this.backbone.registry.list();
    if (!only.length) return this.of(known);
    const unknown = only.find((q) => !known.some((k) => k.name === q));
    if (unknown !== undefined && !skipMissing) throw new QueueNotFoundError(unknown);
    return this.of(known.filter((q) => only.includes(q.name)));
  }

  private async of(specs: QueueSpec[]): Promise<pb.QueueStats[]> {
    if (!specs.length) return [];
    const now = Date.now();
    const queues = specs.map((q) => q.name);
    const [snapshots, windows, workers] = await Promise.all([this.reader.snapshots(queues, now), this.reader.windows(queues, now), this.workers.list()]);
    const counts = countWorkers(workers);
    const at = new Date(now);
    // Paused is the registry's word (PauseQueue sets it there; every worker-pool replica obeys it).
    return snapshots.map((s, i) => toQueueStats({ ...s, paused: s.paused || !!specs[i]!.paused }, windows[i]!, counts.get(s.queue), at));
  }

  /** Every live worker of every replica. */
  allWorkers(): Promise<pb.WorkerInfo[]> {
    return this.workers.list();
  }
}

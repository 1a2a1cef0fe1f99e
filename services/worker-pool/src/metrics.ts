import { type Counter, type Gauge, type Histogram, type Registry, counter, gauge, histogram } from '@jobmesh/telemetry';

/** Buckets for job durations and waits: 1 ms to 1 h. */
const JOB_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/**
 * The worker-pool's per-process series, counted where the work happens (the queue-level gauges,
 * such as jobmesh_queue_length and jobmesh_active_jobs, come from the monitor alone):
 * - `jobmesh_jobs_processed_total{queue,status}`: attempts by outcome: `completed`, `retried`
 *   (failed, another attempt follows) or `failed` (failed for good);
 * - `jobmesh_jobs_failed_total{queue,error_type}`: failed attempts by error name;
 * - `jobmesh_job_processing_duration_seconds{queue}`: how long attempts ran;
 * - `jobmesh_job_wait_seconds{queue}`: from when a job could first run to its first start;
 * - `jobmesh_worker_active_jobs{queue}`: attempts running in this process now;
 * - `jobmesh_jobs_stalled_total{queue}`: jobs found stalled (their worker went away).
 */
export function workerMetrics(registry: Registry) {
  return {
    processed: counter(registry, 'jobmesh_jobs_processed_total', 'Attempts finished, by outcome: completed, retried (failed, another attempt follows) or failed (for good)', ['queue', 'status']),
    failed: counter(registry, 'jobmesh_jobs_failed_total', 'Failed attempts, by error name', ['queue', 'error_type']),
    duration: histogram(registry, 'jobmesh_job_processing_duration_seconds', 'Time one attempt ran', ['queue'], JOB_BUCKETS),
    wait: histogram(registry, 'jobmesh_job_wait_seconds', 'Time from when a job could first run (enqueue + delay) to its first start', ['queue'], JOB_BUCKETS),
    active: gauge(registry, 'jobmesh_worker_active_jobs', 'Attempts running now in this process', ['queue']),
    stalled: counter(registry, 'jobmesh_jobs_stalled_total', 'Jobs found stalled: the worker holding them stopped renewing their lock', ['queue']),
  };
}

export type WorkerMetrics = ReturnType<typeof workerMetrics>;

/** At most this many error names per queue get series of their own; the rest count as "other". */
const MAX_ERROR_TYPES = 50;
const ERROR_TYPE = /^[A-Za-z_][A-Za-z0-9_.]{0,63}$/;

/**
 * One queue's series, bound once when its runner starts (an error name's on its first failure),
 * so that a job costs no label object and no label lookup of ours.
 */
export class QueueMetrics {
  readonly wait: Histogram.Internal<string>;
  readonly active: Gauge.Internal<string>;
  readonly completed: Counter.Internal;
  readonly retried: Counter.Internal;
  readonly failedFinal: Counter.Internal;
  readonly duration: Histogram.Internal<string>;
  readonly stalled: Counter.Internal;
  private readonly byError = new Map<string, Counter.Internal>();

  constructor(
    private readonly metrics: WorkerMetrics,
    private readonly queue: string,
  ) {
    this.wait = metrics.wait.labels({ queue });
    this.active = metrics.active.labels({ queue });
    this.completed = metrics.processed.labels({ queue, status: 'completed' });
    this.retried = metrics.processed.labels({ queue, status: 'retried' });
    this.failedFinal = metrics.processed.labels({ queue, status: 'failed' });
    this.duration = metrics.duration.labels({ queue });
    this.stalled = metrics.stalled.labels({ queue });
  }

  /** Counts a failed attempt (`final`: the job failed for good) under its error name. */
  failure(errorName: string | undefined, final: boolean): void {
    (final ? this.failedFinal : this.retried).inc();
    let type = errorName && ERROR_TYPE.test(errorName) ? errorName : 'Error';
    if (!this.byError.has(type) && this.byError.size >= MAX_ERROR_TYPES) type = 'other';
    let c = this.byError.get(type);
    if (!c) this.byError.set(type, (c = this.metrics.failed.labels({ queue: this.queue, error_type: type })));
    c.inc();
  }
}

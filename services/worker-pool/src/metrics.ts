import { type Counter, type Gauge, type Histogram, type Registry, counter, gauge, histogram } from '@jobmesh/telemetry';

/** Buckets for job durations and waits: 1 ms to 1 h. */
const JOB_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export function workerMetrics(registry: Registry) {
  return {
    completed: counter(registry, 'jobmesh_jobs_completed_total', 'Jobs completed by in-process processors', ['queue', 'name']),
    failed: counter(registry, 'jobmesh_jobs_failed_total', 'Failed attempts of in-process jobs, by whether another attempt follows', ['queue', 'name', 'final']),
    duration: histogram(registry, 'jobmesh_job_processing_seconds', 'Time one attempt ran', ['queue', 'name'], JOB_BUCKETS),
    wait: histogram(registry, 'jobmesh_job_wait_seconds', 'Time from when a job could first run (enqueue + delay) to its first start', ['queue'], JOB_BUCKETS),
    active: gauge(registry, 'jobmesh_jobs_active', 'Jobs running now in this process', ['queue']),
  };
}

export type WorkerMetrics = ReturnType<typeof workerMetrics>;

/** The series of one job name on a queue. */
export interface NameMetrics {
  completed: Counter.Internal;
  failedRetried: Counter.Internal;
  failedFinal: Counter.Internal;
  duration: Histogram.Internal<string>;
}

/**
 * One queue's series, bound once (the queue's own when the runner starts, a job name's on its
 * first job), so that a job costs no label object and no label lookup of ours.
 */
export class QueueMetrics {
  readonly wait: Histogram.Internal<string>;
  readonly active: Gauge.Internal<string>;
  private readonly byName = new Map<string, NameMetrics>();

  constructor(
    private readonly metrics: WorkerMetrics,
    private readonly queue: string,
  ) {
    this.wait = metrics.wait.labels({ queue });
    this.active = metrics.active.labels({ queue });
  }

  /** The series of job name `name`. */
  of(name: string): NameMetrics {
    let m = this.byName.get(name);
    if (!m) {
      const { queue, metrics } = this;
      m = {
        completed: metrics.completed.labels({ queue, name }),
        failedRetried: metrics.failed.labels({ queue, name, final: 'false' }),
        failedFinal: metrics.failed.labels({ queue, name, final: 'true' }),
        duration: metrics.duration.labels({ queue, name }),
      };
      this.byName.set(name, m);
    }
    return m;
  }
}

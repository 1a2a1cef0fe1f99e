import { type Registry, counter, gauge, histogram } from '@jobmesh/telemetry';

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

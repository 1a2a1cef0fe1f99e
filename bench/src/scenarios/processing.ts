import type { JobmeshClient } from '@jobmesh/sdk';
import { type ConnectionOptions, type Queue, QueueEvents, UnrecoverableError, Worker } from 'bullmq';
import type { RawJobs } from '../environment';
import { JOB_NAME, type JobmeshContext, type RawContext, jobData } from '../scenario';

/** Jobs queued per addBulk / EnqueueJobs call before a processing run. */
export const BATCH = 1000;

export function connection(redisUrl: string): ConnectionOptions {
  const { hostname, port } = new URL(redisUrl);
  return { host: hostname, port: Number(port), maxRetriesPerRequest: null };
}

/** Resolves once `events` has reported `jobs` events of `kind`. */
export function finishes(events: QueueEvents, jobs: number, kind: 'completed' | 'failed' = 'completed'): Promise<void> {
  let done = 0;
  return new Promise((resolveDone) =>
    events.on(kind, () => {
      if (++done === jobs) resolveDone();
    }),
  );
}

/** The job specs [start, start + BATCH) of a run of `jobs`. */
export function batchOf(start: number, jobs: number): { name: string; data: Record<string, unknown> }[] {
  return Array.from({ length: Math.min(BATCH, jobs - start) }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) }));
}

/**
 * The raw side of the processing scenarios: jobs queued on a paused queue, then a BullMQ Worker
 * at `concurrency` whose jobs do nothing (`outcome: 'noop'`) or fail for good (`'fail'`), timed
 * from resume to the last completed (or, for failing jobs, failed) event, counted by QueueEvents
 * in this process as the Jobmesh side's are. The Worker is a process of its own, as the
 * worker-pool is (env.rawWorker 'process'), or runs in this one (env.rawWorker 'bench', or
 * `inBench`: for a scenario whose Jobmesh worker runs here too).
 */
export async function rawProcessing(
  { queue, jobs, startClock, stopClock, env }: RawContext,
  concurrency: number,
  { outcome = 'noop', inBench = false }: { outcome?: RawJobs; inBench?: boolean } = {},
): Promise<number> {
  await queue.pause();
  for (let start = 0; start < jobs; start += BATCH) await queue.addBulk(batchOf(start, jobs));
  const conn = connection(env.redisUrl);
  const events = new QueueEvents(queue.name, { connection: conn, prefix: (queue as Queue).opts.prefix });
  await events.waitUntilReady();
  const worker = env.rawWorker === 'process' && !inBench ? await env.spawnRawWorker(queue, concurrency, outcome) : await workerHere(queue, conn, concurrency, outcome);
  const finished = finishes(events, jobs, outcome === 'fail' ? 'failed' : 'completed');
  try {
    startClock();
    await queue.resume();
    await finished;
    stopClock(); // stopping the worker is clean-up
    return jobs;
  } finally {
    await worker.stop();
    await events.close();
  }
}

/** Raw BullMQ's Worker in the bench's process. */
async function workerHere(queue: Queue, conn: ConnectionOptions, concurrency: number, kind: RawJobs): Promise<{ stop(): Promise<void> }> {
  const process = kind === 'fail' ? () => Promise.reject(new UnrecoverableError('bench failure')) : async (): Promise<unknown> => null;
  const worker = new Worker(queue.name, process, { connection: conn, prefix: queue.opts.prefix, concurrency });
  await worker.waitUntilReady();
  return { stop: () => worker.close() };
}

/** Pauses `queue` and queues `jobs` on it through EnqueueJobs, BATCH at a time, through `client`'s scheduler. */
export async function queuePaused(client: JobmeshClient, queue: string, jobs: number): Promise<void> {
  await client.pauseQueue(queue);
  for (let start = 0; start < jobs; start += BATCH) await client.enqueueJobs({ queue, jobs: batchOf(start, jobs) });
}

/**
 * The Jobmesh side of the processing scenarios: jobs queued through EnqueueJobs on a paused queue
 * (by `enqueue`, default: `queuePaused` through the bench's scheduler), then `startWorkers()`
 * (worker-pool processes, remote workers), timed from ResumeQueue until `done` (default: the last
 * completion); the workers are stopped afterwards.
 */
export async function jobmeshProcessing(
  { client, queue, jobs, startClock, stopClock, env }: JobmeshContext,
  startWorkers: () => Promise<{ stop(): Promise<void>; done?: () => Promise<void> }>,
  { enqueue = () => queuePaused(client, queue, jobs) }: { enqueue?: () => Promise<void> } = {},
): Promise<number> {
  await enqueue();
  const events = new QueueEvents(queue, { connection: connection(env.redisUrl), prefix: env.jobmeshPrefix });
  await events.waitUntilReady();
  const workers = await startWorkers();
  const completed = finishes(events, jobs);
  try {
    startClock();
    await client.resumeQueue(queue);
    await (workers.done ? workers.done() : completed);
    stopClock(); // stopping the workers is clean-up
    return jobs;
  } finally {
    await workers.stop();
    await events.close();
  }
}

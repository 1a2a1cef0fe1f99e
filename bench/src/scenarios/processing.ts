import { type ConnectionOptions, type Queue, QueueEvents, Worker } from 'bullmq';
import { JOB_NAME, type JobmeshContext, type RawContext, jobData } from '../scenario';

/** Jobs queued per addBulk / EnqueueJobs call before a processing run. */
export const BATCH = 1000;

export function connection(redisUrl: string): ConnectionOptions {
  const { hostname, port } = new URL(redisUrl);
  return { host: hostname, port: Number(port), maxRetriesPerRequest: null };
}

/** Resolves once `events` has reported `jobs` completions. */
export function completions(events: QueueEvents, jobs: number): Promise<void> {
  let done = 0;
  return new Promise((resolveDone) =>
    events.on('completed', () => {
      if (++done === jobs) resolveDone();
    }),
  );
}

/** The job specs [start, start + BATCH) of a run of `jobs`. */
export function batchOf(start: number, jobs: number): { name: string; data: Record<string, unknown> }[] {
  return Array.from({ length: Math.min(BATCH, jobs - start) }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) }));
}

/**
 * The raw side of the processing scenarios: jobs queued on a paused queue, then a BullMQ Worker in
 * this process at `concurrency` on no-op jobs, timed from resume to the last completion.
 */
export async function rawProcessing({ queue, jobs, startClock, env }: RawContext, concurrency: number): Promise<number> {
  await queue.pause();
  for (let start = 0; start < jobs; start += BATCH) await queue.addBulk(batchOf(start, jobs));
  const conn = connection(env.redisUrl);
  const events = new QueueEvents(queue.name, { connection: conn, prefix: (queue as Queue).opts.prefix });
  await events.waitUntilReady();
  const worker = new Worker(queue.name, async () => null, { connection: conn, prefix: queue.opts.prefix, concurrency });
  await worker.waitUntilReady();
  const finished = completions(events, jobs);
  try {
    startClock();
    await queue.resume();
    await finished;
    return jobs;
  } finally {
    await worker.close();
    await events.close();
  }
}

/**
 * The Jobmesh side of the processing scenarios: jobs queued through EnqueueJobs on a paused queue,
 * then `startWorkers()` (worker-pool processes, remote workers), timed from ResumeQueue to the
 * last completion; the workers are stopped afterwards.
 */
export async function jobmeshProcessing(
  { client, queue, jobs, startClock, env }: JobmeshContext,
  startWorkers: () => Promise<{ stop(): Promise<void> }>,
): Promise<number> {
  await client.pauseQueue(queue);
  for (let start = 0; start < jobs; start += BATCH) await client.enqueueJobs({ queue, jobs: batchOf(start, jobs) });
  const events = new QueueEvents(queue, { connection: connection(env.redisUrl), prefix: env.jobmeshPrefix });
  await events.waitUntilReady();
  const workers = await startWorkers();
  const finished = completions(events, jobs);
  try {
    startClock();
    await client.resumeQueue(queue);
    await finished;
    return jobs;
  } finally {
    await workers.stop();
    await events.close();
  }
}

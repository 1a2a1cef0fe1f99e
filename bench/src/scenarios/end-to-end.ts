import { resolve } from 'node:path';
import { type ConnectionOptions, QueueEvents, Worker } from 'bullmq';
import { JOB_NAME, type Scenario, jobData } from '../scenario';

const CONCURRENCY = 100;
const BATCH = 1000;
const NOOP_PROCESSOR = resolve(__dirname, '../../fixtures/noop-processor.js');

/** Resolves once `events` has reported `jobs` completions. */
function completions(events: QueueEvents, jobs: number): Promise<void> {
  let done = 0;
  return new Promise((resolveDone) =>
    events.on('completed', () => {
      if (++done === jobs) resolveDone();
    }),
  );
}

function connection(redisUrl: string): ConnectionOptions {
  const { hostname, port } = new URL(redisUrl);
  return { host: hostname, port: Number(port), maxRetriesPerRequest: null };
}

/**
 * No-op jobs at concurrency 100, timed from the moment workers may start until the last
 * completion: a BullMQ Worker in this process against a worker-pool process. The jobs are queued
 * (paused) before the clock starts, so only processing is measured.
 */
export const endToEnd: Scenario = {
  name: 'end-to-end',
  title: `no-op jobs, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  async raw({ queue, jobs, startClock, env }) {
    await queue.pause();
    for (let start = 0; start < jobs; start += BATCH) {
      await queue.addBulk(Array.from({ length: Math.min(BATCH, jobs - start) }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) })));
    }
    const conn = connection(env.redisUrl);
    const events = new QueueEvents(queue.name, { connection: conn, prefix: queue.opts.prefix });
    await events.waitUntilReady();
    const worker = new Worker(queue.name, async () => null, { connection: conn, prefix: queue.opts.prefix, concurrency: CONCURRENCY });
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
  },

  async jobmesh({ client, queue, jobs, startClock, env }) {
    await client.updateQueue({ queue: { name: queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
    await client.pauseQueue(queue);
    for (let start = 0; start < jobs; start += BATCH) {
      await client.enqueueJobs({ queue, jobs: Array.from({ length: Math.min(BATCH, jobs - start) }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) })) });
    }
    const events = new QueueEvents(queue, { connection: connection(env.redisUrl), prefix: env.jobmeshPrefix });
    await events.waitUntilReady();
    const pool = await env.spawnWorkerPool({ JOBMESH_PROCESSORS: NOOP_PROCESSOR, JOBMESH_WORKER_QUEUES: queue });
    const finished = completions(events, jobs);
    try {
      startClock();
      await client.resumeQueue(queue);
      await finished;
      return jobs;
    } finally {
      await pool.stop();
      await events.close();
    }
  },
};

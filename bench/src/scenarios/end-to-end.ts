import { resolve } from 'node:path';
import { QueueEvents } from 'bullmq';
import type { Scenario } from '../scenario';
import { BATCH, batchOf, completions, connection, rawProcessing } from './processing';

const CONCURRENCY = 100;
const NOOP_PROCESSOR = resolve(__dirname, '../../fixtures/noop-processor.js');

/**
 * No-op jobs at concurrency 100, timed from the moment workers may start until the last
 * completion: a BullMQ Worker in this process against a worker-pool process. The jobs are queued
 * (paused) before the clock starts, so only processing is measured.
 */
export const endToEnd: Scenario = {
  name: 'end-to-end',
  title: `no-op jobs, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  raw: (ctx) => rawProcessing(ctx, CONCURRENCY),

  async jobmesh({ client, queue, jobs, startClock, env }) {
    await client.updateQueue({ queue: { name: queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
    await client.pauseQueue(queue);
    for (let start = 0; start < jobs; start += BATCH) {
      await client.enqueueJobs({ queue, jobs: batchOf(start, jobs) });
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

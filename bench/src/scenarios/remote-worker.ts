import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { QueueEvents } from 'bullmq';
import { JOB_NAME, type Scenario } from '../scenario';
import { BATCH, batchOf, completions, connection, rawProcessing } from './processing';

const CONCURRENCY = 100;

/**
 * No-op jobs run by a worker in this process: a raw BullMQ Worker on Redis against the SDK's
 * RemoteWorker on a worker-pool's Connect stream (leases, credits, heartbeats), both at
 * concurrency 100. Jobs are queued before the clock starts.
 */
export const remoteWorker: Scenario = {
  name: 'remote-worker',
  title: `remote worker, no-op, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  raw: (ctx) => rawProcessing(ctx, CONCURRENCY),

  async jobmesh({ client, queue, jobs, startClock, env }) {
    await client.pauseQueue(queue);
    for (let start = 0; start < jobs; start += BATCH) {
      await client.enqueueJobs({ queue, jobs: batchOf(start, jobs) });
    }
    const events = new QueueEvents(queue, { connection: connection(env.redisUrl), prefix: env.jobmeshPrefix });
    await events.waitUntilReady();
    // A pool with no processors of its own: every job goes to the remote worker.
    const pool = await env.spawnWorkerPool({ JOBMESH_WORKER_QUEUES: queue, JOBMESH_REMOTE_GRACE: '30s' });
    const worker = new RemoteWorker({
      address: `127.0.0.1:${pool.port}`,
      processors: [defineProcessor({ queue, name: JOB_NAME, process: () => null })],
      concurrency: CONCURRENCY,
    });
    await worker.start();
    const finished = completions(events, jobs);
    try {
      startClock();
      await client.resumeQueue(queue);
      await finished;
      return jobs;
    } finally {
      await worker.stop({ graceMs: 5000 });
      await pool.stop();
      await events.close();
    }
  },
};

import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { type ConnectionOptions, QueueEvents, Worker } from 'bullmq';
import { JOB_NAME, type Scenario, jobData } from '../scenario';

const CONCURRENCY = 100;
const BATCH = 1000;

function connection(redisUrl: string): ConnectionOptions {
  const { hostname, port } = new URL(redisUrl);
  return { host: hostname, port: Number(port), maxRetriesPerRequest: null };
}

/** Resolves once `events` has reported `jobs` completions. */
function completions(events: QueueEvents, jobs: number): Promise<void> {
  let done = 0;
  return new Promise((resolveDone) =>
    events.on('completed', () => {
      if (++done === jobs) resolveDone();
    }),
  );
}

/**
 * No-op jobs run by a worker in this process: a raw BullMQ Worker on Redis against the SDK's
 * RemoteWorker on a worker-pool's Connect stream (leases, credits, heartbeats), both at
 * concurrency 100. Jobs are queued before the clock starts.
 */
export const remoteWorker: Scenario = {
  name: 'remote-worker',
  title: `remote worker, no-op, concurrency ${CONCURRENCY}`,
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
    await client.pauseQueue(queue);
    for (let start = 0; start < jobs; start += BATCH) {
      await client.enqueueJobs({ queue, jobs: Array.from({ length: Math.min(BATCH, jobs - start) }, (_, k) => ({ name: JOB_NAME, data: jobData(start + k) })) });
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

import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { JOB_NAME, type Scenario } from '../scenario';
import { jobmeshProcessing, rawProcessing } from './processing';

const CONCURRENCY = 100;

/**
 * No-op jobs run by a worker in this process (both sides): a raw BullMQ Worker on Redis against the SDK's
 * RemoteWorker on a worker-pool's Connect stream (leases, credits, heartbeats), both at
 * concurrency 100 (the worker's and the queue's). Jobs are queued before the clock starts.
 */
export const remoteWorker: Scenario = {
  name: 'remote-worker',
  title: `remote worker, no-op, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  // Both workers in the bench's process: the RemoteWorker is the one a user writes and runs.
  raw: (ctx) => rawProcessing(ctx, CONCURRENCY, { inBench: true }),

  jobmesh: (ctx) =>
    jobmeshProcessing(ctx, async () => {
      // The queue's concurrency bounds the jobs a replica has out at once, remote ones too: 100,
      // as the raw Worker's (the default, 10, held this side to a tenth of the raw one's).
      await ctx.client.updateQueue({ queue: { name: ctx.queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
      // A pool with no processors of its own: every job goes to the remote worker (those the pool
      // takes up before the worker connects wait for it).
      const pool = await ctx.env.spawnWorkerPool({ JOBMESH_WORKER_QUEUES: ctx.queue });
      const worker = new RemoteWorker({
        address: `127.0.0.1:${pool.port}`,
        processors: [defineProcessor({ queue: ctx.queue, name: JOB_NAME, process: () => null })],
        concurrency: CONCURRENCY,
      });
      await worker.start();
      return {
        stop: async () => {
          await worker.stop({ graceMs: 5000 });
          await pool.stop();
        },
      };
    }),
};

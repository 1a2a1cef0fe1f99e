import { resolve } from 'node:path';
import type { Scenario } from '../scenario';
import { jobmeshProcessing, rawProcessing } from './processing';

const CONCURRENCY = 100;
const NOOP_PROCESSOR = resolve(__dirname, '../../fixtures/noop-processor.js');

/**
 * No-op jobs at concurrency 100, timed from the moment workers may start until the last
 * completion: a BullMQ Worker process (raw-worker-main.ts; `--raw-worker bench` runs it in this
 * one) against a worker-pool process. The jobs are queued (paused) before the clock starts, so
 * only processing is measured.
 */
export const endToEnd: Scenario = {
  name: 'end-to-end',
  title: `no-op jobs, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  raw: (ctx) => rawProcessing(ctx, CONCURRENCY),

  async jobmesh(ctx) {
    await ctx.client.updateQueue({ queue: { name: ctx.queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
    return jobmeshProcessing(ctx, () => ctx.env.spawnWorkerPool({ JOBMESH_PROCESSORS: NOOP_PROCESSOR, JOBMESH_WORKER_QUEUES: ctx.queue }));
  },
};

import { resolve } from 'node:path';
import { DeadLetterClient } from '@jobmesh/sdk';
import type { Scenario } from '../scenario';
import { jobmeshProcessing, rawProcessing } from './processing';

const CONCURRENCY = 100;
const FAILING_PROCESSOR = resolve(__dirname, '../../fixtures/failing-processor.js');
/** How often the Jobmesh side reads the dead-letter count; small next to a run of seconds. */
const POLL_MS = 20;

/**
 * Jobs that fail for good at once (UnrecoverableError), concurrency 100. Raw: a BullMQ Worker,
 * timed until the last job is in the failed set, which is all a BullMQ user has. Jobmesh: a
 * worker-pool process and a dead-letter process, timed until the last dead letter is stored,
 * categorised and indexed (GetDeadLetterStats, read every 20 ms).
 */
export const deadLetter: Scenario = {
  name: 'dead-letter',
  title: `failing jobs to dead letters, concurrency ${CONCURRENCY}`,
  defaultJobs: 20_000,

  raw: (ctx) =>
    rawProcessing(ctx, CONCURRENCY, { outcome: 'fail' }),

  async jobmesh(ctx) {
    await ctx.client.updateQueue({ queue: { name: ctx.queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
    return jobmeshProcessing(ctx, async () => {
      const pool = await ctx.env.spawnWorkerPool({ JOBMESH_PROCESSORS: FAILING_PROCESSOR, JOBMESH_WORKER_QUEUES: ctx.queue });
      const service = await ctx.env.spawnDeadLetter();
      const dlq = DeadLetterClient.connect(`127.0.0.1:${service.port}`);
      return {
        done: async () => {
          while ((await dlq.stats(ctx.queue)).total < ctx.jobs) await new Promise((r) => setTimeout(r, POLL_MS));
        },
        // The dead letters go with the FLUSHALL before the next run.
        stop: async () => {
          dlq.close();
          await Promise.all([service.stop(), pool.stop()]);
        },
      };
    });
  },
};

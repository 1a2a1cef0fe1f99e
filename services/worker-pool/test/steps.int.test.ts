import * as pb from '@jobmesh/contracts';
import { defineProcessor, runSteps, type Step } from '@jobmesh/sdk';
import { Keys } from '@jobmesh/queue';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;
const retryFast = { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } };

let h: PoolHarness;
/** Executions of each step, per "queue/id", with the input each got; kept outside Redis. */
const executions = new Map<string, { step: string; attempt: number; input: unknown }[]>();

function ran(job: { queue: string; id: string }, step: string, attempt: number, input: unknown): void {
  const key = `${job.queue}/${job.id}`;
  executions.set(key, [...(executions.get(key) ?? []), { step, attempt, input }]);
}

beforeAll(async () => {
  h = await startPoolHarness();
  await h.startPool([
    defineProcessor<{ n: number }>({
      queue: '*',
      name: 'pipeline',
      process(job, ctx) {
        const step = (name: string, fn: (n: number) => number, failOnce = false): Step<{ n: number }, { n: number }> => ({
          name,
          run(input) {
            ran(job, name, ctx.attempt, input);
            if (failOnce && ctx.attempt === 1) throw new Error(`${name} failed the first time`);
            return { n: fn(input.n) };
          },
        });
        return runSteps(ctx, { n: job.data.n }, [
          step('double', (n) => n * 2),
          step('add-three', (n) => n + 3),
          step('times-ten', (n) => n * 10, true),
          step('plus-one', (n) => n + 1),
        ]);
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'checkout',
      async process(job, ctx) {
        const charge = await ctx.step('charge', () => {
          ran(job, 'charge', ctx.attempt, null);
          return { chargeId: `ch_${job.id}_${ctx.attempt}` };
        });
        const email = await ctx.step('email', () => {
          ran(job, 'email', ctx.attempt, charge);
          if (ctx.attempt === 1) throw new Error('mail server down');
          return 'sent';
        });
        return { charge, email };
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'fails-after-its-steps',
      async process(job, ctx) {
        const value = await ctx.step('only', () => {
          ran(job, 'only', ctx.attempt, null);
          return 42;
        });
        if (ctx.attempt === 1) throw new Error('failed after the step');
        return value;
      },
    }),
  ]);
});
afterAll(async () => {
  await h.stop();
});

async function run(name: string, data: Record<string, unknown> = {}): Promise<{ queue: string; job: pb.Job }> {
  const queue = uniqueQueue('steps');
  await h.client.createQueue({ queue: { name: queue } });
  const { job } = await h.client.enqueueJob({ queue, job: { name, data, options: retryFast } });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'the job to complete');
  // GetJob reads fields and state in two steps; read once more for the final fields.
  return { queue, job: await h.client.getJob(queue, job!.id) };
}

const stepsKey = (queue: string, id: string): string => new Keys(h.prefix).steps(queue, id);

it('resumes runSteps at the step that failed, with the output of the step before it', async () => {
  const { queue, job } = await run('pipeline', { n: 1 });
  expect(job.result).toEqual({ n: 51 }); // ((1·2)+3)·10+1
  expect(job.attemptsMade).toBe(2);
  expect(job.progress).toBe(100);
  expect(executions.get(`${queue}/${job.id}`)).toEqual([
    { step: 'double', attempt: 1, input: { n: 1 } },
    { step: 'add-three', attempt: 1, input: { n: 2 } },
    { step: 'times-ten', attempt: 1, input: { n: 5 } },
    // Attempt 2 starts at the failed step, fed the stored output of add-three.
    { step: 'times-ten', attempt: 2, input: { n: 5 } },
    { step: 'plus-one', attempt: 2, input: { n: 50 } },
  ]);
  // The stored step results go once the job completed.
  expect(await h.redisClient().exists(stepsKey(queue, job.id))).toBe(0);
});

it('runs a ctx.step that succeeded only once across attempts and returns its stored result', async () => {
  const { queue, job } = await run('checkout');
  const charge = { chargeId: `ch_${job.id}_1` };
  expect(job.result).toEqual({ charge, email: 'sent' });
  expect(executions.get(`${queue}/${job.id}`)).toEqual([
    { step: 'charge', attempt: 1, input: null },
    { step: 'email', attempt: 1, input: charge },
    { step: 'email', attempt: 2, input: charge },
  ]);
});

it('removes the stored step results on completion even when the last attempt ran no new step', async () => {
  const { queue, job } = await run('fails-after-its-steps');
  expect(job.result).toBe(42);
  expect(executions.get(`${queue}/${job.id}`)).toEqual([{ step: 'only', attempt: 1, input: null }]);
  expect(await h.redisClient().exists(stepsKey(queue, job.id))).toBe(0);
});

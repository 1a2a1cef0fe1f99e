import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

let h: PoolHarness;
const seen: string[] = [];
const queue = uniqueQueue('basics');

beforeAll(async () => {
  h = await startPoolHarness();
  await h.client.createQueue({ queue: { name: queue } });
  await h.startPool([
    defineProcessor({
      queue,
      name: 'echo',
      async process(job, ctx) {
        seen.push(job.id);
        await ctx.progress(50);
        await ctx.log('halfway');
        return { echoed: job.data, attempt: ctx.attempt };
      },
    }),
  ]);
});
afterAll(async () => {
  await h.stop();
});

it('runs an enqueued job with its processor and stores the result', async () => {
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'echo', data: { n: 1 } } });
  const done = await eventually(async () => {
    const j = await h.client.getJob(queue, job!.id);
    return j.state === pb.JobState.JOB_STATE_COMPLETED && j;
  });
  expect(done.result).toEqual({ echoed: { n: 1 }, attempt: 1 });
  expect(seen).toContain(job!.id);
});

it('streams progress and log events to WatchJob', async () => {
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'echo', data: {}, options: { delay: { seconds: 0, nanos: 300_000_000 } } } });
  const types: string[] = [];
  for await (const e of h.client.watchJob(queue, job!.id)) types.push(pb.jobEventTypeToJSON(e.type));
  expect(types).toEqual(expect.arrayContaining(['JOB_EVENT_TYPE_ACTIVE', 'JOB_EVENT_TYPE_PROGRESS', 'JOB_EVENT_TYPE_LOG', 'JOB_EVENT_TYPE_COMPLETED']));
  expect(types.indexOf('JOB_EVENT_TYPE_PROGRESS')).toBeLessThan(types.indexOf('JOB_EVENT_TYPE_COMPLETED'));
});

it('with processor_wait 0, fails a job with no processor at once, without retries, as PROCESSOR_NOT_FOUND', async () => {
  const queue = uniqueQueue('basics-pnf');
  await h.client.createQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody-handles-this', options: { attempts: 5 } } });
  const failed = await eventually(async () => {
    const j = await h.client.getJob(queue, job!.id);
    return j.state === pb.JobState.JOB_STATE_FAILED && j;
  });
  expect(failed.failureReason).toMatch(/^PROCESSOR_NOT_FOUND/);
  expect(failed.attemptsMade).toBe(1);
});

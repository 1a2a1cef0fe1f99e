import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { JobmeshClient } from '@jobmesh/sdk';
import { FlakyScheduler } from './flaky-scheduler';

/** A SchedulerService whose first `stall` calls of each method never answer and whose first `failFirst` answer UNAVAILABLE. */
const fake = new FlakyScheduler();
const calls = fake.calls;
let client: JobmeshClient;

beforeAll(async () => {
  client = await fake.start({
    enqueueJob: fake.answer('enqueueJob', () => pb.EnqueueJobResponse.fromPartial({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }), deduplicated: true })),
    createQueue: fake.answer('createQueue', () => pb.CreateQueueResponse.fromPartial({ queue: pb.QueueConfig.fromPartial({ name: 'q' }) })),
    enqueueFlow: fake.answer('enqueueFlow', () =>
      pb.EnqueueFlowResponse.fromPartial({ flow: { job: pb.Job.fromPartial({ id: 'root' }), children: [] }, deduplicated: false }),
    ),
  });
});
afterAll(async () => {
  client.close();
  await fake.stop();
});
beforeEach(() => fake.reset());

const keyed = { queue: 'q', job: { name: 'n', options: { idempotencyKey: 'k' } } };

it('with attemptTimeoutMs, gives up a try that gets no answer and retries within the deadline', async () => {
  fake.stall = 2;
  const started = Date.now();
  await expect(client.enqueueJob(keyed, { retry: { attemptTimeoutMs: 300 } })).resolves.toMatchObject({ deduplicated: true });
  expect(calls.enqueueJob).toBe(3);
  // Two tries of 300 ms and two short backoffs, far from the 5 s deadline (a generous bound under load).
  expect(Date.now() - started).toBeLessThan(4000);
});

it('without attemptTimeoutMs, one try may use the whole deadline and DEADLINE_EXCEEDED is not retried', async () => {
  fake.stall = 1;
  await expect(client.enqueueJob(keyed, { timeoutMs: 400 })).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
  expect(calls.enqueueJob).toBe(1);
});

it('stops at the call deadline even when each try has its own', async () => {
  fake.stall = 100;
  const started = Date.now();
  await expect(client.enqueueJob(keyed, { timeoutMs: 700, retry: { attemptTimeoutMs: 200, maxTries: 100 } })).rejects.toMatchObject({
    code: status.DEADLINE_EXCEEDED,
  });
  expect(calls.enqueueJob).toBeGreaterThanOrEqual(2);
  expect(calls.enqueueJob).toBeLessThanOrEqual(4);
  expect(Date.now() - started).toBeLessThan(700 + 1000);
});

it('never retries a call that may not be repeated, with or without attemptTimeoutMs', async () => {
  fake.stall = 1;
  await expect(client.createQueue({ queue: { name: 'q' } }, { timeoutMs: 1000, retry: { attemptTimeoutMs: 200 } })).rejects.toMatchObject({
    code: status.DEADLINE_EXCEEDED,
  });
  expect(calls.createQueue).toBe(1);
});

it('honours maxTries', async () => {
  fake.failFirst = 10;
  await expect(client.enqueueJob(keyed, { retry: { maxTries: 6 } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJob).toBe(6);
});

it('retries enqueueFlow only when the root has a job_id', async () => {
  fake.failFirst = 2;
  await expect(client.enqueueFlow({ root: { queue: 'q', job: { name: 'p' } } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueFlow).toBe(1);
  delete calls.enqueueFlow;
  await expect(client.enqueueFlow({ root: { queue: 'q', job: { name: 'p', options: { jobId: 'root' } } } })).resolves.toMatchObject({ deduplicated: false });
  expect(calls.enqueueFlow).toBe(3);
});

import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { JobmeshClient } from '@jobmesh/sdk';
import { FlakyScheduler } from './flaky-scheduler';

/** A SchedulerService that answers UNAVAILABLE `failFirst` times per method (2 unless a test says), then OK. */
const fake = new FlakyScheduler();
const calls = fake.calls;
let client: JobmeshClient;

beforeAll(async () => {
  client = await fake.start({
    getJob: fake.answer('getJob', () => pb.GetJobResponse.fromPartial({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }) })),
    listJobs: fake.answer('listJobs', () => pb.ListJobsResponse.fromPartial({ jobs: [], nextPageToken: '' })),
    createQueue: fake.answer('createQueue', () => pb.CreateQueueResponse.fromPartial({ queue: pb.QueueConfig.fromPartial({ name: 'q' }) })),
    enqueueJob: fake.answer('enqueueJob', () => pb.EnqueueJobResponse.fromPartial({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }), deduplicated: false })),
    enqueueJobs: fake.answer('enqueueJobs', () => pb.EnqueueJobsResponse.fromPartial({ jobs: [] })),
  });
});
afterAll(async () => {
  client.close();
  await fake.stop();
});
beforeEach(() => fake.reset({ failFirst: 2 }));

it('retries a read on UNAVAILABLE and succeeds on the third try', async () => {
  const job = await client.getJob('q', 'j1');
  expect(job.id).toBe('j1');
  expect(calls.getJob).toBe(3);
  await client.listJobs({ queue: 'q' });
  expect(calls.listJobs).toBe(3);
});

it('gives up after 4 tries', async () => {
  fake.failFirst = 10;
  await expect(client.getJob('q', 'j1')).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.getJob).toBe(4);
});

it('does not retry beyond the call deadline', async () => {
  fake.failFirst = 10;
  await expect(client.getJob('q', 'j1', { timeoutMs: 120 })).rejects.toBeDefined();
  expect(calls.getJob).toBeLessThan(4);
});

it('never retries a non-idempotent call', async () => {
  await expect(client.createQueue({ queue: { name: 'q' } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.createQueue).toBe(1);
});

it('retries enqueueJob only with an idempotency key or a job id', async () => {
  await expect(client.enqueueJob({ queue: 'q', job: { name: 'n' } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJob).toBe(1);
  delete calls.enqueueJob;
  await client.enqueueJob({ queue: 'q', job: { name: 'n', options: { idempotencyKey: 'k1' } } });
  expect(calls.enqueueJob).toBe(3);
  delete calls.enqueueJob;
  await client.enqueueJob({ queue: 'q', job: { name: 'n', options: { jobId: 'id-1' } } });
  expect(calls.enqueueJob).toBe(3);
});

it('retries enqueueJobs only when every job is keyed', async () => {
  await expect(client.enqueueJobs({ queue: 'q', jobs: [{ name: 'a', options: { jobId: 'a' } }, { name: 'b' }] })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJobs).toBe(1);
  delete calls.enqueueJobs;
  await client.enqueueJobs({ queue: 'q', jobs: [{ name: 'a', options: { jobId: 'a' } }, { name: 'b', options: { idempotencyKey: 'b' } }] });
  expect(calls.enqueueJobs).toBe(3);
});

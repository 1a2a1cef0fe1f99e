import { status } from '@grpc/grpc-js';
import type { RedisClient } from '@jobmesh/testing';
import { uniqueQueue, useSchedulerHarness } from '../src/testing';
import { rejectsWithoutWriting as rejectsWithoutWritingTo } from './rejects';

const h = useSchedulerHarness();
let redis: RedisClient;
beforeAll(() => {
  redis = h.redisClient();
});

const rejectsWithoutWriting = rejectsWithoutWritingTo(h, () => redis);

const field = (name: string) => expect.stringContaining(name);

describe('unknown queue', () => {
  it('rejects EnqueueJob with NOT_FOUND', async () => {
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue: uniqueQueue('missing'), job: { name: 'x' } }), { code: status.NOT_FOUND });
  });

  it('rejects EnqueueJobs with NOT_FOUND', async () => {
    await rejectsWithoutWriting(() => h.client.enqueueJobs({ queue: uniqueQueue('missing'), jobs: [{ name: 'x' }] }), { code: status.NOT_FOUND });
  });

  it('rejects GetJob with NOT_FOUND', async () => {
    await rejectsWithoutWriting(() => h.client.getJob(uniqueQueue('missing'), 'x'), { code: status.NOT_FOUND });
  });

  it('rejects ListJobs with NOT_FOUND', async () => {
    await rejectsWithoutWriting(() => h.client.listJobs({ queue: uniqueQueue('missing') }), { code: status.NOT_FOUND });
  });

  it('rejects CancelJob, RetryJob and PromoteJob with NOT_FOUND', async () => {
    const queue = uniqueQueue('missing');
    await rejectsWithoutWriting(() => h.client.cancelJob(queue, 'x'), { code: status.NOT_FOUND });
    await rejectsWithoutWriting(() => h.client.retryJob(queue, 'x'), { code: status.NOT_FOUND });
    await rejectsWithoutWriting(() => h.client.promoteJob(queue, 'x'), { code: status.NOT_FOUND });
  });
});

describe('invalid jobs are rejected with INVALID_ARGUMENT naming the field, and write nothing', () => {
  it('a bad job name → job.name', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: '../etc/passwd' } }), { code: status.INVALID_ARGUMENT, details: field('job.name') });
  });

  it('an empty job name → job.name', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: '' } }), { code: status.INVALID_ARGUMENT, details: field('job.name') });
  });

  it('a missing job → job', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue }), { code: status.INVALID_ARGUMENT, details: field('job') });
  });

  it('a negative delay → job.options.delay', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { delay: { seconds: -5, nanos: 0 } } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.delay'),
    });
  });

  it('attempts 0 → job.options.attempts', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 0 } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.attempts'),
    });
  });

  it('a backoff jitter over 1 → job.options.backoff.jitter', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { backoff: { kind: 1, delay: { seconds: 1, nanos: 0 }, jitter: 1.5 } } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.backoff.jitter'),
    });
  });

  it('a job_id that is a plain integer → job.options.job_id', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { jobId: '42' } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.job_id'),
    });
  });

  it('a job_id with a colon → job.options.job_id', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { jobId: 'a:b' } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.job_id'),
    });
  });

  it('an idempotency key over 512 characters → job.options.idempotency_key', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'k'.repeat(513) } } }), {
      code: status.INVALID_ARGUMENT,
      details: field('job.options.idempotency_key'),
    });
  });

  it('a bad queue name → queue', async () => {
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue: 'no spaces allowed', job: { name: 'x' } }), {
      code: status.INVALID_ARGUMENT,
      details: field('queue'),
    });
  });
});

describe('payload size', () => {
  it('rejects data over 256 KiB with RESOURCE_EXHAUSTED naming job.data, writing nothing', async () => {
    const queue = await h.newQueue();
    const data = { blob: 'x'.repeat(256 * 1024) };
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'big', data } }), {
      code: status.RESOURCE_EXHAUSTED,
      details: field('job.data'),
    });
  });

  it('rejects a batch holding one job over the limit, naming jobs[i].data, writing nothing', async () => {
    const queue = await h.newQueue();
    const jobs = [{ name: 'small' }, { name: 'big', data: { blob: 'x'.repeat(256 * 1024) } }];
    await rejectsWithoutWriting(() => h.client.enqueueJobs({ queue, jobs }), { code: status.RESOURCE_EXHAUSTED, details: field('jobs[1].data') });
  });

  it('accepts data just under the limit', async () => {
    const queue = await h.newQueue();
    const data = { blob: 'x'.repeat(256 * 1024 - 20) };
    await expect(h.client.enqueueJob({ queue, job: { name: 'fits', data } })).resolves.toMatchObject({ deduplicated: false });
  });
});

describe('other rejected calls write nothing', () => {
  it('a second CreateQueue of an existing name (ALREADY_EXISTS)', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: queue, concurrency: 99 } }), { code: status.ALREADY_EXISTS });
    await expect(h.client.getQueue(queue)).resolves.toMatchObject({ concurrency: 10 });
  });

  it('an UpdateQueue with a bad mask (INVALID_ARGUMENT)', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.updateQueue({ queue: { name: queue, concurrency: 2 }, updateMask: ['concurrency', 'nonsense'] }), {
      code: status.INVALID_ARGUMENT,
      details: field('update_mask'),
    });
  });

  it('an UpsertSchedule with a bad cron (INVALID_ARGUMENT)', async () => {
    const queue = await h.newQueue();
    await rejectsWithoutWriting(() => h.client.upsertSchedule({ id: 's', queue, cron: '61 * * * *', template: { name: 'x' } }), {
      code: status.INVALID_ARGUMENT,
      details: field('schedule.cron'),
    });
  });
});

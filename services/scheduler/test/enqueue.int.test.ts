import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { uniqueQueue, useSchedulerHarness } from '../src/testing';

const h = useSchedulerHarness();

const S = pb.JobState;
const sec = (seconds: number) => ({ seconds, nanos: 0 });

const jobCounts = (queue: string): Promise<Record<string, number>> =>
  h.withBullQueue(queue, (q) => q.getJobCounts('waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed', 'waiting-children'));
const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

describe('EnqueueJob', () => {
  it('enqueues a job with data and reads it back WAITING with the data', async () => {
    const queue = await h.newQueue();
    const data = { to: 'ada@example.com', n: 3, nested: { ok: true, list: [1, 'two'] } };
    const res = await h.client.enqueueJob({ queue, job: { name: 'send-email', data } });
    expect(res.deduplicated).toBe(false);
    expect(res.job).toMatchObject({ queue, name: 'send-email', state: S.JOB_STATE_WAITING });
    // The response leaves out the data the caller just sent; GetJob has it.
    expect(res.job!.data).toBeUndefined();
    const got = await h.client.getJob(queue, res.job!.id);
    expect(got).toMatchObject({ id: res.job!.id, queue, name: 'send-email', data, state: S.JOB_STATE_WAITING, attemptsMade: 0 });
    expect(got.createdAt).toBeInstanceOf(Date);
  });

  it('enqueues a delayed job as DELAYED with run_at about delay after now', async () => {
    const queue = await h.newQueue();
    const before = Date.now();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'later', options: { delay: sec(60) } } });
    expect(job!.state).toBe(S.JOB_STATE_DELAYED);
    const got = await h.client.getJob(queue, job!.id);
    expect(got.state).toBe(S.JOB_STATE_DELAYED);
    expect(got.options!.delay).toEqual(sec(60));
    expect(got.runAt!.getTime()).toBeGreaterThanOrEqual(before + 60_000);
    expect(got.runAt!.getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
  });

  it('enqueues a job with run_at in the future as DELAYED until that time', async () => {
    const queue = await h.newQueue();
    const runAt = new Date(Date.now() + 3_600_000);
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'at', options: { runAt } } });
    const got = await h.client.getJob(queue, job!.id);
    expect(got.state).toBe(S.JOB_STATE_DELAYED);
    expect(Math.abs(got.runAt!.getTime() - runAt.getTime())).toBeLessThan(1000);
  });

  it('enqueues a job with run_at in the past as WAITING', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'at', options: { runAt: new Date(Date.now() - 60_000) } } });
    await expect(h.client.getJob(queue, job!.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING });
  });

  it('enqueues a job with a priority as PRIORITIZED', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'urgent', options: { priority: 1 } } });
    expect(job!.state).toBe(S.JOB_STATE_PRIORITIZED);
    await expect(h.client.getJob(queue, job!.id)).resolves.toMatchObject({ state: S.JOB_STATE_PRIORITIZED, options: { priority: 1 } });
  });

  it('round-trips attempts, LINEAR backoff with max_delay, timeout and a custom job_id', async () => {
    const queue = await h.newQueue();
    const options = {
      attempts: 7,
      backoff: { kind: pb.BackoffKind.BACKOFF_KIND_LINEAR, delay: sec(2), maxDelay: sec(30), jitter: 0.25 },
      timeout: sec(45),
      jobId: 'order-1234',
    };
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'charge', options } });
    expect(job!.id).toBe('order-1234');
    const got = await h.client.getJob(queue, 'order-1234');
    expect(got.state).toBe(S.JOB_STATE_WAITING);
    expect(got.options).toMatchObject({
      attempts: 7,
      backoff: { kind: pb.BackoffKind.BACKOFF_KIND_LINEAR, delay: sec(2), maxDelay: sec(30), jitter: 0.25 },
      timeout: sec(45),
      jobId: 'order-1234',
    });
  });

  it('round-trips EXPONENTIAL backoff and applies the built-in defaults to unset options', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'x', options: { backoff: { kind: pb.BackoffKind.BACKOFF_KIND_EXPONENTIAL, delay: sec(5) } } },
    });
    const got = await h.client.getJob(queue, job!.id);
    expect(got.options).toMatchObject({
      attempts: 3,
      backoff: { kind: pb.BackoffKind.BACKOFF_KIND_EXPONENTIAL, delay: sec(5) },
      keepCompleted: { count: 1000, age: sec(86_400) },
    });
  });

  it("applies the queue's default_job_options where the job sets none", async () => {
    const queue = uniqueQueue();
    await h.client.createQueue({ queue: { name: queue, defaultJobOptions: { attempts: 9, timeout: sec(10) } } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { timeout: sec(20) } } });
    await expect(h.client.getJob(queue, job!.id)).resolves.toMatchObject({ options: { attempts: 9, timeout: sec(20) } });
  });

  it('returns the existing job with deduplicated=true when the same job_id is enqueued again', async () => {
    const queue = await h.newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', data: { v: 1 }, options: { jobId: 'same-id' } } });
    const second = await h.client.enqueueJob({ queue, job: { name: 'x', data: { v: 2 }, options: { jobId: 'same-id' } } });
    expect(first.deduplicated).toBe(false);
    expect(second.deduplicated).toBe(true);
    expect(second.job).toMatchObject({ id: 'same-id', data: { v: 1 } });
    expect(total(await jobCounts(queue))).toBe(1);
  });

  it('carries the trace id of a W3C traceparent sent in metadata', async () => {
    const queue = await h.newQueue();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } }, { metadata: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    await expect(h.client.getJob(queue, job!.id)).resolves.toMatchObject({ traceId });
  });
});

describe('EnqueueJobs', () => {
  it('enqueues a batch and returns the ids in request order', async () => {
    const queue = await h.newQueue();
    const jobs = [0, 1, 2, 3].map((i) => ({ name: `step-${i}`, data: { i } }));
    const res = await h.client.enqueueJobs({ queue, jobs });
    expect(res.jobs).toHaveLength(4);
    for (const [i, e] of res.jobs.entries()) {
      expect(e.deduplicated).toBe(false);
      await expect(h.client.getJob(queue, e.id)).resolves.toMatchObject({ name: `step-${i}`, data: { i } });
    }
    expect(new Set(res.jobs.map((j) => j.id)).size).toBe(4);
  });

  it("stores each job of a batch with the queue's default_job_options, or its own where it sets them", async () => {
    const queue = uniqueQueue();
    await h.client.createQueue({ queue: { name: queue, defaultJobOptions: { attempts: 9, timeout: sec(10) } } });
    const own = { 2: { attempts: 2 }, 3: { timeout: sec(30) } } as Record<number, object>;
    const res = await h.client.enqueueJobs({ queue, jobs: [0, 1, 2, 3, 4, 5].map((i) => ({ name: 'x', data: { i }, ...(own[i] && { options: own[i] }) })) });
    const stored = await Promise.all(res.jobs.map((e) => h.client.getJob(queue, e.id)));
    expect(stored.map((j) => [j.data, j.options?.attempts, j.options?.timeout])).toEqual([
      [{ i: 0 }, 9, sec(10)],
      [{ i: 1 }, 9, sec(10)],
      [{ i: 2 }, 2, sec(10)],
      [{ i: 3 }, 9, sec(30)],
      [{ i: 4 }, 9, sec(10)],
      [{ i: 5 }, 9, sec(10)],
    ]);
  });

  it('rejects the whole batch with INVALID_ARGUMENT naming jobs[3].name when the fourth job has a bad name, writing nothing', async () => {
    const queue = await h.newQueue();
    const redis = h.redisClient();
    const keysBefore = (await redis.keys(`${h.prefix}:*`)).sort();
    const jobs = [{ name: 'ok' }, { name: 'ok', options: { idempotencyKey: 'k1' } }, { name: 'ok', options: { jobId: 'custom-1' } }, { name: 'bad name!' }, { name: 'ok' }];
    await expect(h.client.enqueueJobs({ queue, jobs })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('jobs[3].name'),
    });
    expect(total(await jobCounts(queue))).toBe(0);
    expect((await redis.keys(`${h.prefix}:*`)).sort()).toEqual(keysBefore);
  });

  it('rejects an empty batch with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue();
    await expect(h.client.enqueueJobs({ queue, jobs: [] })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('jobs') });
  });

  it('deduplicates jobs whose idempotency key was already used and adds the rest', async () => {
    const queue = await h.newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'once' } } });
    const res = await h.client.enqueueJobs({ queue, jobs: [{ name: 'x', options: { idempotencyKey: 'once' } }, { name: 'y' }] });
    expect(res.jobs[0]).toEqual({ id: first.job!.id, deduplicated: true });
    expect(res.jobs[1]!.deduplicated).toBe(false);
    expect(total(await jobCounts(queue))).toBe(2);
  });

  it('deduplicates a job_id that already exists instead of reporting it as new', async () => {
    const queue = await h.newQueue();
    await h.client.enqueueJob({ queue, job: { name: 'x', options: { jobId: 'dup-1' } } });
    const res = await h.client.enqueueJobs({ queue, jobs: [{ name: 'x', options: { jobId: 'dup-1' } }, { name: 'y' }] });
    expect(res.jobs[0]).toEqual({ id: 'dup-1', deduplicated: true });
    expect(res.jobs[1]!.deduplicated).toBe(false);
  });

  it('rejects the same job_id twice in one batch with INVALID_ARGUMENT and writes nothing', async () => {
    const queue = await h.newQueue();
    const jobs = [{ name: 'x', options: { idempotencyKey: 'k' } }, { name: 'x', options: { jobId: 'twice' } }, { name: 'y', options: { jobId: 'twice' } }];
    await expect(h.client.enqueueJobs({ queue, jobs })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('jobs[2].options.job_id'),
    });
    expect(total(await jobCounts(queue))).toBe(0);
    // The idempotency key claimed before the batch was refused is released.
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'k' } } })).resolves.toMatchObject({ deduplicated: false });
  });

  it('rejects the same idempotency key twice in one batch with INVALID_ARGUMENT and writes nothing', async () => {
    const queue = await h.newQueue();
    const jobs = [{ name: 'x', options: { idempotencyKey: 'k' } }, { name: 'y', options: { idempotencyKey: 'k' } }];
    await expect(h.client.enqueueJobs({ queue, jobs })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('jobs[1].options.idempotency_key'),
    });
    expect(total(await jobCounts(queue))).toBe(0);
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'k' } } })).resolves.toMatchObject({ deduplicated: false });
  });
});

describe('idempotency keys', () => {
  it('returns the same job with deduplicated=true for a repeated idempotency_key', async () => {
    const queue = await h.newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'pay', data: { amount: 5 }, options: { idempotencyKey: 'payment-77' } } });
    const second = await h.client.enqueueJob({ queue, job: { name: 'pay', data: { amount: 5 }, options: { idempotencyKey: 'payment-77' } } });
    expect(first.deduplicated).toBe(false);
    expect(second).toMatchObject({ deduplicated: true, job: { id: first.job!.id, idempotencyKey: 'payment-77', state: S.JOB_STATE_WAITING } });
    expect(total(await jobCounts(queue))).toBe(1);
  });

  it('scopes idempotency keys to their queue', async () => {
    const a = await h.newQueue();
    const b = await h.newQueue();
    const first = await h.client.enqueueJob({ queue: a, job: { name: 'x', options: { idempotencyKey: 'shared' } } });
    const second = await h.client.enqueueJob({ queue: b, job: { name: 'x', options: { idempotencyKey: 'shared' } } });
    expect(second.deduplicated).toBe(false);
    expect(second.job!.id).not.toBe(first.job!.id);
  });

  it('still deduplicates after the job was completed and removed by retention', async () => {
    const queue = await h.newQueue();
    const options = { idempotencyKey: 'survives-removal', keepCompleted: { count: 0 } };
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', options } });
    const id = first.job!.id;
    const completed = new Promise<void>((resolve) => {
      h.worker(queue, async () => 'done').on('completed', () => resolve());
    });
    await completed;
    // keep_completed count 0: BullMQ removed the job as it completed.
    await expect(h.client.getJob(queue, id)).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(total(await jobCounts(queue))).toBe(0);

    const again = await h.client.enqueueJob({ queue, job: { name: 'x', options } });
    expect(again.deduplicated).toBe(true);
    expect(again.job!.id).toBe(id);
    expect(total(await jobCounts(queue))).toBe(0);
  });
});

import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { uniqueQueue, useSchedulerHarness } from '../src/testing';

const h = useSchedulerHarness();

describe('queue registry', () => {
  it('creates a queue with defaults and reads it back', async () => {
    const name = uniqueQueue();
    const created = await h.client.createQueue({ queue: { name } });
    expect(created).toMatchObject({ name, concurrency: 10, paused: false });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ name, concurrency: 10 });
  });

  it('rejects a second create of the same name with ALREADY_EXISTS', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await expect(h.client.createQueue({ queue: { name } })).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it('rejects a bad queue name with INVALID_ARGUMENT naming the field', async () => {
    await expect(h.client.createQueue({ queue: { name: 'has space' } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('queue.name'),
    });
  });

  it('rejects GetQueue of an unknown queue with NOT_FOUND', async () => {
    await expect(h.client.getQueue(uniqueQueue('missing'))).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('creates a queue with every field set and reads each one back', async () => {
    const name = uniqueQueue();
    const queue = {
      name,
      concurrency: 7,
      rateLimit: { max: 50, duration: { seconds: 1, nanos: 0 } },
      defaultJobOptions: { attempts: 5, timeout: { seconds: 30, nanos: 0 } },
      labels: { team: 'payments' },
    };
    await h.client.createQueue({ queue });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({
      ...queue,
      defaultJobOptions: { attempts: 5, timeout: { seconds: 30, nanos: 0 } },
    });
  });
});

describe('UpdateQueue', () => {
  it('replaces every mutable field when no update_mask is given', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name, concurrency: 3, labels: { a: '1' } } });
    const updated = await h.client.updateQueue({ queue: { name, concurrency: 20, labels: { b: '2' } } });
    expect(updated).toMatchObject({ name, concurrency: 20, labels: { b: '2' } });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ concurrency: 20, labels: { b: '2' } });
  });

  it('changes only the fields named in update_mask', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name, concurrency: 3, labels: { keep: 'me' } } });
    const updated = await h.client.updateQueue({ queue: { name, concurrency: 12, labels: { ignored: 'x' } }, updateMask: ['concurrency'] });
    expect(updated.concurrency).toBe(12);
    expect(updated.labels).toEqual({ keep: 'me' });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ concurrency: 12, labels: { keep: 'me' } });
  });

  it('accepts snake_case mask paths such as rate_limit', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    const updated = await h.client.updateQueue({
      queue: { name, rateLimit: { max: 5, duration: { seconds: 2, nanos: 0 } } },
      updateMask: ['rate_limit'],
    });
    expect(updated.rateLimit).toEqual({ max: 5, duration: { seconds: 2, nanos: 0 } });
  });

  it('rejects an update_mask path that is not a mutable field with INVALID_ARGUMENT', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name, concurrency: 4 } });
    await expect(h.client.updateQueue({ queue: { name, concurrency: 9 }, updateMask: ['name'] })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('update_mask'),
    });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ concurrency: 4 });
  });

  it('rejects an update of an unknown queue with NOT_FOUND', async () => {
    await expect(h.client.updateQueue({ queue: { name: uniqueQueue('missing'), concurrency: 2 } })).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });
});

describe('ListQueues', () => {
  it('pages through every queue in name order without duplicates', async () => {
    const label = uniqueQueue('page');
    const names = ['a', 'b', 'c', 'd', 'e'].map((s) => `${label}-${s}`);
    for (const name of names) await h.client.createQueue({ queue: { name } });
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await h.client.listQueues({ pageSize: 2, pageToken });
      expect(page.queues.length).toBeLessThanOrEqual(2);
      seen.push(...page.queues.map((q) => q.name));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken && pages < 100);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
    expect(seen.filter((n) => n.startsWith(label))).toEqual(names);
  });

  it('pages through mixed-case names without skipping any', async () => {
    const label = uniqueQueue('Case');
    const names = [`${label}-a`, `${label}-B`, `${label}-c`, `${label}-D`];
    for (const name of names) await h.client.createQueue({ queue: { name } });
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await h.client.listQueues({ pageSize: 1, pageToken });
      seen.push(...page.queues.map((q) => q.name));
      pageToken = page.nextPageToken;
    } while (pageToken && seen.length < 1000);
    expect(seen.filter((n) => n.startsWith(label)).sort()).toEqual([...names].sort());
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('rejects a page_size over 1000 with INVALID_ARGUMENT', async () => {
    await expect(h.client.listQueues({ pageSize: 1001 })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('page_size') });
  });
});

describe('DeleteQueue', () => {
  it('deletes an empty queue', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await h.client.deleteQueue(name);
    await expect(h.client.getQueue(name)).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('refuses to delete a queue with unfinished jobs without force (FAILED_PRECONDITION)', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await h.client.enqueueJob({ queue: name, job: { name: 'work' } });
    await expect(h.client.deleteQueue(name)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ name });
  });

  it('with force deletes the queue and its jobs', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    const { job } = await h.client.enqueueJob({ queue: name, job: { name: 'work', options: { jobId: 'doomed' } } });
    await h.client.deleteQueue(name, true);
    await expect(h.client.getQueue(name)).rejects.toMatchObject({ code: status.NOT_FOUND });
    const redis = h.redisClient();
    expect(await redis.keys(`${h.prefix}:${name}:*`)).toEqual([]);
    await h.withBullQueue(name, async (q) => expect(await q.getJob(job!.id)).toBeUndefined());
  });

  it('with force also forgets the queue\'s cancelled jobs and idempotency keys, so a new queue of that name starts clean', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    const keyed = await h.client.enqueueJob({ queue: name, job: { name: 'work', options: { idempotencyKey: 'order-9' } } });
    const { job: cancelled } = await h.client.enqueueJob({ queue: name, job: { name: 'work' } });
    await h.client.cancelJob(name, cancelled!.id);
    await h.client.deleteQueue(name, true);
    const redis = h.redisClient();
    expect((await redis.keys(`${h.prefix}:*`)).filter((k) => k.includes(name))).toEqual([]);

    await h.client.createQueue({ queue: { name } });
    await expect(h.client.getJob(name, cancelled!.id)).rejects.toMatchObject({ code: status.NOT_FOUND });
    const again = await h.client.enqueueJob({ queue: name, job: { name: 'work', options: { idempotencyKey: 'order-9' } } });
    expect(again.deduplicated).toBe(false);
    expect(again.job!.id).not.toBe(keyed.job!.id);
  });

  it('rejects a delete of an unknown queue with NOT_FOUND', async () => {
    await expect(h.client.deleteQueue(uniqueQueue('missing'))).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

describe('PauseQueue / ResumeQueue', () => {
  it('pauses and resumes dispatch, as BullMQ sees it', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await expect(h.client.pauseQueue(name)).resolves.toMatchObject({ paused: true });
    await h.withBullQueue(name, async (q) => expect(await q.isPaused()).toBe(true));
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ paused: true });

    await expect(h.client.resumeQueue(name)).resolves.toMatchObject({ paused: false });
    await h.withBullQueue(name, async (q) => expect(await q.isPaused()).toBe(false));
    await expect(h.client.getQueue(name)).resolves.toMatchObject({ paused: false });
  });

  it('keeps jobs enqueued on a paused queue until it is resumed', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await h.client.pauseQueue(name);
    const { job } = await h.client.enqueueJob({ queue: name, job: { name: 'work' } });
    const done = new Promise<string>((resolve) => {
      h.worker(name, async (j) => resolve(j.id!));
    });
    await h.client.resumeQueue(name);
    await expect(done).resolves.toBe(job!.id);
  });

  it('pauses and resumes through UpdateQueue with update_mask paused', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await expect(h.client.updateQueue({ queue: { name, paused: true }, updateMask: ['paused'] })).resolves.toMatchObject({ paused: true });
    await h.withBullQueue(name, async (q) => expect(await q.isPaused()).toBe(true));
    await expect(h.client.updateQueue({ queue: { name, paused: false }, updateMask: ['paused'] })).resolves.toMatchObject({ paused: false });
    await h.withBullQueue(name, async (q) => expect(await q.isPaused()).toBe(false));
  });

  it('lists jobs enqueued on a paused queue as WAITING', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await h.client.pauseQueue(name);
    const { job } = await h.client.enqueueJob({ queue: name, job: { name: 'work' } });
    await expect(h.client.getJob(name, job!.id)).resolves.toMatchObject({ state: pb.JobState.JOB_STATE_WAITING });
    const page = await h.client.listJobs({ queue: name, states: [pb.JobState.JOB_STATE_WAITING] });
    expect(page.jobs.map((j) => j.id)).toEqual([job!.id]);
  });

  it('is idempotent: pausing a paused queue keeps it paused', async () => {
    const name = uniqueQueue();
    await h.client.createQueue({ queue: { name } });
    await h.client.pauseQueue(name);
    await expect(h.client.pauseQueue(name)).resolves.toMatchObject({ paused: true });
    await h.withBullQueue(name, async (q) => expect(await q.isPaused()).toBe(true));
  });

  it('rejects pausing an unknown queue with NOT_FOUND', async () => {
    await expect(h.client.pauseQueue(uniqueQueue('missing'))).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

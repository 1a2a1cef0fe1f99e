import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { Keys, recordCancelledAhead } from '@jobmesh/queue';
import { deferred, useSchedulerHarness, waitFor } from '../src/testing';

const h = useSchedulerHarness();

const S = pb.JobState;
const sec = (seconds: number) => ({ seconds, nanos: 0 });

const enqueue = async (queue: string, job: Parameters<typeof h.client.enqueueJob>[0]['job'] = { name: 'work' }) =>
  (await h.client.enqueueJob({ queue, job })).job!;

/** Runs `queue`'s next job in a worker whose processor throws; resolves when it has failed. */
async function failOnce(queue: string, message = 'boom'): Promise<void> {
  const failed = deferred();
  const worker = h.worker(queue, async () => {
    throw new Error(message);
  });
  worker.on('failed', () => failed.resolve());
  await failed.promise;
  await worker.close();
}

/** Holds `queue`'s next job active in a BullMQ worker until `release` is called. */
async function holdActive(queue: string): Promise<{ release: () => void }> {
  const started = deferred();
  const gate = deferred();
  h.worker(queue, async () => {
    started.resolve();
    await gate.promise;
    return 'released';
  });
  await started.promise;
  return { release: () => gate.resolve() };
}

describe('GetJob', () => {
  it('reads a job by queue and id', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'read-me', data: { a: 1 } });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ id: job.id, queue, name: 'read-me', data: { a: 1 }, state: S.JOB_STATE_WAITING });
  });

  it('reports a completed job as COMPLETED with its result and times', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    const done = deferred();
    h.worker(queue, async () => ({ answer: 42 })).on('completed', () => done.resolve());
    await done.promise;
    const got = await h.client.getJob(queue, job.id);
    expect(got).toMatchObject({ state: S.JOB_STATE_COMPLETED, result: { answer: 42 }, attemptsMade: 1 });
    expect(got.processedAt).toBeInstanceOf(Date);
    expect(got.finishedAt).toBeInstanceOf(Date);
  });

  it('rejects an unknown job id with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(h.client.getJob(queue, 'no-such-job')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('rejects an empty id with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue();
    await expect(h.client.getJob(queue, '')).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('id') });
  });
});

describe('ListJobs', () => {
  it('pages through jobs in several states with page_size 2: tokens chain, no duplicates, every job seen', async () => {
    const queue = await h.newQueue();
    const ids = [
      (await enqueue(queue, { name: 'w1' })).id,
      (await enqueue(queue, { name: 'w2' })).id,
      (await enqueue(queue, { name: 'd1', options: { delay: sec(3600) } })).id,
      (await enqueue(queue, { name: 'd2', options: { delay: sec(3600) } })).id,
      (await enqueue(queue, { name: 'p1', options: { priority: 5 } })).id,
    ];
    const states = [S.JOB_STATE_WAITING, S.JOB_STATE_DELAYED, S.JOB_STATE_PRIORITIZED];
    const seen: pb.Job[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await h.client.listJobs({ queue, states, pageSize: 2, pageToken });
      expect(page.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...page.jobs);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken && pages < 20);
    expect(pageToken).toBe('');
    expect(pages).toBe(3);
    expect(seen.map((j) => j.id).sort()).toEqual([...ids].sort());
    const stateOf = Object.fromEntries(seen.map((j) => [j.name, j.state]));
    expect(stateOf).toEqual({
      w1: S.JOB_STATE_WAITING,
      w2: S.JOB_STATE_WAITING,
      d1: S.JOB_STATE_DELAYED,
      d2: S.JOB_STATE_DELAYED,
      p1: S.JOB_STATE_PRIORITIZED,
    });
  });

  it('lists only the requested state', async () => {
    const queue = await h.newQueue();
    await enqueue(queue, { name: 'w' });
    const delayed = await enqueue(queue, { name: 'd', options: { delay: sec(3600) } });
    const page = await h.client.listJobs({ queue, states: [S.JOB_STATE_DELAYED] });
    expect(page.jobs.map((j) => j.id)).toEqual([delayed.id]);
    expect(page.nextPageToken).toBe('');
  });

  it('lists every listable state when none is given', async () => {
    const queue = await h.newQueue();
    const a = await enqueue(queue, { name: 'w' });
    const b = await enqueue(queue, { name: 'd', options: { delay: sec(3600) } });
    const page = await h.client.listJobs({ queue });
    expect(page.jobs.map((j) => j.id).sort()).toEqual([a.id, b.id].sort());
  });

  it('rejects a page token it did not issue with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue();
    await expect(h.client.listJobs({ queue, pageToken: 'not-a-token' })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('page_token'),
    });
  });

  it('rejects an unlistable state with INVALID_ARGUMENT naming states[i]', async () => {
    const queue = await h.newQueue();
    await expect(h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING, S.JOB_STATE_UNSPECIFIED] })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('states[1]'),
    });
  });
});

describe('CancelJob', () => {
  it('cancels a waiting job: the response, GetJob and ListJobs(CANCELLED) all say CANCELLED', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'to-cancel', data: { x: 1 } });
    const res = await h.client.cancelJob(queue, job.id, 'no longer needed');
    expect(res).toMatchObject({ pending: false, job: { id: job.id, state: S.JOB_STATE_CANCELLED, failureReason: 'no longer needed' } });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({
      id: job.id,
      name: 'to-cancel',
      data: { x: 1 },
      state: S.JOB_STATE_CANCELLED,
      failureReason: 'no longer needed',
    });
    const listed = await h.client.listJobs({ queue, states: [S.JOB_STATE_CANCELLED] });
    expect(listed.jobs.map((j) => j.id)).toEqual([job.id]);
    const waiting = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING] });
    expect(waiting.jobs).toEqual([]);
  });

  it('cancels a delayed job so it never runs', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'later', options: { delay: sec(3600) } });
    await expect(h.client.cancelJob(queue, job.id)).resolves.toMatchObject({ pending: false, job: { state: S.JOB_STATE_CANCELLED } });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_CANCELLED });
    const listed = await h.client.listJobs({ queue, states: [S.JOB_STATE_CANCELLED] });
    expect(listed.jobs.map((j) => j.id)).toEqual([job.id]);
    await expect(h.client.listJobs({ queue, states: [S.JOB_STATE_DELAYED] })).resolves.toMatchObject({ jobs: [] });
  });

  it("cancels a flow's parent waiting for its children: it reads CANCELLED and its children that have not run are removed with it", async () => {
    const queue = await h.newQueue();
    const { flow } = await h.client.enqueueFlow({ root: { queue, job: { name: 'parent' }, children: [{ queue, job: { name: 'child' } }] } });
    await expect(h.client.cancelJob(queue, flow!.job!.id)).resolves.toMatchObject({ pending: false, job: { state: S.JOB_STATE_CANCELLED } });
    await expect(h.client.getJob(queue, flow!.job!.id)).resolves.toMatchObject({ state: S.JOB_STATE_CANCELLED });
    await expect(h.client.getJob(queue, flow!.children[0]!.job!.id)).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('asks the worker of an active job to abort it: pending=true and a message on the cancel channel', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    const sub = h.redisClient();
    const channel = `${h.prefix}:_cancel`;
    const message = new Promise<string>((resolve) => sub.on('message', (ch: string, m: string) => ch === channel && resolve(m)));
    await sub.subscribe(channel);
    const held = await holdActive(queue);
    try {
      const res = await h.client.cancelJob(queue, job.id, 'operator asked');
      expect(res).toMatchObject({ pending: true, job: { id: job.id, state: S.JOB_STATE_ACTIVE } });
      expect(JSON.parse(await message)).toEqual({ queue, jobId: job.id, reason: 'operator asked' });
    } finally {
      held.release();
    }
  });

  it('ignores a CANCELLED record written ahead of a removal that did not happen: the job, run and failed, reads FAILED', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'runs-anyway', options: { attempts: 1 } });
    // What a CancelJob cut off between its record and the removal leaves.
    await recordCancelledAhead(h.redisClient(), new Keys(h.prefix), job, 'never removed');
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING });
    await failOnce(queue);
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_FAILED, failureReason: 'boom' });
  });

  it('refuses to cancel a completed job with FAILED_PRECONDITION', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    const done = deferred();
    h.worker(queue, async () => 'ok').on('completed', () => done.resolve());
    await done.promise;
    await expect(h.client.cancelJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_COMPLETED });
  });

  it('refuses to cancel a job twice with FAILED_PRECONDITION', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    await h.client.cancelJob(queue, job.id);
    await expect(h.client.cancelJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  it('refuses to retry or promote a cancelled job with FAILED_PRECONDITION', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'later', options: { delay: sec(3600) } });
    await h.client.cancelJob(queue, job.id);
    await expect(h.client.promoteJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(h.client.retryJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  it('rejects a cancel of an unknown job with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(h.client.cancelJob(queue, 'nope')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

describe('RetryJob', () => {
  it('moves a failed job back to waiting, and it runs again', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'flaky', options: { attempts: 1 } });
    await failOnce(queue, 'first try fails');
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_FAILED, failureReason: 'first try fails', attemptsMade: 1 });

    const retried = await h.client.retryJob(queue, job.id);
    expect(retried).toMatchObject({ id: job.id, state: S.JOB_STATE_WAITING });

    h.worker(queue, async () => 'second try works');
    await waitFor('the retried job to complete', async () => (await h.client.getJob(queue, job.id)).state === S.JOB_STATE_COMPLETED);
  });

  it('refuses to retry a job that has not failed with FAILED_PRECONDITION', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    await expect(h.client.retryJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING });
  });
});

describe('PromoteJob', () => {
  it('moves a delayed job to waiting at once', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue, { name: 'later', options: { delay: sec(3600) } });
    await expect(h.client.promoteJob(queue, job.id)).resolves.toMatchObject({ id: job.id, state: S.JOB_STATE_WAITING });
    await expect(h.client.getJob(queue, job.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING });
  });

  it('refuses to promote a job that is not delayed with FAILED_PRECONDITION', async () => {
    const queue = await h.newQueue();
    const job = await enqueue(queue);
    await expect(h.client.promoteJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  it('rejects a promote of an unknown job with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(h.client.promoteJob(queue, 'nope')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

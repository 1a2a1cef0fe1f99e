// What the scheduler's common calls cost (issue 10, point 6): Redis round trips, counted by the
// proxy between the scheduler and Redis, and how often a job's payload is encoded to JSON.
import * as pb from '@jobmesh/contracts';
import { Keys, encodeDeadLetterLink } from '@jobmesh/queue';
import { deferred, useSchedulerHarness } from '../src/testing';

const S = pb.JobState;

const h = useSchedulerHarness({ throughProxy: true });

/** Runs `queue`'s next job in a worker whose processor throws; resolves when it has failed. */
async function failOnce(queue: string): Promise<void> {
  const failed = deferred();
  const worker = h.worker(queue, async () => {
    throw new Error('boom');
  });
  worker.on('failed', () => failed.resolve());
  await failed.promise;
  await worker.close();
}

/** Files `job` as dead-lettered the way the dead-letter service does: its record and its job's link. */
async function recordDeadLetter(job: pb.Job, failedAt: number): Promise<string> {
  const keys = new Keys(h.prefix);
  const id = `${job.queue}:${job.id}:1`;
  const redis = h.redisClient();
  await redis.hset(keys.deadLetter(id), 'job', JSON.stringify(pb.Job.toJSON(job)));
  await redis.hset(keys.deadLetterJobs, `${job.queue}:${job.id}`, encodeDeadLetterLink({ id, at: failedAt }));
  return id;
}

describe('GetJob round trips', () => {
  it('reads a failed job in one round trip to Redis, a dead-lettered one BullMQ still holds in one, and one BullMQ dropped in two', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'doomed', data: { n: 1 }, options: { attempts: 1 } } });
    await failOnce(queue);
    // The first call on a queue sets up its BullMQ Queue; measure after that.
    await h.client.getJob(queue, job!.id);

    let got: pb.Job | undefined;
    expect(await h.proxy!.roundTripsDuring(async () => (got = await h.client.getJob(queue, job!.id)))).toBe(1);
    expect(got).toMatchObject({ state: S.JOB_STATE_FAILED, failureReason: 'boom', data: { n: 1 } });

    await recordDeadLetter(got!, got!.finishedAt!.getTime());
    expect(await h.proxy!.roundTripsDuring(async () => (got = await h.client.getJob(queue, job!.id)))).toBe(1);
    expect(got).toMatchObject({ state: S.JOB_STATE_DEAD_LETTERED, data: { n: 1 } });

    // keep_failed trimmed BullMQ's copy: the dead letter's snapshot answers.
    await h.withBullQueue(queue, (q) => q.remove(job!.id));
    expect(await h.proxy!.roundTripsDuring(async () => (got = await h.client.getJob(queue, job!.id)))).toBe(2);
    expect(got).toMatchObject({ id: job!.id, state: S.JOB_STATE_DEAD_LETTERED, data: { n: 1 } });
  });

  it('reads a waiting job in one round trip and a delayed one in two (does it wait for a processor?)', async () => {
    const queue = await h.newQueue();
    const waiting = (await h.client.enqueueJob({ queue, job: { name: 'now' } })).job!;
    const delayed = (await h.client.enqueueJob({ queue, job: { name: 'later', options: { delay: { seconds: 3600, nanos: 0 } } } })).job!;
    await h.client.getJob(queue, waiting.id);
    expect(await h.proxy!.roundTripsDuring(() => h.client.getJob(queue, waiting.id))).toBe(1);
    expect(await h.proxy!.roundTripsDuring(() => h.client.getJob(queue, delayed.id))).toBe(2);
  });
});

describe('payload encoding', () => {
  /**
   * How many times JSON.stringify produced a string holding each marker while `fn` ran. The
   * scheduler runs in this process, so every encoding of a payload on its way to Redis is seen
   * (gRPC carries the payload as a protobuf Struct, which is no JSON).
   */
  async function encodings(markers: string[], fn: () => Promise<unknown>): Promise<number[]> {
    const spy = jest.spyOn(JSON, 'stringify');
    try {
      await fn();
      const out = spy.mock.results.map((r) => r.value as unknown).filter((v): v is string => typeof v === 'string');
      return markers.map((m) => out.filter((v) => v.includes(m)).length);
    } finally {
      spy.mockRestore();
    }
  }

  it('encodes the data of each job once per enqueue: EnqueueJob keyed or not, EnqueueJobs and EnqueueFlow', async () => {
    const queue = await h.newQueue();
    const data = (marker: string) => ({ marker, blob: 'x'.repeat(64 * 1024) });

    expect(await encodings(['plain-1'], () => h.client.enqueueJob({ queue, job: { name: 'x', data: data('plain-1') } }))).toEqual([1]);
    expect(await encodings(['keyed-1'], () => h.client.enqueueJob({ queue, job: { name: 'x', data: data('keyed-1'), options: { idempotencyKey: 'k' } } }))).toEqual([1]);
    expect(await encodings(['id-1'], () => h.client.enqueueJob({ queue, job: { name: 'x', data: data('id-1'), options: { jobId: 'own-id' } } }))).toEqual([1]);
    const bulk = ['bulk-1', 'bulk-2', 'bulk-3'];
    expect(await encodings(bulk, () => h.client.enqueueJobs({ queue, jobs: bulk.map((m) => ({ name: 'x', data: data(m) })) }))).toEqual([1, 1, 1]);
    const flow = { root: { queue, job: { name: 'parent', data: data('flow-root') }, children: [{ queue, job: { name: 'child', data: data('flow-child') } }] } };
    expect(await encodings(['flow-root', 'flow-child'], () => h.client.enqueueFlow(flow))).toEqual([1, 1]);

    // What was stored is what was sent.
    const listed = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING, S.JOB_STATE_WAITING_CHILDREN] });
    expect(listed.jobs.map((j) => (j.data as { marker: string }).marker).sort()).toEqual(['bulk-1', 'bulk-2', 'bulk-3', 'flow-child', 'flow-root', 'id-1', 'keyed-1', 'plain-1']);
    expect(listed.jobs.every((j) => (j.data as { blob: string }).blob.length === 64 * 1024)).toBe(true);
  });
});

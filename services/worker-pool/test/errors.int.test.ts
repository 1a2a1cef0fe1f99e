import * as pb from '@jobmesh/contracts';
import { defineProcessor, RateLimitError, UnrecoverableError } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;

let h: PoolHarness;
/** Attempt start times per "queue/id". */
const starts = new Map<string, number[]>();
/** When and why each job's signal aborted, per "queue/id". */
const aborts = new Map<string, { at: number; reason: unknown }[]>();

function record<T>(map: Map<string, T[]>, job: { queue: string; id: string }, v: T): void {
  const key = `${job.queue}/${job.id}`;
  map.set(key, [...(map.get(key) ?? []), v]);
}
const startsOf = (queue: string, id: string): number[] => starts.get(`${queue}/${id}`) ?? [];

/** The processors every replica of this file runs. */
const processors = () => [
  defineProcessor({
    queue: '*',
    name: 'unrecoverable',
    process(job) {
      record(starts, job, Date.now());
      throw new UnrecoverableError('the input can never work');
    },
  }),
  defineProcessor({
    queue: '*',
    name: 'rate-limited-once',
    process(job) {
      record(starts, job, Date.now());
      if (startsOf(job.queue, job.id).length === 1) throw new RateLimitError(500);
      return 'sent';
    },
  }),
  defineProcessor({
    queue: '*',
    name: 'record',
    process(job) {
      record(starts, job, Date.now());
      return 'recorded';
    },
  }),
  defineProcessor<{ value: 'undefined' | 'null' | 'string' | 'object' }>({
    queue: '*',
    name: 'throws-a-non-error',
    process(job) {
      record(starts, job, Date.now());
      const thrown = { undefined: undefined, null: null, string: 'plain string', object: { code: 42 } }[job.data.value];
      return Promise.reject(thrown);
    },
  }),
  defineProcessor<{ succeedOn?: number }>({
    queue: '*',
    name: 'hangs-until-aborted',
    process(job, ctx) {
      record(starts, job, Date.now());
      if (job.data.succeedOn && job.attempt >= job.data.succeedOn) return 'quick this time';
      return new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => {
          record(aborts, job, { at: Date.now(), reason: ctx.signal.reason });
          reject(ctx.signal.reason);
        });
      });
    },
  }),
];

beforeAll(async () => {
  h = await startPoolHarness();
  await h.startPool(processors());
});
afterAll(async () => {
  await h.stop();
});

async function newQueue(concurrency = 10, extra: Partial<pb.QueueConfig> = {}): Promise<string> {
  const name = uniqueQueue('errors');
  await h.client.createQueue({ queue: { name, concurrency, ...extra } });
  return name;
}

/**
 * The job once it completed or failed. GetJob reads the job's fields and its state in two steps,
 * so the read that first shows the final state may hold fields from just before; read it again.
 */
async function finished(queue: string, id: string, timeoutMs = 10_000): Promise<pb.Job> {
  const terminal = (j: pb.Job): boolean => j.state === S.JOB_STATE_COMPLETED || j.state === S.JOB_STATE_FAILED;
  await eventually(async () => terminal(await h.client.getJob(queue, id)), timeoutMs, `job ${id} to finish`);
  return h.client.getJob(queue, id);
}

it('ends a job that throws UnrecoverableError after one attempt, whatever attempts remain', async () => {
  const queue = await newQueue();
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'unrecoverable', options: { attempts: 5, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } } });
  const done = await finished(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_FAILED);
  expect(done.attemptsMade).toBe(1);
  expect(done.failureReason).toBe('the input can never work');
  expect(startsOf(queue, job!.id)).toHaveLength(1);
});

it('puts a job that throws RateLimitError back without using an attempt, and backs the whole queue off', async () => {
  // Concurrency 1: the second job can only start after the first attempt of the first ended.
  const queue = await newQueue(1);
  const { job: limited } = await h.client.enqueueJob({ queue, job: { name: 'rate-limited-once', options: { attempts: 1 } } });
  const { job: other } = await h.client.enqueueJob({ queue, job: { name: 'record', options: { attempts: 1 } } });
  const done = await finished(queue, limited!.id);
  const otherDone = await finished(queue, other!.id);
  // With attempts 1, completing at all proves the rate-limited run did not count.
  expect(done).toMatchObject({ state: S.JOB_STATE_COMPLETED, result: 'sent', attemptsMade: 1 });
  expect(otherDone.state).toBe(S.JOB_STATE_COMPLETED);
  const [first, second] = startsOf(queue, limited!.id);
  const [otherStart] = startsOf(queue, other!.id);
  // 500 ms less the few ms between the processor's start and the limit being set.
  expect(second! - first!).toBeGreaterThanOrEqual(450);
  expect(otherStart! - first!).toBeGreaterThanOrEqual(450);
});

it('backs the queue off on every replica, at any concurrency, with no rate limit configured', async () => {
  // A second replica, and concurrency 10: fetches are in flight everywhere when the limit hits.
  const second = await h.startPool(processors());
  try {
    const queue = await newQueue(10);
    await eventually(() => second.worker.pool.status().some((s) => s.queue === queue), 10_000, 'the second replica to serve the queue');
    const { job: limited } = await h.client.enqueueJob({ queue, job: { name: 'rate-limited-once', options: { attempts: 1 } } });
    await eventually(() => startsOf(queue, limited!.id).length === 1, 10_000, 'the first attempt');
    const others = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 5 }, () => ({ name: 'record' })) });
    await finished(queue, limited!.id);
    for (const o of others.jobs) await finished(queue, o.id);
    const [first, retry] = startsOf(queue, limited!.id);
    expect(retry! - first!).toBeGreaterThanOrEqual(450);
    for (const o of others.jobs) expect(startsOf(queue, o.id)[0]! - first!).toBeGreaterThanOrEqual(450);
  } finally {
    await second.stop();
  }
});

describe('per-attempt timeout', () => {
  it('aborts ctx.signal when the attempt runs out of time, and retries it as a failed attempt', async () => {
    const queue = await newQueue();
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'hangs-until-aborted', data: { succeedOn: 2 }, options: { attempts: 2, timeout: pb.msToDuration(200), backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } },
    });
    const done = await finished(queue, job!.id);
    expect(done).toMatchObject({ state: S.JOB_STATE_COMPLETED, result: 'quick this time', attemptsMade: 2 });
    const [start] = startsOf(queue, job!.id);
    const [abort] = aborts.get(`${queue}/${job!.id}`) ?? [];
    expect(abort!.at - start!).toBeGreaterThanOrEqual(190);
    expect(abort!.at - start!).toBeLessThan(200 + 250);
    expect(abort!.reason).toMatchObject({ name: 'TimeoutError', message: expect.stringMatching(/timed out after 200 ms/) });
  });

  it('fails the job with a "timed out" reason once no attempts remain', async () => {
    const queue = await newQueue();
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'hangs-until-aborted', options: { attempts: 2, timeout: pb.msToDuration(200), backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } },
    });
    const done = await finished(queue, job!.id);
    expect(done.state).toBe(S.JOB_STATE_FAILED);
    expect(done.attemptsMade).toBe(2);
    expect(done.failureReason).toMatch(/timed out/);
    expect(aborts.get(`${queue}/${job!.id}`)).toHaveLength(2);
  });
});

it('with processor_wait 0, fails a job whose name has no processor at once, as PROCESSOR_NOT_FOUND, without retries', async () => {
  const queue = await newQueue(10, { processorWait: { seconds: 0, nanos: 0 } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody-handles-this', options: { attempts: 5, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } } });
  const done = await finished(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_FAILED);
  expect(done.attemptsMade).toBe(1);
  expect(done.failureReason).toMatch(/^PROCESSOR_NOT_FOUND: no processor for job "nobody-handles-this"/);
});

it.each([
  ['undefined', 'processor threw undefined'],
  ['null', 'processor threw null'],
  ['string', 'plain string'],
  ['object', 'processor threw {"code":42}'],
])('fails a job whose processor throws %s (not an Error) like any failed attempt, and retries it', async (value, reason) => {
  const queue = await newQueue();
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'throws-a-non-error', data: { value }, options: { attempts: 2, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } } });
  const done = await finished(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_FAILED);
  expect(done.attemptsMade).toBe(2);
  expect(done.failureReason).toBe(reason);
  expect(startsOf(queue, job!.id)).toHaveLength(2);
});

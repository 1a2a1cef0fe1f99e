import * as pb from '@jobmesh/contracts';
import { defineBackoff, defineProcessor } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { loadWorkerPoolEnv, ProcessorRegistry, type RunningWorkerPool, startWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

/**
 * Measured gaps between attempt starts may be a little shorter than the delay (Date.now() is read
 * in different places and rounded to the ms) and longer by however long the failed attempt takes
 * to be moved to delayed, BullMQ's worker to wake on the delayed marker and promote the job, and
 * the next attempt to be fetched: a few ms on an idle machine, but a loaded CI box with several
 * jest workers sharing two cores can add 100+ ms.
 */
const EARLY_MS = 20;
const LATE_MS = 250;

const K = pb.BackoffKind;
const ms = (n: number) => ({ seconds: Math.floor(n / 1000), nanos: (n % 1000) * 1_000_000 });

let h: PoolHarness;
let pool: RunningWorkerPool;
/** Start times of each job's attempts ("queue/id"), recorded by the processor. */
const starts = new Map<string, number[]>();
/** What the custom backoff strategy was called with. */
const tenthCalls: { attemptsMade: number; error: string; job: string }[] = [];

beforeAll(async () => {
  h = await startPoolHarness();
  const processors = new ProcessorRegistry();
  processors.add(
    defineProcessor<{ fail: number }>({
      queue: '*',
      name: 'flaky',
      process(job) {
        const key = `${job.queue}/${job.id}`;
        starts.set(key, [...(starts.get(key) ?? []), Date.now()]);
        if (job.attempt <= job.data.fail) throw new Error(`boom ${job.attempt}`);
        return { attempt: job.attempt };
      },
    }),
  );
  // A tenth of a second per failed attempt.
  processors.addBackoff(
    defineBackoff('tenth', (attemptsMade, error, job) => {
      tenthCalls.push({ attemptsMade, error: error.message, job: `${job.queue}/${job.id}` });
      return attemptsMade * 100;
    }),
  );
  processors.addBackoff(
    defineBackoff('broken', () => {
      throw new Error('a bug in the strategy');
    }),
  );
  processors.addBackoff(defineBackoff('not-a-number', () => Number.NaN));
  // The harness's startPool takes processors only; a backoff needs its own registry.
  pool = await startWorkerPool(
    loadWorkerPoolEnv({
      REDIS_URL: h.redis.url,
      JOBMESH_REDIS_PREFIX: h.prefix,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_CONFIG: '',
    }),
    { logger: silentLogger(), processors },
  );
});
afterAll(async () => {
  await pool.stop();
  await h.stop();
});

/** Runs a 'flaky' job that fails `fail` times, until it completes or fails for good. */
async function runFlaky(fail: number, options: Record<string, unknown>): Promise<{ job: pb.Job; gaps: number[] }> {
  const queue = uniqueQueue('retries');
  await h.client.createQueue({ queue: { name: queue } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'flaky', data: { fail }, options } });
  const terminal = (j: pb.Job): boolean => j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED;
  await eventually(async () => terminal(await h.client.getJob(queue, job!.id)), 20_000, 'the job to finish');
  // GetJob reads fields and state in two steps; the read that first shows the end may hold older fields.
  const done = await h.client.getJob(queue, job!.id);
  const s = starts.get(`${queue}/${job!.id}`) ?? [];
  return { job: done, gaps: s.slice(1).map((t, i) => t - s[i]!) };
}

function expectGaps(gaps: number[], expected: [min: number, max: number][]): void {
  expect(gaps).toHaveLength(expected.length);
  gaps.forEach((gap, i) => {
    const [min, max] = expected[i]!;
    try {
      expect(gap).toBeGreaterThanOrEqual(min - EARLY_MS);
      expect(gap).toBeLessThanOrEqual(max + LATE_MS);
    } catch {
      throw new Error(`gap ${i + 1} was ${gap} ms, expected ${min}..${max} ms (−${EARLY_MS}/+${LATE_MS}); all gaps: ${gaps.join(', ')}`);
    }
  });
}

const exactly = (...delays: number[]): [number, number][] => delays.map((d) => [d, d]);

describe('backoff between attempts', () => {
  it('waits the same delay before every retry with fixed backoff', async () => {
    const { job, gaps } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_FIXED, delay: ms(200) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(job.result).toEqual({ attempt: 4 });
    expectGaps(gaps, exactly(200, 200, 200));
  });

  it('doubles the delay with exponential backoff', async () => {
    const { job, gaps } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_EXPONENTIAL, delay: ms(100) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(gaps, exactly(100, 200, 400));
  });

  it('adds the delay once per attempt with linear backoff', async () => {
    const { job, gaps } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_LINEAR, delay: ms(150) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(gaps, exactly(150, 300, 450));
  });

  it('caps every delay at max_delay', async () => {
    const { job, gaps } = await runFlaky(4, { attempts: 5, backoff: { kind: K.BACKOFF_KIND_EXPONENTIAL, delay: ms(100), maxDelay: ms(250) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(gaps, exactly(100, 200, 250, 250));
  });

  // Exponential without a cap runs on BullMQ's own strategy, linear on Jobmesh's: both must jitter the same way.
  it.each([
    ['exponential', K.BACKOFF_KIND_EXPONENTIAL, [200, 400, 800]],
    ['linear', K.BACKOFF_KIND_LINEAR, [200, 400, 600]],
  ])('takes up to jitter·delay off each %s delay', async (_label, kind, delays) => {
    const { job, gaps } = await runFlaky(3, { attempts: 4, backoff: { kind, delay: ms(200), jitter: 0.5 } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(
      gaps,
      delays.map((d) => [d * 0.5, d]),
    );
  });

  it('asks a custom strategy registered with defineBackoff for each delay', async () => {
    const { job, gaps } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_CUSTOM, delay: ms(5000), customStrategy: 'tenth' } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(gaps, exactly(100, 200, 300));
    const key = `${job.queue}/${job.id}`;
    expect(tenthCalls.filter((c) => c.job === key)).toEqual([
      { attemptsMade: 1, error: 'boom 1', job: key },
      { attemptsMade: 2, error: 'boom 2', job: key },
      { attemptsMade: 3, error: 'boom 3', job: key },
    ]);
  });

  it.each([
    ['is not registered', 'nobody-registered-this'],
    ['throws', 'broken'],
    ['returns no number', 'not-a-number'],
  ])('falls back to the fixed delay when the custom strategy %s', async (_label, customStrategy) => {
    const { job, gaps } = await runFlaky(2, { attempts: 3, backoff: { kind: K.BACKOFF_KIND_CUSTOM, delay: ms(150), customStrategy } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectGaps(gaps, exactly(150, 150));
  });
});

describe('running out of attempts', () => {
  it('ends FAILED with attemptsMade = attempts and the last error', async () => {
    const { job, gaps } = await runFlaky(100, { attempts: 3, backoff: { kind: K.BACKOFF_KIND_FIXED, delay: ms(50) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(job.attemptsMade).toBe(3);
    expect(job.failureReason).toBe('boom 3');
    expect(gaps).toHaveLength(2);
  });
});

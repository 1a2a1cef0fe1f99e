import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import { defineBackoff, defineProcessor } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { loadWorkerPoolEnv, ProcessorRegistry, type RunningWorkerPool, startWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

/**
 * A retry's delay is measured from the moment its attempt threw (the processor records it) to the
 * time BullMQ was told to run it again (the `delay` timestamp of its 'delayed' event). It may be a
 * little longer than the backoff by however long the worker took, in this process, to move the
 * failed attempt to delayed (a few ms, more on a loaded machine), never shorter but for rounding.
 * The gaps between attempt starts add Redis and the next fetch to that; they are only checked to
 * be no shorter than the backoff.
 */
const EARLY_MS = 2;
const LATE_MS = 150;

const K = pb.BackoffKind;

let h: PoolHarness;
let pool: RunningWorkerPool;
/** Start times of each job's attempts ("queue/id"), recorded by the processor. */
const starts = new Map<string, number[]>();
/** When each job's failed attempts threw ("queue/id"). */
const fails = new Map<string, number[]>();
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
        if (job.attempt <= job.data.fail) {
          fails.set(key, [...(fails.get(key) ?? []), Date.now()]);
          throw new Error(`boom ${job.attempt}`);
        }
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

/**
 * Runs a 'flaky' job that fails `fail` times, until it completes or fails for good; `delays` are
 * its retries' delays as scheduled, `gaps` the times between its attempts' starts.
 */
async function runFlaky(fail: number, options: Record<string, unknown>): Promise<{ job: pb.Job; delays: number[]; gaps: number[] }> {
  const queue = uniqueQueue('retries');
  await h.client.createQueue({ queue: { name: queue } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'flaky', data: { fail }, options } });
  const terminal = (j: pb.Job): boolean => j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED;
  await eventually(async () => terminal(await h.client.getJob(queue, job!.id)), 20_000, 'the job to finish');
  // GetJob reads fields and state in two steps; the read that first shows the end may hold older fields.
  const done = await h.client.getJob(queue, job!.id);
  const key = `${queue}/${job!.id}`;
  const s = starts.get(key) ?? [];
  const failed = fails.get(key) ?? [];
  const events = await h.redisClient().xrange(new Keys(h.prefix).events(queue), '-', '+');
  const due = events
    .map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 ? [] : [[v, f[i + 1]]]))) as Record<string, string>)
    .filter((e) => e.event === 'delayed' && e.jobId === job!.id)
    .map((e) => Number(e.delay));
  return { job: done, delays: due.map((t, i) => t - failed[i]!), gaps: s.slice(1).map((t, i) => t - s[i]!) };
}

/** Each retry was scheduled within its [min, max] delay, and no attempt started earlier than that. */
function expectDelays({ delays, gaps }: { delays: number[]; gaps: number[] }, expected: [min: number, max: number][]): void {
  expect(delays).toHaveLength(expected.length);
  expect(gaps).toHaveLength(expected.length);
  delays.forEach((delay, i) => {
    const [min, max] = expected[i]!;
    try {
      expect(delay).toBeGreaterThanOrEqual(min - EARLY_MS);
      expect(delay).toBeLessThanOrEqual(max + LATE_MS);
      expect(gaps[i]).toBeGreaterThanOrEqual(min - EARLY_MS);
    } catch {
      throw new Error(`retry ${i + 1} was due ${delay} ms after its failure and started ${gaps[i]} ms after the attempt before, expected ${min}..${max} ms (−${EARLY_MS}/+${LATE_MS}); all delays: ${delays.join(', ')}; all gaps: ${gaps.join(', ')}`);
    }
  });
}

const exactly = (...delays: number[]): [number, number][] => delays.map((d) => [d, d]);

describe('backoff between attempts', () => {
  it('waits the same delay before every retry with fixed backoff', async () => {
    const { job, ...run } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_FIXED, delay: pb.msToDuration(200) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(job.result).toEqual({ attempt: 4 });
    expectDelays(run, exactly(200, 200, 200));
  });

  it('doubles the delay with exponential backoff', async () => {
    const { job, ...run } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_EXPONENTIAL, delay: pb.msToDuration(100) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(run, exactly(100, 200, 400));
  });

  it('adds the delay once per attempt with linear backoff', async () => {
    const { job, ...run } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_LINEAR, delay: pb.msToDuration(150) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(run, exactly(150, 300, 450));
  });

  it('caps every delay at max_delay', async () => {
    const { job, ...run } = await runFlaky(4, { attempts: 5, backoff: { kind: K.BACKOFF_KIND_EXPONENTIAL, delay: pb.msToDuration(100), maxDelay: pb.msToDuration(250) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(run, exactly(100, 200, 250, 250));
  });

  // Exponential without a cap runs on BullMQ's own strategy, linear on Jobmesh's: both must jitter the same way.
  it.each([
    ['exponential', K.BACKOFF_KIND_EXPONENTIAL, [200, 400, 800]],
    ['linear', K.BACKOFF_KIND_LINEAR, [200, 400, 600]],
  ])('takes up to jitter·delay off each %s delay', async (_label, kind, delays) => {
    const { job, ...run } = await runFlaky(3, { attempts: 4, backoff: { kind, delay: pb.msToDuration(200), jitter: 0.5 } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(
      run,
      delays.map((d) => [d * 0.5, d]),
    );
  });

  it('asks a custom strategy registered with defineBackoff for each delay', async () => {
    const { job, ...run } = await runFlaky(3, { attempts: 4, backoff: { kind: K.BACKOFF_KIND_CUSTOM, delay: pb.msToDuration(5000), customStrategy: 'tenth' } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(run, exactly(100, 200, 300));
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
    const { job, ...run } = await runFlaky(2, { attempts: 3, backoff: { kind: K.BACKOFF_KIND_CUSTOM, delay: pb.msToDuration(150), customStrategy } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expectDelays(run, exactly(150, 150));
  });
});

describe('running out of attempts', () => {
  it('ends FAILED with attemptsMade = attempts and the last error', async () => {
    const { job, ...run } = await runFlaky(100, { attempts: 3, backoff: { kind: K.BACKOFF_KIND_FIXED, delay: pb.msToDuration(50) } });
    expect(job.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(job.attemptsMade).toBe(3);
    expect(job.failureReason).toBe('boom 3');
    expect(run.gaps).toHaveLength(2);
  });
});

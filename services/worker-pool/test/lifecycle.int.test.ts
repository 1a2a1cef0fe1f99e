import * as pb from '@jobmesh/contracts';
import { defineProcessor, type AnyProcessorDefinition } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;

let h: PoolHarness;
/** Starts of 'held' jobs: "queue/id" → attempt, which replica, and whether its signal aborted. */
const runs: { key: string; pool: string; attempt: number; aborted: boolean }[] = [];
let release!: () => void;
let released = new Promise<void>((r) => (release = r));

/** 'held' runs until the test releases it and ignores its signal; 'quick' and 'broken' end at once. */
function processors(pool: string): AnyProcessorDefinition[] {
  return [
    defineProcessor({
      queue: '*',
      name: 'held',
      async process(job, ctx) {
        const run = { key: `${job.queue}/${job.id}`, pool, attempt: ctx.attempt, aborted: false };
        runs.push(run);
        ctx.signal.addEventListener('abort', () => (run.aborted = true));
        await released;
        return `finished on ${pool}`;
      },
    }),
    defineProcessor({ queue: '*', name: 'quick', process: () => 'ok' }),
    defineProcessor({
      queue: '*',
      name: 'broken',
      process() {
        throw new Error('always fails');
      },
    }),
  ];
}

beforeAll(async () => {
  h = await startPoolHarness();
});
afterEach(() => {
  release();
  released = new Promise<void>((r) => (release = r));
});
afterAll(async () => {
  release();
  await h.stop();
});

// Each test stops the replicas it started, so the next test's jobs run where it expects.
async function newQueue(concurrency = 10, extra: Partial<pb.QueueConfig> = {}): Promise<string> {
  const name = uniqueQueue('life');
  await h.client.createQueue({ queue: { name, concurrency, ...extra } });
  return name;
}

const state = async (queue: string, id: string): Promise<pb.JobState> => (await h.client.getJob(queue, id)).state;

it('passes JOBMESH_LOCK_DURATION, STALLED_INTERVAL and MAX_STALLED_COUNT to the queue runner', async () => {
  const queue = await newQueue(7);
  const pool = await h.startPool(processors('settings'), {
    JOBMESH_LOCK_DURATION: '12s',
    JOBMESH_STALLED_INTERVAL: '7s',
    JOBMESH_MAX_STALLED_COUNT: '3',
  });
  const worker = await eventually(() => pool.worker.pool.worker(queue), 10_000, 'the pool to serve the queue');
  expect(worker.settings).toMatchObject({ lockDurationMs: 12_000, stalledIntervalMs: 7_000, maxStalledCount: 3, lockRenewMs: 6_000 });
  expect(worker.concurrency).toBe(7);
  await pool.stop();
});

it('stops taking jobs on stop() but lets the running one finish within the grace period', async () => {
  const queue = await newQueue();
  const pool = await h.startPool(processors('graceful'), { JOBMESH_SHUTDOWN_GRACE: '10s' });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'held' } });
  await eventually(() => runs.some((r) => r.key === `${queue}/${job!.id}`), 10_000, 'the job to start');

  let stopped = false;
  const stopping = pool.stop().then(() => (stopped = true));
  // A job enqueued during shutdown is left for other replicas.
  const { job: late } = await h.client.enqueueJob({ queue, job: { name: 'quick' } });
  await eventually(async () => (await state(queue, late!.id)) === S.JOB_STATE_WAITING, 10_000, 'the late job to be waiting');
  expect(stopped).toBe(false);

  release();
  await stopping;
  expect(await state(queue, job!.id)).toBe(S.JOB_STATE_COMPLETED);
  expect((await h.client.getJob(queue, job!.id)).result).toBe('finished on graceful');
  expect(runs.find((r) => r.key === `${queue}/${job!.id}`)!.aborted).toBe(false);
  expect(await state(queue, late!.id)).toBe(S.JOB_STATE_WAITING);
});

it('when the grace period ends first, aborts the job and hands it back without using an attempt', async () => {
  const queue = await newQueue();
  const pool = await h.startPool(processors('impatient'), { JOBMESH_SHUTDOWN_GRACE: '300ms' });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'held', options: { attempts: 1 } } });
  const key = `${queue}/${job!.id}`;
  await eventually(() => runs.some((r) => r.key === key), 10_000, 'the job to start');

  const t0 = Date.now();
  await pool.stop();
  // The grace period, then the hand-back; the processor ignores its signal and is still "running".
  expect(Date.now() - t0).toBeLessThan(300 + 2_000);
  expect(runs.find((r) => r.key === key)!.aborted).toBe(true);
  const back = await h.client.getJob(queue, job!.id);
  expect(back).toMatchObject({ state: S.JOB_STATE_WAITING, attemptsMade: 0 });

  // Another replica runs it, as its first attempt still.
  release();
  const successor = await h.startPool(processors('successor'));
  await eventually(async () => (await state(queue, job!.id)) === S.JOB_STATE_COMPLETED, 10_000, 'the job to complete on the successor');
  expect((await h.client.getJob(queue, job!.id)).result).toBe('finished on successor');
  expect(runs.filter((r) => r.key === key).map((r) => [r.pool, r.attempt])).toEqual([
    ['impatient', 1],
    ['successor', 1],
  ]);
  await successor.stop();
});

it('serves /metrics with completed, failed, processing and wait figures and the active gauge, by queue', async () => {
  // processor_wait 0: the job nothing serves fails at once rather than waiting for a processor.
  const queue = await newQueue(10, { processorWait: { seconds: 0, nanos: 0 } });
  const pool = await h.startPool(processors('metrics'));
  const { jobs } = await h.client.enqueueJobs({
    queue,
    jobs: [{ name: 'quick' }, { name: 'quick' }, { name: 'broken', options: { attempts: 1 } }, { name: 'nobody-handles-this' }],
  });
  await eventually(
    async () => {
      const states = await Promise.all(jobs.map((j) => state(queue, j.id)));
      return states.every((s) => s === S.JOB_STATE_COMPLETED || s === S.JOB_STATE_FAILED);
    },
    10_000,
    'the jobs to finish',
  );
  const res = await fetch(`http://127.0.0.1:${pool.httpPort}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const q = `queue="${queue}"`;
  const line = (re: RegExp): string | undefined => text.split('\n').find((l) => re.test(l) && l.includes(q));
  expect(line(/^jobmesh_jobs_processed_total\{.*status="completed"/)).toMatch(/ 2$/);
  // `broken` failed for good, and so did the job nothing serves (processor_wait 0).
  expect(line(/^jobmesh_jobs_processed_total\{.*status="failed"/)).toMatch(/ 2$/);
  expect(line(/^jobmesh_jobs_failed_total\{.*error_type="Error"/)).toMatch(/ 1$/);
  expect(line(/^jobmesh_jobs_failed_total\{.*error_type="ProcessorNotFound"/)).toMatch(/ 1$/);
  // Two completions and `broken`'s attempt ran; the job nothing serves never started one.
  expect(line(/^jobmesh_job_processing_duration_seconds_count\{/)).toMatch(/ 3$/);
  expect(line(/^jobmesh_job_wait_seconds_count\{/)).toMatch(/ 3$/);
  expect(line(/^jobmesh_worker_active_jobs\{/)).toMatch(/ 0$/);
});

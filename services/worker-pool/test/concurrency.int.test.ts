import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import type { RunningWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;

let h: PoolHarness;
let pool: RunningWorkerPool;
/** Jobs of 'blocking' running now and the most seen at once, per queue. */
const running = new Map<string, number>();
const maxRunning = new Map<string, number>();
const started: string[] = [];
let release!: () => void;
let released = new Promise<void>((r) => (release = r));

beforeAll(async () => {
  h = await startPoolHarness();
  pool = await h.startPool([
    defineProcessor({
      queue: '*',
      name: 'blocking',
      async process(job) {
        started.push(`${job.queue}/${job.id}`);
        const now = (running.get(job.queue) ?? 0) + 1;
        running.set(job.queue, now);
        maxRunning.set(job.queue, Math.max(now, maxRunning.get(job.queue) ?? 0));
        try {
          await released;
        } finally {
          running.set(job.queue, running.get(job.queue)! - 1);
        }
        return 'released';
      },
    }),
    defineProcessor({ queue: '*', name: 'tick', process: () => 'tock' }),
  ]);
});
afterEach(() => {
  release();
  released = new Promise<void>((r) => (release = r));
});
afterAll(async () => {
  await h.stop();
});

async function enqueue(queue: string, n: number, name = 'blocking'): Promise<string[]> {
  const { jobs } = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: n }, () => ({ name })) });
  return jobs.map((j) => j.id);
}

async function allCompleted(queue: string, ids: string[]): Promise<void> {
  await eventually(
    async () => (await Promise.all(ids.map((id) => h.client.getJob(queue, id)))).every((j) => j.state === S.JOB_STATE_COMPLETED),
    10_000,
    `jobs of ${queue} to complete`,
  );
}

/**
 * A window in which the pool demonstrably kept working: a job delayed by `ms` on another queue,
 * which the same pool promotes and runs. Its completion ends the window.
 */
async function windowOf(ms: number): Promise<void> {
  const clock = uniqueQueue('clock');
  await h.client.createQueue({ queue: { name: clock } });
  const { job } = await h.client.enqueueJob({ queue: clock, job: { name: 'tick', options: { delay: { nanos: ms * 1_000_000 } } } });
  await allCompleted(clock, [job!.id]);
}

it('runs at most `concurrency` jobs of a queue at once, and takes a new concurrency live', async () => {
  const queue = uniqueQueue('conc');
  await h.client.createQueue({ queue: { name: queue, concurrency: 2 } });
  const ids = await enqueue(queue, 8);
  await eventually(() => running.get(queue) === 2, 10_000, '2 jobs to run');
  await windowOf(300);
  expect(running.get(queue)).toBe(2);
  expect(maxRunning.get(queue)).toBe(2);

  // No job finishes in between: the pool must start more on the change alone, without a restart.
  const updated = await h.client.updateQueue({ queue: { name: queue, concurrency: 5 }, updateMask: ['concurrency'] });
  expect(updated.concurrency).toBe(5);
  await eventually(() => running.get(queue) === 5, 10_000, '5 jobs to run');
  await windowOf(300);
  expect(maxRunning.get(queue)).toBe(5);

  release();
  await allCompleted(queue, ids);
  expect(maxRunning.get(queue)).toBe(5);
});

it('takes a new concurrency while idle', async () => {
  const queue = uniqueQueue('conc-idle');
  await h.client.createQueue({ queue: { name: queue, concurrency: 1 } });
  await windowOf(100); // the pool serves the queue and waits for jobs
  await h.client.updateQueue({ queue: { name: queue, concurrency: 3 }, updateMask: ['concurrency'] });
  await eventually(() => pool.worker.pool.worker(queue)?.concurrency === 3, 10_000, 'the pool to see the change');
  const ids = await enqueue(queue, 4);
  await eventually(() => running.get(queue) === 3, 10_000, '3 jobs to run');
  release();
  await allCompleted(queue, ids);
  expect(maxRunning.get(queue)).toBe(3);
});

it('starts nothing while the queue is paused, and runs the jobs once it is resumed', async () => {
  const queue = uniqueQueue('pause');
  await h.client.createQueue({ queue: { name: queue, concurrency: 5 } });
  const paused = await h.client.pauseQueue(queue);
  expect(paused.paused).toBe(true);
  const ids = await enqueue(queue, 3, 'tick');
  await windowOf(300);
  const waiting = await Promise.all(ids.map((id) => h.client.getJob(queue, id)));
  expect(waiting.map((j) => j.state)).toEqual([S.JOB_STATE_WAITING, S.JOB_STATE_WAITING, S.JOB_STATE_WAITING]);

  await h.client.resumeQueue(queue);
  await allCompleted(queue, ids);
});

it('lets running jobs finish when the queue is paused, and starts no new ones', async () => {
  const queue = uniqueQueue('pause-active');
  await h.client.createQueue({ queue: { name: queue, concurrency: 2 } });
  const ids = await enqueue(queue, 4);
  await eventually(() => running.get(queue) === 2, 10_000, '2 jobs to run');
  await h.client.pauseQueue(queue);
  release();
  await allCompleted(queue, ids.slice(0, 2));
  await windowOf(300);
  expect(started.filter((s) => s.startsWith(`${queue}/`))).toHaveLength(2);
  const rest = await Promise.all(ids.slice(2).map((id) => h.client.getJob(queue, id)));
  expect(rest.map((j) => j.state)).toEqual([S.JOB_STATE_WAITING, S.JOB_STATE_WAITING]);

  await h.client.resumeQueue(queue);
  await allCompleted(queue, ids);
});

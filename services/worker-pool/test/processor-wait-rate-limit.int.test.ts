// Jobs waiting for a processor do not use up the queue's rate limit (BullMQ counts every job it
// fetches; a job set aside without running gives that count back).
import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;
const PER_WINDOW = 5;
const WINDOW_MS = 1000;

let h: PoolHarness;
beforeAll(async () => {
  h = await startPoolHarness();
});
afterAll(async () => {
  await h.stop();
});

it('served jobs on a rate-limited queue flow at the limit rate behind jobs that wait for a processor', async () => {
  const queue = uniqueQueue('rl-mixed');
  await h.client.createQueue({ queue: { name: queue, concurrency: 5, rateLimit: { max: PER_WINDOW, duration: { seconds: WINDOW_MS / 1000, nanos: 0 } } } });
  // Enqueued before any replica runs the queue: the 50 unserved jobs are ahead of the 15 served
  // ones in the wait list, so each is fetched, and counted by BullMQ's limiter, first.
  const unserved = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 50 }, (_, i) => ({ name: 'absent', data: { i } })) })).jobs.map((j) => j.id);
  const served = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 15 }, (_, i) => ({ name: 'present', data: { i } })) })).jobs.map((j) => j.id);
  const starts: number[] = [];
  await h.startPool([
    defineProcessor({
      queue,
      name: 'present',
      process: () => {
        starts.push(Date.now());
        return 'ok';
      },
    }),
  ]);
  // At 5 a second the 15 served jobs need three windows (a little over 2 s). Had the 50 parked
  // jobs used the limit, the served ones would wait ten windows more (13 s in all, as before the
  // fix); 6 s leaves room for a loaded machine while telling the two apart.
  await eventually(async () => (await h.client.listJobs({ queue, states: [S.JOB_STATE_COMPLETED], pageSize: 100 })).jobs.length === served.length, 6000, 'the served jobs COMPLETED');
  starts.sort((a, b) => a - b);
  const first = starts[0]!;
  expect(starts.at(-1)! - first).toBeLessThan(3 * WINDOW_MS + 500);
  // The limit still holds: BullMQ's windows are fixed, so starts 10 apart are at least two
  // windows apart, i.e. more than one window length (less 50 ms for the timers' rounding).
  for (let i = 0; i + 2 * PER_WINDOW < starts.length; i++) expect(starts[i + 2 * PER_WINDOW]! - starts[i]!).toBeGreaterThan(WINDOW_MS - 50);
  // The unserved jobs wait for a processor, without an attempt used.
  const waiting = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING], pageSize: 100 });
  expect(waiting.jobs.map((j) => j.id).sort()).toEqual([...unserved].sort());
  expect(waiting.jobs.every((j) => j.processorWaitUntil && j.attemptsMade === 0)).toBe(true);
});

it('jobs handed off by a replica that cannot run them do not use up the rate limit either', async () => {
  // Two more replicas: one with no processor for the queue (as the first test's, also running),
  // which hands the jobs it fetches off to the other, which serves them.
  const queue = uniqueQueue('rl-handoff');
  await h.client.createQueue({ queue: { name: queue, concurrency: 5, rateLimit: { max: PER_WINDOW, duration: { seconds: WINDOW_MS / 1000, nanos: 0 } } } });
  const served = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 15 }, (_, i) => ({ name: 'present', data: { i } })) })).jobs.map((j) => j.id);
  const starts: number[] = [];
  await Promise.all([
    h.startPool([]),
    h.startPool([
      defineProcessor({
        queue,
        name: 'present',
        process: () => {
          starts.push(Date.now());
          return 'ok';
        },
      }),
    ]),
  ]);
  await eventually(async () => (await h.client.listJobs({ queue, states: [S.JOB_STATE_COMPLETED], pageSize: 100 })).jobs.length === served.length, 6000, 'the jobs COMPLETED');
  starts.sort((a, b) => a - b);
  // Three windows, as above. Each job the other replica fetched and handed off gives its count
  // back, and the serving replica, which found the limit used up meanwhile, looks again within a
  // tenth of a window; had it slept to the window's end (BullMQ's way), the 15 took 4 s.
  expect(starts.at(-1)! - starts[0]!).toBeLessThan(3 * WINDOW_MS + 500);
  for (let i = 0; i + 2 * PER_WINDOW < starts.length; i++) expect(starts[i + 2 * PER_WINDOW]! - starts[i]!).toBeGreaterThan(WINDOW_MS - 50);
});

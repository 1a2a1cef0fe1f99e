import * as pb from '@jobmesh/contracts';
import { type DeadLetterHarness, startDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

// The built-in categories that need a real timeout or a real stall, end to end: the worker-pool
// (or BullMQ's own stall check) fails the job, the dead-letter service captures and categorises it.

const timeoutQueue = uniqueQueue('dlq-timeout');
let h: DeadLetterHarness;

beforeAll(async () => {
  // The pool serves only the timeout queue: the stall test's queue is run by raw BullMQ workers.
  h = await startDeadLetterHarness({ JOBMESH_WORKER_QUEUES: timeoutQueue });
});
afterAll(async () => {
  await h.stop();
});

it('a job whose last attempt timed out is a TIMEOUT dead letter with every attempt', async () => {
  const { client } = await h.startDeadLetter();
  await h.client.createQueue({ queue: { name: timeoutQueue } });
  const backoff = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) };
  await h.client.enqueueJob({ queue: timeoutQueue, job: { name: 'hang', options: { attempts: 2, backoff, timeout: pb.msToDuration(100) } } });
  await waitFor('the dead letter', async () => (await client.stats(timeoutQueue)).total === 1, 20_000);
  const [d] = (await client.list({ filter: { queue: timeoutQueue } })).deadLetters;
  expect(d).toMatchObject({ category: 'TIMEOUT', severity: pb.Severity.SEVERITY_WARNING });
  expect(d!.errors.map((e) => [e.attempt, e.errorName, e.message])).toEqual([
    [1, 'TimeoutError', 'attempt timed out after 100 ms'],
    [2, 'TimeoutError', 'attempt timed out after 100 ms'],
  ]);
});

it('a job that stalled more often than allowed is a STALLED_LIMIT dead letter', async () => {
  const { client } = await h.startDeadLetter();
  const queue = uniqueQueue('dlq-stall');
  await h.client.createQueue({ queue: { name: queue } });
  // A worker that takes the job and then dies without a word: it never finishes, and its lock
  // (300 ms) is not renewed once it is closed.
  let taken!: () => void;
  const started = new Promise<void>((r) => (taken = r));
  const dying = h.worker(
    queue,
    () => {
      taken();
      return new Promise(() => undefined);
    },
    // No stall check of its own: its check would mark the queue checked for its whole interval.
    { lockDuration: 300, skipStalledCheck: true },
  );
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'stuck', options: { attempts: 3 } } });
  await started;
  await dying.close(true);
  // Another worker's stall check finds the lock gone; with no stall allowed, the job fails.
  const checker = h.worker(queue, async () => null, { stalledInterval: 300, maxStalledCount: 0 });
  try {
    await waitFor('the dead letter', async () => (await client.stats(queue)).total === 1, 20_000);
  } finally {
    await checker.close();
  }
  const [d] = (await client.list({ filter: { queue } })).deadLetters;
  expect(d).toMatchObject({ category: 'STALLED_LIMIT', job: { id: job!.id, name: 'stuck' } });
  expect(d!.errors.at(-1)!.message).toMatch(/stalled more than allowable limit/);
  expect((await h.client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_DEAD_LETTERED);
});

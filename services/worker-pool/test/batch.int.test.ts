import * as pb from '@jobmesh/contracts';
import { defineProcessor, processInBatches } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;
const T = pb.JobEventType;

let h: PoolHarness;
/** Calls of the item function, per "queue/id": item index and attempt. */
const calls = new Map<string, { index: number; attempt: number }[]>();

beforeAll(async () => {
  h = await startPoolHarness();
  await h.startPool([
    defineProcessor<{ count: number; bad: number[]; hangOnceAt?: number }>({
      queue: '*',
      name: 'import',
      process(job, ctx) {
        const key = `${job.queue}/${job.id}`;
        const items = Array.from({ length: job.data.count }, (_, i) => `item-${i}`);
        return processInBatches(
          ctx,
          items,
          async (item, index) => {
            calls.set(key, [...(calls.get(key) ?? []), { index, attempt: ctx.attempt }]);
            if (job.data.bad.includes(index)) throw new Error(`${item} is malformed`);
            // The first attempt stalls on this item until the attempt's timeout aborts it.
            if (index === job.data.hangOnceAt && ctx.attempt === 1) {
              await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
            }
            return item.toUpperCase();
          },
          { chunkSize: 10 },
        );
      },
    }),
  ]);
});
afterAll(async () => {
  await h.stop();
});

async function newQueue(): Promise<string> {
  const name = uniqueQueue('batch');
  await h.client.createQueue({ queue: { name } });
  return name;
}

it('completes with the failing items listed, the rest processed, and progress at 100', async () => {
  const queue = await newQueue();
  // Delayed a little so WatchJob is listening before it starts.
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'import', data: { count: 25, bad: [3, 17] }, options: { delay: pb.msToDuration(300) } } });
  const events: pb.JobEvent[] = [];
  for await (const e of h.client.watchJob(queue, job!.id)) events.push(e);
  expect(events.at(-1)!.type).toBe(T.JOB_EVENT_TYPE_COMPLETED);
  // One progress event per chunk of 10: 10, 20 and 25 of 25 items.
  expect(events.filter((e) => e.type === T.JOB_EVENT_TYPE_PROGRESS).map((e) => e.progress)).toEqual([40, 80, 100]);

  const done = await h.client.getJob(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_COMPLETED);
  expect(done.progress).toBe(100);
  const result = done.result as { total: number; succeeded: number; failed: { index: number; error: string }[]; results: (string | null)[] };
  expect(result).toMatchObject({
    total: 25,
    succeeded: 23,
    failed: [
      { index: 3, error: 'item-3 is malformed' },
      { index: 17, error: 'item-17 is malformed' },
    ],
  });
  expect(result.results).toHaveLength(25);
  expect(result.results[0]).toBe('ITEM-0');
  expect(result.results[3]).toBeNull();
  expect(result.results[24]).toBe('ITEM-24');
  expect(done.attemptsMade).toBe(1);
});

// 19 is the last item of its chunk: the chunk must not be stored with it as a failed item.
it.each([14, 19])('skips the chunks a failed attempt finished when it retries (attempt 1 times out at item %i)', async (hangOnceAt) => {
  const queue = await newQueue();
  const { job } = await h.client.enqueueJob({
    queue,
    job: {
      name: 'import',
      data: { count: 25, bad: [], hangOnceAt },
      options: { attempts: 2, timeout: pb.msToDuration(500), backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } },
    },
  });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'the job to complete');
  const done = await h.client.getJob(queue, job!.id);
  expect(done.attemptsMade).toBe(2);
  expect(done.result).toMatchObject({ total: 25, succeeded: 25, failed: [] });
  const byAttempt = (attempt: number): number[] => (calls.get(`${queue}/${job!.id}`) ?? []).filter((c) => c.attempt === attempt).map((c) => c.index);
  // Attempt 1 finished chunk 0–9 and timed out in chunk 10–19; attempt 2 starts again at item 10.
  expect(byAttempt(1)).toEqual(Array.from({ length: hangOnceAt + 1 }, (_, i) => i));
  expect(byAttempt(2)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
});

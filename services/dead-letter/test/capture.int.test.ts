import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import type { RedisClient as Redis } from '@jobmesh/testing';
import { enqueueFailures, failedCount, useDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

const h = useDeadLetterHarness();

/** Jobmesh's Redis keys under the harness's prefix. */
const keys = (): Keys => new Keys(h.prefix);
let redis: Redis;
beforeAll(() => {
  redis = h.redisClient();
});

const byCategory = (r: pb.GetDeadLetterStatsResponse): Record<string, number> => Object.fromEntries(r.counts.map((c) => [c.category, c.count]));

async function deadLetteredEvents(queue: string): Promise<number> {
  const entries = await redis.xrange(keys().events(queue), '-', '+');
  return entries.filter(([, fields]) => fields[1] === 'dead-lettered').length;
}

it('captures every job that failed for good, once, with its category', async () => {
  const { service, client } = await h.startDeadLetter();
  const queue = uniqueQueue('dlq');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fail: 50, fatal: 50, ghost: 10 });
  await waitFor('110 dead letters', async () => (await client.stats(queue)).total === 110, 30_000);
  expect(byCategory(await client.stats(queue))).toEqual({ EXHAUSTED_RETRIES: 50, UNRECOVERABLE: 50, PROCESSOR_NOT_FOUND: 10 });
  // Each capture announces itself once on the queue's event stream.
  await waitFor('110 dead-lettered events', async () => (await deadLetteredEvents(queue)) === 110);
  const { deadLetters } = await client.list({ filter: { queue, category: 'EXHAUSTED_RETRIES' }, pageSize: 1 });
  const d = deadLetters[0]!;
  expect(d.id).toBe(`${queue}:${d.job!.id}:2`);
  expect(d.job).toMatchObject({ queue, name: 'fail', attemptsMade: 2, failureReason: 'boom' });
  expect(d.errors.map((e) => [e.attempt, e.errorName, e.message])).toEqual([
    [1, 'Error', 'boom'],
    [2, 'Error', 'boom'],
  ]);
  expect(d.severity).toBe(pb.Severity.SEVERITY_WARNING);
  await service.stop();
});

it('sweeps dead letters that failed while the service was down', async () => {
  const queue = uniqueQueue('dlq-sweep');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fail: 50, fatal: 50, ghost: 10 });
  await waitFor('110 failed jobs', async () => (await failedCount(redis, h.prefix, queue)) === 110, 30_000);
  expect(await redis.exists(keys().deadLetterQueueIndex(queue))).toBe(0); // no service was running
  const { service, client } = await h.startDeadLetter();
  await waitFor('110 dead letters', async () => (await client.stats(queue)).total === 110, 30_000);
  expect(byCategory(await client.stats(queue))).toEqual({ EXHAUSTED_RETRIES: 50, UNRECOVERABLE: 50, PROCESSOR_NOT_FOUND: 10 });
  await service.stop();
});

it('captures each dead letter once across two service instances', async () => {
  const a = await h.startDeadLetter();
  const b = await h.startDeadLetter();
  const queue = uniqueQueue('dlq-twice');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fail: 20, fatal: 20 });
  await waitFor('40 failed jobs', async () => (await failedCount(redis, h.prefix, queue)) === 40, 30_000);
  await Promise.all([a.service.sweep(), b.service.sweep(), a.service.sweep(), b.service.sweep()]);
  expect((await a.client.stats(queue)).total).toBe(40);
  expect((await b.client.stats(queue)).total).toBe(40);
  const all: string[] = [];
  let pageToken = '';
  do {
    const page = await a.client.list({ filter: { queue }, pageSize: 7, pageToken });
    all.push(...page.deadLetters.map((d) => d.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  expect(all).toHaveLength(40);
  expect(new Set(all).size).toBe(40);
  expect(await deadLetteredEvents(queue)).toBe(40);
});

// A failed-jobs watch opened after its queue's first failures: from the stream's end it hears only
// what comes next; with `sinceMs` it also hears the failures before it was listening. This is what
// lets the dead-letter service capture the jobs of a queue created a moment ago at once.
import { randomUUID } from 'node:crypto';
import { defaultQueueSpec } from '@jobmesh/core';
import { createLogger } from '@jobmesh/telemetry';
import { RawRedis, type RedisHandle, startRedis, waitFor } from '@jobmesh/testing';
import { UnrecoverableError } from 'bullmq';
import { type Backbone, FailedJobs, type FailedJobsWatch, openBackbone } from '../src';

let redis: RedisHandle;
let backbone: Backbone;
let raw: RawRedis;
const prefix = `t${randomUUID().slice(0, 8)}`;
const watches: FailedJobsWatch[] = [];

beforeAll(async () => {
  redis = await startRedis();
  backbone = await openBackbone({ settings: { url: redis.url, prefix, commandTimeoutMs: 2000 }, mode: 'development', logger: createLogger({ name: 'test', level: 'silent' }) });
  raw = new RawRedis(redis, prefix);
});
afterAll(async () => {
  await Promise.all(watches.map((w) => w.close()));
  await raw?.close();
  await backbone?.close();
  await redis?.stop();
});

/** Fails `n` jobs of a new queue for good, and returns their ids once all are in the failed set. */
async function failedJobsOfNewQueue(n: number): Promise<{ queue: string; ids: string[] }> {
  const queue = `q-${randomUUID().slice(0, 8)}`;
  await backbone.registry.create(defaultQueueSpec(queue));
  const ids = await raw.withQueue(queue, async (q) => (await q.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'fatal', data: { i } })))).map((j) => j.id!));
  raw.worker(queue, () => {
    throw new UnrecoverableError('boom');
  });
  const failed = new FailedJobs(backbone);
  await waitFor(`${n} failed jobs`, async () => (await failed.count(queue)) === n);
  return { queue, ids };
}

/** Opens a watch on `queue` and collects the ids it hears. */
async function watchFrom(queue: string, sinceMs?: number): Promise<{ heard: string[] }> {
  const heard: string[] = [];
  const w = new FailedJobs(backbone).watch(queue, (id) => heard.push(id), () => undefined, { sinceMs });
  watches.push(w);
  await w.ready();
  return { heard };
}

it('hears the failures from sinceMs on that came before it was listening', async () => {
  const since = Date.now() - 60_000;
  const { queue, ids } = await failedJobsOfNewQueue(3);
  const { heard } = await watchFrom(queue, since);
  await waitFor('the earlier failures to be heard', () => heard.length === 3);
  expect(heard.sort()).toEqual([...ids].sort());
});

it('hears only later failures without sinceMs, and those it hears once', async () => {
  const { queue } = await failedJobsOfNewQueue(2);
  const { heard } = await watchFrom(queue);
  const later = await raw.withQueue(queue, async (q) => (await q.add('fatal', {})).id!);
  await waitFor('the later failure to be heard', () => heard.length > 0);
  // The stream was read from its end, so the two earlier failures never come.
  expect(heard).toEqual([later]);
});

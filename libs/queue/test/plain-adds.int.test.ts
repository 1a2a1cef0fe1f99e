// PlainAdder against a real Redis: jobs added many to a script call are stored as BullMQ's own
// queue.add stores them, run by a plain BullMQ Worker, and answered each on its own.
import { resolveJobOptions } from '@jobmesh/core';
import { eventually, type RedisHandle, startRedis } from '@jobmesh/testing';
import { type JobsOptions, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JobData, PlainAdder, redisOptions, toBullOptions } from '../src';

let redis: RedisHandle;
let producer: Redis;
const queues: Queue[] = [];
let n = 0;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  // The scheduler's producer connection: no offline queue, so a lost Redis fails at once.
  producer = new Redis(redisOptions({ url: redis.url, prefix: 'pa' }, 'producer', 'plain-adds-test'));
});
afterAll(async () => {
  for (const q of queues.splice(0)) await q.close();
  producer?.disconnect();
  await redis?.stop();
});

function newQueue(): Queue {
  const q = new Queue(`plain-${++n}`, { connection: producer, prefix: 'pa' });
  queues.push(q);
  return q;
}

const data = (value: Record<string, unknown>): JobData => JobData.encode(value, 1 << 20, 'data');

/** Jobmesh's default BullMQ options, as the scheduler stores a job with no options of its own. */
const defaults = (): JobsOptions => toBullOptions(resolveJobOptions({}), { holdFailed: true, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });

/** A job's hash as stored, without the fields that differ by when it was added. */
async function stored(q: Queue, id: string): Promise<Record<string, string>> {
  const { timestamp: _t, ...fields } = await producer.hgetall(`pa:${q.name}:${id}`);
  return fields;
}

describe('PlainAdder', () => {
  it.each<[string, () => JobsOptions]>([
    ['Jobmesh default options', defaults],
    ['lifo, its own attempts and retention', () => ({ ...defaults(), lifo: true, attempts: 7, removeOnComplete: 5, removeOnFail: { count: 3 } })],
    ['no options at all', () => ({})],
  ])('stores a job with %s exactly as queue.add does', async (_, opts) => {
    const q = newQueue();
    const value = { to: 'ana@example.com', n: 1, nested: { list: [1, 'two', null] }, text: 'ünï' };
    const theirs = await q.add('mail', value, opts());
    const ours = await new PlainAdder(producer).add(q, { name: 'mail', data: data(value), opts: opts() });
    expect(ours.id).toBe(String(Number(theirs.id) + 1));
    expect(await stored(q, ours.id!)).toEqual(await stored(q, theirs.id!));
    // Both are waiting, and each announced itself as queue.add's job did.
    expect((await q.getWaiting()).map((j) => j.id).sort()).toEqual([theirs.id, ours.id].sort());
    const events = await producer.xrange(`pa:${q.name}:events`, '-', '+');
    expect(events.map(([, f]) => f.slice(0, 4))).toEqual([
      ['event', 'added', 'jobId', theirs.id],
      ['event', 'waiting', 'jobId', theirs.id],
      ['event', 'added', 'jobId', ours.id],
      ['event', 'waiting', 'jobId', ours.id],
    ]);
  });

  it('stores each job of a batch of one name and options exactly as queue.add does, with its own data', async () => {
    const q = newQueue();
    const values = Array.from({ length: 50 }, (_, i) => ({ i, text: 'ü'.repeat(i % 5), list: [i, null] }));
    const theirs = await Promise.all(values.map((v) => q.add('mail', v, defaults())));
    const ours = await new PlainAdder(producer).addAll(
      q,
      values.map((v) => ({ name: 'mail', data: data(v), opts: defaults() })),
    );
    for (const [i, job] of ours.entries()) expect(await stored(q, job.id!)).toEqual(await stored(q, theirs[i]!.id!));
    expect((await q.getJob(ours[49]!.id!))?.data).toEqual(values[49]);
  });

  it('stores 100 equal adds of one turn, sent 32 to a script call, each with its own data', async () => {
    const q = newQueue();
    const adder = new PlainAdder(producer);
    const jobs = await Promise.all(Array.from({ length: 100 }, (_, i) => adder.add(q, { name: 'same', data: data({ i }), opts: defaults() })));
    const read = await Promise.all(jobs.map((j) => q.getJob(j.id!)));
    expect(read.map((j) => [j?.name, j?.data, j?.opts.attempts])).toEqual(Array.from({ length: 100 }, (_, i) => ['same', { i }, 3]));
  });

  it('stores each job of a batch with its own options and name when they differ from the one before', async () => {
    const q = newQueue();
    const specs = Array.from({ length: 12 }, (_, i) => ({ name: i % 3 === 0 ? 'a' : 'b', opts: { ...defaults(), attempts: 1 + (i % 2) } }));
    const ours = await new PlainAdder(producer).addAll(
      q,
      specs.map((s, i) => ({ name: s.name, data: data({ i }), opts: s.opts })),
    );
    const read = await Promise.all(ours.map((j) => q.getJob(j.id!)));
    expect(read.map((j) => [j?.name, j?.opts.attempts, j?.data])).toEqual(specs.map((s, i) => [s.name, s.opts.attempts, { i }]));
  });

  it('checks the sizeLimit of every job of a batch against its own data', async () => {
    const q = newQueue();
    const opts = (): JobsOptions => ({ ...defaults(), sizeLimit: 20 });
    const adder = new PlainAdder(producer);
    const results = await Promise.allSettled([
      adder.add(q, { name: 'm', data: data({}), opts: opts() }),
      adder.add(q, { name: 'm', data: data({ pad: 'x'.repeat(100) }), opts: opts() }),
      adder.add(q, { name: 'm', data: data({ ok: 1 }), opts: opts() }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    await expect(
      adder.addAll(q, [
        { name: 'm', data: data({}), opts: opts() },
        { name: 'm', data: data({ pad: 'x'.repeat(100) }), opts: opts() },
      ]),
    ).rejects.toThrow(/size/i);
    expect(await q.getWaitingCount()).toBe(2);
  });

  it('answers 100 adds of one turn each with its own job, 32 to a Redis call, and a plain Worker runs them', async () => {
    const q = newQueue();
    const adder = new PlainAdder(producer);
    const before = Number((await producer.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    const jobs = await Promise.all(Array.from({ length: 100 }, (_, i) => adder.add(q, { name: `n${i}`, data: data({ i }), opts: defaults() })));
    const after = Number((await producer.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    // 32 jobs a call at most (CHUNK): 100 jobs are 4 calls, not 100. The first call of the script
    // on the connection goes as EVAL.
    expect(after - before).toBeLessThanOrEqual(4);
    expect(jobs.map((j) => j.name)).toEqual(Array.from({ length: 100 }, (_, i) => `n${i}`));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(100);
    const seen = new Map<string, unknown>();
    const worker = new Worker(q.name, async (job) => void seen.set(job.id!, job.data), { connection: new Redis(redis.url, { maxRetriesPerRequest: null }), prefix: 'pa', concurrency: 10 });
    try {
      await eventually(() => seen.size === 100, 10_000, 'the worker ran all 100 jobs');
    } finally {
      await worker.close();
      await worker.disconnect();
    }
    for (const [i, job] of jobs.entries()) expect(seen.get(job.id!)).toEqual({ i });
  });

  it('refuses a job BullMQ refuses on its own: its neighbours of the same turn are added', async () => {
    const q = newQueue();
    const adder = new PlainAdder(producer);
    const results = await Promise.allSettled([
      adder.add(q, { name: 'ok-1', data: data({}), opts: defaults() }),
      // BullMQ's own check: the data is larger than the job's sizeLimit.
      adder.add(q, { name: 'too-big', data: data({ pad: 'x'.repeat(100) }), opts: { ...defaults(), sizeLimit: 10 } }),
      adder.add(q, { name: 'ok-2', data: data({}), opts: defaults() }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/size/i);
    expect((await q.getWaiting()).map((j) => j.name).sort()).toEqual(['ok-1', 'ok-2']);
  });

  it('adds a batch of 2,000 in one call, answering the ids in order', async () => {
    const q = newQueue();
    const specs = Array.from({ length: 2000 }, (_, i) => ({ name: 'bulk', data: data({ i }), opts: defaults() }));
    const jobs = await new PlainAdder(producer).addAll(q, specs);
    expect(jobs.map((j) => Number(j.id))).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    expect(await q.getWaitingCount()).toBe(2000);
    const sample = await q.getJob('1234');
    expect(sample?.data).toEqual({ i: 1233 });
  });

  it('rejects every add of a call when Redis cannot be reached, and adds nothing', async () => {
    const q = newQueue();
    await q.add('first', {});
    const lost = new Redis({ ...redisOptions({ url: redis.url, prefix: 'pa' }, 'producer', 'plain-adds-lost'), lazyConnect: true });
    await lost.connect();
    lost.disconnect();
    const adder = new PlainAdder(lost);
    const results = await Promise.allSettled([1, 2, 3].map((i) => adder.add(q, { name: `n${i}`, data: data({}), opts: defaults() })));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    await expect(adder.addAll(q, [{ name: 'b', data: data({}), opts: defaults() }])).rejects.toThrow();
    expect(await q.getWaitingCount()).toBe(1);
  });
});

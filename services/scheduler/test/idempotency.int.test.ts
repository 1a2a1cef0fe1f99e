// Idempotency keys and caller-chosen job ids are written in the same atomic step as their job
// (issue 9, point 2). The scheduler talks to Redis through a proxy, to count round trips and to
// lose a connection at the worst moment: after Redis applied a write, before its answer arrived.
import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import type { RedisClient, RedisProxy } from '@jobmesh/testing';
import { eventually, uniqueQueue, useSchedulerHarness } from '../src/testing';

const S = pb.JobState;

const h = useSchedulerHarness({ throughProxy: true });
let proxy: RedisProxy;
/** Straight to Redis, not through the proxy. */
let direct: RedisClient;
/** Retries as an application would want for these calls: 8 tries, within 10 s. */
let client: JobmeshClient;

beforeAll(() => {
  proxy = h.proxy!;
  direct = h.redisClient();
  client = new JobmeshClient({ address: h.address, timeoutMs: 10_000, retry: { maxTries: 8 } });
});
afterAll(() => client?.close());

/**
 * A new queue. An earlier test may have cut the scheduler's Redis connection: it answers
 * UNAVAILABLE until it has reconnected, which takes a moment (ioredis tries again after 200 ms);
 * 5 s is far more than that.
 */
async function newQueue(): Promise<string> {
  const name = uniqueQueue();
  await eventually(
    async () => {
      try {
        await h.client.createQueue({ queue: { name } });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === status.UNAVAILABLE) return false;
        throw err;
      }
    },
    5000,
    'the scheduler to reconnect to Redis',
  );
  return name;
}

/** Every job of `queue` BullMQ holds, in any state (read straight from Redis, not through the proxy). */
const allJobs = (queue: string) =>
  h.withBullQueue(queue, async (q) => (await q.getJobs(['waiting', 'delayed', 'prioritized', 'active', 'waiting-children', 'completed', 'failed'])).filter(Boolean));

const dedupKey = (queue: string, key: string): string => `${h.prefix}:${queue}:de:${key}`;

/**
 * The first call on a queue, which sets up its BullMQ Queue. Keyed, so it is retried while the
 * scheduler reconnects after an earlier test cut its connection (an unanswered command is not
 * sent again, so the scheduler answers UNAVAILABLE until it is back).
 */
/**
 * Sets up the queue's BullMQ Queue, and sends each enqueue script on the connection once: ioredis
 * sends a script's first call on a connection as EVAL (with its text), later ones as EVALSHA,
 * which the cuts below wait for. Adds two jobs.
 */
const warmUp = async (queue: string): Promise<void> => {
  await client.enqueueJob({ queue, job: { name: 'warm-up', options: { idempotencyKey: `warm-up-${queue}` } } });
  await client.enqueueJob({ queue, job: { name: 'warm-up' } });
};

/** Round trips the scheduler made to Redis while `fn` ran. */
const roundTrips = (fn: () => Promise<unknown>): Promise<number> => proxy.roundTripsDuring(fn);

describe('round trips', () => {
  it('a keyed EnqueueJob, a job_id EnqueueJob, an unkeyed one and a mixed 100-job EnqueueJobs each cost one round trip to Redis', async () => {
    const queue = await newQueue();
    // The first call on a queue sets up its BullMQ Queue; measure after that.
    await h.client.enqueueJob({ queue, job: { name: 'warm-up', options: { idempotencyKey: 'warm-up' } } });
    expect(await roundTrips(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'rt-key' } } }))).toBe(1);
    expect(await roundTrips(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { jobId: 'rt-id' } } }))).toBe(1);
    expect(await roundTrips(() => h.client.enqueueJob({ queue, job: { name: 'x' } }))).toBe(1);
    const jobs = Array.from({ length: 100 }, (_, i) => ({
      name: 'x',
      options: i % 3 === 0 ? { idempotencyKey: `rt-bulk-${i}` } : i % 3 === 1 ? { jobId: `rt-bulk-${i}` } : {},
    }));
    expect(await roundTrips(() => h.client.enqueueJobs({ queue, jobs }))).toBe(1);
    expect(await roundTrips(() => h.client.enqueueJobs({ queue, jobs: [{ name: 'x' }, { name: 'y' }] }))).toBe(1);
    expect(await allJobs(queue)).toHaveLength(106);
  });
});

describe('coalesced enqueues', () => {
  it('50 concurrent keyed EnqueueJob calls share transactions, and each gets its own answer', async () => {
    const queue = await newQueue();
    await h.client.enqueueJob({ queue, job: { name: 'warm-up', options: { idempotencyKey: 'warm-up' } } });
    const keys = Array.from({ length: 50 }, (_, i) => `together-${i % 25}`);
    let answers: pb.EnqueueJobResponse[] = [];
    const trips = await roundTrips(async () => {
      answers = await Promise.all(keys.map((k) => h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: k } } })));
    });
    // Measured: 3 round trips. Calls that arrive in the same turn of the event loop share one;
    // half as many as calls is a bound that holds on a busy machine too.
    expect(trips).toBeLessThanOrEqual(25);
    const stored = await allJobs(queue);
    expect(stored).toHaveLength(26);
    for (const [i, a] of answers.entries()) expect(stored.find((j) => j.id === a.job!.id)?.opts).toMatchObject({ jobmesh: { idempotencyKey: keys[i] } });
    expect(answers.filter((a) => !a.deduplicated)).toHaveLength(25);
  });
});

describe('keys outlive their job', () => {
  it('keeps the key of a cancelled job: a repeat is deduplicated to its CANCELLED record and adds nothing', async () => {
    const queue = await newQueue();
    const options = { idempotencyKey: 'cancel-me', delay: { seconds: 3600, nanos: 0 } };
    const first = await h.client.enqueueJob({ queue, job: { name: 'later', options } });
    await expect(h.client.cancelJob(queue, first.job!.id)).resolves.toMatchObject({ pending: false });
    expect(await allJobs(queue)).toHaveLength(0);
    expect(await direct.pttl(dedupKey(queue, 'cancel-me'))).toBeGreaterThan(23 * 3_600_000);

    const again = await h.client.enqueueJob({ queue, job: { name: 'later', options } });
    expect(again).toMatchObject({ deduplicated: true, job: { id: first.job!.id, state: S.JOB_STATE_CANCELLED, idempotencyKey: 'cancel-me' } });
    expect(await allJobs(queue)).toHaveLength(0);
  });

  it('keeps the key of a job BullMQ removed explicitly (as dead-letter trimming does)', async () => {
    const queue = await newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'removed' } } });
    await h.withBullQueue(queue, (q) => q.remove(first.job!.id));
    expect(await allJobs(queue)).toHaveLength(0);
    const again = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'removed' } } });
    expect(again).toMatchObject({ deduplicated: true, job: { id: first.job!.id } });
    expect(await allJobs(queue)).toHaveLength(0);
  });

  it('deduplicates delayed and prioritized keyed jobs as it does waiting ones', async () => {
    const queue = await newQueue();
    for (const [key, options, state] of [
      ['delayed', { delay: { seconds: 60, nanos: 0 } }, S.JOB_STATE_DELAYED],
      ['prioritized', { priority: 3 }, S.JOB_STATE_PRIORITIZED],
    ] as const) {
      const first = await h.client.enqueueJob({ queue, job: { name: 'x', options: { ...options, idempotencyKey: key } } });
      expect(first).toMatchObject({ deduplicated: false, job: { state } });
      const again = await h.client.enqueueJob({ queue, job: { name: 'x', options: { ...options, idempotencyKey: key } } });
      expect(again).toMatchObject({ deduplicated: true, job: { id: first.job!.id, state } });
    }
    expect(await allJobs(queue)).toHaveLength(2);
  });

  it('with a key and a job_id, deduplicates a repeat of either', async () => {
    const queue = await newQueue();
    const first = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'both', jobId: 'both-a' } } });
    expect(first).toMatchObject({ deduplicated: false, job: { id: 'both-a', idempotencyKey: 'both' } });
    // Same key, another id: the key matches.
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'both', jobId: 'both-b' } } })).resolves.toMatchObject({
      deduplicated: true,
      job: { id: 'both-a' },
    });
    // Another key, same id: the id matches.
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'other', jobId: 'both-a' } } })).resolves.toMatchObject({
      deduplicated: true,
      job: { id: 'both-a' },
    });
    expect((await allJobs(queue)).map((j) => j.id)).toEqual(['both-a']);
  });

  it('honours an idempotency record of the scheduler before this one until it expires, keeping its TTL', async () => {
    const queue = await newQueue();
    await direct.set(`${h.prefix}:_idem:${queue}:from-before`, 'job-of-old', 'PX', 60_000);
    const res = await h.client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'from-before' } } });
    expect(res).toMatchObject({ deduplicated: true, job: { id: 'job-of-old', state: S.JOB_STATE_UNSPECIFIED } });
    const ttl = await direct.pttl(dedupKey(queue, 'from-before'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await allJobs(queue)).toHaveLength(0);
  });
});

describe('EnqueueFlow with a root job_id', () => {
  it('adds nothing on a repeat, attaches no new child to the existing root, and answers the stored flow as deduplicated', async () => {
    const queue = await newQueue();
    const flow = (children: string[]) => ({ root: { queue, job: { name: 'parent', options: { jobId: 'flow-root' } }, children: children.map((name) => ({ queue, job: { name } })) } });
    const first = await h.client.enqueueFlow(flow(['a', 'b']));
    expect(first.deduplicated).toBe(false);
    expect(first.flow!.job).toMatchObject({ id: 'flow-root', state: S.JOB_STATE_WAITING_CHILDREN });
    const again = await h.client.enqueueFlow(flow(['c', 'd', 'e']));
    expect(again.deduplicated).toBe(true);
    expect(again.flow!.job).toMatchObject({ id: 'flow-root', name: 'parent', state: S.JOB_STATE_WAITING_CHILDREN });
    expect(again.flow!.children.map((c) => c.job!.id).sort()).toEqual(first.flow!.children.map((c) => c.job!.id).sort());
    expect((await allJobs(queue)).map((j) => j.name).sort()).toEqual(['a', 'b', 'parent']);
    expect(await direct.scard(`${h.prefix}:${queue}:flow-root:dependencies`)).toBe(2);
  });

  it('adds nothing when the root id names an existing plain job', async () => {
    const queue = await newQueue();
    await h.client.enqueueJob({ queue, job: { name: 'plain', options: { jobId: 'taken' } } });
    const res = await h.client.enqueueFlow({ root: { queue, job: { name: 'parent', options: { jobId: 'taken' } }, children: [{ queue, job: { name: 'child' } }] } });
    expect(res).toMatchObject({ deduplicated: true, flow: { job: { id: 'taken', name: 'plain', state: S.JOB_STATE_WAITING }, children: [] } });
    expect((await allJobs(queue)).map((j) => j.name)).toEqual(['plain']);
  });
});

describe('EnqueueJobs', () => {
  it('adds all of a 2,000-job unkeyed batch or none of it when the connection is cut while the request is on its way', async () => {
    const queue = await newQueue();
    await warmUp(queue);
    const jobs = Array.from({ length: 2000 }, (_, i) => ({ name: 'x', data: { i, pad: 'p'.repeat(100) } }));
    let fired = false;
    // An unkeyed batch is one script call (libs/queue's PlainAdder), cut after its first bytes.
    void proxy.cutNext('midway', 'EVALSHA').then(() => (fired = true));
    const outcome = await h.client.enqueueJobs({ queue, jobs }).then(
      (r) => r.jobs.length,
      () => 0,
    );
    expect(fired).toBe(true);
    const stored = (await allJobs(queue)).length - 2;
    expect([0, 2000]).toContain(stored);
    expect(outcome === 2000 ? stored : outcome).toBe(outcome === 2000 ? 2000 : 0);
  });
});

describe('a CancelJob cut off after the removal', () => {
  it('leaves the job CANCELLED with its reason, not unknown: the record is written ahead of the removal', async () => {
    const queue = await newQueue();
    await warmUp(queue);
    const job = (await client.enqueueJob({ queue, job: { name: 'to-cancel', options: { delay: { seconds: 60, nanos: 0 } } } })).job!;
    let fired = false;
    // The removal is BullMQ's script; the rest of the record, after it, is the MULTI that also
    // trims the index of cancelled jobs (ZREMRANGEBYSCORE). Cut that.
    void proxy.cutNext('request', 'ZREMRANGEBYSCORE').then(() => (fired = true));
    const code = await h.client.cancelJob(queue, job.id, 'cut off').then(
      () => status.OK,
      (err: { code: number }) => err.code,
    );
    expect(fired).toBe(true);
    expect(code).toBe(status.UNAVAILABLE);
    expect((await allJobs(queue)).map((j) => j.id)).not.toContain(job.id);
    const read = await eventually(
      () =>
        client.getJob(queue, job.id).then(
          (j) => j,
          () => undefined,
        ),
      5000,
      'GetJob once the scheduler reconnected',
    );
    expect(read).toMatchObject({ id: job.id, state: pb.JobState.JOB_STATE_CANCELLED, failureReason: 'cut off' });
    // A second cancel is told the job is cancelled already.
    await expect(client.cancelJob(queue, job.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  });
});

describe('an unkeyed enqueue whose answer is lost', () => {
  it('is not sent again behind the caller\'s back: the caller hears UNAVAILABLE, and Redis holds the one job', async () => {
    const queue = await newQueue();
    await warmUp(queue);
    let fired = false;
    void proxy.cutNext('reply', 'EVALSHA').then(() => (fired = true));
    // Without a key nothing can tell a repeat from a new job, so the server must not repeat it.
    await expect(h.client.enqueueJob({ queue, job: { name: 'unkeyed', data: { n: 1 } } })).rejects.toMatchObject({ code: 14 });
    expect(fired).toBe(true);
    expect((await allJobs(queue)).filter((j) => j.name === 'unkeyed')).toHaveLength(1);
  });
});

describe('an answer lost on the way', () => {
  type Call = { label: string; run: (queue: string) => Promise<string[]>; ids: (queue: string) => Promise<string[]> };
  // Each call returns the ids its answer names; `ids` reads what Redis holds for the call's keys.
  const calls: Call[] = [
    {
      label: 'a keyed EnqueueJob',
      run: async (queue) => [(await client.enqueueJob({ queue, job: { name: 'x', options: { idempotencyKey: 'lost' } } })).job!.id],
      ids: async (queue) => [(await direct.get(dedupKey(queue, 'lost'))) ?? 'no key'],
    },
    {
      label: 'a job_id EnqueueJob',
      run: async (queue) => [(await client.enqueueJob({ queue, job: { name: 'x', options: { jobId: 'lost-id' } } })).job!.id],
      ids: async () => ['lost-id'],
    },
    {
      label: 'a keyed EnqueueJobs',
      run: async (queue) =>
        (await client.enqueueJobs({ queue, jobs: [{ name: 'x', options: { idempotencyKey: 'lost-1' } }, { name: 'x', options: { jobId: 'lost-2' } }] })).jobs.map((j) => j.id),
      ids: async (queue) => [(await direct.get(dedupKey(queue, 'lost-1'))) ?? 'no key', 'lost-2'],
    },
    {
      label: 'an EnqueueFlow with a root job_id',
      run: async (queue) => {
        const { flow } = await client.enqueueFlow({ root: { queue, job: { name: 'parent', options: { jobId: 'lost-root' } }, children: [{ queue, job: { name: 'child' } }] } });
        return [flow!.job!.id];
      },
      ids: async () => ['lost-root'],
    },
  ];

  for (const where of ['reply', 'request'] as const) {
    for (const call of calls) {
      it(`${call.label} whose ${where === 'reply' ? 'answer' : 'request'} is lost with the connection ends with exactly one job per key, named by the answer`, async () => {
        const queue = await newQueue();
        // The first call on a queue sets up its BullMQ Queue, which asks Redis things of its own;
        // after this one, the call's transaction is the only request in flight.
        await warmUp(queue);
        let fired = false;
        void proxy.cutNext(where, 'MULTI').then(() => (fired = true));
        const named = await call.run(queue);
        expect(fired).toBe(true);
        const stored = await allJobs(queue);
        expect(named).toEqual(await call.ids(queue));
        // Every id the answer names is a job that exists, once.
        for (const id of named) expect(stored.filter((j) => j.id === id)).toHaveLength(1);
        // Besides the two warm-up jobs: a flow also has its child, attached once; the other calls nothing else.
        expect(stored).toHaveLength(2 + (call.label.includes('Flow') ? 2 : named.length));
      });
    }
  }
});

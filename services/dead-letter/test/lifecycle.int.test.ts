import { status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import type { RedisClient as Redis } from '@jobmesh/testing';
import { type DeadLetterClient, type DeadLetterHarness, enqueueFailures, failedCount, useDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

// What happens to a job around its dead letter: its state through SchedulerService, BullMQ's
// copy under keep_failed, the dead letters' own retention, and a replay that completes.

const h = useDeadLetterHarness();

/** Jobmesh's Redis keys under the harness's prefix. */
const keys = (): Keys => new Keys(h.prefix);
let redis: Redis;
beforeAll(() => {
  redis = h.redisClient();
});

// Each test runs its own dead-letter service, stopped after it: some tests need none running.
const running: Array<() => Promise<void>> = [];
async function startService(): ReturnType<DeadLetterHarness['startDeadLetter']> {
  const started = await h.startDeadLetter();
  running.push(started.service.stop);
  return started;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((stop) => stop()));
});

const codeOf = (p: Promise<unknown>): Promise<number | undefined> => p.then(() => undefined, (e: ServiceError) => e.code);
const S = pb.JobState;

async function captured(client: DeadLetterClient, queue: string, total: number): Promise<void> {
  await waitFor(`${total} dead letters on ${queue}`, async () => (await client.stats(queue)).total === total, 30_000);
}

it('reads DEAD_LETTERED through GetJob and ListJobs, and refuses RetryJob', async () => {
  const { client } = await startService();
  const queue = uniqueQueue('dlq-state');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fatal: 2 });
  await captured(client, queue, 2);
  const [d] = (await client.list({ filter: { queue } })).deadLetters;
  const jobId = d!.job!.id;

  expect(await h.client.getJob(queue, jobId)).toMatchObject({ id: jobId, state: S.JOB_STATE_DEAD_LETTERED, failureReason: 'bad input' });
  const failed = await h.client.listJobs({ queue, states: [S.JOB_STATE_FAILED] });
  expect(failed.jobs.map((j) => j.state)).toEqual([S.JOB_STATE_DEAD_LETTERED, S.JOB_STATE_DEAD_LETTERED]);
  const dead = await h.client.listJobs({ queue, states: [S.JOB_STATE_DEAD_LETTERED] });
  expect(dead.jobs.map((j) => j.id).sort()).toEqual(failed.jobs.map((j) => j.id).sort());
  // Listing every state lists each job once.
  expect((await h.client.listJobs({ queue })).jobs).toHaveLength(2);

  const err = await h.client.retryJob(queue, jobId).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(err?.code).toBe(status.FAILED_PRECONDITION);
  expect(err?.details).toContain(d!.id);
  expect((await h.client.getJob(queue, jobId)).state).toBe(S.JOB_STATE_DEAD_LETTERED);
});

it('holds failed jobs for capture, then applies keep_failed; GetJob still answers after BullMQ dropped the job', async () => {
  const queue = uniqueQueue('dlq-keep');
  // keep_failed count 0 would make BullMQ drop a failed job at once, before anyone captured it.
  await h.client.createQueue({ queue: { name: queue, defaultJobOptions: { keepFailed: { count: 0 } } } });
  await enqueueFailures(h, queue, { fatal: 5, ghost: 5 });
  await waitFor('10 failed jobs held for capture', async () => (await failedCount(redis, h.prefix, queue)) === 10, 30_000);

  const { client } = await startService();
  await captured(client, queue, 10);
  await waitFor('BullMQ copies trimmed', async () => (await failedCount(redis, h.prefix, queue)) === 0);
  const [d] = (await client.list({ filter: { queue, category: 'UNRECOVERABLE' } })).deadLetters;
  expect(await h.client.getJob(queue, d!.job!.id)).toMatchObject({ state: S.JOB_STATE_DEAD_LETTERED, name: 'fatal', data: d!.job!.data });
  expect((await h.client.listJobs({ queue, states: [S.JOB_STATE_DEAD_LETTERED] })).jobs).toHaveLength(10);

  // A count keeps that many of the newest, once captured.
  const kept = uniqueQueue('dlq-keep2');
  await h.client.createQueue({ queue: { name: kept, defaultJobOptions: { keepFailed: { count: 3 } } } });
  await enqueueFailures(h, kept, { fatal: 8 });
  await captured(client, kept, 8);
  await waitFor('3 failed jobs left', async () => (await failedCount(redis, h.prefix, kept)) === 3);
});

it('keeps dead letters by count and by age', async () => {
  const { client } = await startService();
  const byCount = uniqueQueue('dlq-ret-count');
  await h.client.createQueue({ queue: { name: byCount, deadLetter: { retention: { count: 4 } } } });
  const events = keys().events(byCount);
  const deadLettered = async (): Promise<number> => (await redis.xrange(events, '-', '+')).filter(([, f]) => f[1] === 'dead-lettered').length;
  await enqueueFailures(h, byCount, { fatal: 6 });
  await waitFor('6 jobs dead-lettered', async () => (await deadLettered()) === 6, 30_000);
  await enqueueFailures(h, byCount, { fatal: 4 });
  await waitFor('10 jobs dead-lettered', async () => (await deadLettered()) === 10, 30_000);
  await waitFor('4 dead letters kept', async () => (await client.stats(byCount)).total === 4);
  // The four kept are the newest: the second batch (jobs 7 to 10). BullMQ's copies of the others
  // went with them.
  const kept = (await client.list({ filter: { queue: byCount } })).deadLetters.map((d) => Number(d.job!.id));
  expect(kept.sort((a, b) => a - b)).toEqual([7, 8, 9, 10]);
  const failed = (await h.client.listJobs({ queue: byCount, states: [S.JOB_STATE_FAILED] })).jobs.map((j) => Number(j.id));
  expect(failed.sort((a, b) => a - b)).toEqual([7, 8, 9, 10]);

  const byAge = uniqueQueue('dlq-ret-age');
  await h.client.createQueue({ queue: { name: byAge, deadLetter: { retention: { age: { seconds: 1, nanos: 0 } } } } });
  await enqueueFailures(h, byAge, { fatal: 3 });
  await captured(client, byAge, 3);
  await waitFor('dead letters older than 1 s purged', async () => (await client.stats(byAge)).total === 0, 10_000);
});

it('replays with a patch: the new job completes and links back to its dead letter', async () => {
  const { client } = await startService();
  const queue = uniqueQueue('dlq-fix');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fatal: 1 });
  await captured(client, queue, 1);
  const [d] = (await client.list({ filter: { queue } })).deadLetters;

  const res = await client.replay({ ids: [d!.id], dataPatch: { fixed: true } });
  const ref = res.replayed[0]!.job!;
  expect(ref).toMatchObject({ queue });
  expect(ref.id).not.toBe(d!.job!.id);
  const done = await waitFor('the replayed job completes', async () => {
    const job = await h.client.getJob(queue, ref.id);
    return job.state === S.JOB_STATE_COMPLETED && job;
  });
  expect(done).toMatchObject({ name: 'fatal', data: { i: 0, fixed: true }, result: { fixed: true } });
  expect(done.options).toMatchObject({ replayOf: d!.id, idempotencyKey: `replay:${d!.id}` });
  expect((await client.get(d!.id)).replays.map((r) => r.job)).toEqual([ref]);
  // The dead letter stays (the original job is still dead-lettered) until someone purges it.
  expect((await h.client.getJob(queue, d!.job!.id)).state).toBe(S.JOB_STATE_DEAD_LETTERED);
  expect(await codeOf(h.client.enqueueJob({ queue, job: { name: 'x', options: { replayOf: 'q'.repeat(513) } } }))).toBe(status.INVALID_ARGUMENT);
});

it('purges a dead letter for good: BullMQ\'s copy goes with it, so no sweep captures it again', async () => {
  const { client, service } = await startService();
  const queue = uniqueQueue('dlq-purge-bull');
  await h.client.createQueue({ queue: { name: queue } });
  await enqueueFailures(h, queue, { fatal: 3 });
  await captured(client, queue, 3);
  expect(await failedCount(redis, h.prefix, queue)).toBe(3); // default keep_failed keeps them
  const [d] = (await client.list({ filter: { queue } })).deadLetters;
  expect((await client.purge({ ids: [d!.id] })).purged).toBe(1);
  expect(await failedCount(redis, h.prefix, queue)).toBe(2);
  await service.sweep();
  expect((await client.stats(queue)).total).toBe(2);
  expect(await codeOf(client.get(d!.id))).toBe(status.NOT_FOUND);
  expect(await codeOf(h.client.getJob(queue, d!.job!.id))).toBe(status.NOT_FOUND);
});

it('leaves a queue without dead-lettering to BullMQ, and trims what capture held before it was turned off', async () => {
  await startService();
  const queue = uniqueQueue('dlq-off');
  await h.client.createQueue({ queue: { name: queue, defaultJobOptions: { keepFailed: { count: 2 } }, deadLetter: { disabled: true } } });
  await enqueueFailures(h, queue, { fatal: 4 });
  const failedEvents = async (): Promise<number> => (await redis.xrange(keys().events(queue), '-', '+')).filter(([, f]) => f[1] === 'failed').length;
  await waitFor('4 jobs failed', async () => (await failedEvents()) === 4, 30_000);
  // BullMQ's own removeOnFail kept 2; nothing was captured; the jobs read FAILED.
  const left = (await h.client.listJobs({ queue, states: [S.JOB_STATE_FAILED] })).jobs;
  expect(left.map((j) => j.state)).toEqual([S.JOB_STATE_FAILED, S.JOB_STATE_FAILED]);
  expect(await redis.exists(keys().deadLetterQueueIndex(queue))).toBe(0);

  // Jobs held while capture was on, then capture turned off: the sweep applies keep_failed.
  const held = uniqueQueue('dlq-turned-off');
  await h.client.createQueue({ queue: { name: held, defaultJobOptions: { keepFailed: { count: 1 } } } });
  await running.splice(0)[0]!(); // no service: the failed jobs stay held
  await enqueueFailures(h, held, { fatal: 3 });
  await waitFor('3 failed jobs held', async () => (await failedCount(redis, h.prefix, held)) === 3, 30_000);
  await h.client.updateQueue({ queue: { name: held, deadLetter: { disabled: true } }, updateMask: ['dead_letter'] });
  await startService();
  await waitFor('trimmed to keep_failed', async () => (await failedCount(redis, h.prefix, held)) === 1);
  expect(await redis.exists(keys().deadLetterQueueIndex(held))).toBe(0);
});

it('captures a job id used again as a dead letter of its own', async () => {
  const { client } = await startService();
  const queue = uniqueQueue('dlq-reuse');
  // keep_failed 0: once captured, BullMQ's copy goes, and the id can be enqueued again.
  await h.client.createQueue({ queue: { name: queue, defaultJobOptions: { keepFailed: { count: 0 } } } });
  const enqueue = (n: number) => h.client.enqueueJob({ queue, job: { name: 'fatal', data: { n }, options: { jobId: 'order-1' } } });
  await enqueue(1);
  await captured(client, queue, 1);
  await waitFor('BullMQ copy trimmed', async () => (await failedCount(redis, h.prefix, queue)) === 0);
  expect((await enqueue(2)).deduplicated).toBe(false);
  await captured(client, queue, 2);

  const [second, first] = (await client.list({ filter: { queue } })).deadLetters;
  expect(first!.id).toBe(`${queue}:order-1:1`);
  expect(second!.id).toBe(`${queue}:order-1:1~${second!.deadLetteredAt!.getTime()}`);
  expect([first!.job!.data, second!.job!.data]).toEqual([{ n: 1 }, { n: 2 }]);
  expect(await h.client.getJob(queue, 'order-1')).toMatchObject({ state: S.JOB_STATE_DEAD_LETTERED, data: { n: 2 } });
});

it("quarantines at capture what a queue's rule says to, and a filter replay skips it", async () => {
  const { client } = await startService();
  const queue = uniqueQueue('dlq-poison');
  await h.client.createQueue({ queue: { name: queue, deadLetter: { rules: [{ jobName: 'fatal', category: 'POISON', quarantine: true }] } } });
  await enqueueFailures(h, queue, { fatal: 2, fail: 1 });
  await captured(client, queue, 3);
  const poison = (await client.list({ filter: { queue, category: 'POISON' } })).deadLetters;
  expect(poison.map((d) => [d.quarantined, d.quarantineReason])).toEqual([
    [true, "the queue's rule for POISON quarantines it"],
    [true, "the queue's rule for POISON quarantines it"],
  ]);
  const target = uniqueQueue('dlq-poison-target');
  await h.client.createQueue({ queue: { name: target, paused: true } });
  const res = await client.replay({ filter: { queue }, targetQueue: target });
  expect(res.skippedQuarantined).toBe(2);
  expect(res.replayed.map((r) => r.deadLetterId)).toEqual([(await client.list({ filter: { queue, category: 'EXHAUSTED_RETRIES' } })).deadLetters[0]!.id]);
});

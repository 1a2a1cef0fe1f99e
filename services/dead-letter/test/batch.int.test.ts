import { status, type ServiceError } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { RedisClient as Redis } from '@jobmesh/testing';
import { keyspace } from '@jobmesh/testing';
import { Keys } from '@jobmesh/queue';
import { type DeadLetterClient, type DeadLetterHarness, failedCount, startDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

// Quarantine, release and purge by ids are all or nothing, and a batch costs the same number of
// Redis commands whatever its size.

let h: DeadLetterHarness;
let redis: Redis;
let dl: DeadLetterClient;

/** Jobmesh's Redis keys under the harness's prefix. */
const keys = (): Keys => new Keys(h.prefix);

beforeAll(async () => {
  h = await startDeadLetterHarness();
  redis = h.redisClient();
  // A sweep every hour: after its first one, this service sends Redis nothing unasked, so every
  // command seen from its connection during a call is the call's.
  dl = (await h.startDeadLetter({ JOBMESH_DLQ_SWEEP_INTERVAL: '1h' })).client;
});
afterAll(async () => {
  await h.stop();
});

/** `n` dead letters on a new queue, captured and followed up (nothing more will be written). */
async function deadLetters(n: number, keepFailed?: number): Promise<{ queue: string; ids: string[] }> {
  const queue = uniqueQueue('dlq-batch');
  await h.client.createQueue({ queue: { name: queue, concurrency: 50 } });
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: n }, (_, i) => ({ name: 'fatal', data: { i }, options: { attempts: 1, keepFailed: keepFailed === undefined ? undefined : { count: keepFailed } } })) });
  await waitFor(`${n} dead letters`, async () => (await dl.stats(queue)).total === n, 60_000);
  await waitFor('follow-ups done', async () => (await redis.zcard(keys().deadLetterOutbox)) === 0);
  if (keepFailed === 0) await waitFor("BullMQ's copies trimmed", async () => (await failedCount(redis, h.prefix, queue)) === 0);
  const ids = (await dl.list({ filter: { queue }, pageSize: 1000 })).deadLetters.map((d) => d.id);
  return { queue, ids };
}

/** The dead-letter store's keys and the queue's BullMQ keys. */
const fingerprint = async (queue: string) => ({ store: await keyspace(redis, `${h.prefix}:_dlq`), bull: await keyspace(redis, `${h.prefix}:${queue}`) });

const errorOf = (p: Promise<unknown>): Promise<ServiceError | undefined> =>
  p.then(
    () => undefined,
    (e: ServiceError) => e,
  );

it('rejects a quarantine, a release and a purge naming one unknown id among known ones with NOT_FOUND, and changes nothing', async () => {
  const { queue, ids } = await deadLetters(6);
  await dl.quarantine({ ids: ids.slice(0, 2), quarantined: true, reason: 'before' });
  const unknown = `${queue}:nope:1`;
  const mixed = [ids[0]!, ids[3]!, unknown, ids[4]!];
  const before = await fingerprint(queue);
  expect(Object.keys(before.store).length).toBeGreaterThan(0);
  expect(await failedCount(redis, h.prefix, queue)).toBe(6); // BullMQ still holds every copy

  for (const call of [dl.quarantine({ ids: mixed, quarantined: true, reason: 'x' }), dl.quarantine({ ids: mixed, quarantined: false }), dl.purge({ ids: mixed })]) {
    const err = await errorOf(call);
    expect(err?.code).toBe(status.NOT_FOUND);
    expect(err?.details).toBe(`dead letter "${unknown}" not found`);
  }
  // With an age too, the unknown id is checked first.
  expect((await errorOf(dl.purge({ ids: mixed, olderThan: { seconds: 0, nanos: 1e6 } })))?.code).toBe(status.NOT_FOUND);
  expect(await fingerprint(queue)).toEqual(before);
  expect((await dl.get(ids[0]!)).quarantineReason).toBe('before');
  expect((await dl.get(ids[3]!)).quarantined).toBe(false);

  // Without the unknown id, each goes through for all of them.
  const known = mixed.filter((id) => id !== unknown);
  expect((await dl.quarantine({ ids: known, quarantined: true, reason: 'now' })).updated).toBe(2); // ids[0] was already
  expect((await dl.quarantine({ ids: known, quarantined: false })).updated).toBe(3);
  expect((await dl.purge({ ids: known })).purged).toBe(3);
  expect((await dl.stats(queue)).total).toBe(3);
  expect(await failedCount(redis, h.prefix, queue)).toBe(3); // their BullMQ copies went with them
  expect((await errorOf(dl.purge({ ids: [known[0]!] })))?.code).toBe(status.NOT_FOUND); // purged already
});

/** The commands the dead-letter service sends Redis while `call` runs, by name. */
async function commandsOf(call: () => Promise<unknown>): Promise<string[]> {
  // Which connection is the service's: the one that reads a dead letter when asked for it.
  const monitor = await redis.monitor();
  try {
    const lines: Array<{ args: string[]; source: string }> = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => lines.push({ args, source }));
    const fence = async (): Promise<number> => {
      const marker = `fence-${randomUUID()}`;
      await redis.echo(marker);
      return waitFor('the monitor to see the fence', () => {
        const i = lines.findIndex((l) => l.args[0]?.toLowerCase() === 'echo' && l.args[1] === marker);
        return i >= 0 ? i + 1 : undefined;
      });
    };
    const probeId = `probe-${randomUUID()}`;
    const probe = keys().deadLetter(probeId);
    // A marker in the MONITOR output, not a lookup: NOT_FOUND is the expected answer.
    await dl.get(probeId).catch(() => undefined);
    const from = await fence();
    const source = lines.find((l) => l.args[1] === probe)!.source;
    await call();
    const to = await fence();
    return lines.slice(from, to - 1).filter((l) => l.source === source).map((l) => (l.args[0] === 'evalsha' ? `evalsha:${l.args.some((a) => a.endsWith(':repeat')) ? 'bullmq-remove' : 'dlq'}` : l.args[0]!.toLowerCase()));
  } finally {
    monitor.disconnect();
  }
}

it('quarantines, releases and purges a batch in the same number of Redis commands whatever its size', async () => {
  const small = await deadLetters(5);
  const large = await deadLetters(50);
  const warm = await deadLetters(2, 0);
  // Each script is sent once (NOSCRIPT, then EVAL) before the calls measured.
  await dl.quarantine({ ids: [warm.ids[0]!], quarantined: true });
  await dl.purge({ ids: [warm.ids[1]!] });

  for (const { ids } of [small, large]) {
    expect(await commandsOf(() => dl.quarantine({ ids, quarantined: true, reason: 'batch' }))).toEqual(['evalsha:dlq']);
    expect(await commandsOf(() => dl.quarantine({ ids, quarantined: false }))).toEqual(['evalsha:dlq']);
    // One read of the batch, BullMQ's removal of each failed job it still holds (sent together,
    // without waiting for each answer), one delete of the batch.
    const purge = await commandsOf(() => dl.purge({ ids }));
    expect(purge.filter((c) => c !== 'evalsha:bullmq-remove')).toEqual(['evalsha:dlq', 'evalsha:dlq']);
    expect(purge.filter((c) => c === 'evalsha:bullmq-remove')).toHaveLength(ids.length);
  }

  // Dead letters whose BullMQ copy is gone already (keep_failed 0): nothing but the two calls.
  const trimmed = await deadLetters(30, 0);
  expect(await commandsOf(() => dl.purge({ ids: trimmed.ids }))).toEqual(['evalsha:dlq', 'evalsha:dlq']);
  expect((await dl.stats(trimmed.queue)).total).toBe(0);
}, 120_000);

it('purges by filter a page at a time, also across many dead letters that failed in the same millisecond', async () => {
  const { queue, ids } = await deadLetters(1200);
  // The one dead letter of another job name in the middle is kept.
  const keep = ids[600]!;
  await redis.hset(keys().deadLetter(keep), 'job', JSON.stringify({ ...JSON.parse((await redis.hget(keys().deadLetter(keep), 'job'))!), name: 'other' }));
  // And all of them share one failure time in the queue's index, the worst case for paging by score.
  const index = keys().deadLetterQueueIndex(queue);
  await redis.zadd(index, ...ids.flatMap((id) => ['1000', id]));
  expect((await dl.purge({ filter: { queue, jobName: 'fatal' } })).purged).toBe(1199);
  expect(await redis.zrange(index, 0, -1)).toEqual([keep]);
});

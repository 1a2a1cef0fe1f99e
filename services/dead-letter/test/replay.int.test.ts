import { status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { type DeadLetterClient, useDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

// Replays as a resumable operation: interrupted and run again, each dead letter is replayed
// exactly once; a failure part-way answers with the scheduler's own code and what was done; a
// filter is read page by page; progress is streamed.

const h = useDeadLetterHarness();
let dl: DeadLetterClient;
beforeAll(async () => {
  dl = (await h.startDeadLetter()).client;
});

/** `n` UNRECOVERABLE dead letters on a new queue (data { i, ...extra(i) }), oldest first by i. */
async function deadLetters(label: string, n: number, extra: (i: number) => Record<string, unknown> = () => ({})): Promise<{ queue: string; ids: string[] }> {
  const queue = uniqueQueue(label);
  await h.client.createQueue({ queue: { name: queue, concurrency: 50 } });
  for (let i = 0; i < n; i += 1000) {
    const jobs = Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'fatal', data: { i: i + j, ...extra(i + j) }, options: { attempts: 1 } }));
    await h.client.enqueueJobs({ queue, jobs });
  }
  await waitFor(`${n} dead letters on ${queue}`, async () => (await dl.stats(queue)).total === n, 120_000);
  return { queue, ids: await allIds(queue) };
}

/** Every dead letter id of `queue`, oldest first. */
async function allIds(queue: string): Promise<string[]> {
  const out: string[] = [];
  let pageToken = '';
  do {
    const page = await dl.list({ filter: { queue }, pageSize: 1000, pageToken });
    out.push(...page.deadLetters.map((d) => d.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out.reverse();
}

/** A paused queue, so replayed jobs stay there to be counted. */
async function pausedQueue(label = 'dlq-target'): Promise<string> {
  const name = uniqueQueue(label);
  await h.client.createQueue({ queue: { name, paused: true } });
  return name;
}

/** How many jobs on `queue` replay each dead letter (by `options.replay_of`), read through the scheduler. */
async function jobsPerDeadLetter(queue: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let pageToken = '';
  do {
    const page = await h.client.listJobs({ queue, pageSize: 1000, pageToken });
    for (const j of page.jobs) counts.set(j.options!.replayOf!, (counts.get(j.options!.replayOf!) ?? 0) + 1);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return counts;
}

/** Runs a streamed replay to its end (or its error), collecting every message. */
async function streamAll(req: Parameters<DeadLetterClient['streamReplay']>[0], onMessage?: (m: pb.StreamReplayDeadLettersResponse) => void, signal?: AbortSignal) {
  const messages: pb.StreamReplayDeadLettersResponse[] = [];
  let error: ServiceError | undefined;
  try {
    for await (const m of dl.streamReplay(req, { signal })) {
      messages.push(m);
      onMessage?.(m);
    }
  } catch (err) {
    error = err as ServiceError;
  }
  return { messages, replayed: messages.flatMap((m) => m.replayed), last: messages[messages.length - 1]?.progress, error };
}

it('replays 5,000 dead letters exactly once when the stream is cancelled half-way and the replay run again', async () => {
  const { queue, ids } = await deadLetters('dlq-5k', 5000);
  const target = await pausedQueue();
  const req = { filter: { queue }, targetQueue: target, maxPerSecond: 10_000 };

  const stop = new AbortController();
  const first = await streamAll(req, (m) => m.progress!.replayed >= 2500 && stop.abort(), stop.signal);
  expect(first.error?.code).toBe(status.CANCELLED); // ours
  expect(first.messages[0]!.progress).toMatchObject({ total: 5000, examined: 0, replayed: 0 });
  const before = first.replayed.length;
  expect(before).toBeGreaterThanOrEqual(2500);
  expect(before).toBeLessThan(5000);
  // Oldest first: what the first run replayed is a prefix of the dead letters in failure order.
  expect(first.replayed.map((r) => r.deadLetterId)).toEqual(ids.slice(0, before));

  const second = await streamAll(req);
  expect(second.error).toBeUndefined();
  // The cancel may land after an enqueue and before its record: the second run then gets that
  // job back from the scheduler (deduplicated) instead of a second one.
  const again = second.replayed.filter((r) => r.deduplicated);
  expect(again.length).toBeLessThanOrEqual(1);
  // The server may replay a few more after the last message this client read and before it
  // sees the cancel: those are recorded, so the second run skips them too.
  expect(second.last).toMatchObject({ total: 5000, examined: 5000, skippedQuarantined: 0 });
  expect(second.last!.skippedReplayed).toBeGreaterThanOrEqual(before);
  expect(second.last!.skippedReplayed + second.last!.replayed).toBe(5000);

  const perDeadLetter = await jobsPerDeadLetter(target);
  expect(perDeadLetter.size).toBe(5000);
  expect([...perDeadLetter.values()].every((n) => n === 1)).toBe(true);
  expect(new Set(perDeadLetter.keys())).toEqual(new Set(ids));
  // And each dead letter records the one job.
  const sample = [ids[0]!, ids[before - 1]!, ids[before]!, ids[4999]!];
  for (const id of sample) expect((await dl.get(id)).replays).toHaveLength(1);
}, 300_000);

it("stops at the first enqueue the scheduler refuses, with the scheduler's code and what was replayed before it", async () => {
  const { queue, ids } = await deadLetters('dlq-stop', 40);
  const target = await pausedQueue();
  // The target queue is deleted once 10 are replayed: the 11th enqueue is NOT_FOUND.
  let deleted: Promise<void> | undefined;
  const res = await streamAll({ filter: { queue }, targetQueue: target, maxPerSecond: 20 }, (m) => {
    if (m.progress!.replayed >= 10 && !deleted) deleted = h.client.deleteQueue(target, true);
  });
  await deleted;
  expect(res.error?.code).toBe(status.NOT_FOUND);
  const n = res.last!.replayed;
  expect(n).toBeGreaterThanOrEqual(10);
  expect(n).toBeLessThan(40);
  expect(res.replayed.map((r) => r.deadLetterId)).toEqual(ids.slice(0, n));
  expect(res.error!.details).toContain(`replay stopped at dead letter "${ids[n]}" after ${n} replayed: the scheduler refused its enqueue with NOT_FOUND: queue "${target}" does not exist`);
  // Those replayed stay recorded; the one it stopped at has no replay.
  expect((await dl.get(ids[n - 1]!)).replays).toHaveLength(1);
  expect((await dl.get(ids[n]!)).replays).toHaveLength(0);

  // The unary call fails the same way and says how many were replayed before.
  const unary = await dl.replay({ filter: { queue }, targetQueue: target }).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(unary?.code).toBe(status.NOT_FOUND);
  expect(unary?.details).toMatch(new RegExp(`^replay stopped at dead letter "${ids[n]}" after 0 replayed: the scheduler refused its enqueue with NOT_FOUND: `));
});

it('passes on RESOURCE_EXHAUSTED from the scheduler for the one dead letter a patch makes too large, after replaying those before it', async () => {
  // Job 3 carries 200 KiB: under the 256 KiB payload limit as it was, over it with the patch.
  const big = 'x'.repeat(200 * 1024);
  const { queue, ids } = await deadLetters('dlq-big', 6, (i) => (i === 3 ? { big } : {}));
  const target = await pausedQueue();
  const err = await dl.replay({ filter: { queue }, targetQueue: target, dataPatch: { note: 'y'.repeat(100 * 1024) }, maxPerSecond: 1000 }).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(err?.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(err?.details).toContain(`replay stopped at dead letter "${ids[3]}" after 3 replayed: the scheduler refused its enqueue with RESOURCE_EXHAUSTED: `);
  expect(err?.details).toContain('over the limit');
  expect([...(await jobsPerDeadLetter(target)).keys()].sort()).toEqual(ids.slice(0, 3).sort());
});

it('answers UNAVAILABLE with what was done when the scheduler cannot be reached', async () => {
  const { queue } = await deadLetters('dlq-unreachable', 2);
  // A dead-letter service whose scheduler address has nothing listening.
  const lonely = await h.startDeadLetter({ JOBMESH_SCHEDULER_ADDRESS: '127.0.0.1:1' });
  try {
    const err = await lonely.client.replay({ filter: { queue } }, { timeoutMs: 20_000 }).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect(err?.code).toBe(status.UNAVAILABLE);
    expect(err?.details).toMatch(/^replay stopped at dead letter "\S+" after 0 replayed: the scheduler refused its enqueue with UNAVAILABLE: .+ Nothing was replayed\.$/);
  } finally {
    await lonely.service.stop();
  }
});

it('reads a filter page by page: dead letters purged before the replay reaches their page are not replayed', async () => {
  const { queue, ids } = await deadLetters('dlq-pages', 600);
  const target = await pausedQueue();
  const newest = ids.slice(300);
  let purged: Promise<unknown> | undefined;
  // 50 a second: the first 300 take 6 s. Right after the first replay, the newest 300 go. A replay
  // holding every match in memory from the start would replay them anyway; one that reads the
  // store a page (100) at a time never sees them.
  const res = await streamAll({ filter: { queue }, targetQueue: target, maxPerSecond: 50 }, (m) => {
    if (m.progress!.replayed >= 1 && !purged) purged = dl.purge({ ids: newest });
  });
  await purged;
  expect(res.error).toBeUndefined();
  expect(res.last).toMatchObject({ total: 600, replayed: 300, examined: 300 });
  expect(res.replayed.map((r) => r.deadLetterId)).toEqual(ids.slice(0, 300));
  expect((await jobsPerDeadLetter(target)).size).toBe(300);
}, 60_000);

it('streams progress: the total first, then counts and the jobs since the previous message, and the totals last', async () => {
  const { queue, ids } = await deadLetters('dlq-progress', 30);
  await dl.quarantine({ ids: [ids[5]!], quarantined: true, reason: 'test' });
  const target = await pausedQueue();
  await dl.replay({ ids: [ids[7]!], targetQueue: target }); // replayed before: a filter skips it

  const res = await streamAll({ filter: { queue }, targetQueue: target, maxPerSecond: 20 });
  expect(res.error).toBeUndefined();
  expect(res.messages[0]).toEqual({ replayed: [], progress: { total: 30, examined: 0, replayed: 0, skippedQuarantined: 0, skippedReplayed: 0 } });
  // At 20 a second the replay takes about 1.4 s: more than the first and last message.
  expect(res.messages.length).toBeGreaterThan(3);
  const counts = res.messages.map((m) => m.progress!.examined);
  expect(counts).toEqual([...counts].sort((a, b) => a - b));
  expect(res.last).toEqual({ total: 30, examined: 30, replayed: 28, skippedQuarantined: 1, skippedReplayed: 1 });
  expect(res.replayed.map((r) => r.deadLetterId)).toEqual(ids.filter((_, i) => i !== 5 && i !== 7));
  expect(res.replayed.every((r) => r.job!.queue === target && r.job!.id && !r.deduplicated)).toBe(true);
  // Each message's progress counts what it and the messages before it carry.
  let seen = 0;
  for (const m of res.messages) {
    seen += m.replayed.length;
    expect(m.progress!.replayed).toBe(seen);
  }
});

it('skips dead letters with a recorded replay unless include_replayed, which gets the same job back onto the same queue', async () => {
  const { queue, ids } = await deadLetters('dlq-again', 3);
  const target = await pausedQueue();
  const first = await dl.replay({ filter: { queue }, targetQueue: target });
  expect(first.replayed.map((r) => r.deadLetterId)).toEqual(ids);

  const skipped = await dl.replay({ filter: { queue }, targetQueue: target });
  expect(skipped).toEqual({ replayed: [], skippedQuarantined: 0, skippedReplayed: 3 });

  const included = await dl.replay({ filter: { queue }, targetQueue: target, includeReplayed: true });
  expect(included.skippedReplayed).toBe(0);
  expect(included.replayed).toEqual(first.replayed.map((r) => ({ ...r, deduplicated: true })));
  // By id, the same: the job made before, and no second record of it.
  const byId = await dl.replay({ ids: [ids[0]!], targetQueue: target });
  expect(byId.replayed).toEqual([{ ...first.replayed[0]!, deduplicated: true }]);
  expect((await dl.get(ids[0]!)).replays.map((r) => r.job)).toEqual([first.replayed[0]!.job]);
  expect((await jobsPerDeadLetter(target)).size).toBe(3);
  expect([...(await jobsPerDeadLetter(target)).values()]).toEqual([1, 1, 1]);
});

it('checks every id before it replays any: an unknown one is NOT_FOUND, a quarantined one FAILED_PRECONDITION, and nothing is enqueued', async () => {
  const { queue, ids } = await deadLetters('dlq-ids', 3);
  const target = await pausedQueue();
  const unknown = `${queue}:nope:1`;
  const err = await dl.replay({ ids: [ids[0]!, unknown, ids[1]!], targetQueue: target }).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(err?.code).toBe(status.NOT_FOUND);
  expect(err?.details).toBe(`dead letter "${unknown}" not found`);
  await dl.quarantine({ ids: [ids[2]!], quarantined: true });
  const streamed = await streamAll({ ids: [ids[0]!, ids[2]!], targetQueue: target });
  expect(streamed.error?.code).toBe(status.FAILED_PRECONDITION);
  expect(streamed.messages).toEqual([]);
  expect((await h.client.listJobs({ queue: target })).jobs).toEqual([]);
  expect((await dl.get(ids[0]!)).replays).toEqual([]);

  const bad = await streamAll({});
  expect(bad.error?.code).toBe(status.INVALID_ARGUMENT);
});

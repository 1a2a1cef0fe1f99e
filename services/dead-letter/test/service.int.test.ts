import { status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { type DeadLetterClient, enqueueFailures, useDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

const h = useDeadLetterHarness();
let dl: DeadLetterClient;
beforeAll(async () => {
  dl = (await h.startDeadLetter()).client;
});

async function deadLetters(queue: string, n: { fail?: number; fatal?: number; ghost?: number }): Promise<void> {
  const before = (await dl.stats(queue)).total;
  // Called again for the same queue: ALREADY_EXISTS is fine.
  await h.client.createQueue({ queue: { name: queue } }).catch(() => undefined);
  await enqueueFailures(h, queue, n);
  const total = before + (n.fail ?? 0) + (n.fatal ?? 0) + (n.ghost ?? 0);
  await waitFor(`${total} dead letters on ${queue}`, async () => (await dl.stats(queue)).total === total, 30_000);
}

const codeOf = (p: Promise<unknown>): Promise<number | undefined> => p.then(() => undefined, (e: ServiceError) => e.code);

it('lists by queue, category, job name and time range, newest first, a page at a time', async () => {
  const queue = uniqueQueue('dlq-list');
  await deadLetters(queue, { fail: 5, fatal: 3 });
  const seen: pb.DeadLetter[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await dl.list({ filter: { queue }, pageSize: 3, pageToken });
    expect(page.deadLetters.length).toBeLessThanOrEqual(3);
    seen.push(...page.deadLetters);
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken);
  expect(pages).toBe(3);
  expect(new Set(seen.map((d) => d.id)).size).toBe(8);
  const times = seen.map((d) => d.deadLetteredAt!.getTime());
  expect(times).toEqual([...times].sort((a, b) => b - a));

  expect((await dl.list({ filter: { queue, category: 'UNRECOVERABLE' } })).deadLetters).toHaveLength(3);
  expect((await dl.list({ filter: { category: 'UNRECOVERABLE', queue } })).deadLetters.every((d) => d.job!.name === 'fatal')).toBe(true);
  expect((await dl.list({ filter: { queue, jobName: 'fail' } })).deadLetters).toHaveLength(5);
  expect((await dl.list({ filter: { queue, since: new Date(Date.now() + 60_000) } })).deadLetters).toHaveLength(0);
  expect((await dl.list({ filter: { queue, until: new Date(Date.now() - 3_600_000) } })).deadLetters).toHaveLength(0);
  expect((await dl.list({ filter: { queue, since: new Date(Date.now() - 3_600_000) } })).deadLetters).toHaveLength(8);
});

it('gets one dead letter in full, and NOT_FOUND for an unknown id', async () => {
  const queue = uniqueQueue('dlq-get');
  await deadLetters(queue, { fatal: 1 });
  const [first] = (await dl.list({ filter: { queue } })).deadLetters;
  const d = await dl.get(first!.id);
  expect(d).toMatchObject({ id: first!.id, category: 'UNRECOVERABLE', quarantined: false, replays: [] });
  expect(d.errors).toHaveLength(1);
  expect(d.errors[0]).toMatchObject({ attempt: 1, errorName: 'UnrecoverableError', message: 'bad input' });
  expect(await codeOf(dl.get(`${queue}:nope:1`))).toBe(status.NOT_FOUND);
});

it('purges by id and by age, and keeps the counts right', async () => {
  const queue = uniqueQueue('dlq-purge');
  await deadLetters(queue, { fatal: 2 });
  const first = (await dl.list({ filter: { queue } })).deadLetters;
  const firstBatch = Math.max(...first.map((d) => d.deadLetteredAt!.getTime()));
  // The second batch is enqueued after the first was captured, so it failed strictly later.
  await deadLetters(queue, { fatal: 3 });
  expect((await dl.purge({ filter: { queue }, olderThan: { seconds: 3600, nanos: 0 } })).purged).toBe(0);
  // older_than that falls between the two batches: only the first two are old enough.
  const firstIds = new Set(first.map((d) => d.id));
  const second = (await dl.list({ filter: { queue } })).deadLetters.filter((d) => !firstIds.has(d.id));
  const secondBatch = Math.min(...second.map((d) => d.deadLetteredAt!.getTime()));
  expect(secondBatch).toBeGreaterThan(firstBatch);
  const ageMs = Date.now() - Math.floor((firstBatch + secondBatch) / 2);
  expect((await dl.purge({ filter: { queue }, olderThan: pb.msToDuration(ageMs) })).purged).toBe(2);
  expect((await dl.stats(queue)).total).toBe(3);
  const [one] = (await dl.list({ filter: { queue } })).deadLetters;
  // All or nothing: an unknown id among the ids purges none of them.
  expect(await codeOf(dl.purge({ ids: [one!.id, `${queue}:nope:1`] }))).toBe(status.NOT_FOUND);
  expect((await dl.stats(queue)).total).toBe(3);
  expect((await dl.purge({ ids: [one!.id] })).purged).toBe(1);
  expect((await dl.stats(queue)).counts).toEqual([{ queue, category: 'UNRECOVERABLE', count: 2 }]);
  expect(await codeOf(dl.purge({}))).toBe(status.INVALID_ARGUMENT);
});

it('quarantines: refused by id on replay, skipped by a filter', async () => {
  const queue = uniqueQueue('dlq-quarantine');
  await deadLetters(queue, { fatal: 3 });
  const [a] = (await dl.list({ filter: { queue } })).deadLetters;
  expect((await dl.quarantine({ ids: [a!.id], quarantined: true, reason: 'poison' })).updated).toBe(1);
  expect((await dl.quarantine({ ids: [a!.id], quarantined: true })).updated).toBe(0);
  expect(await dl.get(a!.id)).toMatchObject({ quarantined: true, quarantineReason: 'poison' });
  expect(await codeOf(dl.quarantine({ ids: [`${queue}:nope:1`], quarantined: true }))).toBe(status.NOT_FOUND);
  expect(await codeOf(dl.replay({ ids: [a!.id] }))).toBe(status.FAILED_PRECONDITION);
  const target = uniqueQueue('dlq-target');
  await h.client.createQueue({ queue: { name: target, paused: true } });
  const res = await dl.replay({ filter: { queue }, targetQueue: target });
  expect(res.skippedQuarantined).toBe(1);
  expect(res.replayed).toHaveLength(2);
  expect(res.replayed.map((r) => r.deadLetterId)).not.toContain(a!.id);
});

it('replays through the scheduler with a data patch onto a target queue, and records the replay', async () => {
  const queue = uniqueQueue('dlq-replay');
  await deadLetters(queue, { fatal: 1 });
  const [d] = (await dl.list({ filter: { queue } })).deadLetters;
  const target = uniqueQueue('dlq-target');
  await h.client.createQueue({ queue: { name: target, paused: true } });
  const res = await dl.replay({ ids: [d!.id], targetQueue: target, dataPatch: { fixed: true } });
  expect(res.replayed).toHaveLength(1);
  const ref = res.replayed[0]!.job!;
  expect(ref.queue).toBe(target);
  const job = await h.client.getJob(target, ref.id);
  expect(job).toMatchObject({ name: 'fatal', data: { i: 0, fixed: true } });
  const after = await dl.get(d!.id);
  expect(after.replays.map((r) => r.job)).toEqual([ref]);
  expect(await codeOf(dl.replay({ ids: [d!.id], targetQueue: uniqueQueue('missing') }))).toBe(status.NOT_FOUND);
});

it('streams new dead letters matching the filter', async () => {
  const queue = uniqueQueue('dlq-watch');
  await h.client.createQueue({ queue: { name: queue } });
  const stop = new AbortController();
  const got: pb.DeadLetter[] = [];
  const watching = (async () => {
    for await (const d of dl.watch({ queue, category: 'UNRECOVERABLE' }, { signal: stop.signal })) got.push(d);
  })().catch(() => undefined); // ends with CANCELLED when stopped
  // The stream is live once it reports something; until then, each round adds failures of both
  // kinds (the watch only ever sees the UNRECOVERABLE ones).
  let rounds = 0;
  const deadline = Date.now() + 30_000;
  while (got.length === 0 && Date.now() < deadline) {
    rounds++;
    await enqueueFailures(h, queue, { fatal: 1, fail: 1 });
    await waitFor('this round to be dead-lettered', async () => (await dl.stats(queue)).total === 2 * rounds, 30_000);
  }
  expect(got.length).toBeGreaterThan(0);
  const seen = got.length;
  await enqueueFailures(h, queue, { fatal: 2, fail: 1 });
  await waitFor('2 more watched dead letters', () => got.length >= seen + 2, 30_000);
  await waitFor('all dead letters', async () => (await dl.stats(queue)).total === 2 * rounds + 3, 30_000);
  expect(got.every((d) => d.category === 'UNRECOVERABLE' && d.job?.queue === queue)).toBe(true);
  stop.abort();
  await watching;
});

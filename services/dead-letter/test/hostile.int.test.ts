import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { RawGrpcClient } from '@jobmesh/testing';
import { type DeadLetterHarness, startDeadLetterHarness, uniqueQueue, waitFor } from '../src/testing';

// Rule patterns come from API callers. They are matched with RE2 (linear time): with JavaScript's
// RegExp, "(a+)+b" against a failure message of 30 "a"s kept the event loop busy for a minute.

let h: DeadLetterHarness;
beforeAll(async () => {
  // The pool serves another queue: this file's jobs are failed by a plain BullMQ worker.
  h = await startDeadLetterHarness({ JOBMESH_WORKER_QUEUES: uniqueQueue('unused') });
});
afterAll(async () => {
  await h.stop();
});

it('a catastrophic-backtracking rule pattern matches in linear time and the service keeps answering', async () => {
  const { client } = await h.startDeadLetter();
  const queue = uniqueQueue('dlq-redos');
  await h.client.createQueue({ queue: { name: queue, deadLetter: { rules: [{ messagePattern: '(a+)+b', category: 'NEVER' }] } } });
  const failer = h.worker(queue, async () => Promise.reject(new Error('a'.repeat(5000))));
  try {
    await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 1 } } });
    await waitFor('the dead letter', async () => (await client.stats(queue)).total === 1, 20_000);
  } finally {
    await failer.close();
  }
  const started = Date.now();
  const [d] = (await client.list({ filter: { queue } })).deadLetters;
  expect(Date.now() - started).toBeLessThan(2000);
  // The pattern did not match (no "b"): the built-in category applies.
  expect(d).toMatchObject({ category: 'EXHAUSTED_RETRIES', severity: pb.Severity.SEVERITY_WARNING });
});

it('QuarantineDeadLetters refuses a reason over 1024 characters, and more than 10,000 ids, with INVALID_ARGUMENT', async () => {
  const { client } = await h.startDeadLetter();
  await expect(client.quarantine({ ids: ['q:1:1'], quarantined: true, reason: 'r'.repeat(1025) })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('reason: is 1025 characters') });
  const ids = Array.from({ length: 10_001 }, (_, i) => `q:${i}:1`);
  await expect(client.quarantine({ ids, quarantined: true })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('at most 10000 per call') });
});

describe('what the contract bounds is refused or clamped as it says', () => {
  it('PurgeDeadLetters refuses older_than -1 s and a Duration out of range with INVALID_ARGUMENT', async () => {
    const { client } = await h.startDeadLetter();
    await expect(client.purge({ olderThan: { seconds: -1, nanos: 0 } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('older_than: must not be negative') });
    await expect(client.purge({ olderThan: { seconds: 1, nanos: 2e9 } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('older_than: is not a valid google.protobuf.Duration') });
  });

  it('ListDeadLetters clamps page_size 2^32-1 to 1000, as the contract says', async () => {
    const { client } = await h.startDeadLetter();
    await expect(client.list({ pageSize: 2 ** 32 - 1 })).resolves.toMatchObject({ deadLetters: expect.any(Array) });
  });

  it('refuses ids and filters no dead letter can match: U+FFFD in an id, an invalid queue name', async () => {
    const { client } = await h.startDeadLetter();
    await expect(client.quarantine({ ids: ['q:\uFFFD:1'], quarantined: true })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('invalid UTF-8') });
    await expect(client.list({ filter: { queue: '../etc' } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('filter.queue') });
  });

  it('WatchDeadLetters on an invalid queue name ends at once with INVALID_ARGUMENT instead of staying open', async () => {
    const { service } = await h.startDeadLetter();
    const raw = new RawGrpcClient(`127.0.0.1:${service.grpcPort}`);
    try {
      const bytes = Buffer.from(pb.WatchDeadLettersRequest.encode({ filter: pb.DeadLetterFilter.fromPartial({ queue: 'no spaces allowed' }) }).finish());
      const out = await raw.serverStream('/jobmesh.v1.DeadLetterService/WatchDeadLetters', bytes, { timeoutMs: 5000 });
      expect(out).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('filter.queue'), messages: 0 });
    } finally {
      raw.close();
    }
  });
});

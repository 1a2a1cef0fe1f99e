import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
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

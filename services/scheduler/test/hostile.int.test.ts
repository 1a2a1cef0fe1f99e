import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { DeepPartial } from '@jobmesh/sdk';
import type { RedisClient } from '@jobmesh/testing';
import { keyspace, useSchedulerHarness } from '../src/testing';

// Regression tests for what a hostile-input probe found: each bad call is answered with the
// caller's error code, and a rejected call writes nothing.

const h = useSchedulerHarness();
let redis: RedisClient;
beforeAll(() => {
  redis = h.redisClient();
});

/** Runs `call`, expects it to be rejected like `expected`, and checks that Redis did not change. */
async function rejectsWithoutWriting(call: () => Promise<unknown>, expected: { code: number; details?: unknown }): Promise<void> {
  const before = await keyspace(redis, h.prefix);
  const dbsize = await redis.dbsize();
  await expect(call()).rejects.toMatchObject(expected);
  expect(await keyspace(redis, h.prefix)).toEqual(before);
  expect(await redis.dbsize()).toBe(dbsize);
}

const details = (text: string) => expect.stringContaining(text);

/** A chain of `levels` jobs: the root, its one child, that one's child, … */
function chain(queue: string, levels: number): DeepPartial<pb.FlowNode> {
  let node: DeepPartial<pb.FlowNode> = { queue, job: { name: `level-${levels}` } };
  for (let i = levels - 1; i >= 1; i--) node = { queue, job: { name: `level-${i}` }, children: [node] };
  return node;
}

describe('flows are bounded before anything is written', () => {
  it('accepts a flow 32 levels deep', async () => {
    const queue = await h.newQueue('deep');
    const { flow } = await h.client.enqueueFlow({ root: chain(queue, 32) });
    expect(flow!.job!.name).toBe('level-1');
  });

  it('refuses a flow 33 levels deep with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('deeper');
    await rejectsWithoutWriting(() => h.client.enqueueFlow({ root: chain(queue, 33) }), { code: status.INVALID_ARGUMENT, details: details('at most 32 levels') });
  });

  it('refuses a flow of 10,001 jobs with INVALID_ARGUMENT, at once', async () => {
    const queue = await h.newQueue('wide');
    const children = Array.from({ length: 10_000 }, (_, i) => ({ queue, job: { name: `child-${i}` } }));
    const started = Date.now();
    await rejectsWithoutWriting(() => h.client.enqueueFlow({ root: { queue, job: { name: 'parent' }, children } }), {
      code: status.INVALID_ARGUMENT,
      details: details('at most 10000 per flow'),
    });
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('CancelJob', () => {
  it('refuses a reason over 1024 characters with INVALID_ARGUMENT and leaves the job as it was', async () => {
    const queue = await h.newQueue('cancel');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await rejectsWithoutWriting(() => h.client.cancelJob(queue, job!.id, 'r'.repeat(8 * 1024 * 1024 - 100)), {
      code: status.INVALID_ARGUMENT,
      details: details('reason: is 8388508 characters; at most 1024'),
    });
    await rejectsWithoutWriting(() => h.client.cancelJob(queue, job!.id, 'r'.repeat(1025)), { code: status.INVALID_ARGUMENT, details: details('at most 1024') });
    expect((await h.client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_WAITING);
    const cancelled = await h.client.cancelJob(queue, job!.id, 'r'.repeat(1024));
    expect(cancelled.job!.state).toBe(pb.JobState.JOB_STATE_CANCELLED);
  });
});

describe('dead-letter rule patterns', () => {
  it('refuses a pattern RE2 cannot match in linear time, and one over 1024 characters, at CreateQueue and UpdateQueue', async () => {
    const rule = (messagePattern: string) => ({ deadLetter: { rules: [{ messagePattern, category: 'C' }] } });
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'lookahead', ...rule('(?=a)b') } }), {
      code: status.INVALID_ARGUMENT,
      details: details('queue.dead_letter.rules[0].message_pattern: is not a valid RE2'),
    });
    const queue = await h.newQueue('rules', rule('(a+)+b'));
    await rejectsWithoutWriting(() => h.client.updateQueue({ queue: { name: queue, ...rule('x'.repeat(1025)) }, updateMask: ['dead_letter'] }), {
      code: status.INVALID_ARGUMENT,
      details: details('at most 1024'),
    });
  });
});

describe('stored and echoed values are bounded', () => {
  it('refuses an 8 MiB queue label, and more than 64 labels, with INVALID_ARGUMENT; ListQueues keeps working', async () => {
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'big-label', labels: { team: 'x'.repeat(8 * 1024 * 1024 - 100) } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('queue.labels[team]: is 8388508 characters; at most 1024'),
    });
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'many-labels', labels } }), { code: status.INVALID_ARGUMENT, details: details('at most 64') });
    await expect(h.client.listQueues({ pageSize: 1000 })).resolves.toBeDefined();
  });

  it('answers a 1 MiB id with NOT_FOUND and a short message, not an oversized-metadata error', async () => {
    const queue = await h.newQueue('echo');
    const err = (await h.client.getJob(queue, 'x'.repeat(1024 * 1024)).catch((e: unknown) => e)) as { code: number; details: string };
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.details.length).toBeLessThanOrEqual(1025);
  });
});

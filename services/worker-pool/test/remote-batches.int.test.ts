// Batches on the Connect stream (docs/worker-protocol.md §6.1): several messages as one, each
// taking effect as if sent alone, in order. Only between a worker and a server that both said
// they read them; a worker that did not never gets one.
import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually, uniqueQueue } from '../src/testing';
import { type RawStream, useRemotePool } from './remote-helpers';

const S = pb.JobState;
const h = useRemotePool({ JOBMESH_LEASE_TTL: '5s' });

async function queueWithJobs(prefix: string, n: number): Promise<{ queue: string; ids: string[] }> {
  const queue = uniqueQueue(prefix);
  await h.client.createQueue({ queue: { name: queue } });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await h.client.enqueueJob({ queue, job: { name: 'x' } })).job!.id);
  return { queue, ids };
}

it('a worker that does not read batches gets every message on its own', async () => {
  const { queue } = await queueWithJobs('nobatch', 5);
  const s = h.stream();
  const welcome = await s.hello({ workerId: 'w-nobatch', queues: [queue], maxInFlight: 5 });
  expect(welcome.acceptsBatches).toBe(true);
  s.stream.write({ credit: { n: 5 } });
  await eventually(() => s.assignments().length === 5, 10_000, '5 assignments');
  for (const a of s.assignments()) s.stream.write({ complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: 1 } });
  await eventually(() => s.got.filter((m) => m.ack).length === 5, 10_000, '5 acks');
  expect(s.frames.filter((f) => f.batch)).toEqual([]);
  s.close();
});

it("takes a batch's messages in order, as if sent one by one: a stale Complete in it is refused alone, and the answers come back batched", async () => {
  const { queue, ids } = await queueWithJobs('batch', 5);
  const s = h.stream();
  await s.hello({ workerId: 'w-batch', queues: [queue], maxInFlight: 5, acceptsBatches: true });
  s.stream.write({ credit: { n: 5 } });
  await eventually(() => s.assignments().length === 5, 10_000, '5 assignments');
  const [first, ...rest] = s.assignments();
  const messages: pb.ConnectRequest[] = [
    // Progress then Complete of one lease: the Progress is stored before the Complete applies.
    { progress: { queue, jobId: first!.job!.id, leaseToken: first!.leaseToken, progress: 42 } },
    { complete: { queue, jobId: first!.job!.id, leaseToken: first!.leaseToken, result: 'first' } },
    // A token that holds no lease: refused with FAILED_PRECONDITION, and nothing else is.
    { complete: { queue, jobId: rest[0]!.job!.id, leaseToken: 'not-a-lease', result: 'stale' } },
    ...rest.map((a): pb.ConnectRequest => ({ complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: a.job!.id } })),
    { credit: { n: 1 } },
  ];
  const framesBefore = s.frames.length;
  s.stream.write({ batch: { messages } });
  await eventually(() => s.got.filter((m) => m.ack).length === 5 && s.got.some((m) => m.nack), 10_000, '5 acks and a nack');
  const nack = s.got.find((m) => m.nack)!.nack!;
  expect(nack.code).toBe(status.FAILED_PRECONDITION);
  expect(nack.leaseToken).toBe('not-a-lease');
  for (const id of ids) {
    const job = await eventually(async () => {
      const j = await h.client.getJob(queue, id);
      return j.state === S.JOB_STATE_COMPLETED && j;
    }, 10_000, `job ${id} to complete`);
    expect(job.result).toEqual(id === first!.job!.id ? 'first' : id);
    if (id === first!.job!.id) expect(job.progress).toBe(42);
  }
  // The answers sent in one turn went as one batch: the four Completes' Acks and the Nack. The
  // first lease's Ack came a turn later, once its Progress had been stored.
  const answers = s.frames.slice(framesBefore).filter((f) => f.ack || f.nack || f.batch?.messages.some((m) => m.ack || m.nack));
  expect(answers.map((f) => (f.batch ? f.batch.messages.length : 1))).toEqual([5, 1]);
  expect(answers[1]!.ack!.jobId).toBe(first!.job!.id);
  expect(s.ended).toBeUndefined();
  s.close();
});

/**
 * A stream whose worker serves 'x' and has no credit yet, and a job of 'x' that the pool holds
 * for it: a Credit applied now would send its Assignment at once.
 */
async function jobHeldForStream(prefix: string): Promise<RawStream> {
  const { queue } = await queueWithJobs(prefix, 0);
  const s = h.stream();
  await s.hello({ workerId: `w-${prefix}`, queues: [queue], jobNames: ['x'], acceptsBatches: true });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_ACTIVE, 10_000, 'the pool to hold the job for the worker');
  return s;
}

it.each<[string, pb.ConnectRequest, RegExp]>([
  ['a Hello', { hello: { workerId: 'again', queues: [], maxInFlight: 1, labels: {}, sdk: '', jobNames: [], acceptsBatches: true } }, /batch\.messages\[1\].*Hello/],
  ['a batch', { batch: { messages: [{ credit: { n: 1 } }] } }, /batch\.messages\[1\].*batches do not nest/],
])('a batch holding %s ends the stream with INVALID_ARGUMENT', async (_what, inner, message) => {
  const s = await jobHeldForStream('badbatch');
  s.stream.write({ batch: { messages: [{ credit: { n: 1 } }, inner] } });
  const ended = await eventually(() => s.ended || undefined, 5_000, 'the stream to end');
  expect(ended.code).toBe(status.INVALID_ARGUMENT);
  expect(ended.details).toMatch(message);
  expect(s.assignments()).toEqual([]);
  s.close();
});

it('a batch of more than 1,000 messages ends the stream with INVALID_ARGUMENT', async () => {
  const s = await jobHeldForStream('bigbatch');
  s.stream.write({ batch: { messages: Array.from({ length: 1001 }, () => ({ credit: { n: 1 } })) } });
  const ended = await eventually(() => s.ended || undefined, 5_000, 'the stream to end');
  expect(ended.code).toBe(status.INVALID_ARGUMENT);
  expect(ended.details).toMatch(/holds 1001 messages; at most 1000/);
  expect(s.assignments()).toEqual([]);
  s.close();
});

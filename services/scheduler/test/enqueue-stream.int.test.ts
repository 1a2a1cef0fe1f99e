// EnqueueStream (issue 14, point 2): jobs enqueued one by one over a long-lived bidi stream, each
// answered in the order sent; a bad job refuses only itself; the server holds a fast producer
// back instead of buffering; a stream cut mid-way leaves every acknowledged job stored.
import { type ClientDuplexStream, Metadata, credentials, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, JobmeshClient, QueueNotFoundError, ResourceExhaustedError, UnavailableError } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisProxy, startRedisProxy } from '@jobmesh/testing';
import { STREAM_MAX_UNANSWERED } from '../src/enqueue-stream';
import { loadSchedulerEnv } from '../src/config';
import { startScheduler } from '../src/start';
import { eventually, uniqueQueue, useSchedulerHarness } from '../src/testing';

const h = useSchedulerHarness({ env: { JOBMESH_MAX_PAYLOAD_BYTES: '1024' } });

/** Straight to Redis, to pause it. */
let admin: ReturnType<typeof h.redisClient>;
beforeAll(() => (admin = h.redisClient()));

type Call = ClientDuplexStream<pb.EnqueueStreamRequest, pb.EnqueueStreamResponse>;

/** A raw grpc-js EnqueueStream, as a client in any language would open it. */
function rawStream(address = h.address): { call: Call; acks: pb.EnqueueAck[]; responses: number[]; status: Promise<number>; raw: pb.SchedulerServiceClient } {
  const raw = new pb.SchedulerServiceClient(address, credentials.createInsecure());
  const call = raw.enqueueStream(new Metadata());
  const acks: pb.EnqueueAck[] = [];
  /** How many acknowledgements each response carried. */
  const responses: number[] = [];
  call.on('data', (res: pb.EnqueueStreamResponse) => {
    responses.push(res.acks.length);
    acks.push(...res.acks);
  });
  const ended = new Promise<number>((resolve) => call.on('status', (s: { code: number }) => resolve(s.code)));
  call.on('error', () => undefined);
  return { call, acks, responses, status: ended, raw };
}

const job = (seq: number, queue: string, name = 'streamed', data: Record<string, unknown> = { seq }): pb.StreamedJob =>
  pb.StreamedJob.fromPartial({ seq, queue, job: { name, data } });

async function jobCount(queue: string): Promise<number> {
  return h.withBullQueue(queue, async (q) => {
    const c = await q.getJobCounts('waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed');
    return Object.values(c).reduce((a, b) => a + b, 0);
  });
}

test('each job is answered in the order sent, a bad one with its own error, and the stream goes on', async () => {
  const queue = await h.newQueue('stream');
  const { call, acks, status: ended, raw } = rawStream();
  // 300 jobs in 3 messages: every 7th has a bad name, every 11th an unknown queue, every 13th a
  // payload over the 1 KiB limit.
  const sent: pb.StreamedJob[] = [];
  for (let seq = 1; seq <= 300; seq++) {
    if (seq % 7 === 0) sent.push(job(seq, queue, ''));
    else if (seq % 11 === 0) sent.push(job(seq, 'no-such-queue'));
    else if (seq % 13 === 0) sent.push(job(seq, queue, 'big', { blob: 'x'.repeat(2000) }));
    else sent.push(job(seq, queue));
  }
  for (let i = 0; i < 3; i++) call.write({ jobs: sent.slice(i * 100, (i + 1) * 100) });
  // A seq that does not go up is refused on its own; the next one is fine.
  call.write({ jobs: [job(300, queue), job(301, queue)] });
  call.end();
  expect(await ended).toBe(status.OK);
  raw.close();

  expect(acks.map((a) => a.seq)).toEqual([...sent.map((j) => j.seq), 300, 301]);
  let good = 0;
  acks.slice(0, 300).forEach((ack) => {
    const seq = ack.seq;
    if (seq % 7 === 0) expect(ack.error).toMatchObject({ code: status.INVALID_ARGUMENT, field: 'job.name' });
    else if (seq % 11 === 0) {
      expect(ack.error).toMatchObject({ code: status.NOT_FOUND });
      expect(JSON.parse(Buffer.from(ack.error!.errorFacts).toString())).toMatchObject({ name: 'QueueNotFoundError', queue: 'no-such-queue' });
    } else if (seq % 13 === 0) expect(ack.error).toMatchObject({ code: status.RESOURCE_EXHAUSTED, field: 'job.data' });
    else {
      good++;
      expect(ack.error).toBeUndefined();
      expect(ack.enqueued?.job).toMatchObject({ queue, name: 'streamed', state: pb.JobState.JOB_STATE_WAITING });
      expect(ack.enqueued?.deduplicated).toBe(false);
    }
  });
  expect(acks[300]!.error).toMatchObject({ code: status.INVALID_ARGUMENT, field: 'seq' });
  expect(acks[301]!.enqueued?.job?.id).toBeTruthy();
  expect(await jobCount(queue)).toBe(good + 1);
  // Each acknowledged job is stored with the data it was sent with.
  const first = acks.find((a) => a.enqueued)!;
  await h.withBullQueue(queue, async (q) => expect((await q.getJob(first.enqueued!.job!.id))?.data).toEqual({ seq: first.seq }));
});

test('a message of more than 10,000 jobs has the rest refused, and no response carries more than 1,000 answers', async () => {
  const queue = await h.newQueue('stream-big');
  const { call, acks, responses, status: ended, raw } = rawStream();
  call.write({ jobs: Array.from({ length: 10_005 }, (_, i) => job(i + 1, queue)) });
  call.end();
  expect(await ended).toBe(status.OK);
  raw.close();
  expect(acks).toHaveLength(10_005);
  expect(acks.slice(0, 10_000).every((a) => a.enqueued)).toBe(true);
  for (const a of acks.slice(10_000)) expect(a.error).toMatchObject({ code: status.INVALID_ARGUMENT, field: 'jobs' });
  expect(Math.max(...responses)).toBeLessThanOrEqual(1000);
  expect(await jobCount(queue)).toBe(10_000);
});

test('the SDK stream answers each job with the typed error a unary call would have thrown', async () => {
  const queue = await h.newQueue('stream-sdk');
  const stream = h.client.openEnqueueStream();
  const results = await Promise.allSettled([
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'ok' } })),
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: '' } })),
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue: 'missing-queue', job: { name: 'ok' } })),
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'big', data: { blob: 'x'.repeat(2000) } } })),
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'keyed', options: { idempotencyKey: 'k1' } } })),
    stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'keyed', options: { idempotencyKey: 'k1' } } })),
  ]);
  await stream.close();
  expect(results[0]).toMatchObject({ status: 'fulfilled', value: { deduplicated: false, job: { name: 'ok' } } });
  const reason = (i: number): unknown => (results[i] as PromiseRejectedResult).reason;
  expect(reason(1)).toBeInstanceOf(InvalidArgumentError);
  expect(reason(1)).toMatchObject({ field: 'job.name', code: status.INVALID_ARGUMENT });
  expect(reason(2)).toBeInstanceOf(QueueNotFoundError);
  expect(reason(2)).toMatchObject({ queue: 'missing-queue' });
  expect(reason(3)).toBeInstanceOf(ResourceExhaustedError);
  const [a, b] = [results[4], results[5]] as PromiseFulfilledResult<pb.EnqueueJobResponse>[];
  expect(a!.value.job!.id).toBe(b!.value.job!.id);
  expect([a!.value.deduplicated, b!.value.deduplicated]).toEqual([false, true]);
  expect(await jobCount(queue)).toBe(2);
});

test('a producer that outruns the server is held back by flow control, not buffered without bound', async () => {
  const queue = await h.newQueue('stream-flow');
  // Writes wait while Redis is paused: the server's enqueues cannot finish.
  await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
  const { call, acks, status: ended, raw } = rawStream();
  let seq = 0;
  let heldBack = false;
  try {
    // Write as fast as grpc-js lets us, waiting for 'drain' whenever it asks to. Each drain comes
    // within milliseconds while the server reads; one that has not come after 2 s, with the
    // server idle but for this stream, means the server stopped reading.
    while (seq < 50_000) {
      seq++;
      if (call.write({ jobs: [job(seq, queue)] })) continue;
      const drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 2000);
        call.once('drain', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!drained) {
        heldBack = true;
        break;
      }
    }
    // After the server's 2,000 unanswered jobs, only what HTTP/2's windows and grpc-js's
    // buffers hold fits: far below 50,000.
    expect(heldBack).toBe(true);
    expect(seq).toBeGreaterThanOrEqual(STREAM_MAX_UNANSWERED);
    expect(seq).toBeLessThan(20_000);
    expect(acks).toHaveLength(0);
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
  }
  call.end();
  expect(await ended).toBe(status.OK);
  raw.close();
  expect(acks).toHaveLength(seq);
  expect(acks.every((a, i) => a.seq === i + 1 && a.enqueued)).toBe(true);
  expect(await jobCount(queue)).toBe(seq);
});

test('the SDK stream keeps at most maxInFlight jobs on the wire while the server is slow', async () => {
  const queue = await h.newQueue('stream-sdk-flow');
  const stream = h.client.openEnqueueStream({ maxInFlight: 300, maxBatch: 100 });
  await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
  const answers: Promise<pb.EnqueueJobResponse>[] = [];
  let maxOnWire = 0;
  let readyWhileFull = 0;
  try {
    for (let i = 0; i < 1000; i++) {
      answers.push(stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'slow' } })));
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
      maxOnWire = Math.max(maxOnWire, stream.inFlight);
    }
    await eventually(() => stream.inFlight === 300, 5000, 'the stream to fill its window');
    void stream.ready().then(() => readyWhileFull++);
    expect(stream.pending).toBe(1000);
    expect(maxOnWire).toBeLessThanOrEqual(300);
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
  }
  const done = await Promise.all(answers);
  expect(new Set(done.map((r) => r.job!.id)).size).toBe(1000);
  expect(readyWhileFull).toBe(1);
  await stream.close();
  expect(await jobCount(queue)).toBe(1000);
});

describe('a stream cut mid-way', () => {
  let proxy: RedisProxy;
  beforeAll(async () => {
    // The proxy is plain TCP: here it stands between the client and the scheduler.
    proxy = await startRedisProxy({ port: Number(h.address.split(':')[1]) });
  });
  afterAll(() => proxy.close());

  test('every acknowledged job exists, and nothing unacknowledged is reported enqueued', async () => {
    const queue = await h.newQueue('stream-cut');
    const client = new JobmeshClient({ address: proxy.url.replace('redis://', ''), coalesce: false });
    const stream = client.openEnqueueStream({ maxInFlight: 500, maxBatch: 50 });
    const outcomes: Promise<{ id?: string; err?: unknown }>[] = [];
    for (let i = 0; i < 3000; i++) {
      outcomes.push(
        stream.enqueue(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'cut', data: { i } } })).then(
          (r) => ({ id: r.job!.id }),
          (err: unknown) => ({ err }),
        ),
      );
      if (i === 1500) void proxy.cutNext('request');
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    const settled = await Promise.all(outcomes);
    client.close();
    const acked = settled.filter((o) => o.id).map((o) => o.id!);
    const failed = settled.filter((o) => o.err);
    expect(acked.length).toBeGreaterThan(0);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.err).toBeInstanceOf(UnavailableError);
    await h.withBullQueue(queue, async (q) => {
      const stored = new Set((await q.getJobs(['waiting'], 0, -1)).map((j) => j.id));
      for (const id of acked) expect(stored.has(id)).toBe(true);
      // What is stored beyond the acknowledged jobs was on the wire when the cut came.
      expect(stored.size - acked.length).toBeLessThanOrEqual(500);
    });
  });
});

test('a queue unknown to the stream is not an error of the stream itself', async () => {
  const { call, acks, status: ended, raw } = rawStream();
  call.write({ jobs: [job(1, uniqueQueue('nope'))] });
  call.end();
  expect(await ended).toBe(status.OK);
  raw.close();
  expect(acks).toEqual([expect.objectContaining({ seq: 1, error: expect.objectContaining({ code: status.NOT_FOUND }) })]);
});

test('a scheduler that shuts down answers every job it read, and enqueued none it did not answer', async () => {
  const queue = await h.newQueue('stream-shutdown');
  // A second scheduler on the same Redis and keys, of this test's own, to stop mid-stream.
  const second = await startScheduler(
    loadSchedulerEnv({
      REDIS_URL: h.redis.url,
      JOBMESH_REDIS_PREFIX: h.prefix,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_SHUTDOWN_GRACE: '2s',
      JOBMESH_CONFIG: '',
    }),
    { logger: silentLogger() },
  );
  const { call, acks, status: ended, raw } = rawStream(`127.0.0.1:${second.grpcPort}`);
  let seq = 0;
  const writeSome = (n: number): void => {
    for (let i = 0; i < n; i++) call.write({ jobs: [job(++seq, queue)] });
  };
  writeSome(500);
  await eventually(() => acks.length > 0, 5000, 'the first acknowledgements');
  const stopping = second.stop();
  // Jobs written while it stops: it may read some of them before it stops reading.
  writeSome(500);
  const code = await ended;
  await stopping;
  raw.close();
  expect(code).toBe(status.OK);
  expect(acks.length).toBeGreaterThanOrEqual(1);
  expect(acks.every((a, i) => a.seq === i + 1 && a.enqueued)).toBe(true);
  // Exactly the answered jobs are stored: none was enqueued without an answer.
  expect(await jobCount(queue)).toBe(acks.length);
});

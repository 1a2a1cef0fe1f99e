// One Connect stream, one serial reader: messages pipelined without waiting for answers are
// applied in the order sent. A raw grpc-js client (no SDK) writes them back-to-back.
import { type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const T = pb.JobEventType;
const S = pb.JobState;
let h: PoolHarness;
let address: string;
const clients: pb.WorkerServiceClient[] = [];

beforeAll(async () => {
  // Its own Redis: one test pauses it.
  h = await startPoolHarness({ ownRedis: true });
  const pool = await h.startPool([], { JOBMESH_LEASE_TTL: '10s' });
  address = `127.0.0.1:${pool.grpcPort}`;
});
afterAll(async () => {
  for (const c of clients) c.close();
  await h.stop();
});

async function newQueue(label: string): Promise<string> {
  const q = uniqueQueue(label);
  await h.client.createQueue({ queue: { name: q } });
  return q;
}

/** A raw stream: every server message in order, and the error it ended with, if any. */
function rawStream(): { stream: ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse>; got: pb.ConnectResponse[]; errors: Error[] } {
  const client = new pb.WorkerServiceClient(address, credentials.createInsecure());
  clients.push(client);
  const stream = client.connect();
  const got: pb.ConnectResponse[] = [];
  const errors: Error[] = [];
  stream.on('data', (m: pb.ConnectResponse) => got.push(m));
  stream.on('error', (e: Error) => errors.push(e));
  return { stream, got, errors };
}

/** Records a job's WatchJob events until it ends; resolves once the first event arrived. */
async function watch(queue: string, id: string): Promise<{ events: pb.JobEvent[]; done: Promise<void> }> {
  const events: pb.JobEvent[] = [];
  const done = (async () => {
    for await (const e of h.client.watchJob(queue, id)) events.push(e);
  })();
  await eventually(() => events.length > 0, 10_000, 'WatchJob to send the current state');
  return { events, done };
}

/** PROGRESS, LOG and COMPLETED events as short strings, in stream order. */
const story = (events: pb.JobEvent[]): string[] =>
  events.flatMap((e) =>
    e.type === T.JOB_EVENT_TYPE_PROGRESS
      ? [`progress ${JSON.stringify(e.progress)}`]
      : e.type === T.JOB_EVENT_TYPE_LOG
        ? [`log ${e.message}`]
        : e.type === T.JOB_EVENT_TYPE_COMPLETED
          ? [`completed ${JSON.stringify(e.result)}`]
          : [],
  );

it('applies Hello and Credit written back-to-back, then Progress ×3, a Log and Complete written back-to-back, all in order', async () => {
  const queue = await newQueue('burst');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'burst' } });
  const id = job!.id;
  const watching = await watch(queue, id);
  const { stream, got, errors } = rawStream();
  stream.on('data', (m: pb.ConnectResponse) => {
    if (!m.assignment) return;
    // The lease token exists only once the Assignment arrived: the second burst is written in the
    // same tick, without waiting for any answer.
    const base = { queue, jobId: m.assignment.job!.id, leaseToken: m.assignment.leaseToken };
    stream.write({ progress: { ...base, progress: 10 } });
    stream.write({ progress: { ...base, progress: 20 } });
    stream.write({ log: { ...base, message: 'after twenty' } });
    stream.write({ progress: { ...base, progress: 30 } });
    stream.write({ complete: { ...base, result: { done: true } } });
  });
  // The first burst: Hello, then Credit before the server could answer Hello (its queue check
  // reads Redis). A reader per message used to see the Credit before the session existed.
  stream.write({ hello: { workerId: 'w-burst', queues: [queue], maxInFlight: 1, labels: {}, sdk: 'raw', jobNames: [], acceptsBatches: false } });
  stream.write({ credit: { n: 1 } });

  await watching.done;
  expect(story(watching.events)).toEqual(['progress 10', 'progress 20', 'log after twenty', 'progress 30', 'completed {"done":true}']);
  const done = await h.client.getJob(queue, id);
  expect(done).toMatchObject({ state: S.JOB_STATE_COMPLETED, progress: 30, result: { done: true }, attemptsMade: 1 });
  await eventually(() => got.some((m) => m.ack), 5_000, 'the Ack of the Complete');
  expect(got.map((m) => Object.keys(m).find((k) => m[k as keyof pb.ConnectResponse]))).toEqual(['welcome', 'assignment', 'ack']);
  expect(got.find((m) => m.ack)!.ack).toMatchObject({ jobId: id, requestId: '' });
  expect(errors).toEqual([]);
  stream.end();
});

it('keeps each job\'s messages in order when 20 jobs\' bursts interleave on one stream', async () => {
  const queue = await newQueue('bursts');
  const N = 20;
  const ids = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: N }, (_, i) => ({ name: 'burst', data: { i } })) })).jobs.map((j) => j.id);
  const watches = await Promise.all(ids.map((id) => watch(queue, id)));
  const { stream, got, errors } = rawStream();
  const held: pb.Assignment[] = [];
  stream.on('data', (m: pb.ConnectResponse) => {
    if (!m.assignment) return;
    held.push(m.assignment);
    if (held.length < N) return;
    // Every job's messages, interleaved round-robin, in one burst.
    for (let step = 1; step <= 4; step++) {
      for (const a of held) {
        const base = { queue, jobId: a.job!.id, leaseToken: a.leaseToken };
        if (step < 4) stream.write({ progress: { ...base, progress: step * 10 } });
        else stream.write({ complete: { ...base, result: { id: a.job!.id } } });
      }
    }
  });
  stream.write({ hello: { workerId: 'w-bursts', queues: [queue], maxInFlight: N, labels: {}, sdk: 'raw', jobNames: [], acceptsBatches: false } });
  stream.write({ credit: { n: N } });

  await Promise.all(watches.map((w) => w.done));
  ids.forEach((id, i) => expect({ id, story: story(watches[i]!.events) }).toEqual({ id, story: ['progress 10', 'progress 20', 'progress 30', `completed {"id":"${id}"}`] }));
  await eventually(() => got.filter((m) => m.ack).length === N, 5_000, 'an Ack per Complete');
  expect(got.some((m) => m.nack)).toBe(false);
  expect(errors).toEqual([]);
  stream.end();
});

it('applies a burst of 1,000 Progress and a Complete written while Redis is paused, in order, once it resumes', async () => {
  const queue = await newQueue('outrun');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'burst' } });
  const id = job!.id;
  const watching = await watch(queue, id);
  const { stream, got, errors } = rawStream();
  stream.write({ hello: { workerId: 'w-outrun', queues: [queue], maxInFlight: 1, labels: {}, sdk: 'raw', jobNames: [], acceptsBatches: false } });
  stream.write({ credit: { n: 1 } });
  const a = await eventually(() => got.find((m) => m.assignment)?.assignment, 10_000, 'the assignment');
  const base = { queue, jobId: id, leaseToken: a.leaseToken };
  const N = 1_000;
  // Writes are refused for 1.5 s: the server's backlog passes its high-water mark and it stops
  // reading the stream until Redis catches up.
  await h.redisClient().call('CLIENT', 'PAUSE', '1500', 'WRITE');
  for (let i = 1; i <= N; i++) stream.write({ progress: { ...base, progress: i } });
  stream.write({ complete: { ...base, result: { after: 'the pause' } } });

  await watching.done;
  const progress = watching.events.filter((e) => e.type === T.JOB_EVENT_TYPE_PROGRESS).map((e) => e.progress as number);
  expect(progress).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  expect(story(watching.events).at(-1)).toBe('completed {"after":"the pause"}');
  expect(await h.client.getJob(queue, id)).toMatchObject({ state: S.JOB_STATE_COMPLETED, progress: N });
  await eventually(() => got.some((m) => m.ack), 5_000, 'the Ack of the Complete');
  expect(got.some((m) => m.nack)).toBe(false);
  expect(errors).toEqual([]);
  stream.end();
}, 60_000);

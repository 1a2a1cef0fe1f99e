import { Metadata, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually } from '../src/testing';
import { RawGrpcClient } from '@jobmesh/testing';
import { call, type RawStream, unaryClient, useRemotePool } from './remote-helpers';

// What a remote worker may have stored is bounded: a 4 MiB progress, log line or result once
// made the job's GetJob (and every ListJobs page holding it) fail with RESOURCE_EXHAUSTED.

const h = useRemotePool();

async function helloRefused(hello: Partial<pb.Hello>): Promise<{ code: number; details: string }> {
  const s = h.stream();
  s.stream.write({ hello: { workerId: 'w', queues: [], maxInFlight: 1, labels: {}, sdk: 'test', jobNames: [], acceptsBatches: false, ...hello } });
  const ended = await eventually(() => s.ended || undefined, 5000, 'the stream to end');
  expect(s.got.some((m) => m.welcome)).toBe(false);
  return ended;
}

describe('Hello is bounded', () => {
  it('refuses more than 1000 job names with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('names');
    const jobNames = Array.from({ length: 100_000 }, (_, i) => `name-${i}`);
    expect(await helloRefused({ queues: [queue], jobNames })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('hello.job_names: holds 100000 names; at most 1000') });
  });

  it('refuses an invalid job name, a 1 KiB+ label and a long worker id with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('labels');
    expect(await helloRefused({ queues: [queue], jobNames: ['x'.repeat(201)] })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('hello.job_names[0]') });
    expect(await helloRefused({ queues: [queue], labels: { team: 'x'.repeat(8 * 1024 * 1024 - 100) } })).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('hello.labels[team]'),
    });
    expect(await helloRefused({ workerId: 'w'.repeat(201), queues: [queue] })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('hello.worker_id') });
  });
});

describe('a leased job', () => {
  let s: RawStream;
  let queue: string;
  let a: pb.Assignment;
  beforeAll(async () => {
    queue = await h.newQueue('bounded');
    s = h.stream();
    await s.hello({ workerId: 'w-bounded', queues: [queue] });
    s.stream.write({ credit: { n: 1 } });
    await h.client.enqueueJob({ queue, job: { name: 'big' } });
    a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
  });

  const nackAfter = async (write: () => void): Promise<pb.Nack> => {
    const seen = s.got.length;
    write();
    return eventually(() => s.got.slice(seen).find((m) => m.nack)?.nack, 5000, 'a Nack');
  };

  it('refuses a progress value over 64 KiB, a log line over 16 KiB and a result over the payload limit; the job stays readable', async () => {
    const lease = { queue, jobId: a.job!.id, leaseToken: a.leaseToken };
    expect(await nackAfter(() => s.stream.write({ progress: { ...lease, progress: 'p'.repeat(4 * 1024 * 1024) } }))).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message: expect.stringContaining('progress.progress'),
    });
    expect(await nackAfter(() => s.stream.write({ log: { ...lease, message: 'l'.repeat(16 * 1024 + 1) } }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringContaining('log.message: is 16385 characters; at most 16384'),
    });
    expect(await nackAfter(() => s.stream.write({ complete: { ...lease, result: { blob: 'r'.repeat(5 * 1024 * 1024) } } }))).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message: expect.stringContaining('complete.result'),
    });
    const { job } = await h.client.getJobDetails(queue, a.job!.id);
    expect(job!.state).toBe(pb.JobState.JOB_STATE_ACTIVE);
    // Values within the bounds are stored as before.
    s.stream.write({ progress: { ...lease, progress: 50 } });
    s.stream.write({ log: { ...lease, message: 'l'.repeat(16 * 1024) } });
    s.stream.write({ complete: { ...lease, result: { ok: true } } });
    const done = await eventually(async () => {
      const r = await h.client.getJobDetails(queue, a.job!.id);
      return r.job!.state === pb.JobState.JOB_STATE_COMPLETED && r;
    }, 10_000, 'the job to complete');
    expect(done.job!.result).toEqual({ ok: true });
    expect(done.logs.map((l) => l.length)).toEqual([16 * 1024]);
  });
});

it('ends a Connect stream at a frame that is no valid protobuf with INVALID_ARGUMENT, and closes its session', async () => {
  const queue = await h.newQueue('garbled');
  const raw = new RawGrpcClient(h.address);
  const workers = unaryClient(h.address);
  try {
    const hello = Buffer.from(pb.ConnectRequest.encode(pb.ConnectRequest.fromPartial({ hello: { workerId: 'w-garbled', queues: [queue], maxInFlight: 1 } })).finish());
    const listed = async (): Promise<string[]> => (await call<pb.ListWorkersRequest, pb.ListWorkersResponse>(workers, 'listWorkers', { queue })).workers.map((w) => w.workerId);
    const stream = raw.openBidi('/jobmesh.v1.WorkerService/Connect', { timeoutMs: 10_000 });
    stream.write(hello);
    await eventually(async () => (await listed()).includes('w-garbled'), 5000, 'the worker to be listed');
    // Field 1 (hello) claiming 127 bytes, with one there.
    stream.write(Buffer.from([0x0a, 0x7f, 0x01]));
    await expect(stream.outcome).resolves.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('not a valid protobuf message') });
    await eventually(async () => !(await listed()).includes('w-garbled'), 5000, 'the worker to be gone');
  } finally {
    raw.close();
    workers.close();
  }
});

it('answers a LeaseJobs long poll with no jobs shortly before the caller’s deadline, not DEADLINE_EXCEEDED', async () => {
  const queue = await h.newQueue('poll');
  const client = unaryClient(h.address);
  try {
    const started = Date.now();
    const res = await new Promise<pb.LeaseJobsResponse>((resolve, reject) =>
      client.leaseJobs({ queue, workerId: 'w-poll', max: 1, wait: { seconds: 30, nanos: 0 }, jobNames: [] }, new Metadata(), { deadline: Date.now() + 1500 }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    expect(res.assignments).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  } finally {
    client.close();
  }
});

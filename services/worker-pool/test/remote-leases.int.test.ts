import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually, uniqueQueue } from '../src/testing';
import { call, type RawStream, unaryClient, useRemotePool } from './remote-helpers';

const S = pb.JobState;
const h = useRemotePool({ JOBMESH_LEASE_TTL: '1s' });
const stream = (): RawStream => h.stream();
const newQueue = (prefix: string, config?: Partial<pb.QueueConfig>): Promise<string> => h.newQueue(prefix, config);

describe('heartbeats (JOBMESH_LEASE_TTL=1s)', () => {
  it('a worker that heartbeats keeps its lease past the TTL', async () => {
    const queue = await newQueue('hb-keep');
    const a = stream();
    const welcome = await a.hello({ workerId: 'w-beat', queues: [queue] });
    expect(welcome.leaseTtl).toEqual({ seconds: 1, nanos: 0 });
    a.stream.write({ credit: { n: 1 } });
    const b = stream();
    await b.hello({ workerId: 'w-spare', queues: [queue] });
    b.stream.write({ credit: { n: 1 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    const lease = await eventually(() => a.assignments()[0] ?? b.assignments()[0], 10_000, 'the lease');
    const [holder, spare] = a.assignments().length ? [a, b] : [b, a];
    spare.heartbeats(false);
    // An observation window of 2.5 lease TTLs, heartbeating every 300 ms.
    const until = Date.now() + 2500;
    await eventually(() => Date.now() > until, 5000, 'the window to pass');
    expect(spare.assignments()).toHaveLength(0);
    expect((await h.client.getJob(queue, job!.id)).state).toBe(S.JOB_STATE_ACTIVE);
    holder.stream.write({ complete: { queue, jobId: job!.id, leaseToken: lease.leaseToken, result: 'kept' } });
    await eventually(() => holder.got.some((m) => m.ack), 5000, 'Ack');
    const done = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === S.JOB_STATE_COMPLETED && j;
    });
    expect(done.result).toBe('kept');
  });

  it('a worker that stops heartbeating loses its lease after ~1 s: the job goes to another session', async () => {
    const queue = await newQueue('hb-lose');
    const a = stream();
    a.heartbeats(false);
    await a.hello({ workerId: 'w-silent', queues: [queue] });
    a.stream.write({ credit: { n: 1 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 3 } } });
    const first = await eventually(() => a.assignments()[0], 10_000, 'the first lease');
    const leasedAt = Date.now();
    const b = stream();
    await b.hello({ workerId: 'w-other', queues: [queue] });
    b.stream.write({ credit: { n: 1 } });
    const second = await eventually(() => b.assignments()[0], 5000, 'the job re-leased');
    const after = Date.now() - leasedAt;
    expect(after).toBeGreaterThanOrEqual(800);
    expect(after).toBeLessThan(4000);
    expect(second).toMatchObject({ attempt: 1, job: { id: job!.id } });
    a.stream.write({ complete: { queue, jobId: job!.id, leaseToken: first.leaseToken, result: 'late' } });
    const nack = await eventually(() => a.got.find((m) => m.nack)?.nack, 5000, 'Nack');
    expect(nack.code).toBe(status.FAILED_PRECONDITION);
    b.stream.write({ complete: { queue, jobId: job!.id, leaseToken: second.leaseToken, result: 'b' } });
    await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'COMPLETED');
  });
});

it('refuses a late CompleteJob from a unary worker whose lease lapsed, though the same lock now holds the job again', async () => {
  // One job, so the runner slot that got it back fetches it again under the same BullMQ lock token;
  // the new lease still has a token of its own.
  const queue = await newQueue('unary-fence');
  const c = unaryClient(h.address);
  try {
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 3 } } });
    const lease = (req: Partial<pb.LeaseJobsRequest>) => call<pb.LeaseJobsRequest, pb.LeaseJobsResponse>(c, 'leaseJobs', { queue, max: 1, wait: pb.msToDuration(5000), workerId: '', jobNames: [], ...req });
    const [first] = (await lease({ workerId: 'u-slow' })).assignments;
    expect(first!.job!.id).toBe(job!.id);
    // No ExtendLease: the lease lapses after the 1 s TTL and the job is leased again.
    const [second] = (await eventually(async () => {
      const got = (await lease({ workerId: 'u-next' })).assignments;
      return got.length ? got : undefined;
    }, 10_000, 'the job leased again')) as pb.Assignment[];
    expect(second).toMatchObject({ attempt: 1, job: { id: job!.id } });
    expect(second!.leaseToken).not.toBe(first!.leaseToken);
    await expect(call(c, 'completeJob', { complete: { queue, jobId: job!.id, leaseToken: first!.leaseToken, result: 'late' } })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    expect((await h.client.getJob(queue, job!.id)).state).toBe(S.JOB_STATE_ACTIVE);
    await call(c, 'completeJob', { complete: { queue, jobId: job!.id, leaseToken: second!.leaseToken, result: 'on time' } });
    await eventually(async () => (await h.client.getJob(queue, job!.id)).result === 'on time', 5000, 'COMPLETED by the second lease');
  } finally {
    c.close();
  }
});

describe('processor_wait 1s', () => {
  it('a job no worker takes fails PROCESSOR_NOT_FOUND after processor_wait', async () => {
    const queue = uniqueQueue('grace-none');
    await h.client.createQueue({ queue: { name: queue, processorWait: { seconds: 1, nanos: 0 } } });
    const t0 = Date.now();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'orphan', options: { attempts: 3 } } });
    const failed = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === S.JOB_STATE_FAILED && j;
    }, 10_000, 'FAILED');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(failed.failureReason).toMatch(/^PROCESSOR_NOT_FOUND/);
    expect(failed.attemptsMade).toBe(1);
  });

  it('a worker that connects within processor_wait gets the job', async () => {
    const queue = uniqueQueue('grace-late');
    await h.client.createQueue({ queue: { name: queue, processorWait: { seconds: 1, nanos: 0 } } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'late' } });
    const s = stream();
    await s.hello({ workerId: 'w-late', queues: [queue] });
    s.stream.write({ credit: { n: 1 } });
    const a = await eventually(() => s.assignments()[0], 5000, 'the job');
    expect(a).toMatchObject({ attempt: 1, job: { id: job!.id } });
    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: a.leaseToken, result: 'ok' } });
    await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'COMPLETED');
  });
});

import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, uniqueQueue } from '../src/testing';
import { call, type RawStream, unaryClient, useRemotePool } from './remote-helpers';

const S = pb.JobState;
const T = pb.JobEventType;
const markerQueue = uniqueQueue('marker');
const h = useRemotePool({ JOBMESH_LEASE_TTL: '2s' }, [defineProcessor({ queue: markerQueue, name: 'mark', process: async () => 'marked' })]);
beforeAll(async () => {
  await h.client.createQueue({ queue: { name: markerQueue } });
});
const stream = (): RawStream => h.stream();
const newQueue = (prefix: string, config?: Partial<pb.QueueConfig>): Promise<string> => h.newQueue(prefix, config);

/** Ends an observation window: a job on another queue, run in-process, went all the way round. */
async function marker(): Promise<void> {
  const { job } = await h.client.enqueueJob({ queue: markerQueue, job: { name: 'mark' } });
  await eventually(async () => (await h.client.getJob(markerQueue, job!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'the marker job');
}

async function stateOf(queue: string, id: string, want: pb.JobState, timeoutMs = 10_000): Promise<pb.Job> {
  return eventually(async () => {
    const j = await h.client.getJob(queue, id);
    return j.state === want && j;
  }, timeoutMs, `job ${id} to be ${pb.jobStateToJSON(want)}`);
}

describe('Hello', () => {
  it('must come first: anything else ends the stream with INVALID_ARGUMENT', async () => {
    const s = stream();
    s.stream.write({ credit: { n: 1 } });
    const ended = await eventually(() => s.ended || undefined, 5000, 'the stream to end');
    expect(ended.code).toBe(status.INVALID_ARGUMENT);
    expect(s.got).toHaveLength(0);
  });

  it('naming an unknown queue ends the stream with NOT_FOUND', async () => {
    const s = stream();
    s.stream.write({ hello: { workerId: 'w-nf', queues: [uniqueQueue('nope')], maxInFlight: 1, labels: {}, sdk: 'test', jobNames: [], acceptsBatches: false } });
    const ended = await eventually(() => s.ended || undefined, 5000, 'the stream to end');
    expect(ended.code).toBe(status.NOT_FOUND);
    expect(s.got.some((m) => m.welcome)).toBe(false);
  });

  it('is answered by Welcome with the lease TTL and heartbeat interval', async () => {
    const queue = await newQueue('welcome');
    const s = stream();
    const welcome = await s.hello({ workerId: 'w-welcome', queues: [queue] });
    expect(welcome.sessionId).toBeTruthy();
    expect(welcome.leaseTtl).toEqual({ seconds: 2, nanos: 0 });
    const hb = pb.durationToMs(welcome.heartbeatInterval)!;
    expect(hb).toBeGreaterThan(0);
    expect(hb).toBeLessThan(2000);
  });
});

describe('flow control', () => {
  it('credits bound the jobs in flight; one more Credit lets exactly one more through', async () => {
    const queue = await newQueue('credit');
    const s = stream();
    await s.hello({ workerId: 'w-credit', queues: [queue], maxInFlight: 10 });
    s.stream.write({ credit: { n: 2 } });
    for (let i = 0; i < 5; i++) await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await eventually(() => s.assignments().length >= 2, 10_000, '2 assignments');
    await marker();
    expect(s.assignments()).toHaveLength(2);
    s.stream.write({ credit: { n: 1 } });
    await eventually(() => s.assignments().length >= 3, 10_000, 'a third assignment');
    await marker();
    expect(s.assignments()).toHaveLength(3);
    expect(new Set(s.assignments().map((a) => a.job!.id)).size).toBe(3);
  });

  it('max_in_flight caps the jobs held whatever the credit; a Complete frees a slot', async () => {
    const queue = await newQueue('maxinflight');
    const s = stream();
    await s.hello({ workerId: 'w-max', queues: [queue], maxInFlight: 2 });
    s.stream.write({ credit: { n: 10 } });
    for (let i = 0; i < 5; i++) await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await eventually(() => s.assignments().length >= 2, 10_000, '2 assignments');
    await marker();
    expect(s.assignments()).toHaveLength(2);
    const a = s.assignments()[0]!;
    s.stream.write({ complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: 1 } });
    await eventually(() => s.got.some((m) => m.ack?.jobId === a.job!.id), 5000, 'Ack');
    await eventually(() => s.assignments().length >= 3, 10_000, 'a third assignment');
    await marker();
    expect(s.assignments()).toHaveLength(3);
  });

  it('a worker that declares job_names ["a"] never receives "b"', async () => {
    const queue = await newQueue('names');
    const a = stream();
    await a.hello({ workerId: 'w-a', queues: [queue], maxInFlight: 10, jobNames: ['a'] });
    a.stream.write({ credit: { n: 10 } });
    const b = stream();
    await b.hello({ workerId: 'w-b', queues: [queue], maxInFlight: 10, jobNames: ['b'] });
    const { job: jb } = await h.client.enqueueJob({ queue, job: { name: 'b' } });
    const { job: ja } = await h.client.enqueueJob({ queue, job: { name: 'a' } });
    await eventually(() => a.assignments().length >= 1, 10_000, 'job a');
    await marker();
    expect(a.assignments().map((x) => x.job!.id)).toEqual([ja!.id]);
    // b has had no credit: grant it, and it gets job b.
    b.stream.write({ credit: { n: 1 } });
    const got = await eventually(() => b.assignments()[0], 10_000, 'job b');
    expect(got.job!.id).toBe(jb!.id);
  });
});

describe('fencing', () => {
  it('refuses a late Complete from a lost lease with FAILED_PRECONDITION; the new holder\'s result is stored', async () => {
    const queue = await newQueue('fence');
    const a = stream();
    await a.hello({ workerId: 'w-old', queues: [queue], maxInFlight: 1 });
    a.stream.write({ credit: { n: 1 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    a.heartbeats(false);
    const first = await eventually(() => a.assignments()[0], 10_000, 'the first lease');
    // A stops heartbeating: its lease lapses after the TTL (2 s), and B gets the job.
    const b = stream();
    await b.hello({ workerId: 'w-new', queues: [queue], maxInFlight: 1 });
    b.stream.write({ credit: { n: 1 } });
    const second = await eventually(() => b.assignments()[0], 10_000, 'the job re-leased to B');
    expect(second.job!.id).toBe(job!.id);
    expect(second.leaseToken).not.toBe(first.leaseToken);
    a.stream.write({ complete: { queue, jobId: job!.id, leaseToken: first.leaseToken, result: 'from A' } });
    const nack = await eventually(() => a.got.find((m) => m.nack)?.nack, 5000, 'Nack for A');
    expect(nack).toMatchObject({ jobId: job!.id, leaseToken: first.leaseToken, code: status.FAILED_PRECONDITION });
    expect((await h.client.getJob(queue, job!.id)).state).toBe(S.JOB_STATE_ACTIVE);
    b.stream.write({ complete: { queue, jobId: job!.id, leaseToken: second.leaseToken, result: 'from B' } });
    await eventually(() => b.got.some((m) => m.ack), 5000, 'Ack for B');
    const done = await stateOf(queue, job!.id, S.JOB_STATE_COMPLETED);
    expect(done.result).toBe('from B');
  });
});

describe('Fail', () => {
  it('RETRYABLE retries by the job backoff: attempt 2 arrives', async () => {
    const queue = await newQueue('fail-retry');
    const s = stream();
    await s.hello({ workerId: 'w-retry', queues: [queue], maxInFlight: 1 });
    s.stream.write({ credit: { n: 2 } });
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'x', options: { attempts: 2, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(200) } } },
    });
    const one = await eventually(() => s.assignments()[0], 10_000, 'attempt 1');
    expect(one.attempt).toBe(1);
    const failedAt = Date.now();
    s.stream.write({ fail: { queue, jobId: job!.id, leaseToken: one.leaseToken, message: 'boom', errorName: 'ValueError', stacktrace: [], kind: pb.FailureKind.FAILURE_KIND_RETRYABLE } });
    await eventually(() => s.got.some((m) => m.ack), 5000, 'Ack');
    const two = await eventually(() => s.assignments()[1], 10_000, 'attempt 2');
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(150);
    expect(two).toMatchObject({ attempt: 2, job: { id: job!.id } });
    s.stream.write({ fail: { queue, jobId: job!.id, leaseToken: two.leaseToken, message: 'boom again', errorName: '', stacktrace: [], kind: pb.FailureKind.FAILURE_KIND_RETRYABLE } });
    const failed = await stateOf(queue, job!.id, S.JOB_STATE_FAILED);
    expect(failed.attemptsMade).toBe(2);
    expect(failed.failureReason).toContain('boom again');
  });

  it('UNRECOVERABLE ends the job FAILED after one attempt', async () => {
    const queue = await newQueue('fail-unrec');
    const s = stream();
    await s.hello({ workerId: 'w-unrec', queues: [queue], maxInFlight: 1 });
    s.stream.write({ credit: { n: 5 } });
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'x', options: { attempts: 5, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(10) } } },
    });
    const one = await eventually(() => s.assignments()[0], 10_000, 'attempt 1');
    s.stream.write({ fail: { queue, jobId: job!.id, leaseToken: one.leaseToken, message: 'bad input', errorName: '', stacktrace: [], kind: pb.FailureKind.FAILURE_KIND_UNRECOVERABLE } });
    const failed = await stateOf(queue, job!.id, S.JOB_STATE_FAILED);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failureReason).toContain('bad input');
    await marker();
    expect(s.assignments()).toHaveLength(1);
  });

  it('RATE_LIMITED with retry_after 500ms puts the job back without using an attempt', async () => {
    const queue = await newQueue('fail-rl');
    const s = stream();
    await s.hello({ workerId: 'w-rl', queues: [queue], maxInFlight: 1 });
    s.stream.write({ credit: { n: 2 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 1 } } });
    const one = await eventually(() => s.assignments()[0], 10_000, 'attempt 1');
    const failedAt = Date.now();
    s.stream.write({ fail: { queue, jobId: job!.id, leaseToken: one.leaseToken, message: '429', errorName: '', stacktrace: [], kind: pb.FailureKind.FAILURE_KIND_RATE_LIMITED, retryAfter: pb.msToDuration(500) } });
    const again = await eventually(() => s.assignments()[1], 10_000, 'the job again');
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(400);
    expect(again).toMatchObject({ attempt: 1, job: { id: job!.id } });
    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: again.leaseToken, result: 'ok' } });
    const done = await stateOf(queue, job!.id, S.JOB_STATE_COMPLETED);
    expect(done.result).toBe('ok');
  });
});

describe('Progress and Log', () => {
  it('Progress updates the job and reaches WatchJob; Log reaches WatchJob as LOG', async () => {
    const queue = await newQueue('progress');
    const s = stream();
    await s.hello({ workerId: 'w-progress', queues: [queue], maxInFlight: 1 });
    s.stream.write({ credit: { n: 1 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    const a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
    const events: pb.JobEvent[] = [];
    const watching = (async () => {
      for await (const e of h.client.watchJob(queue, job!.id)) events.push(e);
    })();
    await eventually(() => events.length > 0, 10_000, 'WatchJob to start');
    s.stream.write({ progress: { queue, jobId: job!.id, leaseToken: a.leaseToken, progress: 42 } });
    await eventually(async () => (await h.client.getJob(queue, job!.id)).progress === 42, 5000, 'GetJob progress 42');
    s.stream.write({ log: { queue, jobId: job!.id, leaseToken: a.leaseToken, message: 'hello from afar' } });
    await eventually(() => events.some((e) => e.type === T.JOB_EVENT_TYPE_LOG), 5000, 'a LOG event');
    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: a.leaseToken, result: null } });
    await watching;
    const types = events.map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining([T.JOB_EVENT_TYPE_PROGRESS, T.JOB_EVENT_TYPE_LOG, T.JOB_EVENT_TYPE_COMPLETED]));
    expect(JSON.stringify(events.find((e) => e.type === T.JOB_EVENT_TYPE_LOG))).toContain('hello from afar');
    expect(s.got.some((m) => m.nack)).toBe(false);
  });

  it('Progress with a stale token is Nacked FAILED_PRECONDITION', async () => {
    const queue = await newQueue('progress-stale');
    const s = stream();
    await s.hello({ workerId: 'w-pstale', queues: [queue], maxInFlight: 1 });
    s.stream.write({ progress: { queue, jobId: 'nope', leaseToken: 'nope', progress: 1 } });
    const nack = await eventually(() => s.got.find((m) => m.nack)?.nack, 5000, 'Nack');
    expect(nack.code).toBe(status.FAILED_PRECONDITION);
  });
});

describe('CancelJob', () => {
  it('pushes Cancel to the worker holding the job, which ends CANCELLED; a later Fail is acknowledged as CANCELLED, a later Complete Nacked', async () => {
    const queue = await newQueue('cancel');
    const s = stream();
    await s.hello({ workerId: 'w-cancel', queues: [queue], maxInFlight: 1 });
    s.stream.write({ credit: { n: 1 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 3 } } });
    const a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
    await h.client.cancelJob(queue, job!.id, 'stop it');
    const cancel = await eventually(() => s.got.find((m) => m.cancel)?.cancel, 5000, 'Cancel');
    expect(cancel).toMatchObject({ queue, jobId: job!.id, reason: 'stop it' });
    await stateOf(queue, job!.id, S.JOB_STATE_CANCELLED);
    s.stream.write({ fail: { queue, jobId: job!.id, leaseToken: a.leaseToken, message: 'aborted', errorName: '', stacktrace: [], kind: 0 } });
    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: a.leaseToken, result: 'late' } });
    // Both change nothing. The Fail is the worker giving the job up, as told: its Ack says what
    // became of the job. The Complete has no lease to settle.
    await eventually(() => s.got.some((m) => m.ack) && s.got.some((m) => m.nack), 5000, 'an Ack and a Nack');
    expect(s.got.filter((m) => m.ack).map((m) => m.ack!.failOutcome)).toEqual([pb.FailOutcome.FAIL_OUTCOME_CANCELLED]);
    expect(s.got.filter((m) => m.nack).map((m) => m.nack!.code)).toEqual([status.FAILED_PRECONDITION]);
    expect((await h.client.getJob(queue, job!.id)).state).toBe(S.JOB_STATE_CANCELLED);
  });
});

describe('unary twins', () => {
  it('LeaseJobs, ReportProgress, ExtendLease and CompleteJob; a stale FailJob is FAILED_PRECONDITION', async () => {
    const queue = await newQueue('unary');
    const c = unaryClient(h.address);
    try {
      // The call waits first, so the jobs find a worker for their name as they are enqueued.
      const leasing = call<pb.LeaseJobsRequest, pb.LeaseJobsResponse>(c, 'leaseJobs', { queue, max: 2, wait: pb.msToDuration(2000), workerId: 'u1', jobNames: [] });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await h.client.enqueueJob({ queue, job: { name: 'x', data: { i } } })).job!.id);
      const res = await leasing;
      expect(res.assignments.length).toBeGreaterThanOrEqual(1);
      expect(res.assignments.length).toBeLessThanOrEqual(2);
      for (const a of res.assignments) {
        expect(ids).toContain(a.job!.id);
        await call(c, 'reportProgress', { progress: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, progress: 50 } });
        expect((await h.client.getJob(queue, a.job!.id)).progress).toBe(50);
        const ext = await call<pb.ExtendLeaseRequest, pb.ExtendLeaseResponse>(c, 'extendLease', { queue, jobId: a.job!.id, leaseToken: a.leaseToken });
        expect(ext.leaseExpiresAt!.getTime()).toBeGreaterThan(a.leaseExpiresAt!.getTime());
        await call(c, 'completeJob', { complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: { done: a.job!.id } } });
        const done = await stateOf(queue, a.job!.id, S.JOB_STATE_COMPLETED);
        expect(done.result).toEqual({ done: a.job!.id });
      }
      const stale = res.assignments[0]!;
      await expect(
        call(c, 'failJob', { fail: { queue, jobId: stale.job!.id, leaseToken: stale.leaseToken, message: 'x', errorName: '', stacktrace: [], kind: 0 } }),
      ).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
      await expect(call(c, 'leaseJobs', { queue: uniqueQueue('nope'), max: 1, jobNames: [] })).rejects.toMatchObject({ code: status.NOT_FOUND });
    } finally {
      c.close();
    }
  });
});

describe('ListWorkers', () => {
  it('lists a stream worker with its queues and in-flight count, and the in-process pool', async () => {
    const queue = await newQueue('list');
    const s = stream();
    await s.hello({ workerId: 'w-list', queues: [queue], maxInFlight: 3, labels: { zone: 'a' }, sdk: 'test/1' });
    s.stream.write({ credit: { n: 1 } });
    await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await eventually(() => s.assignments()[0], 10_000, 'the assignment');
    const c = unaryClient(h.address);
    try {
      const res = await call<pb.ListWorkersRequest, pb.ListWorkersResponse>(c, 'listWorkers', { queue });
      const mine = res.workers.find((w) => w.workerId === 'w-list');
      expect(mine).toMatchObject({ kind: pb.WorkerKind.WORKER_KIND_STREAM, queues: [queue], inFlight: 1, maxInFlight: 3, labels: { zone: 'a' }, sdk: 'test/1' });
      expect(res.workers.some((w) => w.kind === pb.WorkerKind.WORKER_KIND_IN_PROCESS && w.queues.includes(queue))).toBe(true);
      const all = await call<pb.ListWorkersRequest, pb.ListWorkersResponse>(c, 'listWorkers', { queue: '' });
      expect(all.workers.some((w) => w.kind === pb.WorkerKind.WORKER_KIND_IN_PROCESS && w.queues.includes(markerQueue))).toBe(true);
    } finally {
      c.close();
    }
  });
});

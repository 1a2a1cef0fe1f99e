// What a Fail answers (the stream's Ack, FailJobResponse) is what really happens to the job.
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';
import { call, connect, type RawStream, unaryClient } from './remote-helpers';

const S = pb.JobState;
const O = pb.FailOutcome;
const BACKOFF_MS = 2_000;
/**
 * retry_at is computed on the server between our sending the Fail and reading its answer, so it
 * lies within [sent + delay, answered + delay]; this much slack on either side covers clock
 * rounding to the millisecond and timer jitter.
 */
const SLACK_MS = 100;

let h: PoolHarness;
let address: string;
const open: RawStream[] = [];
const unary: pb.WorkerServiceClient[] = [];

beforeAll(async () => {
  // Its own Redis: one test pauses it.
  h = await startPoolHarness({ ownRedis: true });
  const pool = await h.startPool([], { JOBMESH_LEASE_TTL: '10s' });
  address = `127.0.0.1:${pool.grpcPort}`;
});
afterAll(async () => {
  for (const s of open) s.close();
  for (const c of unary) c.close();
  await h.stop();
});

interface Answer {
  outcome: pb.FailOutcome;
  willRetry: boolean;
  retryAt?: Date;
  sentAt: number;
  answeredAt: number;
}

interface Leased {
  queue: string;
  id: string;
  assignment: pb.Assignment;
  fail(kind: pb.FailureKind, retryAfterMs?: number): Promise<Answer>;
  /** The job's next assignment (after a retry or a rate limit). */
  next(): Promise<pb.Assignment>;
}

const failOf = (a: pb.Assignment, queue: string, kind: pb.FailureKind, retryAfterMs?: number): pb.Fail => ({
  queue,
  jobId: a.job!.id,
  leaseToken: a.leaseToken,
  message: 'it went wrong',
  errorName: 'TestError',
  stacktrace: [],
  kind,
  retryAfter: retryAfterMs === undefined ? undefined : pb.msToDuration(retryAfterMs),
});

/** Enqueues one job and leases it over a Connect stream; Fail answers come back as Acks. */
async function viaStream(options: pb.JobOptions | Record<string, unknown>): Promise<Leased> {
  const queue = uniqueQueue('outcome-s');
  await h.client.createQueue({ queue: { name: queue } });
  const s = connect(address);
  open.push(s);
  await s.hello({ workerId: 'w-outcome', queues: [queue], maxInFlight: 1 });
  s.stream.write({ credit: { n: 1 } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options } });
  const assignment = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
  return {
    queue,
    id: job!.id,
    assignment,
    fail: async (kind, retryAfterMs) => {
      const sentAt = Date.now();
      s.stream.write({ fail: failOf(assignment, queue, kind, retryAfterMs) });
      const ack = await eventually(() => s.got.find((m) => m.ack?.leaseToken === assignment.leaseToken)?.ack, 10_000, 'the Ack of the Fail');
      const answeredAt = Date.now();
      expect(s.got.some((m) => m.nack)).toBe(false);
      return { outcome: ack.failOutcome, willRetry: ack.willRetry, retryAt: ack.retryAt, sentAt, answeredAt };
    },
    next: async () => {
      s.stream.write({ credit: { n: 1 } });
      return eventually(() => s.assignments()[1], 10_000, 'the next assignment');
    },
  };
}

/** Enqueues one job and leases it with LeaseJobs; Fail answers come from FailJob. */
async function viaUnary(options: pb.JobOptions | Record<string, unknown>): Promise<Leased> {
  const queue = uniqueQueue('outcome-u');
  await h.client.createQueue({ queue: { name: queue } });
  const c = unaryClient(address);
  unary.push(c);
  const lease = () => call<pb.LeaseJobsRequest, pb.LeaseJobsResponse>(c, 'leaseJobs', { queue, max: 1, wait: pb.msToDuration(10_000), workerId: 'u-outcome', jobNames: [] });
  const leasing = lease();
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options } });
  const [assignment] = (await leasing).assignments;
  expect(assignment?.job?.id).toBe(job!.id);
  return {
    queue,
    id: job!.id,
    assignment: assignment!,
    fail: async (kind, retryAfterMs) => {
      const sentAt = Date.now();
      const res = await call<pb.FailJobRequest, pb.FailJobResponse>(c, 'failJob', { fail: failOf(assignment!, queue, kind, retryAfterMs) });
      return { outcome: res.outcome, willRetry: res.willRetry, retryAt: res.retryAt, sentAt, answeredAt: Date.now() };
    },
    next: async () => eventually(async () => (await lease()).assignments[0], 15_000, 'the next lease'),
  };
}

const fixed = (attempts: number) => ({ attempts, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: pb.msToDuration(BACKOFF_MS) } });

describe.each([
  ['the stream Ack', viaStream],
  ['FailJob', viaUnary],
])('%s of a Fail says what happens', (_via, lease) => {
  it(`RETRYABLE with attempts left: will_retry, RETRY_SCHEDULED, retry_at = now + the ${BACKOFF_MS} ms backoff (±${SLACK_MS} ms)`, async () => {
    const l = await lease(fixed(3));
    const a = await l.fail(pb.FailureKind.FAILURE_KIND_RETRYABLE);
    expect(a).toMatchObject({ outcome: O.FAIL_OUTCOME_RETRY_SCHEDULED, willRetry: true });
    expect(a.retryAt!.getTime()).toBeGreaterThanOrEqual(a.sentAt + BACKOFF_MS - SLACK_MS);
    expect(a.retryAt!.getTime()).toBeLessThanOrEqual(a.answeredAt + BACKOFF_MS + SLACK_MS);
    expect(await h.client.getJob(l.queue, l.id)).toMatchObject({ state: S.JOB_STATE_DELAYED, attemptsMade: 1 });
    const again = await l.next();
    expect(again.attempt).toBe(2);
    expect(Date.now()).toBeGreaterThanOrEqual(a.retryAt!.getTime() - SLACK_MS);
  });

  it('RETRYABLE on the last attempt: FAILED, will_retry false, no retry_at', async () => {
    const l = await lease(fixed(1));
    const a = await l.fail(pb.FailureKind.FAILURE_KIND_RETRYABLE);
    expect(a).toMatchObject({ outcome: O.FAIL_OUTCOME_FAILED, willRetry: false, retryAt: undefined });
    expect(await h.client.getJob(l.queue, l.id)).toMatchObject({ state: S.JOB_STATE_FAILED, attemptsMade: 1 });
  });

  it('UNRECOVERABLE with attempts left: FAILED, will_retry false', async () => {
    const l = await lease(fixed(5));
    const a = await l.fail(pb.FailureKind.FAILURE_KIND_UNRECOVERABLE);
    expect(a).toMatchObject({ outcome: O.FAIL_OUTCOME_FAILED, willRetry: false, retryAt: undefined });
    expect(await h.client.getJob(l.queue, l.id)).toMatchObject({ state: S.JOB_STATE_FAILED, attemptsMade: 1 });
  });

  it(`RATE_LIMITED on the last attempt: will_retry, RATE_LIMITED, retry_at = now + retry_after (±${SLACK_MS} ms), and no attempt used`, async () => {
    const l = await lease(fixed(1));
    const a = await l.fail(pb.FailureKind.FAILURE_KIND_RATE_LIMITED, 1_000);
    expect(a).toMatchObject({ outcome: O.FAIL_OUTCOME_RATE_LIMITED, willRetry: true });
    expect(a.retryAt!.getTime()).toBeGreaterThanOrEqual(a.sentAt + 1_000 - SLACK_MS);
    expect(a.retryAt!.getTime()).toBeLessThanOrEqual(a.answeredAt + 1_000 + SLACK_MS);
    const again = await l.next();
    expect(again.attempt).toBe(1);
    expect(again.job!.attemptsMade).toBe(0);
  });
});

it('FailJob answers before its deadline when Redis is too slow to tell the outcome: UNSPECIFIED, and the failure still counts', async () => {
  const l = await viaUnary(fixed(3));
  const c = unaryClient(address);
  unary.push(c);
  // Writes wait 6 s, longer than the call's 4 s deadline. The server answers 400 ms (a tenth of
  // the time left) before the deadline: room for a busy machine's event-loop lag.
  await h.redisClient().call('CLIENT', 'PAUSE', '6000', 'WRITE');
  const sentAt = Date.now();
  const res = await new Promise<pb.FailJobResponse>((resolve, reject) =>
    c.failJob({ fail: failOf(l.assignment, l.queue, pb.FailureKind.FAILURE_KIND_RETRYABLE) }, new Metadata(), { deadline: sentAt + 4_000 }, (err: ServiceError | null, r) =>
      err ? reject(err) : resolve(r),
    ),
  );
  expect(Date.now() - sentAt).toBeLessThan(4_000);
  expect(res).toMatchObject({ outcome: O.FAIL_OUTCOME_UNSPECIFIED, willRetry: false, retryAt: undefined });
  // Once Redis takes writes again, the failure is applied: attempt 1 counted, a retry scheduled.
  await eventually(async () => (await h.client.getJob(l.queue, l.id)).attemptsMade === 1, 10_000, 'the failed attempt to be recorded');
  const again = await l.next();
  expect(again.attempt).toBe(2);
});

// A remote worker's Fail of a job that was cancelled while it ran is acknowledged with
// FAIL_OUTCOME_CANCELLED, and the job ends CANCELLED, not FAILED or retried.
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';
import { call, connect, type RawStream, unaryClient } from './remote-helpers';

const S = pb.JobState;
const O = pb.FailOutcome;

let h: PoolHarness;
let address: string;
const open: RawStream[] = [];
const unary: pb.WorkerServiceClient[] = [];

beforeAll(async () => {
  h = await startPoolHarness();
  address = `127.0.0.1:${(await h.startPool([])).grpcPort}`;
});
afterAll(async () => {
  for (const s of open) s.close();
  for (const c of unary) c.close();
  await h.stop();
});

const failOf = (queue: string, a: pb.Assignment): pb.Fail => ({
  queue,
  jobId: a.job!.id,
  leaseToken: a.leaseToken,
  message: 'stopped: the job was cancelled',
  errorName: 'CancelledError',
  stacktrace: [],
  kind: pb.FailureKind.FAILURE_KIND_RETRYABLE,
  retryAfter: undefined,
});

/** A new queue and a Connect stream worker on it that holds one job at a time, its credit granted. */
async function streamWorker(label: string, workerId: string): Promise<{ queue: string; s: RawStream }> {
  const queue = uniqueQueue(label);
  await h.client.createQueue({ queue: { name: queue } });
  const s = connect(address);
  open.push(s);
  await s.hello({ workerId, queues: [queue], maxInFlight: 1 });
  s.stream.write({ credit: { n: 1 } });
  return { queue, s };
}

it('the stream Ack of a Fail sent after the Cancel says CANCELLED, and the job is CANCELLED, not retried', async () => {
  const { queue, s } = await streamWorker('fail-cancelled-s', 'w-cancelled');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 3 } } });
  const a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
  await h.client.cancelJob(queue, job!.id, 'operator said stop');
  // The server tells the worker to stop; the worker gives up the job with a Fail, as the SDK does.
  await eventually(() => s.got.find((m) => m.cancel?.jobId === job!.id), 10_000, 'the Cancel');
  s.stream.write({ fail: failOf(queue, a) });
  const answer = await eventually(() => s.got.find((m) => (m.ack || m.nack) && (m.ack?.leaseToken ?? m.nack?.leaseToken) === a.leaseToken), 10_000, 'the answer to the Fail');
  expect(answer.nack).toBeUndefined();
  expect(answer.ack).toMatchObject({ failOutcome: O.FAIL_OUTCOME_CANCELLED, willRetry: false, retryAt: undefined });
  expect(await h.client.getJob(queue, job!.id)).toMatchObject({ state: S.JOB_STATE_CANCELLED, failureReason: 'operator said stop' });
});

it('FailJob of a leased job cancelled meanwhile answers CANCELLED', async () => {
  const queue = uniqueQueue('fail-cancelled-u');
  await h.client.createQueue({ queue: { name: queue } });
  const c = unaryClient(address);
  unary.push(c);
  const leasing = call<pb.LeaseJobsRequest, pb.LeaseJobsResponse>(c, 'leaseJobs', { queue, max: 1, wait: pb.msToDuration(10_000), workerId: 'u-cancelled', jobNames: [] });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 3 } } });
  const [a] = (await leasing).assignments;
  expect(a?.job?.id).toBe(job!.id);
  await h.client.cancelJob(queue, job!.id, 'not needed');
  // A unary worker hears of it only when it next calls; by then the job is CANCELLED.
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_CANCELLED, 10_000, 'the job to be CANCELLED');
  const res = await call<pb.FailJobRequest, pb.FailJobResponse>(c, 'failJob', { fail: failOf(queue, a!) });
  expect(res).toMatchObject({ outcome: O.FAIL_OUTCOME_CANCELLED, willRetry: false, retryAt: undefined });
  expect(await h.client.getJob(queue, job!.id)).toMatchObject({ state: S.JOB_STATE_CANCELLED, failureReason: 'not needed' });
});

it('a Fail after the Cancel of a timed-out attempt is still refused as stale (Nack code 9)', async () => {
  const { queue, s } = await streamWorker('fail-timeout-s', 'w-timeout');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 1, timeout: pb.msToDuration(300) } } });
  const a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');
  await eventually(() => s.got.find((m) => m.cancel?.jobId === job!.id), 10_000, 'the Cancel');
  s.stream.write({ fail: failOf(queue, a) });
  const answer = await eventually(() => s.got.find((m) => (m.ack || m.nack) && (m.ack?.leaseToken ?? m.nack?.leaseToken) === a.leaseToken), 10_000, 'the answer to the Fail');
  expect(answer.nack).toMatchObject({ code: 9 });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_FAILED, 10_000, 'the timed-out job to be FAILED');
});

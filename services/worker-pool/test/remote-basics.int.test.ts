import { credentials, type ClientDuplexStream, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

let h: PoolHarness;
let workerAddress: string;

beforeAll(async () => {
  h = await startPoolHarness();
  const pool = await h.startPool([], { JOBMESH_LEASE_TTL: '2s' });
  workerAddress = `127.0.0.1:${pool.grpcPort}`;
});
afterAll(async () => {
  await h.stop();
});

/** A raw Connect stream, with every server message collected in order. */
function connect(): { stream: ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse>; got: pb.ConnectResponse[]; client: pb.WorkerServiceClient } {
  const client = new pb.WorkerServiceClient(workerAddress, credentials.createInsecure());
  const stream = client.connect();
  const got: pb.ConnectResponse[] = [];
  stream.on('data', (m: pb.ConnectResponse) => got.push(m));
  stream.on('error', () => undefined); // the tests read the stream's end from its status
  return { stream, got, client };
}

it('assigns a job to a connected worker within its credit and completes it on Complete', async () => {
  const queue = uniqueQueue('remote');
  await h.client.createQueue({ queue: { name: queue } });
  const { stream, got, client } = connect();
  stream.write({ hello: { workerId: 'w1', queues: [queue], maxInFlight: 4, labels: {}, sdk: 'test', jobNames: ['resize'], acceptsBatches: false } });
  await eventually(() => got.some((m) => m.welcome), 5000, 'Welcome');
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'resize', data: { w: 10 } } });
  stream.write({ credit: { n: 1 } });
  const assignment = await eventually(() => got.find((m) => m.assignment)?.assignment, 5000, 'an Assignment');
  expect(assignment.job).toMatchObject({ id: job!.id, name: 'resize', data: { w: 10 } });
  stream.write({ complete: { queue, jobId: job!.id, leaseToken: assignment.leaseToken, result: { ok: true } } });
  await eventually(() => got.some((m) => m.ack?.jobId === job!.id), 5000, 'Ack');
  const done = await eventually(async () => {
    const j = await h.client.getJob(queue, job!.id);
    return j.state === pb.JobState.JOB_STATE_COMPLETED && j;
  });
  expect(done.result).toEqual({ ok: true });
  // A second Complete with the same token is stale now.
  stream.write({ complete: { queue, jobId: job!.id, leaseToken: assignment.leaseToken, result: { ok: false } } });
  const nack = await eventually(() => got.find((m) => m.nack)?.nack, 5000, 'Nack');
  expect(nack.code).toBe(status.FAILED_PRECONDITION);
  stream.end();
  client.close();
});

it('returns a leased job to waiting when the stream drops, and another worker gets it', async () => {
  const queue = uniqueQueue('remote-drop');
  await h.client.createQueue({ queue: { name: queue } });
  const first = connect();
  first.stream.write({ hello: { workerId: 'w-drop', queues: [queue], maxInFlight: 1, labels: {}, sdk: 'test', jobNames: [], acceptsBatches: false } });
  first.stream.write({ credit: { n: 1 } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
  await eventually(() => first.got.find((m) => m.assignment), 5000, 'the first assignment');
  first.stream.cancel();
  const second = connect();
  second.stream.write({ hello: { workerId: 'w-next', queues: [queue], maxInFlight: 1, labels: {}, sdk: 'test', jobNames: [], acceptsBatches: false } });
  second.stream.write({ credit: { n: 1 } });
  const again = await eventually(() => second.got.find((m) => m.assignment)?.assignment, 1000, 'the job re-leased within 1 s');
  expect(again.job!.id).toBe(job!.id);
  expect(again.attempt).toBe(1);
  second.stream.end();
  first.client.close();
  second.client.close();
});

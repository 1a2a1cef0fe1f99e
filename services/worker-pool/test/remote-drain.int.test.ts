import * as pb from '@jobmesh/contracts';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';
import { connect } from './remote-helpers';

const S = pb.JobState;
let h: PoolHarness;

beforeAll(async () => {
  h = await startPoolHarness();
});
afterAll(async () => {
  await h.stop();
});

it('stopping the pool sends Drain, assigns nothing more, and waits for a job completed within the grace', async () => {
  const queue = uniqueQueue('drain');
  await h.client.createQueue({ queue: { name: queue } });
  const pool = await h.startPool([], { JOBMESH_SHUTDOWN_GRACE: '5s', JOBMESH_LEASE_TTL: '10s' });
  const s = connect(`127.0.0.1:${pool.grpcPort}`);
  try {
    await s.hello({ workerId: 'w-drain', queues: [queue], maxInFlight: 5 });
    s.stream.write({ credit: { n: 5 } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    const a = await eventually(() => s.assignments()[0], 10_000, 'the assignment');

    let stopped = false;
    const t0 = Date.now();
    const stopping = pool.stop().then(() => (stopped = true));
    const drain = await eventually(() => s.got.find((m) => m.drain)?.drain, 5000, 'Drain');
    expect(drain.grace).toEqual({ seconds: 5, nanos: 0 });
    const { job: after } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    expect(stopped).toBe(false);

    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: a.leaseToken, result: 'finished in grace' } });
    await eventually(() => s.got.some((m) => m.ack?.jobId === job!.id), 5000, 'Ack');
    await stopping;
    expect(Date.now() - t0).toBeLessThan(5000);
    // Once nothing is in flight the server ends the stream itself (OK).
    await eventually(() => s.ended !== undefined, 5000, 'the stream to end');
    expect(s.ended).toBeNull();

    const done = await h.client.getJob(queue, job!.id);
    expect(done.state).toBe(S.JOB_STATE_COMPLETED);
    expect(done.result).toBe('finished in grace');
    expect(s.assignments()).toHaveLength(1);
    expect((await h.client.getJob(queue, after!.id)).state).toBe(S.JOB_STATE_WAITING);
  } finally {
    s.close();
  }
});

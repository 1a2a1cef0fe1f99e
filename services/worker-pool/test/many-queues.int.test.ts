// A replica serving many queues, with JOBMESH_SHARED_CONNECTIONS=true, shares its Redis connections
// between their runners: two for all of them (BullMQ's commands, and one blocking wait on every
// queue's marker), not two per queue.
import * as pb from '@jobmesh/contracts';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness } from '../src/testing';

const QUEUES = 60;

let h: PoolHarness;
let admin: ReturnType<PoolHarness['redisClient']>;
beforeAll(async () => {
  h = await startPoolHarness({ ownRedis: true });
  admin = h.redisClient();
});
afterAll(async () => {
  await h.stop();
});

const clients = async (): Promise<number> => ((await admin.client('LIST')) as string).trim().split('\n').length;

it(`runs jobs on ${QUEUES} queues with a handful of Redis connections, and wakes for each queue's jobs at once`, async () => {
  const queues: string[] = [];
  for (let i = 0; i < QUEUES; i++) queues.push(await h.newQueue(`mq${i}`));
  const before = await clients();
  await h.startPool([defineProcessor({ queue: '*', name: 'tick', process: (job) => ({ at: Date.now(), i: job.data.i }) })], { JOBMESH_SHARED_CONNECTIONS: 'true' });
  // Idle, every runner waits for its queue's marker: on one shared connection.
  const added = (await clients()) - before;
  expect(added).toBeLessThan(12);
  // A job on each queue, one after the other: each is fetched while the others' runners wait.
  const latencies: number[] = [];
  for (const [i, queue] of queues.entries()) {
    const enqueued = Date.now();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'tick', data: { i } } });
    const done = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === pb.JobState.JOB_STATE_COMPLETED && j;
    }, 10_000, `the job on ${queue}`);
    expect(done.result).toMatchObject({ i });
    latencies.push((done.result as { at: number }).at - enqueued);
  }
  // Each started well before a runner's own wait would have timed out (30 s or more).
  expect(Math.max(...latencies)).toBeLessThan(2000);
  expect((await clients()) - before).toBe(added);
});

it('keeps two connections a queue without JOBMESH_SHARED_CONNECTIONS', async () => {
  const own = await startPoolHarness({ ownRedis: true });
  try {
    const ownAdmin = own.redisClient();
    for (let i = 0; i < 10; i++) await own.newQueue(`pq${i}`);
    const count = async (): Promise<number> => ((await ownAdmin.client('LIST')) as string).trim().split('\n').length;
    const before = await count();
    await own.startPool([defineProcessor({ queue: '*', name: 'tick', process: () => 'ok' })]);
    // A BullMQ Worker per queue, each with a connection of its own for commands and one blocking.
    await eventually(async () => (await count()) - before >= 20, 10_000, 'two connections for each of the 10 queues');
  } finally {
    await own.stop();
  }
});

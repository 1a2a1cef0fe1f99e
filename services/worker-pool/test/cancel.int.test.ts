import * as pb from '@jobmesh/contracts';
import { defineProcessor, type AnyProcessorDefinition } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;
const T = pb.JobEventType;

let h: PoolHarness;
/** Every start of a 'long' job ("queue/id"): which replica ran it, and why its signal aborted. */
const runs: { pool: string; job: string; aborted?: unknown }[] = [];

/** A replica's processors: 'long' runs until its signal aborts; 'quick' returns at once. */
function processors(pool: string): AnyProcessorDefinition[] {
  return [
    defineProcessor({
      queue: '*',
      name: 'long',
      process(job, ctx) {
        const run: (typeof runs)[number] = { pool, job: `${job.queue}/${job.id}` };
        runs.push(run);
        return new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => {
            run.aborted = ctx.signal.reason;
            reject(ctx.signal.reason);
          });
        });
      },
    }),
    defineProcessor({ queue: '*', name: 'quick', process: () => pool }),
  ];
}

beforeAll(async () => {
  // A Redis of this file's own: a test kills client connections on it.
  h = await startPoolHarness({ ownRedis: true });
});
afterAll(async () => {
  await h.stop();
});

it('cancels an ACTIVE job on the second of two replicas: its signal aborts, it reads CANCELLED and is not retried', async () => {
  const queue = uniqueQueue('cancel');
  await h.client.createQueue({ queue: { name: queue } });
  // Only replica 2 runs at first, so it takes the job; replica 1 joins once the job is active.
  await h.startPool(processors('pool-2'));
  const { job } = await h.client.enqueueJob({
    queue,
    job: { name: 'long', options: { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { nanos: 1_000_000 } } } },
  });
  const id = job!.id;
  await eventually(() => runs.some((r) => r.job === `${queue}/${id}`), 10_000, 'the job to start on pool-2');
  await h.startPool(processors('pool-1'));

  const events: pb.JobEvent[] = [];
  const watching = (async () => {
    for await (const e of h.client.watchJob(queue, id)) events.push(e);
  })();
  await eventually(() => events.length > 0, 10_000, 'WatchJob to send the current state');
  expect(events[0]!.type).toBe(T.JOB_EVENT_TYPE_ACTIVE);

  const res = await h.client.cancelJob(queue, id, 'operator said stop');
  expect(res.pending).toBe(true);
  expect(res.job!.state).toBe(S.JOB_STATE_ACTIVE);

  await watching; // WatchJob ends on the terminal event
  expect(events.at(-1)).toMatchObject({ type: T.JOB_EVENT_TYPE_CANCELLED, reason: 'operator said stop' });
  expect(events.map((e) => e.type)).not.toContain(T.JOB_EVENT_TYPE_FAILED);

  const run = runs.find((r) => r.job === `${queue}/${id}`)!;
  expect(run.pool).toBe('pool-2');
  expect(run.aborted).toMatchObject({ name: 'JobCancelledError', reason: 'operator said stop' });

  // The replica writes the CANCELLED record (which ends WatchJob) just before BullMQ lets go of
  // the job, and GetJob reads BullMQ first, so it may still say ACTIVE for a moment; never FAILED.
  const seen = new Set<pb.JobState>();
  const cancelled = await eventually(async () => {
    const j = await h.client.getJob(queue, id);
    seen.add(j.state);
    return j.state === S.JOB_STATE_CANCELLED && j;
  });
  expect([...seen].filter((s) => s !== S.JOB_STATE_ACTIVE && s !== S.JOB_STATE_CANCELLED)).toEqual([]);
  expect(cancelled).toMatchObject({ state: S.JOB_STATE_CANCELLED, failureReason: 'operator said stop' });
  expect(cancelled.finishedAt).toBeDefined();

  // Not retried: a retry would have had a 1 ms backoff, so it would start before a job enqueued now ends.
  const { job: after } = await h.client.enqueueJob({ queue, job: { name: 'quick' } });
  await eventually(async () => (await h.client.getJob(queue, after!.id)).state === S.JOB_STATE_COMPLETED, 10_000, 'the next job to run');
  expect(runs.filter((r) => r.job === `${queue}/${id}`)).toHaveLength(1);
  // BullMQ holds no failed copy of it: the cancelled record is the only one.
  await expect(h.client.getJob(queue, id)).resolves.toMatchObject({ state: S.JOB_STATE_CANCELLED });
  const { jobs: failed } = await h.client.listJobs({ queue, states: [S.JOB_STATE_FAILED] });
  expect(failed).toEqual([]);
  const { jobs: listed } = await h.client.listJobs({ queue, states: [S.JOB_STATE_CANCELLED] });
  expect(listed.map((j) => j.id)).toEqual([id]);
});

it('still cancels an active job when the request was published while the replica was reconnecting', async () => {
  const queue = uniqueQueue('cancel-lost');
  await h.client.createQueue({ queue: { name: queue } });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'long', options: { attempts: 1 } } });
  const id = job!.id;
  await eventually(() => runs.some((r) => r.job === `${queue}/${id}`), 10_000, 'the job to start');

  // Cut every replica's cancel subscription; ioredis reconnects after 200 ms, so the request
  // published right away reaches no one, and only the stored copy is left.
  const redis = h.redisClient();
  const clients = ((await redis.client('LIST')) as string).split('\n').filter((l) => l.includes('name=jobmesh:cancel-sub'));
  expect(clients.length).toBeGreaterThan(0);
  for (const line of clients) await redis.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
  const res = await h.client.cancelJob(queue, id, 'while reconnecting');
  expect(res.pending).toBe(true);

  await eventually(async () => (await h.client.getJob(queue, id)).state === S.JOB_STATE_CANCELLED, 10_000, 'the job to be cancelled');
  expect(runs.find((r) => r.job === `${queue}/${id}`)!.aborted).toMatchObject({ name: 'JobCancelledError', reason: 'while reconnecting' });
});

import { credentials, Metadata } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RateLimitError, RemoteWorker, UnrecoverableError } from '@jobmesh/sdk';
import { freePort } from '@jobmesh/testing';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';

const S = pb.JobState;
let h: PoolHarness;
let address: string;
const workers: RemoteWorker[] = [];

beforeAll(async () => {
  h = await startPoolHarness();
  const pool = await h.startPool([], { JOBMESH_LEASE_TTL: '3s' });
  address = `127.0.0.1:${pool.grpcPort}`;
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })));
});
afterAll(async () => {
  await h.stop();
});

function worker(opts: Omit<ConstructorParameters<typeof RemoteWorker>[0], 'address'> & { address?: string }): RemoteWorker {
  const w = new RemoteWorker({ address, ...opts });
  workers.push(w);
  // Not awaited: tests that need the worker connected wait for it, or for its jobs.
  void w.start();
  return w;
}

async function newQueue(prefix: string): Promise<string> {
  const queue = uniqueQueue(prefix);
  await h.client.createQueue({ queue: { name: queue } });
  return queue;
}

async function terminal(queue: string, id: string, timeoutMs = 20_000): Promise<pb.Job> {
  const done = [S.JOB_STATE_COMPLETED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED, S.JOB_STATE_DEAD_LETTERED];
  return eventually(async () => {
    const j = await h.client.getJob(queue, id);
    return done.includes(j.state) && j;
  }, timeoutMs, `job ${id} to finish`);
}

it('rejects queue "*" and needs processors', () => {
  expect(() => new RemoteWorker({ address: 'x:1', processors: [defineProcessor({ queue: '*', name: 'a', process: () => 1 })] })).toThrow(/'\*' is not allowed/);
  expect(() => new RemoteWorker({ address: 'x:1', processors: [] })).toThrow(/at least one processor/);
});

it('processes 200 jobs, all COMPLETED with their results, never above its concurrency', async () => {
  const queue = await newQueue('rw-many');
  let active = 0;
  let peak = 0;
  worker({
    concurrency: 8,
    processors: [
      defineProcessor<{ i: number }>({
        queue,
        name: 'double',
        async process(job) {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 2));
          active--;
          return { doubled: job.data.i * 2 };
        },
      }),
    ],
  });
  const res = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 200 }, (_, i) => ({ name: 'double', data: { i } })) });
  const ids = res.jobs.map((j) => j.id);
  expect(ids).toHaveLength(200);
  const jobs = await Promise.all(ids.map((id) => terminal(queue, id, 40_000)));
  jobs.forEach((j, i) => {
    expect(j.state).toBe(S.JOB_STATE_COMPLETED);
    expect(j.result).toEqual({ doubled: i * 2 });
  });
  expect(peak).toBeLessThanOrEqual(8);
});

it('reports progress that GetJob reads, and passes the attempt', async () => {
  const queue = await newQueue('rw-progress');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const seen: number[] = [];
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'p',
        async process(job, ctx) {
          seen.push(ctx.attempt, job.attempt);
          await ctx.progress(42);
          await ctx.log('halfway');
          await gate;
          return 'ok';
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'p' } });
  await eventually(async () => (await h.client.getJob(queue, job!.id)).progress === 42, 10_000, 'progress 42');
  release();
  const done = await terminal(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_COMPLETED);
  expect(done.result).toBe('ok');
  expect(seen).toEqual([1, 1]);
});

it('fails an UnrecoverableError at once, without retries', async () => {
  const queue = await newQueue('rw-unrec');
  let calls = 0;
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'u',
        process() {
          calls++;
          throw new UnrecoverableError('bad input');
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'u', options: { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 10e6 } } } } });
  const done = await terminal(queue, job!.id);
  expect([S.JOB_STATE_FAILED, S.JOB_STATE_DEAD_LETTERED]).toContain(done.state);
  expect(done.failureReason).toContain('bad input');
  // Terminal after its first attempt: no retry can follow.
  expect(done.attemptsMade).toBe(1);
  expect(calls).toBe(1);
});

it('retries a retryable error and completes on the next attempt', async () => {
  const queue = await newQueue('rw-retry');
  const attempts: number[] = [];
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'flaky',
        process(_job, ctx) {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) {
            const e = new Error('transient');
            e.name = 'TransientError';
            throw e;
          }
          return { attempt: ctx.attempt };
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'flaky', options: { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 10e6 } } } } });
  const done = await terminal(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_COMPLETED);
  expect(done.result).toEqual({ attempt: 2 });
  expect(attempts).toEqual([1, 2]);
});

it('maps a RateLimitError to a rate-limited failure that runs again', async () => {
  const queue = await newQueue('rw-rate');
  let calls = 0;
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'r',
        process() {
          calls++;
          if (calls === 1) throw new RateLimitError(50);
          return 'through';
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'r', options: { attempts: 1 } } });
  const done = await terminal(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_COMPLETED);
  expect(done.result).toBe('through');
});

it('aborts ctx.signal on CancelJob and the job ends CANCELLED', async () => {
  const queue = await newQueue('rw-cancel');
  let started = false;
  let reason: unknown;
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'long',
        process(_job, ctx) {
          started = true;
          return new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              reason = ctx.signal.reason;
              reject(ctx.signal.reason);
            }),
          );
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'long' } });
  await eventually(() => started, 10_000, 'the job to start');
  await h.client.cancelJob(queue, job!.id, 'stop it');
  await eventually(() => reason !== undefined, 10_000, 'the signal to abort');
  expect((reason as Error).name).toBe('JobCancelledError');
  const done = await terminal(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_CANCELLED);
});

it('heartbeats its leases: a job running longer than the lease TTL completes in one attempt', async () => {
  const queue = await newQueue('rw-heartbeat');
  const attempts: number[] = [];
  worker({
    processors: [
      defineProcessor({
        queue,
        name: 'slow',
        async process(_job, ctx) {
          attempts.push(ctx.attempt);
          await new Promise((r) => setTimeout(r, 4000)); // the pool's lease TTL is 3 s
          return 'slow but alive';
        },
      }),
    ],
  });
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'slow' } });
  const done = await terminal(queue, job!.id);
  expect(done.state).toBe(S.JOB_STATE_COMPLETED);
  expect(done.result).toBe('slow but alive');
  expect(attempts).toEqual([1]);
});

it('stop() is graceful: running jobs finish and complete before the stream ends', async () => {
  const queue = await newQueue('rw-stop');
  let started = 0;
  const w = new RemoteWorker({
    address,
    concurrency: 2,
    processors: [
      defineProcessor({
        queue,
        name: 's',
        async process() {
          started++;
          await new Promise((r) => setTimeout(r, 300));
          return 'finished';
        },
      }),
    ],
  });
  await w.start();
  const a = await h.client.enqueueJob({ queue, job: { name: 's' } });
  const b = await h.client.enqueueJob({ queue, job: { name: 's' } });
  await eventually(() => started === 2, 10_000, 'both jobs to start');
  await w.stop({ graceMs: 5000 });
  expect(w.inFlight).toBe(0);
  for (const id of [a.job!.id, b.job!.id]) {
    const done = await terminal(queue, id);
    expect(done.state).toBe(S.JOB_STATE_COMPLETED);
    expect(done.result).toBe('finished');
  }
  // No more work is taken after stop(): the next job goes to the worker that comes next.
  const c = await h.client.enqueueJob({ queue, job: { name: 's' } });
  worker({ processors: [defineProcessor({ queue, name: 's', process: () => 'next' })] });
  expect((await terminal(queue, c.job!.id)).result).toBe('next');
  expect(started).toBe(2);
});

/** Whether a worker with this id is connected to the replica at `addr`. */
async function connected(addr: string, workerId: string): Promise<boolean> {
  const c = new pb.WorkerServiceClient(addr, credentials.createInsecure());
  try {
    const res = await new Promise<pb.ListWorkersResponse>((resolve, reject) =>
      c.listWorkers({ queue: '' }, new Metadata(), { deadline: new Date(Date.now() + 1000) }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    return res.workers.some((w) => w.workerId === workerId);
  } catch {
    return false;
  } finally {
    c.close();
  }
}

describe('reconnection', () => {
  // Its own harness, so the only replica is the one this test stops and restarts.
  let h2: PoolHarness;
  beforeAll(async () => {
    h2 = await startPoolHarness();
  });
  afterAll(async () => {
    await h2.stop();
  });

  it('reconnects with backoff when its replica goes away and comes back on the same address', async () => {
    const queue = uniqueQueue('rw-reconnect');
    await h2.client.createQueue({ queue: { name: queue } });
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    const env = { JOBMESH_GRPC_ADDRESS: addr, JOBMESH_LEASE_TTL: '3s', JOBMESH_SHUTDOWN_GRACE: '1s' };
    const first = await h2.startPool([], env);
    const w = worker({ address: addr, workerId: 'rw-reconnect-1', processors: [defineProcessor<{ sleepMs?: number }>({ queue, name: 'j', process: async (job) => (await new Promise((r) => setTimeout(r, job.data.sleepMs ?? 0)), { id: job.id }) })] });
    await eventually(() => connected(addr, w.workerId), 10_000, 'the worker to connect');
    const one = await h2.client.enqueueJob({ queue, job: { name: 'j' } });
    const get = (id: string) =>
      eventually(async () => {
        const j = await h2.client.getJob(queue, id);
        return [S.JOB_STATE_COMPLETED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED].includes(j.state) && j;
      }, 20_000, `job ${id}`);
    expect((await get(one.job!.id)).state).toBe(S.JOB_STATE_COMPLETED);
    // A job in flight when the replica shuts down: Drain lets it finish and report.
    const slow = await h2.client.enqueueJob({ queue, job: { name: 'j', data: { sleepMs: 300 } } });
    await eventually(() => w.inFlight === 1, 10_000, 'the slow job to start');
    await first.stop();
    expect((await get(slow.job!.id)).state).toBe(S.JOB_STATE_COMPLETED);
    // The replica stays away a while (the worker backs off and retries meanwhile), then comes back.
    await new Promise((r) => setTimeout(r, 500));
    await h2.startPool([], env);
    await eventually(() => connected(addr, w.workerId), 20_000, 'the worker to reconnect');
    const two = await h2.client.enqueueJob({ queue, job: { name: 'j' } });
    const done = await get(two.job!.id);
    expect(done.state).toBe(S.JOB_STATE_COMPLETED);
    expect(done.result).toEqual({ id: two.job!.id });
  });
});

// ctx.step, ctx.runChildren and ctx.childrenResults in a RemoteWorker: the same processors as
// in-process, over the Connect stream (SaveStep, AddChildren, GetChildrenResults).
import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RemoteWorker, runSteps, WorkerRequestError } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';

const S = pb.JobState;
const fast = { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 50e6 } } };
let h: PoolHarness;
let address: string;
const workers: RemoteWorker[] = [];

beforeAll(async () => {
  h = await startPoolHarness();
  const pool = await h.startPool([], { JOBMESH_LEASE_TTL: '5s' });
  address = `127.0.0.1:${pool.grpcPort}`;
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })));
});
afterAll(async () => {
  await h.stop();
});

async function newQueue(label: string, defaults?: pb.QueueConfig['defaultJobOptions']): Promise<string> {
  const queue = uniqueQueue(label);
  await h.client.createQueue({ queue: { name: queue, defaultJobOptions: defaults } });
  return queue;
}

async function started(processors: ConstructorParameters<typeof RemoteWorker>[0]['processors']): Promise<RemoteWorker> {
  const w = new RemoteWorker({ address, processors, concurrency: 4 });
  workers.push(w);
  await w.start();
  return w;
}

/** The job once it reached `state`, read again (GetJob reads fields and state in two steps). */
async function reaches(queue: string, id: string, state: pb.JobState, timeoutMs = 15_000): Promise<pb.Job> {
  await eventually(async () => (await h.client.getJob(queue, id)).state === state, timeoutMs, `job ${queue}/${id} to be ${pb.jobStateToJSON(state)}`);
  return h.client.getJob(queue, id);
}

const stepsKey = (queue: string, id: string): string => `${h.prefix}:_steps:${queue}:${id}`;

it('runs a ctx.step that succeeded once across attempts: the retry resumes at the failed step with the saved result', async () => {
  const queue = await newQueue('rw-steps');
  const ran: string[] = [];
  await started([
    defineProcessor({
      queue,
      name: 'checkout',
      async process(job, ctx) {
        const charge = await ctx.step('charge', () => {
          ran.push(`charge@${ctx.attempt}`);
          return { chargeId: `ch_${job.id}_${ctx.attempt}`, at: new Date(0) };
        });
        const email = await ctx.step('email', () => {
          ran.push(`email@${ctx.attempt}`);
          if (ctx.attempt === 1) throw new Error('mail server down');
          return 'sent';
        });
        return { charge, email };
      },
    }),
  ]);
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'checkout', options: fast } });
  const done = await reaches(queue, job!.id, S.JOB_STATE_COMPLETED);
  // The resumed attempt got the saved result as JSON stores it (the Date as its ISO string).
  expect(done.result).toEqual({ charge: { chargeId: `ch_${job!.id}_1`, at: '1970-01-01T00:00:00.000Z' }, email: 'sent' });
  expect(done.attemptsMade).toBe(2);
  expect(ran).toEqual(['charge@1', 'email@1', 'email@2']);
  // The saved steps go once the job completed.
  expect(await h.redisClient().exists(stepsKey(queue, job!.id))).toBe(0);
});

it('resumes runSteps at the step that failed, fed the output of the step before it', async () => {
  const queue = await newQueue('rw-runsteps');
  const inputs: string[] = [];
  await started([
    defineProcessor<{ n: number }>({
      queue,
      name: 'pipeline',
      process(job, ctx) {
        const step = (name: string, fn: (n: number) => number, failOnce = false) => ({
          name,
          run(input: { n: number }) {
            inputs.push(`${name}@${ctx.attempt}:${input.n}`);
            if (failOnce && ctx.attempt === 1) throw new Error(`${name} failed the first time`);
            return { n: fn(input.n) };
          },
        });
        return runSteps(ctx, { n: job.data.n }, [step('double', (n) => n * 2), step('times-ten', (n) => n * 10, true), step('plus-one', (n) => n + 1)]);
      },
    }),
  ]);
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'pipeline', data: { n: 2 }, options: fast } });
  const done = await reaches(queue, job!.id, S.JOB_STATE_COMPLETED);
  expect(done.result).toEqual({ n: 41 });
  expect(inputs).toEqual(['double@1:2', 'times-ten@1:4', 'times-ten@2:4', 'plus-one@2:40']);
});

it('runChildren adds the children once, waits in WAITING_CHILDREN without using an attempt, then returns their results', async () => {
  const a = await newQueue('rw-fan-a');
  const b = await newQueue('rw-fan-b');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const runs: number[] = [];
  const square = (queue: string) =>
    defineProcessor<{ n: number }>({
      queue,
      name: 'square',
      async process(job) {
        await gate;
        return job.data.n * job.data.n;
      },
    });
  await started([
    defineProcessor<{ other: string }>({
      queue: a,
      name: 'fan-out',
      async process(job, ctx) {
        runs.push(ctx.attempt);
        const squares = await ctx.runChildren('squares', [
          { name: 'square', data: { n: 2 } },
          { name: 'square', data: { n: 3 }, queue: job.data.other },
        ]);
        return { squares };
      },
    }),
    square(a),
    square(b),
  ]);
  const { job } = await h.client.enqueueJob({ queue: a, job: { name: 'fan-out', data: { other: b }, options: fast } });
  const id = job!.id;
  await reaches(a, id, S.JOB_STATE_WAITING_CHILDREN);
  release();
  const done = await reaches(a, id, S.JOB_STATE_COMPLETED);
  const squares = (done.result as { squares: Record<string, number> }).squares;
  expect(Object.values(squares).sort()).toEqual([4, 9]);
  expect(Object.keys(squares).map((k) => k.split(':')[0]).sort()).toEqual([a, b].sort());
  for (const key of Object.keys(squares)) {
    const [queue, childId] = key.split(':') as [string, string];
    expect((await h.client.getJob(queue, childId)).parent).toEqual({ queue: a, id });
  }
  // Once to add the children, once to collect them, both attempt 1; the children were added once.
  expect(runs).toEqual([1, 1]);
  expect(done.attemptsMade).toBe(1);
  const { jobs } = await h.client.listJobs({ queue: a });
  expect(jobs.filter((j) => j.name === 'square')).toHaveLength(1);
});

it('childrenResults() of a parent enqueued with EnqueueFlow reads its children\'s results', async () => {
  const queue = await newQueue('rw-flow');
  await started([
    defineProcessor({ queue, name: 'part', process: (job) => `part ${job.data.part}` }),
    defineProcessor({ queue, name: 'assemble', process: async (_job, ctx) => ({ assembled: await ctx.childrenResults() }) }),
  ]);
  const { flow } = await h.client.enqueueFlow({
    root: { queue, job: { name: 'assemble' }, children: ['a', 'b'].map((part) => ({ queue, job: { name: 'part', data: { part } }, children: [] })) },
  });
  const done = await reaches(queue, flow!.job!.id, S.JOB_STATE_COMPLETED);
  const [ca, cb] = flow!.children.map((c) => c.job!.id);
  expect(done.result).toEqual({ assembled: { [`${queue}:${ca}`]: 'part a', [`${queue}:${cb}`]: 'part b' } });
});

it('refuses children when one names a queue that does not exist: NOT_FOUND for the processor, nothing added', async () => {
  const queue = await newQueue('rw-fan-bad');
  let refused: unknown;
  await started([
    defineProcessor({
      queue,
      name: 'bad-fan-out',
      async process(_job, ctx) {
        try {
          return await ctx.runChildren('squares', [
            { name: 'square', data: { n: 5 } },
            { name: 'square', data: { n: 6 }, queue: 'no-such-queue' },
          ]);
        } catch (err) {
          refused = err;
          throw err;
        }
      },
    }),
  ]);
  const { job } = await h.client.enqueueJob({ queue, job: { name: 'bad-fan-out', options: { attempts: 1 } } });
  const failed = await reaches(queue, job!.id, S.JOB_STATE_FAILED);
  expect(refused).toBeInstanceOf(WorkerRequestError);
  expect((refused as WorkerRequestError).code).toBe(status.NOT_FOUND);
  expect(failed.failureReason).toMatch(/no-such-queue/);
  const { jobs } = await h.client.listJobs({ queue });
  expect(jobs.map((j) => j.id)).toEqual([job!.id]);
});

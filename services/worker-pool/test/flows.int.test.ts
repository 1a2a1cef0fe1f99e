import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

const S = pb.JobState;

let h: PoolHarness;

/** Jobmesh's Redis keys under the harness's prefix. */
const keys = (): Keys => new Keys(h.prefix);
/** What ran, in order: "<name> <queue>/<id> start|end" with the time. */
const log: { what: string; at: number }[] = [];
/** Children of 'fan-out' wait for this before they finish. */
let releaseSquares!: () => void;
let squaresReleased = new Promise<void>((r) => (releaseSquares = r));
let releaseCubes!: () => void;
const cubesReleased = new Promise<void>((r) => (releaseCubes = r));

beforeAll(async () => {
  h = await startPoolHarness();
  await h.startPool([
    defineProcessor<{ part: string }>({
      queue: '*',
      name: 'part',
      process(job) {
        log.push({ what: `part ${job.queue}/${job.id} end`, at: Date.now() });
        return `part ${job.data.part} done`;
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'assemble',
      async process(job, ctx) {
        log.push({ what: `assemble ${job.queue}/${job.id} start`, at: Date.now() });
        return { assembled: await ctx.childrenResults() };
      },
    }),
    defineProcessor<{ other: string }>({
      queue: '*',
      name: 'fan-out',
      async process(job, ctx) {
        log.push({ what: `fan-out ${job.queue}/${job.id} start attempt ${ctx.attempt}`, at: Date.now() });
        const squares = await ctx.runChildren('squares', [
          { name: 'square', data: { n: 2 } },
          { name: 'square', data: { n: 3 }, queue: job.data.other },
        ]);
        return { squares };
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'bad-fan-out',
      async process(_job, ctx) {
        return ctx.runChildren('squares', [
          { name: 'square', data: { n: 5 } },
          { name: 'square', data: { n: 6 }, queue: 'no-such-queue' },
        ]);
      },
    }),
    defineProcessor({
      queue: '*',
      name: 'fan-out-again',
      async process(job, ctx) {
        log.push({ what: `fan-out-again ${job.queue}/${job.id} start`, at: Date.now() });
        return { cubes: await ctx.runChildren('cubes', [{ name: 'cube', data: { n: 2 } }, { name: 'cube', data: { n: 3 } }]) };
      },
    }),
    defineProcessor<{ n: number }>({
      queue: '*',
      name: 'cube',
      async process(job) {
        await cubesReleased;
        return job.data.n ** 3;
      },
    }),
    defineProcessor<{ n: number }>({
      queue: '*',
      name: 'square',
      async process(job) {
        log.push({ what: `square ${job.queue}/${job.id} start parent ${job.parent?.queue}/${job.parent?.id}`, at: Date.now() });
        await squaresReleased;
        return job.data.n * job.data.n;
      },
    }),
  ]);
});
afterAll(async () => {
  releaseSquares();
  releaseCubes();
  await h.stop();
});

async function newQueue(label: string): Promise<string> {
  const name = uniqueQueue(label);
  await h.client.createQueue({ queue: { name } });
  return name;
}

/** The job once it reached `state`, read again (GetJob reads fields and state in two steps). */
async function reaches(queue: string, id: string, state: pb.JobState, timeoutMs = 10_000): Promise<pb.Job> {
  await eventually(async () => (await h.client.getJob(queue, id)).state === state, timeoutMs, `job ${queue}/${id} to be ${pb.jobStateToJSON(state)}`);
  return h.client.getJob(queue, id);
}

const at = (what: string): number => {
  const entry = log.find((e) => e.what === what);
  if (!entry) throw new Error(`"${what}" never happened; log: ${log.map((e) => e.what).join('; ')}`);
  return entry.at;
};

describe('EnqueueFlow', () => {
  it('runs the parent after both children (one on another queue) and gives it their results', async () => {
    const a = await newQueue('flow-a');
    const b = await newQueue('flow-b');
    const { flow } = await h.client.enqueueFlow({
      root: {
        queue: a,
        job: { name: 'assemble' },
        children: [
          { queue: a, job: { name: 'part', data: { part: 'a' } } },
          { queue: b, job: { name: 'part', data: { part: 'b' } } },
        ],
      },
    });
    const parent = flow!.job!;
    const [childA, childB] = flow!.children.map((c) => c.job!);
    const done = await reaches(a, parent.id, S.JOB_STATE_COMPLETED);
    expect(done.result).toEqual({
      assembled: {
        [`${a}:${childA!.id}`]: 'part a done',
        [`${b}:${childB!.id}`]: 'part b done',
      },
    });
    const parentStart = at(`assemble ${a}/${parent.id} start`);
    expect(parentStart).toBeGreaterThanOrEqual(at(`part ${a}/${childA!.id} end`));
    expect(parentStart).toBeGreaterThanOrEqual(at(`part ${b}/${childB!.id} end`));
  });

  it('gives a job without children an empty childrenResults()', async () => {
    const a = await newQueue('flow-lone');
    const { job } = await h.client.enqueueJob({ queue: a, job: { name: 'assemble' } });
    const done = await reaches(a, job!.id, S.JOB_STATE_COMPLETED);
    expect(done.result).toEqual({ assembled: {} });
  });
});

describe('ctx.runChildren', () => {
  it('adds the children, waits in WAITING_CHILDREN, then runs the processor again and returns their results', async () => {
    const a = await newQueue('fan-a');
    const b = uniqueQueue('fan-b');
    await h.client.createQueue({ queue: { name: b, defaultJobOptions: { attempts: 4 } } });
    const { job } = await h.client.enqueueJob({ queue: a, job: { name: 'fan-out', data: { other: b } } });
    const id = job!.id;

    // The children are running (held by the gate) and the parent waits for them.
    const squaresStarted = (): string[] => log.filter((e) => e.what.startsWith('square ') && e.what.endsWith(`parent ${a}/${id}`)).map((e) => e.what);
    await eventually(() => squaresStarted().length === 2, 10_000, 'both children to start');
    await reaches(a, id, S.JOB_STATE_WAITING_CHILDREN);
    expect(squaresStarted().map((w) => w.split(' ')[1]!.split('/')[0]).sort()).toEqual([a, b].sort());

    releaseSquares();
    const done = await reaches(a, id, S.JOB_STATE_COMPLETED);
    const squares = (done.result as { squares: Record<string, number> }).squares;
    expect(Object.values(squares).sort()).toEqual([4, 9]);
    expect(Object.keys(squares).map((k) => k.split(':')[0]).sort()).toEqual([a, b].sort());
    // Children take their own queue's default options, as enqueued jobs do.
    const children = await Promise.all(Object.keys(squares).map((k) => h.client.getJob(k.split(':')[0]!, k.split(':')[1]!)));
    expect(Object.fromEntries(children.map((c) => [c.queue, c.options!.attempts]))).toEqual({ [a]: 3, [b]: 4 });
    expect(children.map((c) => c.parent)).toEqual([{ queue: a, id }, { queue: a, id }]);
    // Once to add the children, once to collect them; waiting for children is not a failed attempt.
    expect(log.filter((e) => e.what.startsWith(`fan-out ${a}/${id} start`)).map((e) => e.what)).toEqual([
      `fan-out ${a}/${id} start attempt 1`,
      `fan-out ${a}/${id} start attempt 1`,
    ]);
    expect(done.attemptsMade).toBe(1);
    // The children's step record is gone once the parent completed.
    const redis = h.redisClient();
    expect(await redis.exists(keys().steps(a, id))).toBe(0);
    squaresReleased = new Promise<void>((r) => (releaseSquares = r));
  });

  it('adds every child in one step, under ids derived from the parent: adding them again (the record of it lost) adds none', async () => {
    const a = await newQueue('fan-again');
    const { job } = await h.client.enqueueJob({ queue: a, job: { name: 'fan-out-again' } });
    const id = job!.id;
    await reaches(a, id, S.JOB_STATE_WAITING_CHILDREN);
    const cubes = () => h.client.listJobs({ queue: a }).then((r) => r.jobs.filter((j) => j.name === 'cube'));
    const first = await cubes();
    expect(first).toHaveLength(2);
    // As if the worker had died between adding the children and recording that it did.
    await h.redisClient().del(keys().steps(a, id));
    releaseCubes();
    const done = await reaches(a, id, S.JOB_STATE_COMPLETED);
    expect(log.filter((e) => e.what === `fan-out-again ${a}/${id} start`)).toHaveLength(2);
    // The second run added the same two children again: nothing new, and both results are there.
    expect((await cubes()).map((j) => j.id).sort()).toEqual(first.map((j) => j.id).sort());
    expect(Object.values((done.result as { cubes: Record<string, number> }).cubes).sort((x, y) => x - y)).toEqual([8, 27]);
  });

  it('adds no child at all when one of them names a queue that does not exist', async () => {
    const a = await newQueue('fan-bad');
    const { job } = await h.client.enqueueJob({ queue: a, job: { name: 'bad-fan-out', options: { attempts: 1 } } });
    const failed = await reaches(a, job!.id, S.JOB_STATE_FAILED);
    expect(failed.failureReason).toMatch(/no-such-queue/);
    const { jobs } = await h.client.listJobs({ queue: a });
    expect(jobs.map((j) => j.id)).toEqual([job!.id]);
  });
});

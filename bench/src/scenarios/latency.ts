import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { QueueEvents, Worker } from 'bullmq';
import { type FigureTable, JOB_NAME, type JobmeshContext, type RawContext, type RunContext, type Scenario, jobData } from '../scenario';
import { connection } from './processing';

/** The producer's steady rate, jobs/s. */
const RATE = 1_000;
/**
 * Jobs sent at the same rate before the measured ones, whose latencies are dropped: each run starts
 * its worker-pool (or worker) afresh, and a cold process takes about 2 s at this rate to settle.
 */
const LEAD_IN = 3_000;
const CONCURRENCY = 100;
/** A run whose last measured job has not started this long after the last send has lost jobs. */
const STALL_MS = 30_000;
const LATENCY_PROCESSOR = resolve(__dirname, '../../fixtures/latency-processor.js');

/**
 * The machine's monotonic clock in µs (process.hrtime): the same in every process on it, so a
 * worker-pool's reading can be subtracted from the bench's. Exact in a double for centuries.
 */
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** What the report sets in a table of its own; the other recorded figures go to the list below the tables. */
const LATENCY_TABLE: FigureTable = {
  caption: `Enqueue→start latency at a steady ${RATE.toLocaleString('en-US')} jobs/s, ms (goal: Jobmesh p99 ≤ raw p99 + 2 ms in-process, + 5 ms remote):`,
  keys: ['p50 ms', 'p99 ms'],
  digits: 2,
};

/**
 * Sends job i (0 … total-1) at `i / RATE` s after the start, by the schedule: a slow answer does
 * not hold the next send back (open loop). `send` takes the job's index and the clock reading
 * taken just before it is sent. Resolves with how far behind the schedule the latest send went,
 * once every send was answered; rejects with the first failure. `onMeasured` is called just before
 * job `from` is sent, where the measured part begins.
 */
async function pacedSends(total: number, from: number, onMeasured: () => void, send: (i: number, sentAt: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  const due = (i: number): number => start + (i * 1000) / RATE;
  const answers: Promise<unknown>[] = [];
  let failed: { err: unknown } | undefined;
  let lagMs = 0;
  for (let i = 0; i < total && !failed; ) {
    for (const now = performance.now(); i < total && due(i) <= now; i++) {
      if (i === from) onMeasured();
      lagMs = Math.max(lagMs, performance.now() - due(i));
      answers.push(send(i, nowUs()).catch((err: unknown) => void (failed ??= { err })));
    }
    if (i < total) await sleep(Math.max(0, due(i) - performance.now()));
  }
  await Promise.all(answers);
  if (failed) throw failed.err;
  return lagMs;
}

/** The `p` (0…1) percentile of `sorted`, by nearest rank. */
const percentile = (sorted: Float64Array, p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;

/**
 * Collects the start latencies of the measured jobs (index ≥ LEAD_IN): `started(index, µs)` takes
 * one; `all` resolves once `jobs` have come in, or rejects STALL_MS after `giveUpLater()`.
 */
function latencies(jobs: number): { started(index: number, us: number): void; all: Promise<void>; giveUpLater(): void; figures(): Record<string, number> } {
  const us = new Float64Array(jobs);
  let got = 0;
  let done!: () => void;
  let fail!: (err: Error) => void;
  let timer: NodeJS.Timeout | undefined;
  const all = new Promise<void>((res, rej) => ((done = res), (fail = rej))).finally(() => clearTimeout(timer));
  return {
    started(index, value) {
      if (index < LEAD_IN) return;
      us[got++] = value;
      if (got === jobs) done();
    },
    all,
    giveUpLater() {
      timer = setTimeout(() => fail(new Error(`only ${got} of ${jobs} measured jobs started within ${STALL_MS} ms of the last send`)), STALL_MS);
    },
    figures() {
      const sorted = us.slice(0, got).sort();
      const ms = (p: number): number => Number((percentile(sorted, p) / 1000).toFixed(3));
      return { 'p50 ms': ms(0.5), 'p99 ms': ms(0.99), 'max ms': ms(1) };
    },
  };
}

/**
 * One run: LEAD_IN + `jobs` jobs sent by `send` at RATE, the clock running from the first measured
 * send until the last measured job started (so jobs/s is about RATE when the side keeps up).
 * Records p50, p99 and the highest latency of the measured jobs and the producer's worst lag behind
 * its schedule.
 */
async function pacedRun(
  ctx: RunContext,
  got: ReturnType<typeof latencies>,
  send: (i: number, data: Record<string, unknown>) => Promise<unknown>,
): Promise<number> {
  const lagMs = await pacedSends(LEAD_IN + ctx.jobs, LEAD_IN, ctx.startClock, (i, sentAt) => send(i, { ...jobData(i), sentAt }));
  got.giveUpLater();
  await got.all;
  ctx.stopClock();
  ctx.record({ ...got.figures(), 'send lag max ms': Number(lagMs.toFixed(1)) });
  return ctx.jobs;
}

/** Raw BullMQ: `queue.add` at RATE, and a Worker in this process at concurrency 100 that takes its start time. */
async function raw(ctx: RawContext): Promise<number> {
  const { queue } = ctx;
  const got = latencies(ctx.jobs);
  const worker = new Worker(
    queue.name,
    async (job) => {
      const data = job.data as { index: number; sentAt: number };
      got.started(data.index, nowUs() - data.sentAt);
      return null;
    },
    { connection: connection(ctx.env.redisUrl), prefix: queue.opts.prefix, concurrency: CONCURRENCY },
  );
  await worker.waitUntilReady();
  try {
    return await pacedRun(ctx, got, (_, data) => queue.add(JOB_NAME, data));
  } finally {
    await worker.close();
  }
}

/** The Jobmesh producer: the SDK's `enqueueJob` (coalesced) through the bench's scheduler, at RATE. */
const enqueue =
  ({ client, queue }: JobmeshContext) =>
  (_: number, data: Record<string, unknown>): Promise<unknown> =>
    client.enqueueJob({ queue, job: { name: JOB_NAME, data } });

type Latencies = ReturnType<typeof latencies>;

/** A latency scenario: raw BullMQ against `run` (Jobmesh's side, `where`), queue concurrency CONCURRENCY on both. */
function latencyScenario(name: string, where: string, run: (ctx: JobmeshContext, got: Latencies) => Promise<number>): Scenario {
  return {
    name,
    title: `enqueue→start latency at ${RATE.toLocaleString('en-US')} jobs/s, ${where}`,
    defaultJobs: 5_000,
    figureTable: LATENCY_TABLE,
    raw,
    async jobmesh(ctx) {
      await ctx.client.updateQueue({ queue: { name: ctx.queue, concurrency: CONCURRENCY }, updateMask: ['concurrency'] });
      return run(ctx, latencies(ctx.jobs));
    },
  };
}

/** Raw BullMQ against a worker-pool process whose processor returns its start latency (read back from the completed events). */
export const latency = latencyScenario('latency', 'worker-pool in-process', async (ctx, got) => {
  const events = new QueueEvents(ctx.queue, { connection: connection(ctx.env.redisUrl), prefix: ctx.env.jobmeshPrefix });
  events.on('completed', ({ returnvalue }) => {
    const { index, startUs } = returnvalue as unknown as { index: number; startUs: number };
    got.started(index, startUs);
  });
  await events.waitUntilReady();
  const pool = await ctx.env.spawnWorkerPool({ JOBMESH_PROCESSORS: LATENCY_PROCESSOR, JOBMESH_WORKER_QUEUES: ctx.queue });
  try {
    return await pacedRun(ctx, got, enqueue(ctx));
  } finally {
    await pool.stop();
    await events.close();
  }
});

/** Raw BullMQ against the SDK's RemoteWorker in this process, on a worker-pool's Connect stream. */
export const latencyRemote = latencyScenario('latency-remote', 'RemoteWorker', async (ctx, got) => {
  // A pool with no processors of its own: every job goes to the remote worker.
  const pool = await ctx.env.spawnWorkerPool({ JOBMESH_WORKER_QUEUES: ctx.queue });
  const worker = new RemoteWorker({
    address: `127.0.0.1:${pool.port}`,
    processors: [
      defineProcessor<{ index: number; sentAt: number }>({
        queue: ctx.queue,
        name: JOB_NAME,
        process: (job) => {
          got.started(job.data.index, nowUs() - job.data.sentAt);
          return null;
        },
      }),
    ],
    concurrency: CONCURRENCY,
  });
  try {
    await worker.start();
    return await pacedRun(ctx, got, enqueue(ctx));
  } finally {
    await worker.stop({ graceMs: 5000 });
    await pool.stop();
  }
});

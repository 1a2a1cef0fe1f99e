// Jobs that wait for a processor, with the services as separate OS processes on one redis-server:
// (a) 200 jobs enqueued before the Python example worker starts all complete once it connects 5 s
// later, none dead-lettered; (b) processor_wait 2s dead-letters a job nothing serves after about
// 2 s; (c) 10,000 waiting jobs leave the worker-pool idle (its CPU time and Redis's command count
// over 10 s are measured and reported).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { DeadLetterClient, JobmeshClient } from '@jobmesh/sdk';
import { connectRedis, type RedisClient, type RedisHandle, startRedis } from '@jobmesh/testing';
import { PYTHON, ROOT, cleanupPythonStubs, killGroup, pythonStubs } from '../interop/python';
import { eventually, killAll, type ServiceProcess, startService } from './fixtures/services';

const S = pb.JobState;
const WORKER = join(ROOT, 'examples/python-worker/worker.py');
const seconds = (n: number) => ({ seconds: n, nanos: 0 });

let redis: RedisHandle;
let admin: RedisClient;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  redis = await startRedis({ own: true });
  admin = connectRedis(redis.url, { maxRetriesPerRequest: 20 });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-wait-'));
});

// Each test's services stop with it, so the idle measurement sees only its own.
afterEach(async () => {
  for (const c of children.splice(0)) killGroup(c, 'SIGKILL');
  await killAll();
});

afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
  await cleanupPythonStubs();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

interface Cluster {
  prefix: string;
  client: JobmeshClient;
  pool: ServiceProcess;
  deadLetters?: DeadLetterClient;
}

async function startCluster(opts: { deadLetter?: boolean } = {}): Promise<Cluster> {
  const prefix = `sys-${randomUUID().slice(0, 8)}`;
  const env = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix };
  const scheduler = await startService('scheduler', env, dir);
  const pool = await startService('worker-pool', env, dir);
  const client = new JobmeshClient({ address: scheduler.grpcAddress });
  if (!opts.deadLetter) return { prefix, client, pool };
  const dl = await startService('dead-letter', { ...env, JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress, JOBMESH_DLQ_SWEEP_INTERVAL: '500ms' }, dir);
  return { prefix, client, pool, deadLetters: DeadLetterClient.connect(dl.grpcAddress) };
}

async function createQueue(c: Cluster, extra: Partial<pb.QueueConfig> = {}): Promise<string> {
  const queue = `images-${randomUUID().slice(0, 8)}`;
  await c.client.createQueue({ queue: { name: queue, ...extra } });
  await eventually(() => c.pool.logs().some((l) => l.msg === 'serving queue' && l.queue === queue), 10_000, `the worker-pool to serve ${queue}`);
  return queue;
}

async function statesOf(c: Cluster, queue: string, ids: string[]): Promise<pb.Job[]> {
  const out: pb.Job[] = [];
  for (let i = 0; i < ids.length; i += 100) out.push(...(await Promise.all(ids.slice(i, i + 100).map((id) => c.client.getJob(queue, id)))));
  return out;
}

it('200 jobs enqueued 5 s before the Python worker starts all complete, none dead-lettered', async () => {
  const stubs = await pythonStubs();
  const c = await startCluster({ deadLetter: true });
  const queue = await createQueue(c);
  const { jobs } = await c.client.enqueueJobs({ queue, jobs: Array.from({ length: 200 }, (_, i) => ({ name: 'echo', data: { i } })) });
  const ids = jobs.map((j) => j.id);
  await eventually(async () => (await statesOf(c, queue, ids)).every((j) => j.state === S.JOB_STATE_WAITING && j.processorWaitUntil), 20_000, 'all 200 to wait for a processor');

  // The scenario is "the worker starts later": five seconds of nothing serving the name. The wait is
  // the scenario, not a guess at how long a failure takes: attemptsMade never goes down and a failed
  // or dead-lettered job never goes back to WAITING, so all 200 WAITING with 0 attempts at the end of
  // the 5 s shows no attempt was taken and none failed at any moment within them.
  await new Promise((r) => setTimeout(r, 5000));
  expect((await statesOf(c, queue, ids)).every((j) => j.state === S.JOB_STATE_WAITING && j.attemptsMade === 0)).toBe(true);

  const log: string[] = [];
  const worker = spawn(PYTHON, [WORKER, '--concurrency', '16', '--worker-id', 'late-python'], {
    env: { ...process.env, PYTHONPATH: stubs, JOBMESH_ADDRESS: c.pool.grpcAddress, JOBMESH_QUEUES: queue },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(worker);
  worker.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  worker.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
  const done = await eventually(
    async () => {
      const all = await statesOf(c, queue, ids);
      return all.every((j) => j.state === S.JOB_STATE_COMPLETED) && all;
    },
    60_000,
    `all 200 to complete (worker output: ${log.join('')})`,
  );
  expect(done.map((j) => (j.result as { i?: number })?.i)).toEqual(ids.map((_, i) => i));
  expect(done.every((j) => j.attemptsMade === 1)).toBe(true);
  expect((await c.deadLetters!.stats(queue)).total).toBe(0);
});

it('processor_wait 2s dead-letters a job nothing serves after about 2 s, as PROCESSOR_NOT_FOUND', async () => {
  const c = await startCluster({ deadLetter: true });
  const queue = await createQueue(c, { processorWait: seconds(2) });
  const t0 = Date.now();
  const { job } = await c.client.enqueueJob({ queue, job: { name: 'resize', options: { attempts: 3 } } });
  const dead = await eventually(async () => {
    const j = await c.client.getJob(queue, job!.id);
    return j.state === S.JOB_STATE_DEAD_LETTERED && j;
  }, 15_000, 'DEAD_LETTERED');
  expect(dead.finishedAt!.getTime() - t0).toBeGreaterThanOrEqual(2000);
  // BullMQ brings the delayed job back on its own clock; generous for a loaded 2-core machine.
  expect(dead.finishedAt!.getTime() - t0).toBeLessThan(5000);
  expect(dead.attemptsMade).toBe(1);
  const [d] = (await c.deadLetters!.list({ filter: { queue } })).deadLetters;
  expect(d).toMatchObject({ category: 'PROCESSOR_NOT_FOUND', job: { id: job!.id, name: 'resize' } });
});

/** utime + stime of a process, in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // After "pid (comm) ": state is field 3, utime 14 and stime 15 → indexes 11 and 12 here.
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

const commandsProcessed = async (): Promise<number> => Number(/total_commands_processed:(\d+)/.exec(await admin.info('stats'))![1]);

it('10,000 jobs waiting for an absent worker leave the worker-pool idle', async () => {
  const c = await startCluster();
  const queue = await createQueue(c, { concurrency: 100 });
  for (let n = 0; n < 10_000; n += 1000) {
    await c.client.enqueueJobs({ queue, jobs: Array.from({ length: 1000 }, (_, i) => ({ name: 'resize', data: { i: n + i } })) });
  }
  await eventually(async () => (await admin.zcard(`${c.prefix}:_parked:${queue}:resize`)) === 10_000, 120_000, 'all 10,000 to wait for a processor', 250);
  expect(await admin.llen(`${c.prefix}:${queue}:wait`)).toBe(0);

  const cpuBefore = cpuSeconds(c.pool.pid);
  const commandsBefore = await commandsProcessed();
  await new Promise((r) => setTimeout(r, 10_000)); // the measurement window
  const cpu = cpuSeconds(c.pool.pid) - cpuBefore;
  const commands = (await commandsProcessed()) - commandsBefore - 1; // less our own INFO
  process.stdout.write(`10,000 jobs waiting for a processor, over 10 s: worker-pool CPU ${cpu.toFixed(2)} s, Redis commands ${commands} (scheduler and worker-pool together)\n`);
  // Idle: BullMQ's blocking fetches and stall checks, the served-names refresh; nothing per job.
  expect(cpu).toBeLessThan(0.5);
  expect(commands).toBeLessThan(100);
  const sample = await c.client.listJobs({ queue, states: [S.JOB_STATE_WAITING], pageSize: 5 });
  expect(sample.jobs.every((j) => j.processorWaitUntil && j.attemptsMade === 0)).toBe(true);
}, 180_000);

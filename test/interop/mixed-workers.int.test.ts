// One queue served three ways at once: an in-process pool (replica A), and a TypeScript
// RemoteWorker plus the example Python worker on the Connect stream of replica B. 3,000 jobs, each
// completed exactly once, each kind of worker doing some of them.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { type PoolHarness, eventually, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';
import { PYTHON, ROOT, cleanupPythonStubs, pythonStubs } from './python';

const N = 3_000;

let h: PoolHarness;
let stubDir: string;
let python: ChildProcess | undefined;
let remote: RemoteWorker | undefined;
const pythonLog: string[] = [];

beforeAll(async () => {
  stubDir = await pythonStubs();
  h = await startPoolHarness({ ownRedis: true });
}, 60_000);

afterAll(async () => {
  python?.kill('SIGKILL');
  await remote?.stop({ graceMs: 1000 });
  await h?.stop();
  await cleanupPythonStubs();
}, 60_000);

it('completes 3,000 jobs exactly once across an in-process pool, a TS remote worker and a Python worker', async () => {
  const queue = uniqueQueue('mixed');
  // Keep every completed job (the default keeps 1,000) so each can be read back.
  await h.client.createQueue({ queue: { name: queue, concurrency: 8, defaultJobOptions: { keepCompleted: { count: N } } } });
  await h.client.pauseQueue(queue);
  const ranInProcess: string[] = [];
  const ranInTs: string[] = [];

  // Replica A runs 'echo' itself.
  await h.startPool([
    defineProcessor({
      queue,
      name: 'echo',
      process: (job) => {
        ranInProcess.push(job.id);
        return { ...job.data, by: 'in-process' };
      },
    }),
  ]);
  // Replica B has no processor for it: its jobs go to the remote workers connected to it.
  const b = await h.startPool([]);
  const address = `127.0.0.1:${b.grpcPort}`;
  remote = new RemoteWorker({
    address,
    workerId: 'ts-mixed',
    concurrency: 8,
    processors: [
      defineProcessor({
        queue,
        name: 'echo',
        process: (job) => {
          ranInTs.push(job.id);
          return { ...job.data, by: 'ts' };
        },
      }),
    ],
  });
  await remote.start();
  python = spawn(PYTHON, [join(ROOT, 'examples/python-worker/worker.py'), '--concurrency', '8', '--worker-id', 'py-mixed', '--names', 'echo'], {
    env: { ...process.env, PYTHONPATH: stubDir, JOBMESH_ADDRESS: address, JOBMESH_QUEUES: queue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  python.stdout!.on('data', (c: Buffer) => pythonLog.push(c.toString()));
  python.stderr!.on('data', (c: Buffer) => pythonLog.push(c.toString()));
  await eventually(() => b.worker.pool.dispatcher.sessions.size >= 2, 20_000, `both remote workers to connect (python: ${pythonLog.join('')})`);

  const ids: string[] = [];
  for (let start = 0; start < N; start += 500) {
    const res = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 500 }, (_, k) => ({ name: 'echo', data: { i: start + k } })) });
    ids.push(...res.jobs.map((j) => j.id));
  }
  await h.client.resumeQueue(queue);

  const jobs = await eventually(
    async () => {
      const all: pb.Job[] = [];
      for (let s = 0; s < N; s += 200) all.push(...(await Promise.all(ids.slice(s, s + 200).map((id) => h.client.getJob(queue, id)))));
      return all.every((j) => j.state === pb.JobState.JOB_STATE_COMPLETED) && all.every((j) => j.finishedAt) ? all : undefined;
    },
    120_000,
    `all ${N} jobs to complete`,
  );

  // Each job completed once, on its first attempt, with the data it was given.
  const results = jobs.map((j) => j.result as { i: number; by?: string });
  expect(jobs.filter((j) => j.attemptsMade !== 1)).toEqual([]);
  expect(results.filter((r, k) => r.i !== k)).toEqual([]);
  // No worker ran a job twice, and no job ran in two places (executions counted outside Redis for
  // the TypeScript sides; the Python worker's echo result carries no `by`).
  expect(new Set(ranInProcess).size).toBe(ranInProcess.length);
  expect(new Set(ranInTs).size).toBe(ranInTs.length);
  expect(ranInProcess.filter((id) => ranInTs.includes(id))).toEqual([]);
  const byPython = results.filter((r) => r.by === undefined).length;
  expect(ranInProcess.length + ranInTs.length + byPython).toBe(N);
  expect(results.filter((r) => r.by === 'in-process').length).toBe(ranInProcess.length);
  expect(results.filter((r) => r.by === 'ts').length).toBe(ranInTs.length);
  // Everyone took part.
  expect(ranInProcess.length).toBeGreaterThan(0);
  expect(ranInTs.length).toBeGreaterThan(0);
  expect(byPython).toBeGreaterThan(0);
  expect(pythonLog.join('')).not.toMatch(/nack/i);
}, 180_000);

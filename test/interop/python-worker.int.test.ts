// The example Python worker (examples/python-worker/worker.py) against Jobmesh: stubs generated with
// protoc + grpc_python_plugin at test time, run by Debian's /usr/bin/python3 (python3-grpcio).
// (a) 1,000 echo jobs through the Connect stream; (b) `jobmesh conformance` against the worker.
// Missing tools fail the test (never skip it): `.ci/run` installs them on a fresh machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { type PoolHarness, eventually, startPoolHarness, uniqueQueue } from '@jobmesh/worker-pool/testing';
import { PYTHON, ROOT, cleanupPythonStubs, killGroup, pythonStubs, run } from './python';

const WORKER = join(ROOT, 'examples/python-worker/worker.py');
/** The example worker plus `py.sleep`, which writes a line per completion (see the file). */
const SCALING_WORKER = join(ROOT, 'test/interop/python_scaling_worker.py');
const CLI = join(ROOT, 'cli/bin/jobmesh.js');
const RULES = ['complete', 'retry', 'retryable-failure', 'unrecoverable', 'progress', 'steps', 'children', 'cancel', 'lease', 'stale-lease', 'reconnect'];

const children: ChildProcess[] = [];

let h: PoolHarness | undefined;
let stubDir: string | undefined;

beforeAll(async () => {
  stubDir = await pythonStubs();
}, 60_000);

afterAll(async () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  await h?.stop();
  await cleanupPythonStubs();
}, 60_000);

describe('the example Python worker', () => {
  it('completes 1,000 echo jobs over the Connect stream, each once, with the echoed data', async () => {
    h = await startPoolHarness({ ownRedis: true });
    const queue = uniqueQueue('pyw');
    await h.client.createQueue({ queue: { name: queue } });
    const pool = await h.startPool([]);
    const address = `127.0.0.1:${pool.grpcPort}`;
    const workers = new pb.WorkerServiceClient(address, credentials.createInsecure());
    const log: string[] = [];
    const child = spawn(PYTHON, [WORKER, '--concurrency', '16', '--worker-id', 'py-interop'], {
      env: { ...process.env, PYTHONPATH: stubDir, JOBMESH_ADDRESS: address, JOBMESH_QUEUES: queue },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.push(child);
    child.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
    child.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
    try {
      const listed = await eventually(
        () =>
          new Promise<pb.WorkerInfo[] | undefined>((res) =>
            workers.listWorkers({ queue }, new Metadata(), { deadline: Date.now() + 2_000 }, (err, r) =>
              res(!err && r.workers.some((w) => w.workerId === 'py-interop') ? r.workers : undefined),
            ),
          ),
        20_000,
        `the Python worker to connect (output: ${log.join('')})`,
      );
      expect(listed.find((w) => w.workerId === 'py-interop')).toMatchObject({ kind: pb.WorkerKind.WORKER_KIND_STREAM, queues: [queue], maxInFlight: 16 });

      const N = 1_000;
      const ids: string[] = [];
      for (let start = 0; start < N; start += 250) {
        const res = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 250 }, (_, k) => ({ name: 'echo', data: { i: start + k, text: `job ${start + k}` } })) });
        ids.push(...res.jobs.map((j) => j.id));
      }
      expect(ids).toHaveLength(N);
      expect(new Set(ids).size).toBe(N);

      const jobs = await eventually(
        async () => {
          const all: pb.Job[] = [];
          for (let s = 0; s < N; s += 100) all.push(...(await Promise.all(ids.slice(s, s + 100).map((id) => h!.client.getJob(queue, id)))));
          return all.every((j) => j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED) ? all : undefined;
        },
        90_000,
        'all 1,000 jobs to finish',
      );
      const wrong = jobs
        .map((j, i) => ({ i, state: pb.JobState[j.state], attempts: j.attemptsMade, result: j.result as { i?: unknown; text?: unknown } | undefined }))
        .filter(
          (x) =>
            x.state !== 'JOB_STATE_COMPLETED' ||
            x.attempts !== 1 ||
            Object.keys(x.result ?? {}).length !== 2 ||
            x.result?.i !== x.i ||
            x.result?.text !== `job ${x.i}`,
        );
      expect(wrong.slice(0, 5)).toEqual([]);
      // Every Complete was accepted: the worker saw no Nack.
      expect(log.join('')).not.toMatch(/nack/i);
    } finally {
      killGroup(child);
      workers.close();
    }
  }, 150_000);

  it('on SIGTERM asks for no more work, lets the jobs in hand finish and report, then exits: none runs twice', async () => {
    h ??= await startPoolHarness({ ownRedis: true });
    const queue = uniqueQueue('pyw-term');
    await h.client.createQueue({ queue: { name: queue } });
    const pool = await h.startPool([]);
    const dir = await mkdtemp(join(tmpdir(), 'pyw-term-'));
    const doneFile = join(dir, 'done');
    const startedFile = join(dir, 'started');
    const { jobs } = await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 8 }, () => ({ name: 'py.sleep', data: { ms: 3_000 } })) });
    const log: string[] = [];
    const child = spawn(PYTHON, [SCALING_WORKER, '--concurrency', '4', '--names', 'py.sleep'], {
      env: { ...process.env, PYTHONPATH: stubDir, JOBMESH_ADDRESS: `127.0.0.1:${pool.grpcPort}`, JOBMESH_QUEUES: queue, JOBMESH_TEST_DONE_FILE: doneFile, JOBMESH_TEST_STARTED_FILE: startedFile },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    children.push(child);
    child.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const lines = async (file: string): Promise<string[]> => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    // Four running in the worker, mid-sleep (3 s each); the other four wait for credit. (The
    // server's in-flight count is not enough: an assignment sent may not have reached a handler.)
    await eventually(async () => (await lines(startedFile)).length >= 4, 20_000, `4 jobs running (output: ${log.join('')})`);
    killGroup(child, 'SIGTERM');
    expect(await exited).toBe(0);
    const started = await lines(startedFile);
    const done = await lines(doneFile);
    // Each job in hand finished once and its Complete reached the server before the stream closed.
    expect(started.length).toBeGreaterThanOrEqual(4);
    expect(new Set(started).size).toBe(started.length);
    expect([...done].sort()).toEqual([...started].sort());
    const after = await Promise.all(jobs.map((j) => h!.client.getJob(queue, j.id)));
    const completed = after.filter((j) => j.state === pb.JobState.JOB_STATE_COMPLETED);
    expect(completed.map((j) => j.id).sort()).toEqual([...done].sort());
    expect(completed.every((j) => j.attemptsMade === 1)).toBe(true);
    // Nothing else was started.
    expect(after.filter((j) => j.state !== pb.JobState.JOB_STATE_COMPLETED).every((j) => j.attemptsMade === 0)).toBe(true);
    expect(log.join('')).toMatch(/stopping: finishing the jobs in hand/);
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('passes `jobmesh conformance`', async () => {
    const res = await run(process.execPath, [CLI, 'conformance', '--worker', `${PYTHON} ${WORKER}`], { env: { ...process.env, PYTHONPATH: stubDir }, timeoutMs: 150_000, onSpawn: (c) => children.push(c) });
    const lines = res.stdout.split('\n');
    const report = `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr.slice(-3000)}`;
    for (const rule of RULES) expect({ rule, line: lines.find((l) => l === `PASS ${rule}`) ?? report }).toEqual({ rule, line: `PASS ${rule}` });
    expect(lines).toContain(`${RULES.length}/${RULES.length} rules passed`);
    expect(res.code).toBe(0);
  }, 170_000);
});

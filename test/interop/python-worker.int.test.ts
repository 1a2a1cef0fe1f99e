// The example Python worker (examples/python-worker/worker.py) against Jobmesh: stubs generated with
// protoc + grpc_python_plugin at test time, run by Debian's /usr/bin/python3 (python3-grpcio).
// (a) 1,000 echo jobs through the Connect stream; (b) `jobmesh conformance` against the worker.
// Missing tools fail the test (never skip it): `.ci/run` installs them on a fresh machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { type PoolHarness, eventually, startPoolHarness, uniqueQueue } from '../../services/worker-pool/test/harness';

const ROOT = resolve(__dirname, '../..');
const WORKER = join(ROOT, 'examples/python-worker/worker.py');
const GEN = join(ROOT, 'examples/python-worker/gen_stubs.sh');
const CLI = join(ROOT, 'cli/bin/jobmesh.js');
const PYTHON = '/usr/bin/python3';
const RULES = ['complete', 'retry', 'retryable-failure', 'unrecoverable', 'progress', 'cancel', 'lease', 'stale-lease', 'reconnect'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children: ChildProcess[] = [];

/** Runs a command in its own process group, without blocking the event loop (the servers answer from this process). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
    children.push(child);
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), timeoutMs);
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

function killGroup(child: ChildProcess, sig: NodeJS.Signals = 'SIGTERM'): void {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    // already gone
  }
}

let h: PoolHarness | undefined;
let stubDir: string | undefined;

beforeAll(async () => {
  const missing = ['/usr/bin/protoc', '/usr/bin/grpc_python_plugin', '/usr/include/google/protobuf/struct.proto'].filter((f) => !existsSync(f));
  if (missing.length) throw new Error(`missing ${missing.join(', ')}: apt-get install protobuf-compiler protobuf-compiler-grpc libprotobuf-dev python3-grpcio`);
  stubDir = await mkdtemp(join(tmpdir(), 'jobmesh-pyworker-stubs-'));
  const gen = await run('sh', [GEN, stubDir]);
  if (gen.code !== 0) throw new Error(`gen_stubs.sh failed (exit ${gen.code}):\n${gen.stderr}`);
}, 60_000);

afterAll(async () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  await h?.stop();
  if (stubDir) await rm(stubDir, { recursive: true, force: true });
}, 60_000);

describe('the example Python worker', () => {
  it('completes 1,000 echo jobs over the Connect stream, each once, with the echoed data', async () => {
    h = await startPoolHarness({ ownRedis: true });
    const queue = uniqueQueue('pyw');
    await h.client.createQueue({ queue: { name: queue } });
    const pool = await h.startPool([], { JOBMESH_REMOTE_GRACE: '60s' });
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

  it('passes `jobmesh conformance`', async () => {
    const res = await run(process.execPath, [CLI, 'conformance', '--worker', `${PYTHON} ${WORKER}`], { ...process.env, PYTHONPATH: stubDir }, 150_000);
    const lines = res.stdout.split('\n');
    const report = `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr.slice(-3000)}`;
    for (const rule of RULES) expect({ rule, line: lines.find((l) => l === `PASS ${rule}`) ?? report }).toEqual({ rule, line: `PASS ${rule}` });
    expect(lines).toContain(`${RULES.length}/${RULES.length} rules passed`);
    expect(res.code).toBe(0);
  }, 170_000);
});

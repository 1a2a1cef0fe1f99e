// The example Python worker behind a blackholed connection (issue 16, point 2), as
// services/worker-pool/test/keepalive.int.test.ts does for the TypeScript RemoteWorker: its gRPC
// keepalive notices, the stream ends and it reconnects; the worker-pool's keepalive ends the
// session, and the jobs it held run on another worker long before their 60 s lease would lapse.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { RemoteWorker, defineProcessor } from '@jobmesh/sdk';
import { type TcpProxy, startTcpProxy } from '@jobmesh/testing';
import { type PoolHarness, eventually, startPoolHarness } from '@jobmesh/worker-pool/testing';
import { PYTHON, ROOT, cleanupPythonStubs, killGroup, pythonStubs } from './python';

const SCALING_WORKER = join(ROOT, 'test/interop/python_scaling_worker.py');
const JOBS = 3;
/** keepalive 1 s + timeout 1 s, and this much for Python's own timers and the round trips. */
const BOUND_MS = 2_000 + 2_500;

let h: PoolHarness | undefined;
let stubDir: string;
let proxy: TcpProxy | undefined;
let child: ChildProcess | undefined;
let standby: RemoteWorker | undefined;

beforeAll(async () => {
  stubDir = await pythonStubs();
  h = await startPoolHarness();
}, 60_000);

afterAll(async () => {
  if (child) killGroup(child, 'SIGKILL');
  await standby?.stop({ graceMs: 0 });
  await proxy?.close();
  await h?.stop();
  await cleanupPythonStubs();
}, 60_000);

it('a blackholed Python worker notices and reconnects; its jobs are re-leased within the keepalive bound', async () => {
  const pool = await h!.startPool([], { JOBMESH_KEEPALIVE_INTERVAL: '1s', JOBMESH_KEEPALIVE_TIMEOUT: '1s', JOBMESH_LEASE_TTL: '60s' });
  proxy = await startTcpProxy(`127.0.0.1:${pool.grpcPort}`);
  const queue = await h!.newQueue('py-blackhole');
  const log: string[] = [];
  const logged = (re: RegExp): number => log.join('').split('\n').filter((l) => re.test(l)).length;
  child = spawn(PYTHON, [SCALING_WORKER, '--concurrency', String(JOBS), '--names', 'py.sleep', '--worker-id', 'py-holed', '--keepalive', '1s', '--keepalive-timeout', '1s'], {
    env: { ...process.env, PYTHONPATH: stubDir, JOBMESH_ADDRESS: proxy.address, JOBMESH_QUEUES: queue },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  child.stderr!.on('data', (b: Buffer) => log.push(b.toString()));
  const sessions = pool.worker.pool.dispatcher.sessions;
  await eventually(() => sessions.size === 1, 20_000, `the Python worker to connect:\n${log.join('')}`);
  // Each job sleeps a minute: only a re-lease can finish it in time.
  const ids = (await h!.client.enqueueJobs({ queue, jobs: Array.from({ length: JOBS }, () => ({ name: 'py.sleep', data: { ms: 60_000 } })) })).jobs.map((j) => j.id);
  // Its session holds the leases (a job can be active in the pool while it waits for a worker's credit).
  await eventually(() => [...sessions.values()].find((s) => s.workerId === 'py-holed')?.leases.size === JOBS, 10_000, 'the Python worker to hold every job');

  const ranElsewhere = new Map<string, number>();
  standby = new RemoteWorker({
    address: `127.0.0.1:${pool.grpcPort}`,
    workerId: 'standby',
    processors: [defineProcessor({ queue, name: 'py.sleep', process: (job) => void ranElsewhere.set(job.id, Date.now()) })],
  });
  await standby.start();

  const reconnectsBefore = logged(/stream ended/);
  const cutAt = Date.now();
  proxy.blackhole();
  await eventually(() => ids.every((id) => ranElsewhere.has(id)), BOUND_MS + 2_000, 'the jobs to run on the standby worker');
  const reLeased = Math.max(...ranElsewhere.values()) - cutAt;
  await eventually(() => logged(/stream ended/) > reconnectsBefore, BOUND_MS + 2_000, `the Python worker to notice:\n${log.join('')}`);
  const noticed = Date.now() - cutAt;
  process.stdout.write(`python blackhole: server re-leased after ${reLeased} ms, the worker noticed within ${noticed} ms (keepalive 1+1 s, lease 60 s)\n`);
  expect(reLeased).toBeLessThan(BOUND_MS);
  expect(noticed).toBeLessThan(BOUND_MS);

  proxy.heal();
  await eventually(() => [...sessions.values()].some((s) => s.workerId === 'py-holed'), 30_000, `the Python worker to reconnect:\n${log.join('')}`);
}, 90_000);

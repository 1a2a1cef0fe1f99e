// Scaling on the monitor's external scaler, proven on one machine. A simulation, stated as such:
// the small controller below plays KEDA's and the HPA's part. Every second it calls GetMetrics and
// IsActive (through a client generated from KEDA's externalscaler.proto) and sets
//   desired = ceil(backlog / targetBacklog), clamped to [min, max],
// with 0 ↔ 1 decided by IsActive; as KEDA and the HPA do, a scale-down to fewer replicas waits for
// a stabilization window, and the step to 0 for the cooldown after the last active poll. It starts and
// SIGTERMs real worker-pool processes (or Python example workers, scaled on their job names) to
// match. 3,000 jobs of 20 ms each: replicas go 0 → max, the backlog drains, every job completes
// exactly once (counted outside Redis, in a file the processors append to), replicas come back to
// 0 after the cooldown, and nothing is lost when a replica is stopped while it runs jobs.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { keda } from '@jobmesh/contracts';
import { JobmeshClient, MonitorClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis, waitFor } from '@jobmesh/testing';
import { PYTHON, cleanupPythonStubs, killGroup, pythonStubs } from '../interop/python';
import { RECORD_PROCESSOR, killAll, readLines, type ServiceProcess, startService, stopService } from './fixtures/services';

const JOBS = 3000;
const WORK_MS = 20;
const PY_WORKER = resolve(__dirname, '../interop/python_scaling_worker.py');

let redis: RedisHandle;
let dir: string;
let prefix: string;
let scheduler: ServiceProcess;
let client: JobmeshClient;
let scaler: keda.ExternalScalerClient;
let monitorClient: MonitorClient;
const pythons = new Set<ChildProcess>();

beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-autoscale-'));
  prefix = `as-${randomUUID().slice(0, 8)}`;
  scheduler = await startService('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix }, dir);
  const monitor = await startService('monitor', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress }, dir);
  client = new JobmeshClient({ address: scheduler.grpcAddress });
  scaler = new keda.ExternalScalerClient(monitor.grpcAddress, credentials.createInsecure());
  monitorClient = MonitorClient.connect(monitor.grpcAddress);
}, 60_000);

afterAll(async () => {
  for (const p of pythons) killGroup(p, 'SIGKILL');
  scaler?.close();
  monitorClient?.close();
  client?.close();
  await killAll();
  await cleanupPythonStubs();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function unary<Res>(method: 'isActive' | 'getMetrics', req: object): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = scaler[method] as unknown as (r: object, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => void;
    fn.call(scaler, req, new Metadata(), (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A replica the controller can start and stop. */
interface Replica {
  stop(): Promise<void>;
}

interface ControllerOptions {
  metadata: Record<string, string>;
  targetBacklog: number;
  min: number;
  max: number;
  /** A scale-down to fewer (not 0) replicas waits until the lower count was wanted this long (the HPA's stabilization window). */
  stabilizationMs: number;
  /** The step to 0 waits this long after the last active poll (KEDA's cooldownPeriod). */
  cooldownMs: number;
  start(): Promise<Replica>;
}

/** KEDA and the HPA, simulated: polls the scaler every second and starts or stops replicas to match. */
class Controller {
  readonly timeline: Array<{ atMs: number; backlog: number; active: boolean; replicas: number }> = [];
  private readonly replicas: Replica[] = [];
  private readonly started = Date.now();
  private lowerSince: number | undefined;
  private lastActive = Date.now();
  private stopped = false;
  private loop: Promise<void> | undefined;
  maxSeen = 0;

  constructor(private readonly o: ControllerOptions) {}

  get count(): number {
    return this.replicas.length;
  }

  run(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const tick = Date.now();
        await this.step();
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - tick))));
      }
    })();
  }

  private async step(): Promise<void> {
    const ref = { name: 'workers', namespace: 'default', scalerMetadata: this.o.metadata };
    const [metrics, active] = await Promise.all([
      unary<keda.GetMetricsResponse>('getMetrics', { scaledObjectRef: ref, metricName: '' }),
      unary<keda.IsActiveResponse>('isActive', ref),
    ]);
    const backlog = metrics.metricValues[0]!.metricValue;
    const now = Date.now();
    if (active.result) this.lastActive = now;
    let desired = active.result ? Math.min(this.o.max, Math.max(1, this.o.min, Math.ceil(backlog / this.o.targetBacklog))) : this.o.min;
    // Up at once. Down to fewer replicas once the lower count was wanted for the stabilization
    // window; to 0 only after the cooldown since the last active poll (until then, one replica).
    if (desired === 0 && this.count > 0 && now - this.lastActive < this.o.cooldownMs) desired = 1;
    if (desired < this.count) {
      this.lowerSince ??= now;
      if (now - this.lowerSince < (desired === 0 ? 0 : this.o.stabilizationMs)) desired = this.count;
    } else this.lowerSince = undefined;
    if (desired > this.count) {
      const added = await Promise.all(Array.from({ length: desired - this.count }, () => this.o.start()));
      this.replicas.push(...added);
    } else if (desired < this.count) {
      // SIGTERM: each stops fetching and finishes the jobs it holds (its shutdown grace).
      await Promise.all(this.replicas.splice(desired).map((r) => r.stop()));
      this.lowerSince = undefined;
    }
    this.maxSeen = Math.max(this.maxSeen, this.count);
    const last = this.timeline[this.timeline.length - 1];
    if (!last || last.replicas !== this.count || last.active !== active.result || Math.abs(last.backlog - backlog) >= 300 || backlog === 0) {
      this.timeline.push({ atMs: Date.now() - this.started, backlog, active: active.result, replicas: this.count });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.replicas.splice(0).map((r) => r.stop()));
  }

  print(title: string): void {
    const rows = this.timeline.map((t) => `  ${(t.atMs / 1000).toFixed(1).padStart(6)} s  backlog ${String(t.backlog).padStart(5)}  ${t.active ? 'active  ' : 'inactive'}  replicas ${t.replicas}`);
    process.stdout.write(`${title} (simulated KEDA/HPA controller)\n${rows.join('\n')}\n`);
  }
}

/** Waits for every job to be done, and the controller to come back to zero; returns the done file's lines. */
async function drainAndScaleToZero(c: Controller, queue: string, doneFile: string): Promise<string[]> {
  await waitFor('every job to complete', () => readLines(doneFile).length >= JOBS, 120_000, 200);
  await waitFor('the replicas to return to 0 after the cooldown', () => c.count === 0, 30_000, 200);
  const lines = readLines(doneFile);
  const stats = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_FAILED], pageSize: 10 });
  expect(stats.jobs).toEqual([]);
  return lines;
}

async function enqueue(queue: string, name: string, data: Record<string, unknown>): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < JOBS; i += 1000) {
    const res = await client.enqueueJobs({ queue, jobs: Array.from({ length: Math.min(1000, JOBS - i) }, () => ({ name, data })) });
    for (const j of res.jobs) ids.add(j.id);
  }
  return ids;
}

it('scales worker-pool processes from 0 to max on the backlog and back to 0, every job completed once', async () => {
  const queue = `scale-ts-${randomUUID().slice(0, 6)}`;
  // Two jobs at once per replica, so that the backlog outlives a few polls.
  await client.createQueue({ queue: { name: queue, concurrency: 2 } });
  const doneFile = join(dir, `${queue}.done`);
  const c = new Controller({
    metadata: { queue, targetBacklog: '400' },
    targetBacklog: 400,
    min: 0,
    max: 4,
    stabilizationMs: 1000,
    cooldownMs: 3000,
    start: async () => {
      const svc = await startService(
        'worker-pool',
        { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_PROCESSORS: RECORD_PROCESSOR, JOBMESH_TEST_DONE_FILE: doneFile, JOBMESH_WORKER_QUEUES: queue, JOBMESH_SHUTDOWN_GRACE: '10s' },
        dir,
      );
      return { stop: async () => void (await stopService(svc)) };
    },
  });
  c.run();
  try {
    await waitFor('the controller to see nothing to do', () => c.timeline.length > 0, 10_000);
    expect(c.count).toBe(0);
    const ids = await enqueue(queue, 'record', { workMs: WORK_MS });
    // The monitor counts the worker-pool processes serving the queue, across all of them.
    await waitFor('the monitor to count 4 worker-pool processes', async () => (await monitorClient.queueStats(queue)).inProcessWorkers === 4, 30_000, 200);
    const lines = await drainAndScaleToZero(c, queue, doneFile);
    c.print(`TypeScript worker-pool, ${JOBS} jobs of ${WORK_MS} ms, targetBacklog 400, max 4`);
    expect(c.maxSeen).toBe(4);
    // Exactly once: as many lines as jobs, each job once, nothing else.
    expect(lines.length).toBe(JOBS);
    expect(new Set(lines)).toEqual(ids);
    // Replicas were stopped while jobs still ran (the count went down with backlog left), and none
    // of their jobs was lost or run twice (above).
    const midRun = c.timeline.filter((t, i) => i > 0 && t.replicas > 0 && t.replicas < c.timeline[i - 1]!.replicas && t.backlog > 0);
    expect(midRun.length).toBeGreaterThan(0);
  } finally {
    await c.stop();
  }
}, 180_000);

it('scales Python workers on their job names from 0 and back, every job completed once', async () => {
  const stubs = await pythonStubs();
  const queue = `scale-py-${randomUUID().slice(0, 6)}`;
  await client.createQueue({ queue: { name: queue, concurrency: 1 } });
  // The worker-pool the Python workers connect to: it runs nothing of this queue itself.
  const pool = await startService('worker-pool', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_WORKER_QUEUES: queue, JOBMESH_SHUTDOWN_GRACE: '10s' }, dir);
  const doneFile = join(dir, `${queue}.done`);
  // Other jobs on the same queue, of a name the Python workers do not serve, must not scale them.
  await client.enqueueJobs({ queue, jobs: Array.from({ length: 500 }, () => ({ name: 'not-python', data: {} })) });
  const c = new Controller({
    metadata: { queue, jobNames: 'py.sleep', targetBacklog: '400' },
    targetBacklog: 400,
    min: 0,
    max: 3,
    stabilizationMs: 1000,
    cooldownMs: 3000,
    start: async () => {
      const child = spawn(PYTHON, [PY_WORKER, '--concurrency', '4', '--names', 'py.sleep'], {
        env: { ...process.env, PYTHONPATH: stubs, JOBMESH_ADDRESS: pool.grpcAddress, JOBMESH_QUEUES: queue, JOBMESH_TEST_DONE_FILE: doneFile },
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
      });
      pythons.add(child);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      return {
        stop: async () => {
          killGroup(child, 'SIGTERM');
          await exited;
          pythons.delete(child);
        },
      };
    },
  });
  c.run();
  try {
    await waitFor('the controller to see nothing to do', () => c.timeline.length > 0, 10_000);
    expect(c.count).toBe(0);
    const ids = await enqueue(queue, 'py.sleep', { ms: WORK_MS });
    const lines = await drainAndScaleToZero(c, queue, doneFile);
    c.print(`Python workers on jobNames=py.sleep, ${JOBS} jobs of ${WORK_MS} ms, targetBacklog 400, max 3`);
    expect(c.maxSeen).toBe(3);
    expect(lines.length).toBe(JOBS);
    expect(new Set(lines)).toEqual(ids);
    // The other jobs are still there, and counted only without jobNames.
    const all = await unary<keda.GetMetricsResponse>('getMetrics', { scaledObjectRef: { name: 'w', namespace: 'd', scalerMetadata: { queue } }, metricName: '' });
    expect(all.metricValues[0]!.metricValue).toBe(500);
  } finally {
    await c.stop();
  }
}, 180_000);

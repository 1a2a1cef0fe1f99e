// Graceful shutdown of a worker-pool process (DESIGN §5): on SIGTERM its health goes NOT_SERVING,
// it stops fetching, lets the active jobs finish within the grace period, and exits 0.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, type HealthStatus, healthClient, killAll, RECORD_PROCESSOR, readEvents, type ServiceProcess, startService } from './fixtures/services';

const GRACE_MS = 10_000;
const JOB_MS = 1500;
const CONCURRENCY = 3;
const JOBS = 8;

let redis: RedisHandle;
let dir: string;
let client: JobmeshClient;
let pool: ServiceProcess;
const queue = `shutdown-${randomUUID().slice(0, 8)}`;
const eventsFile = join(tmpdir(), `jobmesh-events-${randomUUID()}.txt`);

beforeAll(async () => {
  redis = await startRedis({ own: true });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-shutdown-'));
  const prefix = `sys-${randomUUID().slice(0, 8)}`;
  const scheduler = await startService('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix }, dir);
  client = new JobmeshClient({ address: scheduler.grpcAddress });
  await client.createQueue({ queue: { name: queue, concurrency: CONCURRENCY } });
  pool = await startService(
    'worker-pool',
    {
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: prefix,
      JOBMESH_PROCESSORS: RECORD_PROCESSOR,
      JOBMESH_TEST_EVENTS_FILE: eventsFile,
      JOBMESH_SHUTDOWN_GRACE: `${GRACE_MS / 1000}s`,
    },
    dir,
  );
});

afterAll(async () => {
  client?.close();
  await killAll();
  await redis?.stop();
  rmSync(eventsFile, { force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('on SIGTERM goes NOT_SERVING, finishes its active jobs, starts no new ones, and exits 0 within the grace period', async () => {
  const health = healthClient(pool.grpcAddress);
  try {
    expect(await health.check()).toBe('SERVING');
    const res = await client.enqueueJobs({ queue, jobs: Array.from({ length: JOBS }, () => ({ name: 'record', data: { workMs: JOB_MS } })) });
    const ids = res.jobs.map((j) => j.id);

    // Every slot busy: no job can start until one of these finishes, 1.5 s from now.
    await eventually(() => (readEvents(eventsFile).started.get(pool.pid) ?? []).length >= CONCURRENCY, 10_000, `${CONCURRENCY} active jobs`, 5);

    // Poll health from the signal until the process is gone; each answer is stamped with the time.
    let exitedAt = 0;
    const exited = pool.exited.then((e) => ((exitedAt = Date.now()), e));
    const answers: { at: number; status: HealthStatus | 'ERROR' }[] = [];
    const signalledAt = Date.now();
    pool.child.kill('SIGTERM');
    // The jobs started by now, read right after the signal was sent; the slots were full, so
    // normally exactly CONCURRENCY of them.
    const active = readEvents(eventsFile).started.get(pool.pid) ?? [];
    expect(active.length).toBeGreaterThanOrEqual(CONCURRENCY);
    const polling = (async () => {
      while (!exitedAt) {
        const status = await health.check().catch(() => 'ERROR' as const);
        answers.push({ at: Date.now(), status });
        await Promise.race([exited, new Promise((r) => setTimeout(r, 25))]);
      }
    })();

    const { code, signal } = await exited;
    await polling;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(exitedAt - signalledAt).toBeLessThan(GRACE_MS);

    const firstNotServing = answers.find((a) => a.status === 'NOT_SERVING');
    expect(firstNotServing).toBeDefined();
    expect(firstNotServing!.at).toBeLessThan(exitedAt);
    // Once NOT_SERVING, never SERVING again.
    expect(answers.filter((a) => a.at > firstNotServing!.at && a.status === 'SERVING')).toEqual([]);

    // The jobs that were active completed, in their first attempt; none started after the signal.
    const { started, done } = readEvents(eventsFile);
    expect(started.get(pool.pid)).toEqual(active);
    expect([...(done.get(pool.pid) ?? [])].sort()).toEqual([...active].sort());
    for (const id of active) {
      const job = await client.getJob(queue, id);
      expect({ id, state: pb.jobStateToJSON(job.state), attemptsMade: job.attemptsMade }).toEqual({ id, state: 'JOB_STATE_COMPLETED', attemptsMade: 1 });
    }
    // The rest are still waiting for a worker.
    const rest = ids.filter((id) => !active.includes(id));
    expect(rest.length).toBeGreaterThan(0);
    for (const id of rest) expect(pb.jobStateToJSON((await client.getJob(queue, id)).state)).toBe('JOB_STATE_WAITING');
    const failed = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_FAILED, pb.JobState.JOB_STATE_ACTIVE] });
    expect(failed.jobs).toEqual([]);
    expect(pool.output()).not.toMatch(/grace period over/);
  } finally {
    health.close();
  }
}, 60_000);

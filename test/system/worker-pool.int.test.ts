// The scheduler and two worker-pool replicas as separate OS processes on one redis-server: every
// job runs to completion exactly once while nothing fails, and when a replica is killed the other
// one takes over its jobs.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, killAll, RECORD_PROCESSOR, readEvents, readLines, type ServiceProcess, startService } from './fixtures/services';

let redis: RedisHandle;
let dir: string;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-pool-'));
});

afterAll(async () => {
  await killAll();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A scheduler and a client on a fresh key prefix of the shared Redis. */
async function startCluster(): Promise<{ prefix: string; scheduler: ServiceProcess; client: JobmeshClient }> {
  const prefix = `sys-${randomUUID().slice(0, 8)}`;
  const scheduler = await startService('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix }, dir);
  return { prefix, scheduler, client: new JobmeshClient({ address: scheduler.grpcAddress }) };
}

/** Every job of `queue` in `state`, following page tokens. */
async function listIds(client: JobmeshClient, queue: string, state: pb.JobState): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = '';
  do {
    const page = await client.listJobs({ queue, states: [state], pageSize: 1000, pageToken });
    ids.push(...page.jobs.map((j) => j.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return ids;
}

/** Enqueues `count` record jobs in batches of 500 and returns their ids. */
async function enqueueRecords(client: JobmeshClient, queue: string, count: number, data: Record<string, unknown> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let n = 0; n < count; n += 500) {
    const jobs = Array.from({ length: Math.min(500, count - n) }, () => ({ name: 'record', data }));
    const res = await client.enqueueJobs({ queue, jobs });
    ids.push(...res.jobs.map((j) => j.id));
  }
  return ids;
}

/** How many times each id appears in `lines`. */
function tally(lines: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of lines) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

describe('two worker-pool replicas sharing a queue', () => {
  const queue = `pool-${randomUUID().slice(0, 8)}`;
  const doneFile = join(tmpdir(), `jobmesh-done-${randomUUID()}.txt`);
  const eventsFile = join(tmpdir(), `jobmesh-events-${randomUUID()}.txt`);
  let client: JobmeshClient;
  let pools: ServiceProcess[];

  beforeAll(async () => {
    const c = await startCluster();
    client = c.client;
    // Keep every completed job, so GetJob can still see all 2,000 (the default keeps 1,000).
    await client.createQueue({ queue: { name: queue, concurrency: 25, defaultJobOptions: { keepCompleted: { count: 10_000 } } } });
    const env = {
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: c.prefix,
      JOBMESH_PROCESSORS: RECORD_PROCESSOR,
      JOBMESH_TEST_DONE_FILE: doneFile,
      JOBMESH_TEST_EVENTS_FILE: eventsFile,
    };
    pools = await Promise.all([startService('worker-pool', env, dir), startService('worker-pool', env, dir)]);
  });

  afterAll(() => {
    client?.close();
    rmSync(doneFile, { force: true });
    rmSync(eventsFile, { force: true });
  });

  it('completes each of 2,000 jobs exactly once, and GetJob and ListJobs agree they are COMPLETED', async () => {
    const ids = await enqueueRecords(client, queue, 2000);
    expect(new Set(ids).size).toBe(2000);

    await eventually(async () => (await listIds(client, queue, pb.JobState.JOB_STATE_COMPLETED)).length === 2000, 60_000, '2,000 COMPLETED jobs');
    const lines = readLines(doneFile);
    const counts = tally(lines);
    expect([...counts].filter(([, n]) => n > 1)).toEqual([]);
    expect(lines).toHaveLength(2000);
    expect([...counts.keys()].sort()).toEqual([...ids].sort());

    const completed = await listIds(client, queue, pb.JobState.JOB_STATE_COMPLETED);
    expect(completed.sort()).toEqual([...ids].sort());
    for (const state of [pb.JobState.JOB_STATE_WAITING, pb.JobState.JOB_STATE_ACTIVE, pb.JobState.JOB_STATE_FAILED, pb.JobState.JOB_STATE_DELAYED]) {
      expect(await listIds(client, queue, state)).toEqual([]);
    }
    // GetJob, one job at a time, 50 calls in flight.
    const notCompleted: string[] = [];
    for (let i = 0; i < ids.length; i += 50) {
      const jobs = await Promise.all(ids.slice(i, i + 50).map((id) => client.getJob(queue, id)));
      for (const j of jobs) if (j.state !== pb.JobState.JOB_STATE_COMPLETED || j.attemptsMade !== 1) notCompleted.push(`${j.id}:${pb.jobStateToJSON(j.state)}:${j.attemptsMade}`);
    }
    expect(notCompleted).toEqual([]);

    // Both replicas took part.
    const { done } = readEvents(eventsFile);
    for (const p of pools) expect(done.get(p.pid)?.length ?? 0).toBeGreaterThan(0);
  }, 120_000);
});

describe('a worker-pool replica killed while its jobs run', () => {
  /** ~3 s of work for two replicas of 5 slots: the victim is surely mid-job when it is killed. */
  const JOBS = 100;
  const queue = `crash-${randomUUID().slice(0, 8)}`;
  const doneFile = join(tmpdir(), `jobmesh-done-${randomUUID()}.txt`);
  const eventsFile = join(tmpdir(), `jobmesh-events-${randomUUID()}.txt`);
  let client: JobmeshClient;
  let victim: ServiceProcess;
  let survivor: ServiceProcess;

  beforeAll(async () => {
    const c = await startCluster();
    client = c.client;
    await client.createQueue({ queue: { name: queue, concurrency: 5 } });
    // Short locks, so a dead replica's jobs are found stalled within seconds, not a minute.
    const env = {
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: c.prefix,
      JOBMESH_PROCESSORS: RECORD_PROCESSOR,
      JOBMESH_TEST_DONE_FILE: doneFile,
      JOBMESH_TEST_EVENTS_FILE: eventsFile,
      JOBMESH_LOCK_DURATION: '2s',
      JOBMESH_STALLED_INTERVAL: '1s',
    };
    [victim, survivor] = await Promise.all([startService('worker-pool', env, dir), startService('worker-pool', env, dir)]);
  });

  afterAll(() => {
    client?.close();
    rmSync(doneFile, { force: true });
    rmSync(eventsFile, { force: true });
  });

  it('completes every job: the survivor recovers the killed replica’s active jobs, and only those may run twice', async () => {
    const ids = await enqueueRecords(client, queue, JOBS, { workMs: 300 });

    // SIGKILL the victim while at least 3 of its jobs are running (started, not finished).
    await eventually(
      () => {
        const { started, done } = readEvents(eventsFile);
        const finished = new Set(done.get(victim.pid));
        return (started.get(victim.pid) ?? []).filter((id) => !finished.has(id)).length >= 3;
      },
      20_000,
      'the victim to be running 3 jobs',
      5,
    );
    victim.child.kill('SIGKILL');
    await victim.exited;
    const atKill = readEvents(eventsFile);
    const startedByVictim = new Set(atKill.started.get(victim.pid));
    const finishedByVictim = new Set(atKill.done.get(victim.pid));
    const interrupted = [...startedByVictim].filter((id) => !finishedByVictim.has(id));
    expect(interrupted.length).toBeGreaterThan(0);

    // Recovery takes the lock's expiry (2 s) plus up to two stalled checks (1 s each); 30 s is ample.
    const states = await eventually(
      async () => {
        const jobs = await Promise.all(ids.map((id) => client.getJob(queue, id)));
        return jobs.every((j) => j.state === pb.JobState.JOB_STATE_COMPLETED) && jobs;
      },
      30_000,
      'every job to be COMPLETED after the kill',
      100,
    );
    expect(states).toHaveLength(JOBS);

    const counts = tally(readLines(doneFile));
    expect([...counts.keys()].sort()).toEqual([...ids].sort());
    // At-least-once: a job is recorded twice only if its worker appended "done" and was killed
    // before BullMQ stored the completion (the ack); the lock then expires and another worker
    // runs the job again. The survivor was never interrupted and its locks were renewed, so
    // only jobs the victim had started can appear twice.
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    expect(twice.filter((id) => !startedByVictim.has(id))).toEqual([]);
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(2);

    // The jobs the victim was running when it died were finished by the survivor.
    const finishedBySurvivor = new Set(readEvents(eventsFile).done.get(survivor.pid));
    expect(interrupted.filter((id) => !finishedBySurvivor.has(id))).toEqual([]);
    expect(survivor.running()).toBe(true);
  }, 90_000);
});

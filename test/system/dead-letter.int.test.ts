// The scheduler, a worker-pool and the dead-letter service as separate OS processes on one
// redis-server: every job that fails for good becomes exactly one dead letter with the right
// category, whether the dead-letter service runs while the jobs fail, is down then and starts
// later, or is SIGKILLed half-way through capturing them and restarted.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import { DeadLetterClient, JobmeshClient } from '@jobmesh/sdk';
import { bullKey, connectRedis, type RedisClient, type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, FAILING_PROCESSOR, killAll, type ServiceProcess, spawnService, startService, stopService } from './fixtures/services';

/** What each test enqueues: 500 `fail` (attempts 2), 500 `fatal` (attempts 3), 100 `ghost` (attempts 3, no processor). */
const FAIL = 500;
const FATAL = 500;
const GHOST = 100;
const TOTAL = FAIL + FATAL + GHOST;
/** The category each job name must end up in. */
const CATEGORY_OF: Record<string, string> = { fail: 'EXHAUSTED_RETRIES', fatal: 'UNRECOVERABLE', ghost: 'PROCESSOR_NOT_FOUND' };
const EXPECTED_COUNTS = { EXHAUSTED_RETRIES: FAIL, UNRECOVERABLE: FATAL, PROCESSOR_NOT_FOUND: GHOST };
const tinyBackoff = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 10_000_000 } };

let redis: RedisHandle;
let rc: RedisClient;
let dir: string;
let prefix: string;
let scheduler: ServiceProcess;
let pool: ServiceProcess;
let client: JobmeshClient;
/** Dead-letter processes and clients of the current test; afterEach kills and closes them. */
let dlqs: ServiceProcess[] = [];
let dlClients: DeadLetterClient[] = [];

beforeAll(async () => {
  redis = await startRedis({ own: true });
  rc = connectRedis(redis.url, { maxRetriesPerRequest: 3 });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-dlq-'));
  prefix = `sys-${randomUUID().slice(0, 8)}`;
  scheduler = await startService('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix }, dir);
  client = new JobmeshClient({ address: scheduler.grpcAddress });
  pool = await startService('worker-pool', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_PROCESSORS: FAILING_PROCESSOR }, dir);
});

afterEach(async () => {
  for (const c of dlClients) c.close();
  dlClients = [];
  await Promise.all(dlqs.map((d) => stopService(d, 'SIGKILL')));
  dlqs = [];
});

afterAll(async () => {
  client?.close();
  await killAll();
  await rc?.quit().catch(() => rc.disconnect());
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function dlqEnv(): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    JOBMESH_REDIS_PREFIX: prefix,
    JOBMESH_DLQ_SWEEP_INTERVAL: '500ms',
    JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress,
    JOBMESH_SHUTDOWN_GRACE: '2s',
  };
}

/** Spawns a dead-letter process without waiting for it (its first sweep runs before it listens). */
function spawnDeadLetter(): { svc: ServiceProcess; ready: Promise<ServiceProcess> } {
  const spawned = spawnService('dead-letter', dlqEnv(), dir);
  dlqs.push(spawned.svc);
  return spawned;
}

/** Starts a dead-letter process and a client of it. */
async function startDeadLetter(): Promise<{ svc: ServiceProcess; dl: DeadLetterClient }> {
  const svc = await spawnDeadLetter().ready;
  const dl = DeadLetterClient.connect(svc.grpcAddress);
  dlClients.push(dl);
  return { svc, dl };
}

/** Creates a queue and resolves once the worker-pool process serves it. */
async function createQueue(tag: string): Promise<string> {
  const queue = `${tag}-${randomUUID().slice(0, 8)}`;
  // processor_wait 0: the ghosts below are dead-lettered at once rather than wait for a processor.
  await client.createQueue({ queue: { name: queue, concurrency: 50, processorWait: { seconds: 0, nanos: 0 } } });
  await eventually(() => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === queue), 10_000, `the worker-pool to serve ${queue}`);
  return queue;
}

/** Enqueues the 1,100 jobs (the three kinds interleaved) in batches of 500; returns job id → name. */
async function enqueueFailures(queue: string): Promise<Map<string, string>> {
  const specs = [
    ...Array.from({ length: FAIL }, (_, i) => ({ name: 'fail', data: { i }, options: { attempts: 2, backoff: tinyBackoff } })),
    ...Array.from({ length: FATAL }, (_, i) => ({ name: 'fatal', data: { i }, options: { attempts: 3 } })),
    ...Array.from({ length: GHOST }, (_, i) => ({ name: 'ghost', data: { i }, options: { attempts: 3 } })),
  ];
  // Interleave, so every batch mixes the kinds.
  specs.sort((a, b) => a.data.i - b.data.i);
  const names = new Map<string, string>();
  for (let n = 0; n < specs.length; n += 500) {
    const batch = specs.slice(n, n + 500);
    const res = await client.enqueueJobs({ queue, jobs: batch });
    expect(res.jobs).toHaveLength(batch.length);
    res.jobs.forEach((j, i) => names.set(j.id, batch[i]!.name));
  }
  expect(names.size).toBe(TOTAL);
  return names;
}

/** BullMQ's failed set of `queue`. */
const failedKey = (queue: string): string => bullKey(prefix, queue, 'failed');
/** Jobmesh's Redis keys under this file's prefix. */
const keys = (): Keys => new Keys(prefix);

/** Every dead letter of `queue`, page by page. */
async function listAll(dl: DeadLetterClient, queue: string): Promise<pb.DeadLetter[]> {
  const all: pb.DeadLetter[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await dl.list({ filter: { queue }, pageSize: 250, pageToken });
    all.push(...page.deadLetters);
    pageToken = page.nextPageToken;
    if (++pages > 100) throw new Error(`ListDeadLetters of ${queue} still has pages after ${all.length} dead letters`);
  } while (pageToken);
  return all;
}

const byCategory = (r: pb.GetDeadLetterStatsResponse): Record<string, number> => Object.fromEntries(r.counts.map((c) => [c.category, c.count]));

/** Waits until the dead-letter service counts at least `TOTAL` dead letters of `queue`. */
async function waitForDeadLetters(dl: DeadLetterClient, queue: string): Promise<void> {
  await eventually(async () => (await dl.stats(queue)).total >= TOTAL, 30_000, `${TOTAL} dead letters of ${queue}`, 50);
}

/** Everything the dead letters of a run must satisfy: one per job, right category, full errors. */
async function expectExactlyTheDeadLetters(dl: DeadLetterClient, queue: string, names: Map<string, string>): Promise<void> {
  const stats = await dl.stats(queue);
  expect(stats.total).toBe(TOTAL);
  expect(byCategory(stats)).toEqual(EXPECTED_COUNTS);
  expect(stats.counts.every((c) => c.queue === queue)).toBe(true);

  const all = await listAll(dl, queue);
  expect(all).toHaveLength(TOTAL);
  expect(new Set(all.map((d) => d.id)).size).toBe(TOTAL);
  // Each job exactly once, and only the jobs enqueued here.
  const perJob = new Map<string, number>();
  for (const d of all) perJob.set(d.job!.id, (perJob.get(d.job!.id) ?? 0) + 1);
  expect([...perJob].filter(([, n]) => n !== 1)).toEqual([]);
  expect([...perJob.keys()].sort()).toEqual([...names.keys()].sort());

  const wrong: string[] = [];
  for (const d of all) {
    const job = d.job!;
    const name = names.get(job.id);
    if (job.queue !== queue || job.name !== name || d.category !== CATEGORY_OF[name] || d.id !== `${queue}:${job.id}:${job.attemptsMade}`) {
      wrong.push(`${d.id} name=${job.name} (enqueued as ${name}) category=${d.category} attempts=${job.attemptsMade}`);
    }
  }
  expect(wrong).toEqual([]);

  // Attempts and errors, per kind.
  const attemptsOf = (name: string): string[] => [...new Set(all.filter((d) => d.job!.name === name).map((d) => `${d.job!.attemptsMade}/${d.errors.length}`))];
  expect(attemptsOf('fail')).toEqual(['2/2']);
  expect(attemptsOf('fatal')).toEqual(['1/1']);
  expect(attemptsOf('ghost')).toEqual(['1/1']);
  const fail = all.find((d) => d.job!.name === 'fail')!;
  expect(fail.errors.map((e) => [e.attempt, e.errorName, e.message])).toEqual([
    [1, 'Error', 'boom'],
    [2, 'Error', 'boom'],
  ]);
  expect(fail.job!.failureReason).toBe('boom');
  const fatal = all.find((d) => d.job!.name === 'fatal')!;
  expect(fatal.errors.map((e) => [e.attempt, e.errorName, e.message])).toEqual([[1, 'UnrecoverableError', 'bad input']]);
  const ghost = all.find((d) => d.job!.name === 'ghost')!;
  expect(ghost.errors).toHaveLength(1);
  expect(ghost.errors[0]!.message).toMatch(/^PROCESSOR_NOT_FOUND: no processor for job "ghost"/);
  expect(ghost.severity).toBe(pb.Severity.SEVERITY_CRITICAL);

  // Whatever BullMQ's failed set still holds (the queue's retention may trim it) has a dead letter.
  const failed = await rc.zrange(failedKey(queue), 0, -1);
  expect(failed.filter((id) => !perJob.has(id))).toEqual([]);

  // Through the scheduler process, every one of them reads DEAD_LETTERED.
  const states = new Map<string, pb.JobState>();
  let pageToken = '';
  do {
    const page = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_DEAD_LETTERED], pageSize: 1000, pageToken });
    for (const j of page.jobs) states.set(j.id, j.state);
    pageToken = page.nextPageToken;
  } while (pageToken);
  expect([...states.keys()].sort()).toEqual([...names.keys()].sort());
  expect((await client.getJob(queue, fail.job!.id)).state).toBe(pb.JobState.JOB_STATE_DEAD_LETTERED);
  expect((await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_FAILED], pageSize: 50 })).jobs.every((j) => j.state === pb.JobState.JOB_STATE_DEAD_LETTERED)).toBe(true);
}

describe('dead-letter capture with scheduler, worker-pool and dead-letter as separate processes', () => {
  it('captures each of 1,100 jobs that fail for good exactly once, with its category, while the service runs', async () => {
    const { dl } = await startDeadLetter();
    const queue = await createQueue('dlq-live');
    const names = await enqueueFailures(queue);

    await waitForDeadLetters(dl, queue);
    await expectExactlyTheDeadLetters(dl, queue, names);
  }, 60_000);

  it('captures the jobs that failed while the service was down once it starts', async () => {
    // Up, then stopped gracefully: it must exit 0 and capture nothing after.
    const first = await startDeadLetter();
    expect(await stopService(first.svc, 'SIGTERM')).toEqual({ code: 0, signal: null });

    const queue = await createQueue('dlq-down');
    const names = await enqueueFailures(queue);
    await eventually(async () => (await rc.zcard(failedKey(queue))) >= TOTAL, 30_000, `BullMQ to fail all ${TOTAL} jobs of ${queue}`, 50);
    expect(await rc.zcard(failedKey(queue))).toBe(TOTAL);
    expect((await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_FAILED], pageSize: 1 })).jobs).toHaveLength(1);
    // Nothing captured them: no dead-letter process ran.
    expect(await rc.zcard(keys().deadLetterQueueIndex(queue))).toBe(0);

    const { dl } = await startDeadLetter();
    await waitForDeadLetters(dl, queue);
    await expectExactlyTheDeadLetters(dl, queue, names);
  }, 60_000);

  it('captures each job exactly once when the service is SIGKILLed half-way through capture and restarted', async () => {
    const queue = await createQueue('dlq-kill');
    const names = await enqueueFailures(queue);
    await eventually(async () => (await rc.zcard(failedKey(queue))) >= TOTAL, 30_000, `BullMQ to fail all ${TOTAL} jobs of ${queue}`, 50);

    // The first sweep captures the backlog 100 jobs at a time; watch its progress in the queue's
    // dead-letter index and SIGKILL the process once it stored half of them.
    const victim = spawnDeadLetter();
    victim.ready.catch(() => undefined); // it may be killed before it logged that it listens
    const index = keys().deadLetterQueueIndex(queue);
    await eventually(async () => (await rc.zcard(index)) >= TOTAL / 2, 20_000, `the first sweep to capture ${TOTAL / 2} dead letters`, 2);
    expect(await stopService(victim.svc, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    // It died half-way: not every job was captured.
    expect(await rc.zcard(index)).toBeLessThan(TOTAL);

    const { dl } = await startDeadLetter();
    await waitForDeadLetters(dl, queue);
    await expectExactlyTheDeadLetters(dl, queue, names);
    // Each capture announced itself once on the job's event stream, none lost to the kill: the
    // event is written by the same script that stores the dead letter.
    const events = await rc.xrange(keys().events(queue), '-', '+');
    expect(events.filter(([, f]) => f[1] === 'dead-lettered')).toHaveLength(TOTAL);
  }, 60_000);
});

describe('replay with scheduler, worker-pool and dead-letter as separate processes', () => {
  it('replays each dead letter exactly once when the dead-letter process is SIGKILLed half-way through a replay and the replay is run again', async () => {
    const N = 1000;
    const queue = await createQueue('dlq-replay-kill');
    await client.enqueueJobs({ queue, jobs: Array.from({ length: N }, (_, i) => ({ name: 'fatal', data: { i }, options: { attempts: 1 } })) });
    const first = await startDeadLetter();
    await eventually(async () => (await first.dl.stats(queue)).total === N, 30_000, `${N} dead letters of ${queue}`, 50);
    const target = `dlq-replay-target-${randomUUID().slice(0, 8)}`;
    await client.createQueue({ queue: { name: target, paused: true } });
    const jobsOnTarget = async (): Promise<Map<string, number>> => {
      const perDeadLetter = new Map<string, number>();
      let pageToken = '';
      do {
        const page = await client.listJobs({ queue: target, pageSize: 1000, pageToken });
        for (const j of page.jobs) perDeadLetter.set(j.options!.replayOf!, (perDeadLetter.get(j.options!.replayOf!) ?? 0) + 1);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return perDeadLetter;
    };

    // No ack of any of it reaches this client: the process dies in the middle of the call.
    const req = { filter: { queue }, targetQueue: target, maxPerSecond: 10_000 };
    const dying = first.dl.replay(req, { timeoutMs: Infinity }).catch((e: Error) => e);
    const waiting = bullKey(prefix, target, 'wait');
    await eventually(async () => (await rc.llen(waiting)) >= N / 2, 30_000, `half the replays to be enqueued`, 2);
    expect(await stopService(first.svc, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    // UNAVAILABLE: the server went away (and the client's retries found nobody there).
    expect(((await dying) as { code?: number }).code).toBe(14);
    const before = await jobsOnTarget();
    expect(before.size).toBeGreaterThanOrEqual(N / 2);
    expect(before.size).toBeLessThan(N);

    const second = await startDeadLetter();
    const res = await second.dl.replay(req, { timeoutMs: Infinity });
    // Those the first process recorded are skipped; one it enqueued but did not record yet comes
    // back from the scheduler under its idempotency key rather than as a second job.
    expect(res.skippedReplayed + res.replayed.length).toBe(N);
    expect(res.replayed.filter((r) => r.deduplicated).length).toBeLessThanOrEqual(1);
    const after = await jobsOnTarget();
    expect(after.size).toBe(N);
    expect([...after.values()].filter((n) => n !== 1)).toEqual([]);
  }, 120_000);
});

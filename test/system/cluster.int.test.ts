// Jobmesh on a Redis Cluster: a local cluster of three masters (redis-server --cluster-enabled,
// joined by redis-cli --cluster create), and the scheduler, a worker-pool, the dead-letter service
// and the monitor as separate OS processes configured with REDIS_CLUSTER_NODES. Each queue's keys
// share one hash slot of their own, so queues spread over the masters; every feature below works
// there, and a flow across queues (which Redis Cluster cannot write in one transaction) is refused
// with FAILED_PRECONDITION, writing nothing.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { keda } from '@jobmesh/contracts';
import { checkMaxmemoryPolicy, closeConnection, createRedis, Keys } from '@jobmesh/queue';
import { silentLogger } from '@jobmesh/telemetry';
import { DeadLetterClient, defineProcessor, JobmeshClient, MonitorClient, RemoteWorker } from '@jobmesh/sdk';
import { connectRedis, type RedisClient, type RedisClusterHandle, startRedisCluster } from '@jobmesh/testing';
import { eventually, FAILING_PROCESSOR, killAll, RECORD_PROCESSOR, type ServiceProcess, spawnService, startService } from './fixtures/services';

const FLAKY_PROCESSOR = join(__dirname, 'fixtures', 'flaky-processor.js');
const FANOUT_PROCESSOR = join(__dirname, 'fixtures', 'fanout-processor.js');
const tinyBackoff = { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 10_000_000 } };

let cluster: RedisClusterHandle;
let dir: string;
const prefix = 'jmc';
const keys = new Keys(prefix, true);
let scheduler: ServiceProcess;
let pool: ServiceProcess;
/** A second worker-pool replica, the only one that serves "flaky": the first hands those to it. */
let flakyPool: ServiceProcess;
let dlq: ServiceProcess;
let monitorSvc: ServiceProcess;
let client: JobmeshClient;
let dl: DeadLetterClient;
let monitor: MonitorClient;
/** Two queue names whose slots are on different masters (found by asking the cluster). */
let spread: [string, string];

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3 });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-cluster-'));
  const env = { REDIS_CLUSTER_NODES: cluster.nodes, JOBMESH_REDIS_PREFIX: prefix };
  scheduler = await startService('scheduler', env, dir);
  pool = await startService('worker-pool', { ...env, JOBMESH_PROCESSORS: [RECORD_PROCESSOR, FAILING_PROCESSOR, FANOUT_PROCESSOR].join(',') }, dir);
  flakyPool = await startService('worker-pool', { ...env, JOBMESH_PROCESSORS: FLAKY_PROCESSOR }, dir);
  dlq = await startService('dead-letter', { ...env, JOBMESH_DLQ_SWEEP_INTERVAL: '500ms', JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress }, dir);
  monitorSvc = await startService(
    'monitor',
    { ...env, JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress, JOBMESH_WORKER_POOL_ADDRESS: pool.grpcAddress, JOBMESH_DEAD_LETTER_ADDRESS: dlq.grpcAddress },
    dir,
  );
  client = new JobmeshClient({ address: scheduler.grpcAddress });
  dl = DeadLetterClient.connect(dlq.grpcAddress);
  monitor = MonitorClient.connect(monitorSvc.grpcAddress);
  spread = await namesOnTwoMasters();
}, 90_000);

afterAll(async () => {
  client?.close();
  dl?.close();
  monitor?.close();
  await killAll();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The master port holding `queue`'s keys (its BullMQ meta hash stands for them all). */
const masterOf = (queue: string): Promise<number> => cluster.portOfKey(`${keys.queuePrefix(queue)}:${queue}:meta`);

/** Two fresh queue names whose hash slots are on different masters. */
async function namesOnTwoMasters(): Promise<[string, string]> {
  const first = `q-${randomUUID().slice(0, 8)}`;
  const firstPort = await masterOf(first);
  for (;;) {
    const second = `q-${randomUUID().slice(0, 8)}`;
    if ((await masterOf(second)) !== firstPort) return [first, second];
  }
}

/** Creates a queue and resolves once the worker-pool serves it. */
async function createQueue(name: string, extra: Partial<pb.QueueConfig> = {}): Promise<string> {
  await client.createQueue({ queue: { name, concurrency: 10, processorWait: { seconds: 0, nanos: 0 }, ...extra } });
  await eventually(() => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === name), 15_000, `the worker-pool to serve ${name}`);
  // Both replicas serve every queue, and each publishes what it serves just after saying so. Until
  // both have, a job the other replica has the processor for may be failed as unserved
  // (processor_wait is 0 here): CI saw a "fail" job end PROCESSOR_NOT_FOUND that way.
  const port = await masterOf(name);
  await eventually(
    async () => new Set(Object.keys(await onNode(port, (r) => r.hgetall(keys.served(name)))).map((f) => f.slice(0, f.lastIndexOf('|')))).size >= 2,
    15_000,
    `both worker-pool replicas to publish what they serve on ${name}`,
  );
  return name;
}

const fresh = (tag: string): string => `${tag}-${randomUUID().slice(0, 8)}`;

/** A plain (non-cluster) connection to one master, to see which node holds a key. */
async function onNode<T>(port: number, fn: (r: RedisClient) => Promise<T>): Promise<T> {
  const r = connectRedis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1 });
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

async function waitState(queue: string, id: string, state: pb.JobState, what: string): Promise<pb.Job> {
  return eventually(async () => {
    const job = await client.getJob(queue, id);
    return job.state === state ? job : undefined;
  }, 20_000, what);
}

describe('Jobmesh on a 3-master Redis Cluster', () => {
  it("keeps each queue's keys in one slot of its own, so queues spread over the masters", async () => {
    const [a, b] = spread;
    await createQueue(a);
    await createQueue(b);
    const ids: string[] = [];
    for (const queue of spread) ids.push((await client.enqueueJob({ queue, job: { name: 'record', data: { n: 1 } } })).job!.id);
    const ports = await Promise.all(spread.map(masterOf));
    expect(new Set(ports).size).toBe(2);
    // Each job's hash is on its queue's master and on no other node.
    for (const [i, queue] of spread.entries()) {
      const jobKey = `${keys.queuePrefix(queue)}:${queue}:${ids[i]}`;
      for (const port of cluster.ports) {
        // A key of another slot is answered with a MOVED redirect, not read: ask with EXISTS
        // through the owning node only, and check the others do not own the slot.
        if (port === ports[i]) expect(await onNode(port, (r) => r.exists(jobKey))).toBe(1);
        else await expect(onNode(port, (r) => r.exists(jobKey))).rejects.toThrow(/MOVED/);
      }
    }
    for (const [i, queue] of spread.entries()) await waitState(queue, ids[i]!, pb.JobState.JOB_STATE_COMPLETED, `job ${ids[i]} of ${queue} to complete`);
  }, 60_000);

  it('enqueues single, bulk and keyed jobs, runs them, and answers GetJob, ListJobs and WatchJob', async () => {
    const queue = await createQueue(fresh('enq'));
    const single = await client.enqueueJob({ queue, job: { name: 'record', data: { workMs: 300 } } });
    const watched: pb.JobEventType[] = [];
    const watch = (async () => {
      for await (const e of client.watchJob(queue, single.job!.id)) watched.push(e.type);
    })();
    const bulk = await client.enqueueJobs({ queue, jobs: Array.from({ length: 50 }, (_, i) => ({ name: 'record', data: { i } })) });
    expect(bulk.jobs).toHaveLength(50);
    const key = `key-${randomUUID()}`;
    const keyed = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { idempotencyKey: key } } });
    const again = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { idempotencyKey: key } } });
    expect(again.deduplicated).toBe(true);
    expect(again.job!.id).toBe(keyed.job!.id);
    const byId = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { jobId: 'chosen-1' } } });
    const byIdAgain = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { jobId: 'chosen-1' } } });
    expect(byId.job!.id).toBe('chosen-1');
    expect(byIdAgain.deduplicated).toBe(true);

    await watch;
    expect(watched).toContain(pb.JobEventType.JOB_EVENT_TYPE_COMPLETED);
    const all = [single.job!.id, ...bulk.jobs.map((j) => j.id), keyed.job!.id, 'chosen-1'];
    await eventually(async () => {
      const page = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_COMPLETED], pageSize: 1000 });
      return page.jobs.length === all.length;
    }, 30_000, 'every job to complete');
    const page = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_COMPLETED], pageSize: 1000 });
    expect(new Set(page.jobs.map((j) => j.id))).toEqual(new Set(all));
    const got = await client.getJob(queue, single.job!.id);
    expect(got.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(got.result).toMatchObject({ pid: pool.pid });
  }, 60_000);

  it('retries failing attempts with backoff until they complete, on the replica that serves them', async () => {
    // Both replicas serve the queue; only the second runs "flaky". Jobs the first fetches are
    // handed to the second (hand-off set, served hash, wake-up channel), without using an attempt.
    const queue = await createQueue(fresh('retry'));
    await eventually(() => flakyPool.logs().some((l) => l.msg === 'serving queue' && l.queue === queue), 15_000, `the second replica to serve ${queue}`);
    const { jobs } = await client.enqueueJobs({ queue, jobs: Array.from({ length: 8 }, () => ({ name: 'flaky', data: {}, options: { attempts: 3, backoff: tinyBackoff } })) });
    for (const j of jobs) {
      const done = await waitState(queue, j.id, pb.JobState.JOB_STATE_COMPLETED, `flaky job ${j.id} to complete on its third attempt`);
      expect(done.attemptsMade).toBe(3);
      expect(done.result).toEqual({ attempt: 3 });
    }
    // The first replica did fetch some and hand them over: its 'requeued' events are on the stream.
    const stream = await onNode(await masterOf(queue), (r) => r.xrange(keys.events(queue), '-', '+'));
    const handedOff = stream.filter(([, f]) => f[f.indexOf('event') + 1] === 'requeued' && f.includes('a replica serves its name'));
    expect(handedOff.length).toBeGreaterThan(0);
  }, 60_000);

  it('dead-letters a job that fails for good, lists it, and replays it', async () => {
    const queue = await createQueue(fresh('dlq'));
    const { job } = await client.enqueueJob({ queue, job: { name: 'fail', data: { n: 7 }, options: { attempts: 2, backoff: tinyBackoff } } });
    await waitState(queue, job!.id, pb.JobState.JOB_STATE_DEAD_LETTERED, 'the job to be dead-lettered');
    // The 'dead-lettered' event is written in the queue's slot after the dead letter is stored in
    // the dead letters' slot (two steps on a cluster): it is on the queue's event stream, once.
    const port = await masterOf(queue);
    const stream = await onNode(port, (r) => r.xrange(keys.events(queue), '-', '+'));
    const deadLettered = stream.filter(([, f]) => f.includes('dead-lettered') && f[f.indexOf('jobId') + 1] === job!.id);
    expect(deadLettered).toHaveLength(1);
    const listed = await eventually(async () => {
      const res = await dl.list({ filter: { queue } });
      return res.deadLetters.length === 1 ? res.deadLetters : undefined;
    }, 20_000, 'the dead letter to be listed');
    expect(listed[0]!.category).toBe('EXHAUSTED_RETRIES');
    expect(listed[0]!.job?.id).toBe(job!.id);
    // The dead letters' keys share one slot of their own; the queue index is among them.
    const stats = await dl.stats(queue);
    expect(stats.total).toBe(1);

    const replayed = await dl.replay({ ids: [listed[0]!.id], dataPatch: { replayed: true } });
    expect(replayed.replayed).toHaveLength(1);
    const record = await eventually(async () => {
      const d = await dl.get(listed[0]!.id);
      return d.replays.length === 1 ? d : undefined;
    }, 20_000, 'the replay to be recorded on the dead letter');
    const replay = await client.getJob(queue, record.replays[0]!.job!.id);
    expect(replay.data).toMatchObject({ n: 7, replayed: true });

    // Quarantine and purge (the dead letters' scripts route by the index's slot).
    expect((await dl.quarantine({ ids: [listed[0]!.id], quarantined: true, reason: 'look later' })).updated).toBe(1);
    expect((await dl.get(listed[0]!.id)).quarantined).toBe(true);
    expect((await dl.purge({ ids: [listed[0]!.id] })).purged).toBe(1);
    // The replayed job fails for good too and becomes a dead letter of its own; only it is left.
    const left = await eventually(async () => {
      const res = await dl.list({ filter: { queue } });
      return res.deadLetters.length === 1 && res.deadLetters[0]!.id !== listed[0]!.id ? res.deadLetters : undefined;
    }, 20_000, 'only the replay\'s own dead letter to be left');
    expect(left[0]!.job?.id).toBe(replay.id);
  }, 60_000);

  it('streams new dead letters to WatchDeadLetters (pub/sub from the dead letters\' slot)', async () => {
    const queue = await createQueue(fresh('dlwatch'));
    const stop = new AbortController();
    const got: pb.DeadLetter[] = [];
    const watching = (async () => {
      for await (const d of dl.watch({ queue }, { signal: stop.signal })) got.push(d);
    })().catch(() => undefined); // ends with CANCELLED when stopped
    try {
      // The stream is live once it reports something; until then each round dead-letters one more.
      const ids: string[] = [];
      await eventually(async () => {
        const { job } = await client.enqueueJob({ queue, job: { name: 'fail', data: {}, options: { attempts: 1 } } });
        ids.push(job!.id);
        await waitState(queue, job!.id, pb.JobState.JOB_STATE_DEAD_LETTERED, `job ${job!.id} to be dead-lettered`);
        return got.length > 0;
      }, 30_000, 'the watch to report a dead letter');
      const { job } = await client.enqueueJob({ queue, job: { name: 'fail', data: {}, options: { attempts: 1 } } });
      await eventually(() => got.some((d) => d.job?.id === job!.id), 20_000, 'the next dead letter to be streamed');
      expect(got.every((d) => d.job?.queue === queue && [...ids, job!.id].includes(d.job.id))).toBe(true);
    } finally {
      stop.abort();
      await watching;
    }
  }, 60_000);

  it('cancels a delayed and an active job, runs a schedule, and serves a remote worker over Connect', async () => {
    // A job of a name nothing serves waits for a processor (processor_wait) until the remote worker comes.
    const queue = await createQueue(fresh('misc'), { processorWait: { seconds: 120, nanos: 0 } });
    const { job } = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { delay: { seconds: 60, nanos: 0 } } } });
    await client.cancelJob(queue, job!.id, 'not needed');
    expect((await client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_CANCELLED);
    // An active job hears its cancel over the cancel channel (pub/sub across the cluster).
    const { job: long } = await client.enqueueJob({ queue, job: { name: 'record', data: { workMs: 60_000 } } });
    await waitState(queue, long!.id, pb.JobState.JOB_STATE_ACTIVE, 'the long job to run');
    await client.cancelJob(queue, long!.id, 'stop it');
    await waitState(queue, long!.id, pb.JobState.JOB_STATE_CANCELLED, 'the active job to be cancelled');

    await client.upsertSchedule({ id: 'tick', queue, every: { seconds: 1, nanos: 0 }, template: { name: 'record', data: { scheduled: true } } });
    await eventually(async () => {
      const page = await client.listJobs({ queue, states: [pb.JobState.JOB_STATE_COMPLETED], pageSize: 100 });
      return page.jobs.filter((j) => j.data?.scheduled === true).length >= 2;
    }, 30_000, 'two scheduled jobs to complete');
    await client.deleteSchedule(queue, 'tick');

    const { job: early } = await client.enqueueJob({ queue, job: { name: 'remote', data: {} } });
    await eventually(async () => (await monitor.queueStats(queue)).counts?.waitingForProcessor === 1, 20_000, 'the remote job to wait for a processor');
    const seen: string[] = [];
    const worker = new RemoteWorker({
      address: pool.grpcAddress,
      processors: [defineProcessor({ queue, name: 'remote', process: async (j) => (seen.push(j.id), { remote: true }) })],
    });
    await worker.start();
    try {
      const { job: r } = await client.enqueueJob({ queue, job: { name: 'remote', data: {} } });
      const done = await waitState(queue, r!.id, pb.JobState.JOB_STATE_COMPLETED, 'the remote worker to complete its job');
      expect(done.result).toEqual({ remote: true });
      await waitState(queue, early!.id, pb.JobState.JOB_STATE_COMPLETED, 'the job that waited for a processor to run on the remote worker');
      expect(seen.sort()).toEqual([early!.id, r!.id].sort());
    } finally {
      await worker.stop({ graceMs: 1000 });
    }
  }, 60_000);

  it('holds jobs of a paused queue until it is resumed', async () => {
    const queue = await createQueue(fresh('pause'));
    await client.pauseQueue(queue);
    const { job } = await client.enqueueJob({ queue, job: { name: 'record', data: {} } });
    const stats = await eventually(async () => {
      const st = await monitor.queueStats(queue);
      return st.paused ? st : undefined;
    }, 20_000, 'the monitor to see the queue paused');
    expect(stats.counts?.waiting).toBe(1);
    expect((await client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_WAITING);
    await client.resumeQueue(queue);
    await waitState(queue, job!.id, pb.JobState.JOB_STATE_COMPLETED, 'the job to run once the queue is resumed');
  }, 60_000);

  it("applies a queue's rate limit (BullMQ's limiter key, in the queue's slot)", async () => {
    const queue = await createQueue(fresh('rate'), { rateLimit: { max: 2, duration: { seconds: 1, nanos: 0 } } });
    const { jobs } = await client.enqueueJobs({ queue, jobs: Array.from({ length: 6 }, () => ({ name: 'record', data: { workMs: 1 } })) });
    const done = await Promise.all(jobs.map((j) => waitState(queue, j.id, pb.JobState.JOB_STATE_COMPLETED, `rate-limited job ${j.id} to complete`)));
    // 2 jobs a second: the six take at least two more windows after the first (load only stretches it).
    const starts = done.map((j) => j.processedAt!.getTime()).sort((x, y) => x - y);
    expect(starts[5]! - starts[0]!).toBeGreaterThanOrEqual(1500);
  }, 60_000);

  it('refuses JOBMESH_DURABLE_ACK with REDIS_CLUSTER_NODES at start-up, saying why', async () => {
    const { svc, ready } = spawnService('scheduler', { REDIS_CLUSTER_NODES: cluster.nodes, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_DURABLE_ACK: 'replicas:1' }, dir);
    await expect(ready).rejects.toThrow(/exited/);
    expect((await svc.exited).code).not.toBe(0);
    expect(svc.output()).toMatch(/JOBMESH_DURABLE_ACK is not supported with REDIS_CLUSTER_NODES/);
  }, 60_000);

  it("deletes a queue with its Jobmesh keys, found on the queue's master", async () => {
    const queue = await createQueue(fresh('del'));
    const key = `idem-${randomUUID()}`;
    const { job } = await client.enqueueJob({ queue, job: { name: 'record', data: {}, options: { idempotencyKey: key } } });
    await waitState(queue, job!.id, pb.JobState.JOB_STATE_COMPLETED, 'the keyed job to complete');
    const port = await masterOf(queue);
    // Left out, as on one server: BullMQ's meta and limiter keys, which the worker-pool's Worker
    // may write again until it hears of the deletion and stops, and the 10-second stats slots,
    // which a replica's next flush may write and which expire by themselves (90 s).
    const ofQueue = async (): Promise<string[]> =>
      (await onNode(port, (r) => r.keys(`${keys.queuePrefix(queue)}:*`))).filter((k) => !/:(meta|limiter)$/.test(k) && !k.includes(':_stats:'));
    expect(await ofQueue()).toEqual(expect.arrayContaining([keys.deduplication(queue, key), `${keys.queuePrefix(queue)}:${queue}:${job!.id}`]));
    await client.deleteQueue(queue, true);
    await eventually(async () => (await ofQueue()).length === 0, 20_000, `every key of ${queue} to be gone: ${(await ofQueue()).join(', ')}`);
  }, 60_000);

  it('reports queue stats from every master through the monitor', async () => {
    const stats = await eventually(async () => {
      const all = await monitor.listQueueStats();
      const mine = all.filter((s) => spread.includes(s.queue));
      return mine.length === 2 && mine.every((s) => Number(s.counts?.completed ?? 0) >= 1) ? mine : undefined;
    }, 20_000, 'the two spread queues to show their completed job');
    expect(stats.map((s) => s.queue).sort()).toEqual([...spread].sort());
    const health = await monitor.systemHealth();
    expect(health.status).toBe(pb.ServingStatus.SERVING_STATUS_SERVING);
  }, 60_000);

  it("answers KEDA's GetMetrics with a queue's backlog of some job names (name-backlog in the queue's slot)", async () => {
    // Names nothing serves wait for a processor: counted exactly, per name.
    const queue = await createQueue(fresh('keda'), { processorWait: { seconds: 120, nanos: 0 } });
    await client.enqueueJobs({ queue, jobs: [...Array.from({ length: 3 }, () => ({ name: 'py.a', data: {} })), ...Array.from({ length: 2 }, () => ({ name: 'py.b', data: {} }))] });
    await eventually(async () => (await monitor.queueStats(queue)).counts?.waitingForProcessor === 5, 20_000, 'the five jobs to wait for a processor');
    const scaler = new keda.ExternalScalerClient(monitorSvc.grpcAddress, credentials.createInsecure());
    try {
      const value = (jobNames: string): Promise<number> =>
        new Promise((resolve, reject) =>
          scaler.getMetrics({ scaledObjectRef: { name: 'w', namespace: 'default', scalerMetadata: { queue, jobNames } }, metricName: '' }, new Metadata(), (err: ServiceError | null, res: keda.GetMetricsResponse) =>
            err ? reject(err) : resolve(Number(res.metricValues[0]?.metricValue)),
          ),
        );
      expect(await value('py.a')).toBe(3);
      expect(await value('py.b')).toBe(2);
      expect(await value('py.a,py.b')).toBe(5);
    } finally {
      scaler.close();
    }
  }, 60_000);

  it('runs a flow within one queue, and refuses a flow across queues with FAILED_PRECONDITION, writing nothing', async () => {
    const queue = await createQueue(fresh('flow'));
    const res = await client.enqueueFlow({
      root: {
        queue,
        job: { name: 'record', data: { role: 'parent' } },
        children: [
          { queue, job: { name: 'record', data: { role: 'child', i: 0 } }, children: [] },
          { queue, job: { name: 'record', data: { role: 'child', i: 1 } }, children: [] },
        ],
      },
    });
    await waitState(queue, res.flow!.job!.id, pb.JobState.JOB_STATE_COMPLETED, 'the parent to complete after its children');
    // A root with its own id is added under WATCH on a connection of its own: once only.
    const keyed = { root: { queue, job: { name: 'record', data: {}, options: { jobId: 'flow-root-1' } }, children: [{ queue, job: { name: 'record', data: {} }, children: [] }] } };
    const first = await client.enqueueFlow(keyed);
    const second = await client.enqueueFlow(keyed);
    expect(first.flow!.job!.id).toBe('flow-root-1');
    expect(second.deduplicated).toBe(true);
    await waitState(queue, 'flow-root-1', pb.JobState.JOB_STATE_COMPLETED, 'the keyed flow to complete');

    const [a, b] = spread;
    const before = await Promise.all(spread.map((q) => client.listJobs({ queue: q, pageSize: 1000 })));
    const err = await client
      .enqueueFlow({ root: { queue: a, job: { name: 'record', data: {} }, children: [{ queue: b, job: { name: 'record', data: {} }, children: [] }] } })
      .then(
        () => undefined,
        (e: Error & { code?: number }) => e,
      );
    expect(err?.code).toBe(9); // FAILED_PRECONDITION
    expect(err?.message).toMatch(/Redis Cluster/);
    expect(err?.message).toMatch(/one queue/);
    const after = await Promise.all(spread.map((q) => client.listJobs({ queue: q, pageSize: 1000 })));
    expect(after.map((p) => p.jobs.length)).toEqual(before.map((p) => p.jobs.length));
  }, 60_000);

  it('runs ctx.step and ctx.runChildren within one queue, and fails a job whose children are on another queue', async () => {
    const queue = await createQueue(fresh('kids'));
    const { job } = await client.enqueueJob({ queue, job: { name: 'fanout', data: {} } });
    const done = await waitState(queue, job!.id, pb.JobState.JOB_STATE_COMPLETED, 'the parent to complete after its two children');
    expect(done.result).toEqual({ step: 42, children: 2 });

    const [a, b] = spread;
    const before = (await client.listJobs({ queue: b, pageSize: 1000 })).jobs.length;
    const { job: cross } = await client.enqueueJob({ queue: a, job: { name: 'fanout', data: { otherQueue: b }, options: { attempts: 1 } } });
    const failed = await eventually(async () => {
      const j = await client.getJob(a, cross!.id);
      return j.state === pb.JobState.JOB_STATE_FAILED || j.state === pb.JobState.JOB_STATE_DEAD_LETTERED ? j : undefined;
    }, 20_000, 'the cross-queue parent to fail');
    expect(failed.failureReason).toMatch(/cannot be added to a job of queue .* on a Redis Cluster/);
    // Neither its own children nor the other queue's were added (all or none).
    expect((await client.listJobs({ queue: b, pageSize: 1000 })).jobs.length).toBe(before);
    expect((await client.getJobDetails(a, cross!.id)).children ?? []).toEqual([]);
  }, 60_000);

  it('runs `jobmesh up` on the cluster: no redis-server of its own, queues on the cluster', async () => {
    const upPrefix = `up${randomUUID().slice(0, 6)}`;
    const child = spawn(process.execPath, [resolve(__dirname, '../../cli/dist/main.js'), 'up'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_CLUSTER_NODES: cluster.nodes, JOBMESH_REDIS_PREFIX: upPrefix, JOBMESH_GRPC_ADDRESS: '127.0.0.1:0', JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', LOG_LEVEL: 'warn' },
    });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const address = await Promise.race([
        eventually(() => output.includes('Stop:') && /gRPC\s+(\S+)/.exec(output)?.[1], 30_000, `jobmesh up to start:\n${output}`),
        exited.then((code) => Promise.reject(new Error(`jobmesh up exited with ${code}:\n${output}`))),
      ]);
      expect(output).toContain(`Redis  Cluster ${cluster.nodes}`);
      const up = new JobmeshClient({ address: address as string });
      try {
        const queue = fresh('up');
        await up.createQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } } });
        // No processor for 'ghost' in jobmesh up: it is dead-lettered, through the cluster.
        const { job } = await up.enqueueJob({ queue, job: { name: 'ghost', data: {} } });
        await eventually(async () => (await up.getJob(queue, job!.id)).state === pb.JobState.JOB_STATE_DEAD_LETTERED, 20_000, 'the ghost job to be dead-lettered');
        const upKeys = new Keys(upPrefix, true);
        const port = await cluster.portOfKey(`${upKeys.queuePrefix(queue)}:${queue}:meta`);
        expect(await onNode(port, (r) => r.exists(`${upKeys.queuePrefix(queue)}:${queue}:${job!.id}`))).toBe(1);
      } finally {
        up.close();
      }
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 60_000);

  it('checks maxmemory-policy on every master: one that may evict refuses production start-up', async () => {
    const redis = createRedis({ clusterNodes: cluster.nodes, prefix }, 'producer', 'test:maxmemory');
    const last = cluster.ports[cluster.ports.length - 1]!;
    try {
      await eventually(() => redis.status === 'ready', 10_000, 'the cluster connection to be ready');
      await expect(checkMaxmemoryPolicy(redis, 'production', silentLogger())).resolves.toBeUndefined();
      await onNode(last, (r) => r.config('SET', 'maxmemory-policy', 'allkeys-lru'));
      await expect(checkMaxmemoryPolicy(redis, 'production', silentLogger())).rejects.toThrow(new RegExp(`"allkeys-lru" on cluster master 127\\.0\\.0\\.1:${last}`));
    } finally {
      await onNode(last, (r) => r.config('SET', 'maxmemory-policy', 'noeviction'));
      await closeConnection(redis);
    }
  });

  it('ran all of the above without a service logging a warning or an error (no CROSSSLOT, no MOVED)', () => {
    const all = [scheduler, pool, flakyPool, dlq, monitorSvc].flatMap((svc) => svc.logs().map((l) => ({ kind: svc.kind, l })));
    expect(all.some(({ l }) => l.level === 'info')).toBe(true); // levels are logged by label
    // Parking a job for a processor (the remote-worker test above) once logged BullMQ's "Missing
    // lock for job N. moveToDelayed" here: the recheck after the park was called with a key
    // more than its script's name said, failed, and the job, already delayed, was failed too.
    const bad = all.filter(({ l }) => ['warn', 'error', 'fatal'].includes(String(l.level))).map(({ kind, l }) => `${kind}: ${JSON.stringify(l)}`);
    expect(bad).toEqual([]);
  });
});

// MonitorService against a real Redis and real gRPC servers: known counts on a paused queue, the
// oldest waiting age growing, last-minute rates and processing times after a drain, workers
// counted across replicas, the cost of ListQueueStats in Redis round trips, WatchQueueStats,
// GetSystemHealth (a stopped or silent service is reported within its deadline) and /metrics.
import { createServer, type Server, type Socket } from 'node:net';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { defineProcessor, RemoteWorker } from '@jobmesh/sdk';
import { freePort, startRedisProxy } from '@jobmesh/testing';
import { type MonitorClient, type MonitorHarness, eventually, startMonitorHarness, waitFor } from '../src/testing';

let h: MonitorHarness;
let monitor: MonitorClient;
let httpPort: number;

/** A duration in ms, 0 when there is none. */
const ms = (d: pb.Duration | undefined): number => pb.durationToMs(d) ?? 0;

const processors = [
  defineProcessor({ queue: '*', name: 'ok', process: async () => ({ ok: true }) }),
  defineProcessor({ queue: '*', name: 'slow', process: async () => new Promise((r) => setTimeout(() => r('done'), 30)) }),
  defineProcessor({ queue: '*', name: 'bad', process: async () => Promise.reject(new Error('nope')) }),
];

beforeAll(async () => {
  h = await startMonitorHarness();
  await h.startPool(processors);
  const m = await h.startMonitor();
  monitor = m.client;
  httpPort = m.service.httpPort;
});
afterAll(async () => {
  await h?.stop();
});

it('reads a paused queue of 25 jobs as 25 waiting, paused, with an oldest age that grows', async () => {
  const queue = await h.newQueue('mon-paused');
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 25 }, () => ({ name: 'ok', data: {} })) });
  const first = await monitor.getQueueStats(queue);
  expect(first.counts).toMatchObject({ waiting: 25, active: 0, completed: 0, failed: 0, delayed: 0, waitingForProcessor: 0, deadLettered: 0 });
  expect(first.paused).toBe(true);
  expect(first.queue).toBe(queue);
  const age = ms(first.oldestWaitingAge);
  const later = await eventually(async () => {
    const s = await monitor.getQueueStats(queue);
    return ms(s.oldestWaitingAge) > age + 50 ? s : undefined;
  }, 5000, 'the oldest waiting age to grow');
  expect(later.counts?.waiting).toBe(25);
});

it('sees how long prioritized jobs have waited, the starved lowest priority included', async () => {
  const queue = await h.newQueue('mon-prio');
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({ queue, jobs: [{ name: 'ok', options: { priority: 10 } }] });
  await h.client.enqueueJobs({ queue, jobs: [{ name: 'ok', options: { priority: 1 } }, { name: 'ok', options: { priority: 1 } }] });
  const first = await monitor.getQueueStats(queue);
  expect(first.counts).toMatchObject({ prioritized: 3, waiting: 0 });
  const age = ms(first.oldestWaitingAge);
  await eventually(async () => ms((await monitor.getQueueStats(queue)).oldestWaitingAge) > age + 50, 5000, 'the prioritized jobs’ age to grow');
});

it('reports completions and failures per second and processing times after a drain', async () => {
  const queue = await h.newQueue('mon-rates');
  await h.client.enqueueJobs({
    queue,
    jobs: [...Array.from({ length: 20 }, () => ({ name: 'slow', data: {} })), ...Array.from({ length: 5 }, () => ({ name: 'bad', data: {}, options: { attempts: 1 } }))],
  });
  // The worker-pool writes its counts every 2 s.
  const s = await eventually(async () => {
    const st = await monitor.getQueueStats(queue);
    return st.counts?.completed === 20 && st.completedPerSecond > 0 && st.failedPerSecond > 0 ? st : undefined;
  }, 15_000, 'the drain to show in the rates');
  expect(s.counts).toMatchObject({ waiting: 0, active: 0, completed: 20, failed: 5 });
  // 20 completions and 5 failures within the last 60 to 70 s.
  expect(s.completedPerSecond * 70).toBeGreaterThanOrEqual(19.9);
  expect(s.completedPerSecond * 60).toBeLessThanOrEqual(20.1);
  expect(s.failedPerSecond * 70).toBeGreaterThanOrEqual(4.9);
  // Processing p50 is that of 30 ms jobs (20 of 25 attempts), within its bucket (20–50 ms).
  expect(ms(s.processingP50)).toBeGreaterThanOrEqual(20);
  expect(ms(s.processingP50)).toBeLessThanOrEqual(50);
  expect(ms(s.processingP95)).toBeGreaterThanOrEqual(ms(s.processingP50));
  expect(ms(s.oldestWaitingAge)).toBe(0);
});

it('counts jobs waiting for a processor apart from delayed ones', async () => {
  const queue = await h.newQueue('mon-wait');
  await h.client.enqueueJobs({ queue, jobs: [{ name: 'nobody-serves-this', data: {} }, { name: 'ok', data: {}, options: { delay: { seconds: 3600, nanos: 0 } } }] });
  const s = await eventually(async () => {
    const st = await monitor.getQueueStats(queue);
    return st.counts?.waitingForProcessor === 1 ? st : undefined;
  }, 10_000, 'the job to wait for a processor');
  expect(s.counts).toMatchObject({ waitingForProcessor: 1, delayed: 1, waiting: 0, dueDelayed: 0 });
});

it('counts workers across worker-pool replicas: in-process pools and remote workers', async () => {
  const queue = await h.newQueue('mon-workers');
  await h.startPool(processors);
  const pool = await h.startPool([], { JOBMESH_WORKER_QUEUES: queue });
  const worker = new RemoteWorker({ address: `127.0.0.1:${pool.grpcPort}`, processors: [defineProcessor({ queue, name: 'remote', process: async () => 1 })] });
  await worker.start();
  try {
    // Three replicas run the queue in-process (the third with its built-in processors only), and
    // one remote worker is connected to the third.
    const s = await eventually(async () => {
      const st = await monitor.getQueueStats(queue);
      return st.inProcessWorkers === 3 && st.remoteWorkers === 1 ? st : undefined;
    }, 15_000, 'the three replicas and the remote worker to be counted');
    expect(s.workers).toBe(4);
    // A replica that stops takes its workers with it at once.
    await pool.stop();
    await eventually(async () => {
      const st = await monitor.getQueueStats(queue);
      return st.inProcessWorkers === 2 && st.remoteWorkers === 0;
    }, 15_000, 'the stopped replica and its remote worker to drop out');
  } finally {
    await worker.stop({ graceMs: 1000 });
  }
});

it('answers NOT_FOUND for an unknown queue and INVALID_ARGUMENT for a bad name', async () => {
  const err = (p: Promise<unknown>) => p.then(() => undefined, (e: ServiceError) => e);
  expect((await err(monitor.getQueueStats('no-such-queue')))?.code).toBe(status.NOT_FOUND);
  const bad = await err(monitor.getQueueStats('bad name!'));
  expect(bad?.code).toBe(status.INVALID_ARGUMENT);
  expect(bad?.details).toMatch(/^queue: "bad name!" is not a valid queue name/);
});

it('lists 100 queues, by name, in a few Redis round trips whatever their number', async () => {
  const names = await Promise.all(Array.from({ length: 100 }, (_, i) => h.newQueue(`mon-many-${String(i).padStart(3, '0')}`)));
  const proxy = await startRedisProxy({ port: h.redis.port });
  const m = await h.startMonitor({ REDIS_URL: proxy.url });
  try {
    await m.client.listQueueStats(); // connections and scripts warm
    let stats: pb.QueueStats[] = [];
    const trips = await proxy.roundTripsDuring(async () => (stats = await m.client.listQueueStats()));
    const listed = stats.map((s) => s.queue);
    expect(listed).toEqual([...listed].sort());
    expect(listed).toEqual(expect.arrayContaining(names));
    // The registry, every queue's counts (one script call), every queue's window (one pipeline), the worker directory.
    expect(trips).toBeLessThanOrEqual(4);
  } finally {
    await m.service.stop();
    await proxy.close();
  }
});

it('streams the figures at once and then every interval, and refuses an interval under 1 s or an unknown queue', async () => {
  const queue = await h.newQueue('mon-watch');
  const call = monitor.raw.watchQueueStats({ queues: [queue], interval: { seconds: 1, nanos: 0 } }, new Metadata());
  const got: pb.WatchQueueStatsResponse[] = [];
  call.on('data', (r: pb.WatchQueueStatsResponse) => got.push(r));
  call.on('error', () => undefined); // CANCELLED when the test ends it
  await waitFor('the first round', () => got.length >= 1, 3000);
  expect(got[0]!.stats.map((s) => s.queue)).toEqual([queue]);
  await h.client.enqueueJob({ queue, job: { name: 'nobody-serves-this' } });
  await waitFor('a later round to see the job', () => got.some((r) => r.stats[0]?.counts?.waitingForProcessor === 1 || (r.stats[0]?.counts?.waiting ?? 0) > 0), 10_000);
  expect(got.length).toBeGreaterThanOrEqual(2);
  call.cancel();

  const refused = (req: pb.WatchQueueStatsRequest) =>
    new Promise<ServiceError>((resolve) => {
      const c = monitor.raw.watchQueueStats(req, new Metadata());
      c.on('data', () => undefined);
      c.on('error', resolve);
    });
  const fast = await refused({ queues: [], interval: { seconds: 0, nanos: 500_000_000 } });
  expect([fast.code, fast.details]).toEqual([status.INVALID_ARGUMENT, 'interval: must be at least 1 s; got 500 ms']);
  expect((await refused({ queues: ['no-such-queue'], interval: undefined })).code).toBe(status.NOT_FOUND);
});

describe('GetSystemHealth', () => {
  let silent: Server;
  let silentPort: number;
  const accepted = new Set<Socket>();
  beforeAll(async () => {
    // Accepts connections and never answers: a hung service.
    silent = createServer((socket) => {
      accepted.add(socket);
      socket.on('close', () => accepted.delete(socket));
    });
    silentPort = await freePort();
    await new Promise<void>((r) => silent.listen(silentPort, '127.0.0.1', r));
  });
  afterAll(async () => {
    // Its connections too: a server closed with sockets open keeps the test process alive.
    for (const socket of accepted) socket.destroy();
    await new Promise((r) => silent.close(r));
  });

  it('reports every service and Redis, with key figures, as serving when they are', async () => {
    // A replica shows in the worker directory once it runs a queue.
    await h.newQueue('mon-health');
    const pool = await h.startPool(processors);
    const m = await h.startMonitor({ JOBMESH_WORKER_POOL_ADDRESS: `127.0.0.1:${pool.grpcPort}`, JOBMESH_DEAD_LETTER_ADDRESS: h.address });
    try {
      const health = await eventually(async () => {
        const got = await m.client.getSystemHealth();
        return Number(got.services.find((s) => s.service === 'jobmesh.v1.WorkerService')?.figures.replicas) >= 1 ? got : undefined;
      }, 10_000, 'the replicas to publish their workers');
      const by = Object.fromEntries(health.services.map((s) => [s.service, s]));
      expect(by['jobmesh.v1.SchedulerService']).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_SERVING, address: h.address, error: '' });
      expect(by['jobmesh.v1.WorkerService']?.status).toBe(pb.ServingStatus.SERVING_STATUS_SERVING);
      expect(Number(by['jobmesh.v1.WorkerService']?.figures.replicas)).toBeGreaterThanOrEqual(1);
      expect(by['jobmesh.v1.WorkerService']?.figures.connected_workers).toMatch(/^\d+$/);
      // The harness's scheduler serves no DeadLetterService: reachable, but not this service.
      expect(by['jobmesh.v1.DeadLetterService']).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED });
      expect(by.redis?.status).toBe(pb.ServingStatus.SERVING_STATUS_SERVING);
      expect(by.redis?.figures.maxmemory_policy).toBeTruthy();
      expect(Number(by.redis?.figures.used_memory_bytes)).toBeGreaterThan(0);
      expect(health.status).toBe(pb.ServingStatus.SERVING_STATUS_NOT_SERVING);
    } finally {
      await m.service.stop();
    }
  });

  it('reports a stopped service and a silent one as not serving, within the deadline', async () => {
    const pool = await h.startPool(processors);
    const port = pool.grpcPort;
    await pool.stop();
    const m = await h.startMonitor({ JOBMESH_WORKER_POOL_ADDRESS: `127.0.0.1:${port}`, JOBMESH_DEAD_LETTER_ADDRESS: `127.0.0.1:${silentPort}`, JOBMESH_HEALTH_TIMEOUT: '500ms' });
    try {
      const started = Date.now();
      const health = await m.client.getSystemHealth();
      const tookMs = Date.now() - started;
      const by = Object.fromEntries(health.services.map((s) => [s.service, s]));
      expect(by['jobmesh.v1.SchedulerService']?.status).toBe(pb.ServingStatus.SERVING_STATUS_SERVING);
      expect(by['jobmesh.v1.WorkerService']).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED, address: `127.0.0.1:${port}` });
      expect(by['jobmesh.v1.WorkerService']?.error).not.toBe('');
      expect(by['jobmesh.v1.DeadLetterService']).toMatchObject({ status: pb.ServingStatus.SERVING_STATUS_UNSPECIFIED, error: 'no answer within 500 ms' });
      expect(health.status).toBe(pb.ServingStatus.SERVING_STATUS_NOT_SERVING);
      // All checks run at once, each bounded by its deadline.
      expect(tookMs).toBeLessThan(3000);
    } finally {
      await m.service.stop();
    }
  });
});

it('exports the queue-level gauges on /metrics, read at scrape time', async () => {
  const queue = await h.newQueue('mon-metrics');
  await h.client.pauseQueue(queue);
  await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 3 }, () => ({ name: 'ok', data: {} })) });
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const line = (re: RegExp): string | undefined => text.split('\n').find((l) => re.test(l));
  expect(line(new RegExp(`^jobmesh_queue_length\\{queue="${queue}"\\} 3$`))).toBeDefined();
  expect(line(new RegExp(`^jobmesh_queue_jobs\\{queue="${queue}",state="waiting"\\} 3$`))).toBeDefined();
  expect(line(new RegExp(`^jobmesh_queue_paused\\{queue="${queue}"\\} 1$`))).toBeDefined();
  expect(line(new RegExp(`^jobmesh_active_jobs\\{queue="${queue}"\\} 0$`))).toBeDefined();
  expect(line(new RegExp(`^jobmesh_queue_oldest_waiting_age_seconds\\{queue="${queue}"\\} `))).toBeDefined();
  expect(line(new RegExp(`^jobmesh_workers\\{queue="${queue}",kind="in_process"\\} `))).toBeDefined();
  expect(line(/^jobmesh_redis_up 1$/)).toBeDefined();
  expect(Number(line(/^jobmesh_redis_memory_used_bytes /)?.split(' ')[1])).toBeGreaterThan(0);
  expect(line(/^jobmesh_redis_memory_max_bytes \d+$/)).toBeDefined();
});

// Network faults through a TCP proxy (issue 16, point 1): a blackhole (nothing passes, sockets stay
// open) between the scheduler and Redis, and between a producer and the scheduler. Calls fail
// within their deadline with UNAVAILABLE or DEADLINE_EXCEEDED, never hang; nothing is half-written
// (a keyed enqueue retried after the fault finds its one job); and everything works again by
// itself once the route is back.
import { status } from '@grpc/grpc-js';
import { JobmeshClient } from '@jobmesh/sdk';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, type TcpProxy, eventually, startRedis, startTcpProxy, uniquePrefix, uniqueQueue } from '@jobmesh/testing';

const DEADLINE_MS = 2_000;
/** A failed call answers within its deadline, plus this much for the machine. */
const SLACK_MS = 1_000;

let redis: RedisHandle;
const proxies: TcpProxy[] = [];
const clients: JobmeshClient[] = [];
let scheduler: RunningScheduler;
let toRedis: TcpProxy;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  toRedis = await startTcpProxy(`127.0.0.1:${redis.port}`);
  proxies.push(toRedis);
  scheduler = await startScheduler(
    loadSchedulerEnv({
      REDIS_URL: `redis://${toRedis.address}`,
      JOBMESH_REDIS_PREFIX: uniquePrefix(),
      JOBMESH_REDIS_COMMAND_TIMEOUT: '1s',
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_SHUTDOWN_GRACE: '1s',
      JOBMESH_CONFIG: '',
    }),
    { logger: silentLogger() },
  );
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of proxies) p.heal();
  await scheduler?.stop();
  await Promise.all(proxies.map((p) => p.close()));
  await redis?.stop();
});

function client(address: string): JobmeshClient {
  const c = new JobmeshClient({ address, timeoutMs: DEADLINE_MS, retry: { maxTries: 1 }, coalesce: false, keepalive: { intervalMs: 1_000, timeoutMs: 1_000 } });
  clients.push(c);
  return c;
}

/** How a call ended, and how long it took. */
async function timed(call: Promise<unknown>): Promise<{ code: number; ms: number }> {
  const started = Date.now();
  const code = await call.then(
    () => status.OK,
    (e: { code?: number }) => e.code ?? -1,
  );
  return { code, ms: Date.now() - started };
}

it('between the scheduler and Redis: enqueues fail with UNAVAILABLE within their deadline, then work again by themselves; a keyed retry finds its one job', async () => {
  const c = client(`127.0.0.1:${scheduler.grpcPort}`);
  const queue = uniqueQueue('net-redis');
  await c.createQueue({ queue: { name: queue } });
  await c.enqueueJob({ queue, job: { name: 'before' } });

  toRedis.blackhole();
  try {
    const during = await Promise.all([
      timed(c.enqueueJob({ queue, job: { name: 'plain' } })),
      timed(c.enqueueJob({ queue, job: { name: 'keyed', options: { idempotencyKey: 'net-k1' } } })),
      // A read that needs Redis (GetQueue is answered from the registry's cache, and may succeed).
      timed(c.listJobs({ queue })),
    ]);
    for (const r of during) {
      expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(r.code);
      expect(r.ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
    }
  } finally {
    toRedis.heal();
  }
  await eventually(async () => (await timed(c.enqueueJob({ queue, job: { name: 'after' } }))).code === status.OK, 15_000, 'enqueues to work again');
  const retried = await c.enqueueJob({ queue, job: { name: 'keyed', options: { idempotencyKey: 'net-k1' } } });
  const keyed = (await c.listJobs({ queue, pageSize: 100 })).jobs.filter((j) => j.idempotencyKey === 'net-k1');
  expect(keyed.map((j) => j.id)).toEqual([retried.job!.id]);
}, 60_000);

it('between a producer and the scheduler: calls fail within their deadline instead of hanging, and the client reconnects by itself', async () => {
  const toScheduler = await startTcpProxy(`127.0.0.1:${scheduler.grpcPort}`);
  proxies.push(toScheduler);
  const c = client(toScheduler.address);
  const queue = uniqueQueue('net-producer');
  await c.createQueue({ queue: { name: queue } });

  toScheduler.blackhole();
  const during = await Promise.all([timed(c.enqueueJob({ queue, job: { name: 'lost' } })), timed(c.listQueues())]);
  for (const r of during) {
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(r.code);
    expect(r.ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
  }

  toScheduler.heal();
  await eventually(async () => (await timed(c.listQueues())).code === status.OK, 15_000, 'the client to reach the scheduler again');
}, 60_000);

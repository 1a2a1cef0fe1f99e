// Dead connections are noticed on both sides (issue 16, point 2). A TCP proxy between a
// RemoteWorker and the worker-pool blackholes the connection: packets dropped, sockets left open,
// so neither end hears a close. The worker's keepalive notices, gives its jobs up and reconnects;
// the server's keepalive ends the session, and its jobs go to another worker long before their
// lease (60 s here) would lapse.
import { DEFAULT_KEEPALIVE, RemoteWorker, defineProcessor } from '@jobmesh/sdk';
import { type TcpProxy, startTcpProxy } from '@jobmesh/testing';
import { loadWorkerPoolEnv } from '../src';
import { eventually, type PoolHarness, startPoolHarness } from '../src/testing';

const KEEPALIVE = { intervalMs: 1_000, timeoutMs: 1_000 };
/** Both sides must notice within keepalive interval + timeout, plus this much for the round trips. */
const SLACK_MS = 1_500;
const JOBS = 3;

let h: PoolHarness;
let proxy: TcpProxy;
const workers: RemoteWorker[] = [];

beforeAll(async () => {
  h = await startPoolHarness();
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop({ graceMs: 0 })));
  await proxy?.close();
  await h?.stop();
});

it('a blackholed worker gives its jobs up and reconnects; the server re-leases them to another worker within the keepalive bound', async () => {
  const pool = await h.startPool([], { JOBMESH_KEEPALIVE_INTERVAL: '1s', JOBMESH_KEEPALIVE_TIMEOUT: '1s', JOBMESH_LEASE_TTL: '60s' });
  proxy = await startTcpProxy(`127.0.0.1:${pool.grpcPort}`);
  const queue = await h.newQueue('blackhole');

  const held = new Map<string, number>();
  const givenUp = new Map<string, number>();
  const holed = new RemoteWorker({
    address: proxy.address,
    workerId: 'holed',
    keepalive: KEEPALIVE,
    processors: [
      defineProcessor({
        queue,
        name: 'hold',
        process: (job, ctx) =>
          new Promise((_, reject) => {
            held.set(job.id, Date.now());
            ctx.signal.addEventListener('abort', () => {
              givenUp.set(job.id, Date.now());
              reject(ctx.signal.reason as Error);
            });
          }),
      }),
    ],
  });
  workers.push(holed);
  await holed.start();
  const ids = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: JOBS }, () => ({ name: 'hold' })) })).jobs.map((j) => j.id);
  await eventually(() => held.size === JOBS, 10_000, 'the holed worker to hold every job');

  // A second worker, straight to the pool, for the jobs the first one loses.
  const ranElsewhere = new Map<string, number>();
  const standby = new RemoteWorker({
    address: `127.0.0.1:${pool.grpcPort}`,
    workerId: 'standby',
    processors: [defineProcessor({ queue, name: 'hold', process: (job) => void ranElsewhere.set(job.id, Date.now()) })],
  });
  workers.push(standby);
  await standby.start();
  await eventually(() => pool.worker.pool.dispatcher.sessions.size === 2, 10_000, 'both workers to be connected');

  const cutAt = Date.now();
  proxy.blackhole();
  const bound = KEEPALIVE.intervalMs + KEEPALIVE.timeoutMs + SLACK_MS;
  await eventually(() => givenUp.size === JOBS, bound + 2_000, 'the holed worker to give its jobs up');
  await eventually(() => ids.every((id) => ranElsewhere.has(id)), bound + 2_000, 'the jobs to run on the standby worker');
  const noticed = Math.max(...givenUp.values()) - cutAt;
  const reLeased = Math.max(...ranElsewhere.values()) - cutAt;
  process.stdout.write(`blackhole: worker gave its jobs up after ${noticed} ms, server re-leased them after ${reLeased} ms (keepalive ${KEEPALIVE.intervalMs}+${KEEPALIVE.timeoutMs} ms, lease 60 s)\n`);
  expect(noticed).toBeLessThan(bound);
  expect(reLeased).toBeLessThan(bound);
  expect([...pool.worker.pool.dispatcher.sessions.values()].map((s) => s.workerId)).toEqual(['standby']);

  // Once the route is back, the holed worker is connected again by itself.
  proxy.heal();
  await eventually(() => pool.worker.pool.dispatcher.sessions.size === 2, 20_000, 'the holed worker to reconnect');
}, 60_000);

it('defaults to noticing a dead connection within 20 s, on both sides', () => {
  expect(DEFAULT_KEEPALIVE.intervalMs + DEFAULT_KEEPALIVE.timeoutMs).toBeLessThanOrEqual(20_000);
  const env = loadWorkerPoolEnv({ REDIS_URL: 'redis://127.0.0.1:1', JOBMESH_CONFIG: '' });
  expect(env.JOBMESH_KEEPALIVE_INTERVAL + env.JOBMESH_KEEPALIVE_TIMEOUT).toBeLessThanOrEqual(20_000);
});

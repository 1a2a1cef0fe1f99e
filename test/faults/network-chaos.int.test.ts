// Network faults and a paused Redis under the chaos load (issue 16, point 1). TCP proxies sit
// between the RemoteWorker and the worker-pool, between the producers and the scheduler, and
// between each of the worker-pool and the scheduler and Redis; each is blackholed (nothing passes,
// sockets stay open), dropped (every connection reset, new ones reset until heal) or delayed, in
// turn, while the chaos load runs. Redis is also paused (`CLIENT PAUSE … WRITE` and `ALL`) for
// longer than JOBMESH_REDIS_COMMAND_TIMEOUT. Each case ends in the ledger check of
// fixtures/chaos.ts and prints the ledger. During the faults that reach the scheduler's calls,
// keyed enqueues of every kind are made and, when they fail, made again after the fault, as an
// application would: each key and job id ends with exactly one job.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobmeshClient } from '@jobmesh/sdk';
import { connectRedis, type RedisHandle, type TcpProxy, startRedis, startTcpProxy } from '@jobmesh/testing';
import { CALL_TIMEOUT_MS, type ChaosRig, type Fault, type RunOptions, chaos, startRig } from './fixtures/chaos';
import { KINDS, Ledger } from './fixtures/ledger';

/** Keepalive of the worker-pool and the RemoteWorker: a dead stream is noticed within 2 s. */
const KEEPALIVE = { intervalMs: 1_000, timeoutMs: 1_000 };
/** The worker must notice within interval + timeout, plus this for round trips on a loaded machine. */
const NOTICE_SLACK_MS = 2_000;
const COMMAND_TIMEOUT = '1s';
/** How long a blackhole, a drop and a delay last, and a pause: each longer than the timeouts it must trip. */
const HOLE_MS = 3_000;
const DROP_MS = 1_500;
const DELAY_FOR_MS = 2_500;
const PAUSE_MS = 2_500;
/** Keyed calls made during each fault that reaches the scheduler's calls. */
const KEYED_CALLS = 12;

let redis: RedisHandle;
let rig: ChaosRig;
/** The proxies: in front of Redis for the worker-pool and the scheduler, in front of the scheduler and the worker-pool. */
let poolRedis: TcpProxy;
let schedulerRedis: TcpProxy;
let toScheduler: TcpProxy;
let toPool: TcpProxy;
const proxies: TcpProxy[] = [];
const clients: JobmeshClient[] = [];

beforeAll(async () => {
  redis = await startRedis({ own: true, appendonly: true, appendfsync: 'always' });
  poolRedis = await startTcpProxy(`127.0.0.1:${redis.port}`);
  schedulerRedis = await startTcpProxy(`127.0.0.1:${redis.port}`);
  proxies.push(poolRedis, schedulerRedis);
  const keepalive = { JOBMESH_KEEPALIVE_INTERVAL: `${KEEPALIVE.intervalMs}ms`, JOBMESH_KEEPALIVE_TIMEOUT: `${KEEPALIVE.timeoutMs}ms` };
  rig = await startRig(redis, {
    redisUrl: { 'worker-pool': `redis://${poolRedis.address}`, scheduler: `redis://${schedulerRedis.address}` },
    env: {
      scheduler: { JOBMESH_REDIS_COMMAND_TIMEOUT: COMMAND_TIMEOUT, ...keepalive },
      // A lease TTL far beyond the test: a remote worker's jobs come back by keepalive, not by the TTL.
      'worker-pool': { JOBMESH_REDIS_COMMAND_TIMEOUT: COMMAND_TIMEOUT, JOBMESH_LEASE_TTL: '60s', ...keepalive },
      'dead-letter': { JOBMESH_REDIS_COMMAND_TIMEOUT: COMMAND_TIMEOUT },
      monitor: { JOBMESH_REDIS_COMMAND_TIMEOUT: COMMAND_TIMEOUT },
    },
  });
  toScheduler = await startTcpProxy(rig.ports.scheduler!);
  toPool = await startTcpProxy(rig.ports['worker-pool']!);
  proxies.push(toScheduler, toPool);
}, 60_000);

afterAll(async () => {
  for (const p of proxies) p.heal();
  for (const c of clients) c.close();
  await rig?.stop();
  await Promise.all(proxies.map((p) => p.close()));
  await redis?.stop();
});

/** Every run goes through every proxy; only the one faulted at a time misbehaves. */
const run = (): RunOptions => ({ producerAddress: toScheduler.address, remoteAddress: toPool.address, remoteKeepalive: KEEPALIVE });

/**
 * Keyed enqueues of every kind on a paused queue of their own (nothing runs them), made while a
 * fault lasts and made again until answered: the check is one job per key and id.
 */
class KeyedProbe {
  readonly ledger = new Ledger();
  queue = '';
  private n = 0;

  async open(): Promise<void> {
    this.queue = `keyed-${randomUUID().slice(0, 8)}`;
    await rig.client.createQueue({ queue: { name: this.queue } });
    await rig.client.pauseQueue(this.queue);
  }

  /** A client with one try per call, through `address`: every failure reaches the ledger. */
  client(address: string): JobmeshClient {
    const c = new JobmeshClient({ address, timeoutMs: CALL_TIMEOUT_MS, retry: { maxTries: 1 }, coalesce: false, keepalive: KEEPALIVE });
    clients.push(c);
    return c;
  }

  /** KEYED_CALLS calls started now, each made again until answered. */
  during(client: JobmeshClient): Promise<void> {
    const deadline = Date.now() + 30_000;
    return Promise.all(Array.from({ length: KEYED_CALLS }, (_, i) => this.ledger.enqueue(client, this.queue, KINDS[i % KINDS.length]!, `f${this.n}-${i}`, deadline))).then(() => {
      this.n += 1;
    });
  }

  async check(): Promise<void> {
    expect(await this.ledger.problems(redis.port, rig.prefix, this.queue)).toEqual([]);
    // The faults were felt: calls failed and were made again.
    expect(this.ledger.failedCalls).toBeGreaterThan(0);
  }
}

/** A fault on `proxy` for `ms`: `start` it, run `during` alongside, then heal. */
function proxyFault(at: number, what: string, proxy: TcpProxy, ms: number, start: () => void, extra: Partial<Fault> & { during?: () => Promise<void> } = {}): Fault {
  const { during, ...rest } = extra;
  return {
    at,
    what,
    async inject() {
      start();
      await Promise.all([sleep(ms).then(() => proxy.heal()), during?.()]);
    },
    ...rest,
  };
}
const blackhole = (p: TcpProxy) => () => p.blackhole();
const drop = (p: TcpProxy) => () => p.drop();
const delay = (p: TcpProxy, ms: number) => () => p.delay(ms);

it('RemoteWorker ↔ worker-pool: blackholed, the worker notices within the keepalive bound and reconnects, its jobs are run again; dropped and delayed, it carries on', async () => {
  const ledger = await chaos(
    rig,
    'net-remote',
    [
      proxyFault(1_500, `remote↔pool blackhole ${HOLE_MS} ms`, toPool, HOLE_MS, blackhole(toPool), { remoteStreamEnds: true }),
      proxyFault(6_500, `remote↔pool drop ${DROP_MS} ms`, toPool, DROP_MS, drop(toPool), { remoteStreamEnds: true }),
      proxyFault(10_000, `remote↔pool delay 300 ms for ${DELAY_FOR_MS} ms`, toPool, DELAY_FOR_MS, delay(toPool, 300), { remoteStreamEnds: false }),
    ],
    { ...run(), loadMs: 14_000, recoveryBoundMs: 8_000, noticeBoundMs: KEEPALIVE.intervalMs + KEEPALIVE.timeoutMs + NOTICE_SLACK_MS },
  );
  expect(toPool.resets()).toBeGreaterThan(0);
  expect(ledger.faults[0]!.remoteStreamEndedMs).toBeGreaterThanOrEqual(KEEPALIVE.timeoutMs);
  // The server ended the worker's session too, on the blackhole (by its own keepalive) and on the
  // drop, and released the leases it held: those jobs ran again (every remote job completed).
  const ended = rig.svc['worker-pool']!.logs().filter((l) => l.msg === 'worker disconnected' && l.worker === 'chaos-ts-net-remote');
  const serverSide = ledger.faults.slice(0, 2).map((f) => {
    // The services log ISO times.
    const l = ended.find((e) => Date.parse(String(e.time)) >= f.startedAt);
    return { what: f.what, endedMs: l ? Date.parse(String(l.time)) - f.startedAt : null, leasesReleased: l ? Number(l.leases) : null };
  });
  process.stdout.write(`net-remote, the worker-pool's side: ${JSON.stringify(serverSide)}\n`);
  const bound = KEEPALIVE.intervalMs + KEEPALIVE.timeoutMs + NOTICE_SLACK_MS;
  expect(serverSide.filter((s) => s.endedMs === null || s.endedMs > bound)).toEqual([]);
  expect(serverSide.reduce((n, s) => n + (s.leasesReleased ?? 0), 0)).toBeGreaterThan(0);
}, 150_000);

it('producer ↔ scheduler: blackholed, dropped and delayed, calls fail within their deadline with UNAVAILABLE or DEADLINE_EXCEEDED, never hang, and what was acknowledged is there', async () => {
  const keyed = new KeyedProbe();
  await keyed.open();
  const via = keyed.client(toScheduler.address);
  const ledger = await chaos(
    rig,
    'net-producer',
    [
      proxyFault(1_500, `producer↔scheduler blackhole ${HOLE_MS} ms`, toScheduler, HOLE_MS, blackhole(toScheduler), { during: () => keyed.during(via) }),
      proxyFault(6_500, `producer↔scheduler drop ${DROP_MS} ms`, toScheduler, DROP_MS, drop(toScheduler), { during: () => keyed.during(via) }),
      proxyFault(10_000, `producer↔scheduler delay 250 ms for ${DELAY_FOR_MS} ms`, toScheduler, DELAY_FOR_MS, delay(toScheduler, 250)),
    ],
    { ...run(), loadMs: 14_000 },
  );
  await keyed.check();
  expect(Object.values(ledger.failedCalls).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
}, 150_000);

it('worker-pool ↔ Redis and scheduler ↔ Redis: blackholed, dropped and delayed, calls fail cleanly, nothing is lost, and both recover by themselves', async () => {
  const keyed = new KeyedProbe();
  await keyed.open();
  const direct = keyed.client(rig.ports.scheduler!);
  const ledger = await chaos(
    rig,
    'net-redis',
    [
      proxyFault(1_500, `worker-pool↔redis blackhole ${HOLE_MS} ms`, poolRedis, HOLE_MS, blackhole(poolRedis)),
      proxyFault(6_000, `worker-pool↔redis drop ${DROP_MS} ms`, poolRedis, DROP_MS, drop(poolRedis)),
      proxyFault(9_000, `scheduler↔redis blackhole ${HOLE_MS} ms`, schedulerRedis, HOLE_MS, blackhole(schedulerRedis), { during: () => keyed.during(direct) }),
      proxyFault(13_500, `scheduler↔redis drop ${DROP_MS} ms`, schedulerRedis, DROP_MS, drop(schedulerRedis), { during: () => keyed.during(direct) }),
      // Slower than the 1 s command timeout for a round trip or two, not for every command.
      proxyFault(16_500, `worker-pool↔redis delay 300 ms for ${DELAY_FOR_MS} ms`, poolRedis, DELAY_FOR_MS, delay(poolRedis, 300)),
      proxyFault(19_500, `scheduler↔redis delay 300 ms for ${DELAY_FOR_MS} ms`, schedulerRedis, DELAY_FOR_MS, delay(schedulerRedis, 300), { during: () => keyed.during(direct) }),
    ],
    { ...run(), loadMs: 23_000, recoveryBoundMs: 8_000 },
  );
  await keyed.check();
  expect(poolRedis.resets()).toBeGreaterThan(0);
  expect(schedulerRedis.resets()).toBeGreaterThan(0);
  expect(ledger.failedCalls.UNAVAILABLE ?? 0).toBeGreaterThan(0);
}, 150_000);

it(`Redis paused (CLIENT PAUSE WRITE, then ALL) for longer than the ${COMMAND_TIMEOUT} command timeout: calls fail cleanly, nothing is half-written, everything recovers`, async () => {
  const keyed = new KeyedProbe();
  await keyed.open();
  const direct = keyed.client(rig.ports.scheduler!);
  const admin = connectRedis(redis.url, { maxRetriesPerRequest: 20 });
  try {
    const pause = (at: number, mode: 'WRITE' | 'ALL'): Fault => ({
      at,
      what: `CLIENT PAUSE ${PAUSE_MS} ${mode}`,
      async inject() {
        await admin.call('CLIENT', 'PAUSE', String(PAUSE_MS), mode);
        // The pause is the fault; it ends by itself. A PING answered means Redis serves again.
        await Promise.all([sleep(PAUSE_MS).then(() => admin.ping()), keyed.during(direct)]);
      },
    });
    const ledger = await chaos(rig, 'redis-pause', [pause(1_500, 'WRITE'), pause(6_500, 'ALL')], { ...run(), loadMs: 11_000 });
    await keyed.check();
    expect(ledger.failedCalls.UNAVAILABLE ?? 0).toBeGreaterThan(0);
  } finally {
    admin.disconnect();
  }
}, 150_000);

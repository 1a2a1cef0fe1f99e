// Redis Sentinel (issue 16, point 4), connection by connection: a real set of one master, one
// replica and three sentinels on loopback (libs/testing's startSentinelSet). Each role follows a
// failover by itself: the producer connection fails fast while the master is switched and works
// on the new master after; a blocking command and a subscriber carry on there. The start-up
// checks (maxmemory-policy in production mode, readiness) go through the sentinels.
import { randomUUID } from 'node:crypto';
import { UnavailableError } from '@jobmesh/core';
import { silentLogger } from '@jobmesh/telemetry';
import { type SentinelSet, startSentinelSet, waitFor } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { type Backbone, createRedis, keepSubscribed, openBackbone, type RedisClient, redisUnavailable, type RedisSettings } from '../src';

let set: SentinelSet;
let settings: RedisSettings;
const opened: Redis[] = [];
const backbones: Backbone[] = [];

beforeAll(async () => {
  set = await startSentinelSet();
  settings = { sentinels: set.env.REDIS_SENTINELS, masterName: set.env.REDIS_MASTER_NAME, prefix: `sentinel-${randomUUID().slice(0, 8)}`, commandTimeoutMs: 2000 };
}, 60_000);

afterAll(async () => {
  for (const c of opened) c.disconnect();
  const closed = await Promise.allSettled(backbones.map((b) => b.close()));
  await set?.stop();
  expect(closed.filter((r) => r.status === 'rejected')).toEqual([]);
});

function open(role: 'producer' | 'worker', name: string): Redis {
  // Sentinel settings name no cluster: createRedis makes a Redis, not a Cluster.
  const c = createRedis(settings, role, name) as Redis;
  c.on('error', () => undefined); // reconnects are what the test watches
  opened.push(c);
  return c;
}

async function backbone(mode: 'development' | 'production'): Promise<Backbone> {
  const b = await openBackbone({ settings, mode, logger: silentLogger() });
  backbones.push(b);
  return b;
}

/** The port of the node a connection is on now, as that node says. */
async function nodePort(c: RedisClient): Promise<number> {
  return Number(/tcp_port:(\d+)/.exec(await c.info('server'))![1]);
}

it('opens the backbone through the sentinels in production mode: the maxmemory-policy check and readiness pass on the master', async () => {
  const b = await backbone('production');
  expect(await b.ready()).toEqual({ ok: true });
  expect(await nodePort(b.redis)).toBe((await set.master()).port);
});

/**
 * Writes on `producer` until one succeeds on a node other than `from`, recording how each failed
 * write failed and how long it took.
 */
async function writeUntilMoved(producer: RedisClient, from: number, key: string): Promise<{ failures: Array<{ message: string; ms: number; unavailable: boolean }>; port: number }> {
  const failures: Array<{ message: string; ms: number; unavailable: boolean }> = [];
  const port = await waitFor(
    'the producer connection to write on the new master',
    async () => {
      const started = Date.now();
      try {
        await producer.incr(key);
      } catch (err) {
        failures.push({ message: (err as Error).message, ms: Date.now() - started, unavailable: err instanceof UnavailableError || redisUnavailable(err) !== undefined });
        return undefined;
      }
      const p = await nodePort(producer);
      return p !== from ? p : undefined;
    },
    30_000,
    20,
  );
  return { failures, port };
}

it.each([
  ['a SENTINEL FAILOVER', async () => (await set.failover()).to],
  ['a SIGKILL of the master', async () => (await set.killMaster()).to],
] as const)('follows %s on every connection role, failing producer calls fast with UNAVAILABLE meanwhile', async (_what, failOver) => {
  const b = await backbone('development');
  const producer = b.redis;
  const blocking = open('worker', 'test:blocking');
  const subscriber = open('worker', 'test:sub');
  const key = `${settings.prefix}:${randomUUID()}`;
  const list = `${key}:list`;
  const channel = `${key}:channel`;
  await producer.set(key, '0');
  const from = await nodePort(producer);
  expect(from).toBe((await set.master()).port);

  const received: string[] = [];
  subscriber.on('message', (_c, m) => received.push(m));
  // As Jobmesh's own subscribers do (wake-ups, cancel requests, dead letters).
  await keepSubscribed(subscriber, channel);
  // A blocking pop that waits across the switch: the worker connection sends it again on the new master.
  const popped = blocking.brpop(list, 0);
  await waitFor('the blocking pop to be waiting on the master', async () => /cmd=brpop/.test(String(await producer.client('LIST'))));

  const writes = writeUntilMoved(producer, from, key);
  const to = await failOver();
  const { failures, port } = await writes;
  expect(port).toBe(to.port);
  // Every write that failed during the switch failed as UNAVAILABLE, well within the command timeout.
  expect(failures.filter((f) => !f.unavailable)).toEqual([]);
  expect(Math.max(0, ...failures.map((f) => f.ms))).toBeLessThan(2_500);

  // The blocking pop and the subscriber are on the new master too.
  await waitFor('the blocking pop to be waiting on the new master', async () => /cmd=brpop/.test(String(await producer.client('LIST'))), 20_000);
  await producer.lpush(list, 'after');
  expect(await popped).toEqual([list, 'after']);
  await waitFor(
    'the subscriber to hear a message published on the new master',
    async () => {
      const heard = await producer.publish(channel, 'hello');
      if (received.includes('hello')) return true;
      // What a timeout should tell: whether the subscriber is connected, and whether the new master knows it.
      throw new Error(`not heard yet: the subscriber is ${subscriber.status}; ${heard} subscriber(s) on the master got the message`);
    },
    20_000,
    100,
  );
  // Both are connected to the new master (a subscriber cannot run INFO; the master lists it by name).
  const onNewMaster = String(await producer.client('LIST'));
  expect(onNewMaster).toMatch(/name=test:blocking /);
  expect(onNewMaster).toMatch(/name=test:sub .*cmd=subscribe/);
  // Readiness comes back once the backbone's own registry subscriber has reconnected and reloaded.
  await waitFor('the backbone to be ready again', async () => (await b.ready()).ok, 20_000);

  // A killed master comes back as a replica of the new one.
  const old = set.nodes.find((n) => n.port === from)!;
  if (!old.running) await set.restart(old);
}, 90_000);

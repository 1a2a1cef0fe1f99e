// The MarkerWatcher: one blocking connection waiting on many BullMQ marker keys.
import { eventually, type RedisHandle, startRedis } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { MarkerWatcher } from '../src/marker-watcher';

let redis: RedisHandle;
let blocking: Redis;
let commands: Redis;
let watcher: MarkerWatcher;
const errors: Error[] = [];

beforeAll(async () => {
  redis = await startRedis({ own: true });
  blocking = new Redis(redis.url, { maxRetriesPerRequest: null, connectionName: 'mw-test-blocking' });
  commands = new Redis(redis.url);
  watcher = new MarkerWatcher(blocking, commands, (err) => errors.push(err));
});
afterAll(async () => {
  await watcher.stop();
  blocking.disconnect();
  commands.disconnect();
  await redis.stop();
});
afterEach(() => expect(errors).toEqual([]));

let n = 0;
const key = (): string => `mw-test:${process.pid}:${n++}:marker`;

it("ends a wait with its key's marker, and leaves the other waits waiting", async () => {
  const [a, b] = [key(), key()];
  const waitA = watcher.wait(a, 5);
  let bEnded = false;
  const waitB = watcher.wait(b, 5).then((m) => ((bEnded = true), m));
  await commands.zadd(a, 0, '0');
  expect(await waitA).toEqual({ member: '0', score: 0 });
  expect(bEnded).toBe(false);
  await commands.zadd(b, 1234, '1');
  expect(await waitB).toEqual({ member: '1', score: 1234 });
});

it('serves a wait that started while BZPOPMIN blocked on other keys at once, not at their timeout', async () => {
  const [long, late] = [key(), key()];
  const longWait = watcher.wait(long, 8);
  // The BZPOPMIN for `long` alone is under way now.
  await new Promise((r) => setImmediate(r));
  const started = Date.now();
  const lateWait = watcher.wait(late, 8);
  await commands.zadd(late, 0, '0');
  expect(await lateWait).toEqual({ member: '0', score: 0 });
  expect(Date.now() - started).toBeLessThan(2000);
  watcher.cancel(long);
  expect(await longWait).toBeNull();
});

it('ends a wait with null at its timeout', async () => {
  const started = Date.now();
  expect(await watcher.wait(key(), 0.3)).toBeNull();
  expect(Date.now() - started).toBeGreaterThanOrEqual(250);
});

it('leaves a marker that comes after a cancelled wait for the next wait on its key', async () => {
  const k = key();
  const w = watcher.wait(k, 5);
  watcher.cancel(k);
  expect(await w).toBeNull();
  await commands.zadd(k, 0, '0');
  // Nobody waits on k now: the marker stays (or comes back) for the next waiter.
  expect(await watcher.wait(k, 5)).toEqual({ member: '0', score: 0 });
});

it('waits on 1,000 keys with one connection', async () => {
  const keys = Array.from({ length: 1000 }, key);
  const waits = keys.map((k) => watcher.wait(k, 10));
  const clients = (await commands.client('LIST')) as string;
  await Promise.all(keys.map((k, i) => commands.zadd(k, i, String(i))));
  const got = await Promise.all(waits);
  expect(got.map((m) => m?.score)).toEqual(keys.map((_, i) => i));
  // This test's two connections, plus whatever the harness holds: not one per key.
  expect(clients.trim().split('\n').length).toBeLessThan(10);
});

it('ends every wait when its blocking connection reconnects (a marker popped for the lost answer would be lost), and waits again after', async () => {
  const [a, b] = [key(), key()];
  const started = Date.now();
  const waits = [watcher.wait(a, 30), watcher.wait(b, 30)];
  // The BZPOPMIN on both keys is under way; the blocking connection is cut from Redis's side.
  const blockingId = async (): Promise<string | undefined> =>
    /(?:^|\n)id=(\d+) [^\n]*name=mw-test-blocking [^\n]*cmd=bzpopmin/.exec((await commands.client('LIST')) as string)?.[1];
  const id = await eventually(blockingId, 10_000, 'the BZPOPMIN on the blocking connection');
  await commands.client('KILL', 'ID', id);
  expect(await Promise.all(waits)).toEqual([null, null]);
  // Well before the waits' own 30 s.
  expect(Date.now() - started).toBeLessThan(15_000);
  const again = watcher.wait(a, 5);
  await commands.zadd(a, 0, '0');
  expect(await again).toEqual({ member: '0', score: 0 });
});

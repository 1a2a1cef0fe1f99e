import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import Redis from 'ioredis';
import { startRedis, type RedisHandle, waitFor } from '../src';

// jest applies only the global testTimeout, not the one in the integration project's config.

const handles: RedisHandle[] = [];
const clients: Redis[] = [];

async function ownRedis(opts: { appendonly?: boolean } = {}): Promise<RedisHandle> {
  const handle = await startRedis({ own: true, ...opts });
  handles.push(handle);
  return handle;
}

/** A client whose commands fail at once while Redis is down, and which reconnects soon after it is back. */
function connect(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => 50 });
  client.on('error', () => undefined); // expected while Redis is down
  clients.push(client);
  return client;
}

/** Retries `fn` until it resolves, for at most `timeoutMs`. */
const eventually = <T>(fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> => waitFor('the call to succeed', fn, timeoutMs, 50);

afterEach(async () => {
  for (const client of clients.splice(0)) client.disconnect();
  await Promise.all(handles.splice(0).map((h) => h.stop()));
});

describe('startRedis', () => {
  it('starts a Redis of its own that serves SET and GET', async () => {
    const redis = await ownRedis();
    expect(redis.url).toMatch(/^redis:\/\/[^:]+:\d+$/);
    expect(redis.url.endsWith(`:${redis.port}`)).toBe(true);
    const client = connect(redis.url);
    const key = `test-${randomUUID()}`;
    await client.set(key, 'hello');
    await expect(client.get(key)).resolves.toBe('hello');
  });

  it('gives two handles different ports', async () => {
    const [a, b] = await Promise.all([ownRedis(), ownRedis()]);
    expect(a.port).not.toBe(b.port);
    await connect(a.url).set('which', 'a');
    await expect(connect(b.url).get('which')).resolves.toBeNull();
  });

  it('makes commands fail after kill() and answer again on the same url after restart()', async () => {
    const redis = await ownRedis();
    const client = connect(redis.url);
    await expect(client.ping()).resolves.toBe('PONG');

    await redis.kill();
    await expect(client.ping()).rejects.toThrow();

    await redis.restart();
    await expect(eventually(() => client.ping())).resolves.toBe('PONG');
  });

  it('keeps written data across kill() and restart() with appendonly', async () => {
    const redis = await ownRedis({ appendonly: true });
    const client = connect(redis.url);
    const key = `test-${randomUUID()}`;
    await client.set(key, 'durable');

    await redis.kill();
    await redis.restart();

    await expect(eventually(() => client.get(key))).resolves.toBe('durable');
  });

  it('restarts after a graceful stop()', async () => {
    const redis = await ownRedis();
    const client = connect(redis.url);
    await client.set('k', 'v');

    await redis.stop();
    await expect(client.ping()).rejects.toThrow();

    await redis.restart();
    await expect(eventually(() => client.ping())).resolves.toBe('PONG');
  });

  it('deletes every key on flush()', async () => {
    const redis = await ownRedis();
    const client = connect(redis.url);
    await client.mset('a', '1', 'b', '2');
    await redis.flush();
    await expect(client.dbsize()).resolves.toBe(0);
  });

  it('uses REDIS_URL when set, flushes it, and refuses to stop, kill or restart it', async () => {
    const backing = await ownRedis();
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = backing.url;
    try {
      const shared = await startRedis();
      expect(shared.url).toBe(backing.url);
      expect(shared.port).toBe(backing.port);
      await expect(shared.stop()).rejects.toThrow(/does not own/);
      await expect(shared.kill()).rejects.toThrow(/does not own/);
      await expect(shared.restart()).rejects.toThrow(/does not own/);

      const client = connect(backing.url);
      await client.set('k', 'v');
      await shared.flush();
      await expect(client.dbsize()).resolves.toBe(0);
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  it('ignores REDIS_URL when asked for a Redis of its own', async () => {
    const backing = await ownRedis();
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = backing.url;
    try {
      const own = await ownRedis();
      expect(own.port).not.toBe(backing.port);
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  // Only meaningful where the harness would fall back to a local binary.
  const withoutDocker = existsSync('/var/run/docker.sock') ? it.skip : it;
  withoutDocker('tells how to install redis-server when it is not on PATH', async () => {
    const saved = { PATH: process.env.PATH, DOCKER_HOST: process.env.DOCKER_HOST };
    process.env.PATH = '/nonexistent';
    delete process.env.DOCKER_HOST;
    try {
      await expect(startRedis({ own: true })).rejects.toThrow(/apt-get install redis-server.*REDIS_URL/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.DOCKER_HOST !== undefined) process.env.DOCKER_HOST = saved.DOCKER_HOST;
    }
  });
});

// Closing connections while Redis is gone (a SIGTERM during an outage): nothing may wait for it.
import { type RedisHandle, startRedis, waitFor } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { closeConnection } from '../src';

let redis: RedisHandle;

beforeAll(async () => {
  // Its own Redis: the test stops it.
  redis = await startRedis({ own: true });
});
afterAll(async () => {
  await redis?.stop();
});

/** 'closed' when `close` settles within `ms`, else 'still waiting'. */
async function settlesWithin(close: Promise<unknown>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((r) => (timer = setTimeout(() => r('still waiting'), ms)));
  try {
    return await Promise.race([close.then(() => 'closed', () => 'closed'), late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('with Redis down and a command queued offline (as the subscriber has a SUBSCRIBE)', () => {
  let c: Redis;
  /** The GET queued offline: ioredis answers it only once it reconnects, so only once Redis is back. */
  let queued: Promise<unknown>;
  beforeEach(async () => {
    // As the backbone's subscriber connection is: it retries forever.
    c = new Redis(redis.url, { maxRetriesPerRequest: null });
    c.on('error', () => undefined); // refused reconnects while Redis is down; the tests assert on outcomes
    await c.ping();
    await redis.stop();
    await waitFor('the connection to notice', () => c.status !== 'ready');
    queued = c.get('k');
    queued.catch(() => undefined); // disconnected at the end of a test
  });
  afterEach(async () => {
    c.disconnect();
    await redis.restart();
  });

  it('a plain QUIT waits behind the queued command until Redis is back (what closeConnection avoids)', async () => {
    // Proved by order, not by a time-box: the GET can be answered only once Redis is back, so a QUIT
    // that settles after that answer waited through the whole outage. (Both are answered in the order
    // sent, and each is one .then away from `settled`, so the order there is theirs.)
    const settled: string[] = [];
    void queued.then(
      () => settled.push('get answered'),
      () => settled.push('get dropped'),
    );
    const quitting = c.quit().then(
      () => settled.push('quit'),
      () => settled.push('quit'),
    );
    await redis.restart();
    await quitting;
    expect(settled).toEqual(['get answered', 'quit']);
  });

  it('closeConnection drops it at once', async () => {
    expect(await settlesWithin(closeConnection(c), 1000)).toBe('closed');
  });
});

it('quits a connected one, after what it sent is answered', async () => {
  const c = new Redis(redis.url, { maxRetriesPerRequest: null });
  await c.ping();
  const sent = c.set('k', 'v');
  await closeConnection(c);
  await expect(sent).resolves.toBe('OK');
  await waitFor('the connection to end', () => c.status === 'end');
});

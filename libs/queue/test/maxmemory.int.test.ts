// The maxmemory-policy check against a real Redis whose policy the test changes with CONFIG SET.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@jobmesh/telemetry';
import { type RedisHandle, startRedis, waitFor } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { checkMaxmemoryPolicy, openBackbone } from '../src';

let redis: RedisHandle;
let admin: Redis;
const clients: Redis[] = [];

beforeAll(async () => {
  // Its own Redis: the test changes a server-wide setting.
  redis = await startRedis({ own: true });
  admin = connect(redis.url);
});
afterEach(async () => {
  await admin.config('SET', 'maxmemory-policy', 'noeviction');
});
afterAll(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await redis?.stop();
});

function connect(url: string): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

/** A logger whose JSON lines the test reads back. */
function recordingLogger(): { logger: Logger; lines: { level: string; msg: string; err?: string }[] } {
  const lines: { level: string; msg: string; err?: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as never);
      done();
    },
  });
  return { logger: createLogger({ name: 'maxmemory-test', level: 'debug', destination }), lines };
}

describe('checkMaxmemoryPolicy', () => {
  it('is silent when the policy is noeviction', async () => {
    const { logger, lines } = recordingLogger();
    await expect(checkMaxmemoryPolicy(admin, 'production', logger)).resolves.toBeUndefined();
    await expect(checkMaxmemoryPolicy(admin, 'development', logger)).resolves.toBeUndefined();
    expect(lines).toEqual([]);
  });

  it('warns, naming the policy and the fix, in development when the policy is allkeys-lru', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const { logger, lines } = recordingLogger();
    await expect(checkMaxmemoryPolicy(admin, 'development', logger)).resolves.toBeUndefined();
    expect(lines).toEqual([
      expect.objectContaining({ level: 'warn', msg: expect.stringMatching(/maxmemory-policy is "allkeys-lru".*CONFIG SET maxmemory-policy noeviction/) }),
    ]);
  });

  it('throws, naming the policy, in production when the policy is allkeys-lru', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const { logger, lines } = recordingLogger();
    await expect(checkMaxmemoryPolicy(admin, 'production', logger)).rejects.toThrow(/maxmemory-policy is "allkeys-lru".*noeviction/);
    expect(lines).toEqual([]);
  });

  it('warns instead of guessing when CONFIG GET is refused, as on managed Redis', async () => {
    // A user allowed everything but CONFIG, as managed Redis services hand out.
    const user = `app-${randomUUID().slice(0, 8)}`;
    await admin.acl('SETUSER', user, 'on', '>secret', '~*', '&*', '+@all', '-config');
    const restricted = connect(`redis://${user}:secret@127.0.0.1:${redis.port}`);
    const { logger, lines } = recordingLogger();
    await expect(checkMaxmemoryPolicy(restricted, 'production', logger)).resolves.toBeUndefined();
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', msg: expect.stringContaining('cannot read maxmemory-policy'), err: expect.stringMatching(/NOPERM/) })]);
  });
});

describe('openBackbone', () => {
  it('refuses to start in production against a Redis that may evict keys, and closes its connections', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    expect(await jobmeshConnections()).toBe(0);
    await expect(
      openBackbone({ settings: { url: redis.url, prefix: `t${randomUUID().slice(0, 8)}` }, mode: 'production', logger: recordingLogger().logger }),
    ).rejects.toThrow(/allkeys-lru/);
    // The server sees a disconnect a moment later: poll, with a deadline.
    await waitFor('the backbone connections to close', async () => (await jobmeshConnections()) === 0);
  });

  it('starts in development against the same Redis, with a warning', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const { logger, lines } = recordingLogger();
    const backbone = await openBackbone({ settings: { url: redis.url, prefix: `t${randomUUID().slice(0, 8)}` }, mode: 'development', logger });
    try {
      await expect(backbone.ping()).resolves.toBe(true);
      expect(lines.some((l) => l.level === 'warn' && /allkeys-lru/.test(l.msg))).toBe(true);
    } finally {
      await backbone.close();
    }
  });
});

/** Connections a backbone opened (named jobmesh:…) that the server still has. */
async function jobmeshConnections(): Promise<number> {
  const list = (await admin.client('LIST')) as string;
  return list.split('\n').filter((l) => / name=jobmesh:/.test(l)).length;
}

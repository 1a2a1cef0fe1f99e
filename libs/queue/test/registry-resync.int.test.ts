// The queue registry after a Redis reconnect: a reload that fails is retried and logged, and
// readiness says so until it succeeded. Real Redis; the reload is made to fail by giving the
// registry key the wrong type, which is what a half-restored or foreign keyspace looks like.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { defaultQueueSpec } from '@jobmesh/core';
import { createLogger, createRegistry, type Logger, type OpsServer, startOpsServer } from '@jobmesh/telemetry';
import { type RedisHandle, eventually, startRedis } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { type Backbone, openBackbone } from '../src';

let redis: RedisHandle;
let admin: Redis;
let backbone: Backbone;
let ops: OpsServer;
const lines: { level: number; msg: string; err?: string }[] = [];
const prefix = `t${randomUUID().slice(0, 8)}`;

function recordingLogger(): Logger {
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as never);
      done();
    },
  });
  return createLogger({ name: 'test', level: 'info', destination });
}


const readyz = async (): Promise<{ status: number; body: string }> => {
  const res = await fetch(`http://127.0.0.1:${ops.port}/readyz`);
  return { status: res.status, body: await res.text() };
};

beforeAll(async () => {
  redis = await startRedis({ own: true });
  admin = new Redis(redis.url);
  backbone = await openBackbone({ settings: { url: redis.url, prefix, commandTimeoutMs: 2000 }, mode: 'development', logger: recordingLogger() });
  ops = await startOpsServer({ host: '127.0.0.1', port: 0, registry: createRegistry(), ready: backbone.ready });
});
afterAll(async () => {
  await ops?.close();
  await backbone?.close();
  admin?.disconnect();
  await redis?.stop();
});

it('retries a registry reload that fails after a reconnect, logs it, and is not ready until it succeeds', async () => {
  await backbone.registry.create(defaultQueueSpec('before'));
  expect(await readyz()).toEqual({ status: 200, body: 'ready\n' });

  // A queue created behind the registry's back while its subscriber is away is only seen by the
  // reload after the reconnect; that reload fails while the registry key has the wrong type.
  const key = backbone.registry.keys.registry;
  const saved = await admin.hgetall(key);
  await admin.del(key);
  await admin.set(key, 'not a hash');
  await admin.client('KILL', 'TYPE', 'pubsub');

  const failed = await eventually(() => lines.find((l) => /could not reload the queue registry/.test(l.msg)), 10_000, 'the failed reload to be logged');
  expect(failed.err).toMatch(/WRONGTYPE/);
  expect(await readyz()).toEqual({ status: 503, body: 'not ready: the queue registry is being reloaded after a Redis reconnect\n' });
  expect(backbone.registry.upToDate).toBe(false);

  await admin.del(key);
  await admin.hset(key, { ...saved, after: JSON.stringify(defaultQueueSpec('after')) });
  await eventually(async () => (await readyz()).status === 200, 10_000, 'readiness after the retried reload');
  expect(lines.filter((l) => /could not reload the queue registry/.test(l.msg)).length).toBeGreaterThanOrEqual(1);
  expect(lines.some((l) => l.msg === 'queue registry reloaded after a Redis reconnect')).toBe(true);
  expect(backbone.registry.cached().map((q) => q.name).sort()).toEqual(['after', 'before']);
});

it('is not ready, and says why, while Redis is unreachable', async () => {
  // Paused for longer than the command timeout (2s), Redis does not answer PING in time.
  await admin.client('PAUSE', 3000, 'ALL');
  const { status, body } = await readyz();
  expect(status).toBe(503);
  expect(body).toBe('not ready: Redis is not reachable\n');
});

import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { commonEnvSchema, parseEnv } from '@jobmesh/config';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { openServiceHost, type ServiceHost } from '../src';

// The host is where grpc-kit, which knows no backend, learns from libs/queue which errors are a
// Redis outage: its RpcKit answers them UNAVAILABLE.

let redis: RedisHandle;
let host: ServiceHost;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  const env = parseEnv(commonEnvSchema, {
    REDIS_URL: redis.url,
    JOBMESH_REDIS_PREFIX: `t${randomUUID().slice(0, 8)}`,
    JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
    JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
    JOBMESH_SHUTDOWN_GRACE: '1s',
    JOBMESH_REDIS_COMMAND_TIMEOUT: '1s',
    JOBMESH_CONFIG: '',
  });
  host = await openServiceHost(env, { name: 'host-test', logger: silentLogger() });
});
afterAll(async () => {
  await host.stop();
  await redis.stop();
});

it("maps ioredis's connection failures and timeouts to UNAVAILABLE through its kit", () => {
  for (const message of ["Stream isn't writeable and enableOfflineQueue options is false", 'Connection is closed.', 'connect ECONNREFUSED 127.0.0.1:1', 'Command timed out']) {
    expect(host.kit.toStatus(new Error(message))).toMatchObject({ code: status.UNAVAILABLE, details: `Redis is unavailable: ${message}`, expected: true });
  }
  expect(host.kit.toStatus(Object.assign(new Error('x'), { name: 'MaxRetriesPerRequestError' })).code).toBe(status.UNAVAILABLE);
  expect(host.kit.toStatus(new TypeError('cannot read x of undefined'))).toMatchObject({ code: status.INTERNAL, expected: false });
});

it('answers UNAVAILABLE for the error a command really gets once Redis is gone, and still stops', async () => {
  await host.listen();
  await redis.stop();
  const err = await host.backbone.redis.get('anything').then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  expect(host.kit.toStatus(err).code).toBe(status.UNAVAILABLE);
  // Its stop steps that wait for Redis are bounded (the grace period and a margin).
  await host.stop();
});

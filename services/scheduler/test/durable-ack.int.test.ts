// JOBMESH_DURABLE_ACK=replicas:N (issue 16, point 3): an enqueue is acknowledged only once N Redis
// replicas have its write, so a failover to one of them cannot lose it. A master and a replica of
// the test's own, on loopback; the replica is stopped to show what happens when it cannot confirm.
import { status } from '@grpc/grpc-js';
import { ConfigError } from '@jobmesh/config';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisClient, type RedisHandle, connectRedis, startRedis } from '@jobmesh/testing';
import { loadSchedulerEnv } from '../src/config';
import { startScheduler } from '../src/start';
import { type SchedulerHarness, startSchedulerHarness, uniqueQueue, waitFor } from '../src/testing';

let master: RedisHandle;
let replica: RedisHandle;
let onReplica: RedisClient;
let durable: SchedulerHarness;
let plain: SchedulerHarness;

/** Makes `replica` a replica of `master` and waits until its link is up and in sync. */
async function follow(): Promise<void> {
  await onReplica.replicaof('127.0.0.1', master.port);
  await waitFor('the replica to sync with its master', async () => /master_link_status:up/.test(await onReplica.info('replication')));
}

beforeAll(async () => {
  [master, replica] = await Promise.all([startRedis({ own: true }), startRedis({ own: true })]);
  onReplica = connectRedis(replica.url, { maxRetriesPerRequest: null });
  onReplica.on('error', () => undefined); // the replica is stopped and started again below
  await follow();
  durable = await startSchedulerHarness({ redis: master, env: { JOBMESH_DURABLE_ACK: 'replicas:1', JOBMESH_DURABLE_ACK_TIMEOUT: '300ms' } });
  plain = await startSchedulerHarness({ redis: master });
}, 30_000);

afterAll(async () => {
  await durable?.stop();
  await plain?.stop();
  onReplica?.disconnect();
  await Promise.all([replica?.stop(), master?.stop()]);
});

const jobKey = (h: SchedulerHarness, queue: string, id: string) => `${h.prefix}:${queue}:${id}`;

describe('with JOBMESH_DURABLE_ACK=replicas:1', () => {
  it('answers every kind of enqueue once the replica has it: its job is on the replica when the answer comes', async () => {
    const queue = await durable.newQueue('durable');
    const c = durable.client;
    const one = await c.enqueueJob({ queue, job: { name: 'plain' } });
    const keyed = await c.enqueueJob({ queue, job: { name: 'keyed', options: { idempotencyKey: `k-${queue}` } } });
    const bulk = await c.enqueueJobs({ queue, jobs: [{ name: 'b1' }, { name: 'b2' }] });
    const flow = await c.enqueueFlow({ root: { queue, job: { name: 'parent' }, children: [{ queue, job: { name: 'child' }, children: [] }] } });
    // A root with its own id goes through the guarded flows' connection of their own.
    const guarded = await c.enqueueFlow({ root: { queue, job: { name: 'parent', options: { jobId: `root-${queue}` } }, children: [{ queue, job: { name: 'child' }, children: [] }] } });
    const ids = [one.job!.id, keyed.job!.id, ...bulk.jobs.map((r) => r.id), ...[flow, guarded].flatMap((f) => [f.flow!.job!.id, ...f.flow!.children.map((n) => n.job!.id)])];
    expect(ids).toHaveLength(8);
    // Read at once, no waiting: the acknowledgement came after the replica confirmed the writes.
    const onReplicaNow = await Promise.all(ids.map((id) => onReplica.exists(jobKey(durable, queue, id))));
    expect(onReplicaNow).toEqual(ids.map(() => 1));
  });

  it('answers UNAVAILABLE, saying why, when no replica confirms in time; a retry with the same key finds the job once one does', async () => {
    const queue = await durable.newQueue('no-replica');
    await replica.stop();
    try {
      const key = `lonely-${queue}`;
      const started = Date.now();
      const err = await durable.client.enqueueJob({ queue, job: { name: 'lonely', options: { idempotencyKey: key } } }).catch((e: unknown) => e as { code?: number; details?: string });
      expect(err).toMatchObject({ code: status.UNAVAILABLE });
      expect((err as { details: string }).details).toMatch(/0 of the 1 replicas JOBMESH_DURABLE_ACK asks for confirmed it within 300 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      // Written on the master all the same: the key points at it, so the retry adds no second job.
      await replica.restart();
      await follow();
      const retried = await durable.client.enqueueJob({ queue, job: { name: 'lonely', options: { idempotencyKey: key } } });
      expect(retried.deduplicated).toBe(true);
      expect(await onReplica.exists(jobKey(durable, queue, retried.job!.id))).toBe(1);
      expect(await durable.withBullQueue(queue, (q) => q.count())).toBe(1);
    } finally {
      if (!/master_link_status:up/.test(await onReplica.info('replication').catch(() => ''))) {
        await replica.restart();
        await follow();
      }
    }
  });
});

describe('without it', () => {
  it('answers at once, whether or not a replica is there', async () => {
    const queue = await plain.newQueue('plain');
    await replica.stop();
    try {
      const started = Date.now();
      await plain.client.enqueueJob({ queue, job: { name: 'fast' } });
      expect(Date.now() - started).toBeLessThan(300);
    } finally {
      await replica.restart();
      await follow();
    }
  });
});

describe('the settings', () => {
  const base = { REDIS_URL: 'redis://127.0.0.1:1', JOBMESH_CONFIG: '' };

  it.each(['replicas:0', 'replicas', '1', 'replicas:-1', 'all'])('refuses JOBMESH_DURABLE_ACK=%s, naming the form it takes', (value) => {
    expect(() => loadSchedulerEnv({ ...base, JOBMESH_DURABLE_ACK: value })).toThrow(ConfigError);
    expect(() => loadSchedulerEnv({ ...base, JOBMESH_DURABLE_ACK: value })).toThrow(/JOBMESH_DURABLE_ACK: must be replicas:N/);
  });

  it('refuses to start when the wait for the replicas would outlast the Redis command timeout', async () => {
    const env = loadSchedulerEnv({
      REDIS_URL: master.url,
      JOBMESH_REDIS_PREFIX: `da-${uniqueQueue()}`,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_CONFIG: '',
      JOBMESH_DURABLE_ACK: 'replicas:1',
      JOBMESH_DURABLE_ACK_TIMEOUT: '5s',
      JOBMESH_REDIS_COMMAND_TIMEOUT: '2s',
    });
    await expect(startScheduler(env, { logger: silentLogger() })).rejects.toThrow(/JOBMESH_DURABLE_ACK_TIMEOUT \(5000 ms\) must be shorter than JOBMESH_REDIS_COMMAND_TIMEOUT \(2000 ms\)/);
  });
});

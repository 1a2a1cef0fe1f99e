// 50 concurrent enqueues of one idempotency key, job id, mixed batch or flow root id, spread over
// two scheduler processes on one Redis (issue 9, point 2): exactly one job, every answer names it,
// exactly one answer says deduplicated=false.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobmeshClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { KINDS, Ledger } from '../faults/fixtures/ledger';
import { killAll, startService } from './fixtures/services';

const CONCURRENT = 50;

let redis: RedisHandle;
let dir: string;
let clients: JobmeshClient[] = [];
const prefix = `conc-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-idem-'));
  const env = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix };
  const [a, b] = await Promise.all([startService('scheduler', env, dir), startService('scheduler', env, dir)]);
  clients = [a!, b!].map((s) => new JobmeshClient({ address: s.grpcAddress, timeoutMs: 20_000 }));
});
afterAll(async () => {
  for (const c of clients) c.close();
  await killAll();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe(`${CONCURRENT} concurrent enqueues of one key from two scheduler processes`, () => {
  for (const kind of KINDS) {
    const what = { key: 'an idempotency key', id: 'a job_id', bulk: 'a mixed keyed/unkeyed/job_id EnqueueJobs batch', flow: 'a flow root job_id' }[kind];
    it(`with ${what}: exactly one job, every answer names it, one answer not deduplicated`, async () => {
      const queue = `q-${randomUUID().slice(0, 8)}`;
      await clients[0]!.createQueue({ queue: { name: queue } });
      // Both processes know the queue before the burst (the registry tells the other by pub/sub).
      await Promise.all(clients.map((c) => c.getQueue(queue)));
      const ledger = new Ledger();
      const deadline = Date.now() + 30_000;
      await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => ledger.enqueue(clients[i % 2]!, queue, kind, 'the-one', deadline)));
      expect(await ledger.problems(redis.port, prefix, queue)).toEqual([]);
      const keys = kind === 'bulk' ? ['the-one-k', 'the-one-i'] : ['the-one'];
      for (const key of keys) {
        expect(ledger.answers.get(key)!.answers).toHaveLength(CONCURRENT);
        expect(ledger.created(key)).toBe(1);
      }
      if (kind === 'bulk') expect(ledger.unkeyedAnswered).toBe(CONCURRENT);
      expect(ledger.failedCalls).toBe(0);
    });
  }
});

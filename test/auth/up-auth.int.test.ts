// `jobmesh up` with auth on calls itself: the dead-letter service's replays go into its own
// scheduler. Without JOBMESH_API_KEY it makes a key of its own for that, held in memory only, so
// a replay asked for with an admin key works; the key is never printed and no caller can use it
// without knowing it.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { type UpHandle, up } from '@jobmesh/cli';
import { hashSecret } from '@jobmesh/core';
import { JobmeshClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis, waitFor } from '@jobmesh/testing';

let redis: RedisHandle;
let dir: string;
let handle: UpHandle;
const printed: string[] = [];
const clients: JobmeshClient[] = [];

beforeAll(async () => {
  redis = await startRedis({ own: true });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-up-auth-'));
  const keys = join(dir, 'keys.yaml');
  writeFileSync(keys, `keys:\n  - { id: admin, hash: "${hashSecret('admin-secret')}", role: admin, queues: ["*"] }\n`);
  handle = await up(
    {
      PATH: process.env.PATH,
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: `up-auth-${randomUUID().slice(0, 8)}`,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_DLQ_SWEEP_INTERVAL: '200ms',
      JOBMESH_API_KEYS_FILE: keys,
      JOBMESH_CONFIG: '',
      LOG_LEVEL: 'silent',
    },
    (line) => printed.push(line),
  );
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await handle?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const client = (apiKey?: string): JobmeshClient => {
  const c = new JobmeshClient({ address: handle.grpcAddress, apiKey, retry: { maxTries: 1 } });
  clients.push(c);
  return c;
};

it('replays a dead letter into its own scheduler with a key of its own, which it never prints', async () => {
  const admin = client('admin.admin-secret');
  const queue = `ghosts-${randomUUID().slice(0, 6)}`;
  await admin.createQueue({ queue: { name: queue, processorWait: { seconds: 0, nanos: 0 } } });
  const { job } = await admin.enqueueJob({ queue, job: { name: 'ghost' } });
  const [d] = await waitFor('the dead letter', async () => {
    const { deadLetters } = await admin.deadLetters.list({ filter: { queue } });
    return deadLetters.length ? deadLetters : undefined;
  });
  const replayed = await admin.deadLetters.replay({ ids: [d!.id] });
  expect(replayed.replayed).toHaveLength(1);
  expect(replayed.replayed[0]!.job!.id).not.toBe(job!.id);
  await expect(admin.getJob(queue, replayed.replayed[0]!.job!.id)).resolves.toMatchObject({ name: 'ghost' });

  // The file's one key is what it reports; its own key appears nowhere in what it printed.
  expect(printed.join('\n')).toMatch(/Auth\s+API keys from .*keys\.yaml \(1 keys, reloaded when it changes\)/);
  expect(printed.join('\n')).not.toMatch(/jobmesh-up-[0-9a-f]{12}/);
  // And auth is on for everyone else.
  await expect(client().listQueues()).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
});

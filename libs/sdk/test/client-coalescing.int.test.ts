// enqueueJob calls made together go out together (issue 14, point 1): through one EnqueueStream,
// each caller still gets exactly its own answer or its own error, and idempotency keys keep
// their meaning, also when the connection is cut and keyed calls are retried.
import * as pb from '@jobmesh/contracts';
import { InvalidArgumentError, JobmeshClient, QueueNotFoundError, ResourceExhaustedError } from '@jobmesh/sdk';
import { useSchedulerHarness } from '@jobmesh/scheduler/testing';
import { type RedisProxy, eventually, startRedisProxy } from '@jobmesh/testing';

const h = useSchedulerHarness({ env: { JOBMESH_MAX_PAYLOAD_BYTES: '1024' } });

/** The scheduler's count of calls to `method` (jobmesh_grpc_requests_total, every status code). */
async function callsTo(method: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${h.scheduler.httpPort}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('jobmesh_grpc_requests_total{') && line.includes(`method="/jobmesh.v1.SchedulerService/${method}"`)) n += Number(line.split(' ').pop());
  }
  return n;
}

async function storedJobs(queue: string): Promise<pb.Job[]> {
  const jobs: pb.Job[] = [];
  let pageToken = '';
  do {
    const page = await h.client.listJobs({ queue, pageSize: 1000, pageToken });
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return jobs;
}

type Kind = 'valid' | 'bad-name' | 'too-big' | 'unknown-queue' | 'key-first' | 'key-second';
const kindOf = (i: number): Kind => (['bad-name', 'too-big', 'key-first', 'key-second', 'unknown-queue', 'valid', 'valid', 'valid', 'valid', 'valid'] as const)[i % 10]!;

test('10,000 concurrent enqueueJob calls, valid, invalid and with repeated keys: each caller gets its own answer', async () => {
  const queue = await h.newQueue('coalesce');
  const client = new JobmeshClient({ address: h.address, timeoutMs: 30_000 });
  const unaryBefore = await callsTo('EnqueueJob');
  const streamsBefore = await callsTo('EnqueueStream');
  const N = 10_000;
  const calls = Array.from({ length: N }, (_, i) => {
    const kind = kindOf(i);
    const key = `key-${Math.floor(i / 10)}`;
    const req: Record<Kind, () => Parameters<JobmeshClient['enqueueJob']>[0]> = {
      valid: () => ({ queue, job: { name: `n${i}`, data: { i } } }),
      'bad-name': () => ({ queue, job: { name: '' } }),
      'too-big': () => ({ queue, job: { name: `n${i}`, data: { blob: 'x'.repeat(2000) } } }),
      'unknown-queue': () => ({ queue: `${queue}-missing`, job: { name: `n${i}` } }),
      'key-first': () => ({ queue, job: { name: `n${i}`, options: { idempotencyKey: key } } }),
      'key-second': () => ({ queue, job: { name: `n${i}`, options: { idempotencyKey: key } } }),
    };
    return client.enqueueJob(req[kind]()).then(
      (res) => ({ i, res }),
      (err: unknown) => ({ i, err }),
    );
  });
  const results = await Promise.all(calls);
  const byKey = new Map<string, { id: string; deduplicated: boolean }[]>();
  for (const r of results) {
    const kind = kindOf(r.i);
    if (kind === 'bad-name') expect('err' in r && r.err instanceof InvalidArgumentError && r.err.field === 'job.name').toBe(true);
    else if (kind === 'too-big') expect('err' in r && r.err instanceof ResourceExhaustedError).toBe(true);
    else if (kind === 'unknown-queue') expect('err' in r && r.err instanceof QueueNotFoundError && r.err.queue === `${queue}-missing`).toBe(true);
    else {
      if (!('res' in r)) throw new Error(`call ${r.i} (${kind}) failed: ${String(r.err)}`);
      if (kind === 'valid') {
        // Its own job: the name it sent, never a neighbour's.
        expect(r.res.deduplicated).toBe(false);
        expect(r.res.job!.name).toBe(`n${r.i}`);
      } else {
        const key = `key-${Math.floor(r.i / 10)}`;
        byKey.set(key, [...(byKey.get(key) ?? []), { id: r.res.job!.id, deduplicated: r.res.deduplicated }]);
      }
    }
  }
  // Each key: one job, one caller told it was added, the other that it was a duplicate of it.
  expect(byKey.size).toBe(N / 10);
  for (const pair of byKey.values()) {
    expect(pair).toHaveLength(2);
    expect(pair[0]!.id).toBe(pair[1]!.id);
    expect(pair.map((p) => p.deduplicated).sort()).toEqual([false, true]);
  }
  // Redis holds exactly the valid jobs, one per key.
  const stored = await storedJobs(queue);
  expect(stored).toHaveLength((N / 10) * 5 + N / 10);
  expect(new Set(stored.map((j) => j.id)).size).toBe(stored.length);
  // They went out together: no EnqueueJob call, and a stream or a few.
  expect(await callsTo('EnqueueJob')).toBe(unaryBefore);
  client.close();
  // The server counts a stream once it has ended: the client's close ends it.
  await eventually(async () => (await callsTo('EnqueueStream')) > streamsBefore, 5000, 'the coalescing stream to end');
  expect((await callsTo('EnqueueStream')) - streamsBefore).toBeLessThanOrEqual(3);
});

test('with coalescing off, each enqueueJob is an EnqueueJob call of its own', async () => {
  const queue = await h.newQueue('one-by-one');
  const client = new JobmeshClient({ address: h.address, coalesce: false });
  const before = await callsTo('EnqueueJob');
  const res = await Promise.all(Array.from({ length: 20 }, (_, i) => client.enqueueJob({ queue, job: { name: `n${i}` } })));
  client.close();
  expect(res.map((r) => r.job!.name)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
  expect((await callsTo('EnqueueJob')) - before).toBe(20);
});

test('a call with metadata of its own goes alone; one with only a traceparent is coalesced', async () => {
  const queue = await h.newQueue('metadata');
  const client = new JobmeshClient({ address: h.address });
  const before = await callsTo('EnqueueJob');
  await Promise.all([
    client.enqueueJob({ queue, job: { name: 'own-metadata' } }, { metadata: { 'x-tenant': 'a' } }),
    client.enqueueJob({ queue, job: { name: 'traced' } }, { metadata: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } }),
  ]);
  client.close();
  expect((await callsTo('EnqueueJob')) - before).toBe(1);
});

describe('cut connections', () => {
  let proxy: RedisProxy;
  beforeAll(async () => {
    // Plain TCP: here it stands between the client and the scheduler.
    proxy = await startRedisProxy({ port: h.scheduler.grpcPort });
  });
  afterAll(() => proxy.close());

  test('keyed calls whose stream is cut are retried and still make one job per key', async () => {
    const queue = await h.newQueue('coalesce-cut');
    const client = new JobmeshClient({ address: proxy.url.replace('redis://', ''), timeoutMs: 20_000, retry: { maxTries: 8 } });
    const calls: Promise<pb.EnqueueJobResponse>[] = [];
    let cut = false;
    for (let i = 0; i < 2000; i++) {
      calls.push(client.enqueueJob({ queue, job: { name: 'keyed', options: { idempotencyKey: `cut-${i}` } } }));
      if (i === 700) void proxy.cutNext('request').then(() => (cut = true));
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    const answers = await Promise.all(calls);
    client.close();
    expect(cut).toBe(true);
    expect(new Set(answers.map((a) => a.job!.id)).size).toBe(2000);
    const stored = await storedJobs(queue);
    expect(stored).toHaveLength(2000);
    expect(new Set(stored.map((j) => j.idempotencyKey)).size).toBe(2000);
  });
});

// Idempotent enqueue under faults (issue 9, point 2): Redis paused for writes, Redis killed with
// SIGKILL and restarted from its append-only file, a scheduler process killed in the middle of a
// burst. Schedulers run as their own processes (services/scheduler/dist/main.js); clients retry
// as the SDK does, and make a call again when it still failed, as an application would. Every
// test ends with exactly one job per idempotency key and job id, every flow root with only its
// own children, and no answer naming a job that does not exist.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobmeshClient, type RetryPolicy } from '@jobmesh/sdk';
import { connectRedis, type RedisHandle, startRedis } from '@jobmesh/testing';
import { killAll, type ServiceProcess, startService } from '../system/fixtures/services';
import { KINDS, Ledger } from './fixtures/ledger';

let redis: RedisHandle;
let dir: string;
const prefix = `faults-${randomUUID().slice(0, 8)}`;
const clients: JobmeshClient[] = [];

beforeAll(async () => {
  // Every write Redis answered must survive kill -9: fsync before each answer.
  redis = await startRedis({ own: true, appendonly: true, appendfsync: 'always' });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-faults-'));
});
afterAll(async () => {
  for (const c of clients) c.close();
  await killAll();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function scheduler(env: Record<string, string> = {}): Promise<ServiceProcess> {
  return startService('scheduler', { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, ...env }, dir);
}

function clientOf(svc: ServiceProcess, timeoutMs: number, retry: RetryPolicy): JobmeshClient {
  const c = new JobmeshClient({ address: svc.grpcAddress, timeoutMs, retry });
  clients.push(c);
  return c;
}

/** Tries the scheduler answered UNAVAILABLE because Redis did not answer (its own log says so). */
const unavailableTries = (svc: ServiceProcess): number => svc.logs().filter((l) => l.msg === 'backend unavailable').length;

/**
 * Runs `fn`; if it fails, adds the schedulers' unexpected errors to the message (an INTERNAL
 * answer says only that the server log has the details).
 */
async function explained<T>(svcs: ServiceProcess[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    // The log line may still be on its way from the child process.
    await new Promise((r) => setTimeout(r, 200));
    const lines = svcs.flatMap((s) => s.output().split('\n').filter((l) => l.includes('unexpected error')));
    if (err instanceof Error && lines.length) err.message += `\n--- scheduler errors ---\n${lines.slice(0, 5).join('\n')}`;
    throw err;
  }
}

/**
 * Runs CALLS keyed calls, a quarter of each kind, PARALLEL at a time, on `queue`; `onProgress`
 * hears how many have been answered after each answer (fault injectors start from there).
 */
async function workload(
  ledger: Ledger,
  client: JobmeshClient | (() => JobmeshClient),
  queue: string,
  calls: number,
  parallel: number,
  onProgress: (answered: number) => void,
): Promise<void> {
  const todo = Array.from({ length: calls }, (_, i) => ({ kind: KINDS[i % KINDS.length]!, key: `k${i}` }));
  const deadline = Date.now() + 90_000;
  let answered = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let next = todo.shift(); next; next = todo.shift()) {
        await ledger.enqueue(client, queue, next.kind, next.key, deadline);
        onProgress(++answered);
      }
    }),
  );
}

async function newQueue(client: JobmeshClient): Promise<string> {
  const queue = `q-${randomUUID().slice(0, 8)}`;
  await client.createQueue({ queue: { name: queue } });
  return queue;
}

it('Redis paused for writes again and again: tries time out while their writes wait, repeats find them, one job per key', async () => {
  // The scheduler gives up on Redis after 250 ms and answers UNAVAILABLE; the write it sent stays
  // queued in Redis and is applied when the pause ends, after the client has moved on.
  const svc = await scheduler({ JOBMESH_REDIS_COMMAND_TIMEOUT: '250ms' });
  const client = clientOf(svc, 8000, { maxTries: 20, attemptTimeoutMs: 600 });
  const queue = await newQueue(client);
  const admin = connectRedis(redis.url, { maxRetriesPerRequest: 20 });
  const ledger = new Ledger();
  const CALLS = 160;
  const PAUSES = 5;
  const PAUSE_MS = 900;
  let pauses = 0;
  let pausing: Promise<unknown> = Promise.resolve();
  try {
    // A pause each time another sixth of the calls is answered (the first at once).
    const pause = (): void => {
      pauses += 1;
      pausing = pausing.then(() => admin.client('PAUSE', PAUSE_MS, 'WRITE'));
    };
    pause();
    await explained([svc], () =>
      workload(ledger, client, queue, CALLS, 16, (answered) => {
        if (pauses < PAUSES && answered >= (pauses * CALLS) / (PAUSES + 1)) pause();
      }),
    );
    await pausing;
    await admin.client('UNPAUSE');
    expect(pauses).toBe(PAUSES);
    expect(await ledger.problems(redis.port, prefix, queue)).toEqual([]);
    // The faults were felt: tries failed on the server and calls answered "deduplicated" for
    // writes an earlier try made.
    expect(unavailableTries(svc)).toBeGreaterThan(0);
    expect(ledger.deduplicatedAnswers).toBeGreaterThan(0);
  } finally {
    admin.disconnect();
  }
});

it('Redis killed with SIGKILL and restarted from its AOF three times: one job per key, no answer for a lost job', async () => {
  const svc = await scheduler({ JOBMESH_REDIS_COMMAND_TIMEOUT: '1s' });
  const client = clientOf(svc, 6000, { maxTries: 10, attemptTimeoutMs: 1500 });
  const queue = await newQueue(client);
  const ledger = new Ledger();
  const CALLS = 160;
  const KILLS = 3;
  let kills = 0;
  let chaos: Promise<void> = Promise.resolve();
  await explained([svc], () =>
    workload(ledger, client, queue, CALLS, 12, (answered) => {
      if (kills < KILLS && answered >= ((kills + 1) * CALLS) / (KILLS + 2)) {
        kills += 1;
        chaos = chaos.then(async () => {
          await redis.kill();
          await redis.restart();
        });
      }
    }),
  );
  await chaos;
  expect(kills).toBe(KILLS);
  expect(await ledger.problems(redis.port, prefix, queue)).toEqual([]);
  expect(ledger.failedCalls + unavailableTries(svc)).toBeGreaterThan(0);
});

it('a scheduler killed with SIGKILL in the middle of a burst: the calls it held are made again on another, one job per key', async () => {
  const a = await scheduler();
  const b = await scheduler();
  const retry = { maxTries: 3 };
  const clientA = clientOf(a, 5000, retry);
  const clientB = clientOf(b, 5000, retry);
  const queue = await newQueue(clientA);
  const ledger = new Ledger();
  const CALLS = 200;
  let killed = false;
  // Calls go to A while it runs, then to B: what was in flight at A when it died is made again.
  await explained([a, b], () =>
    workload(ledger, () => (a.running() && !killed ? clientA : clientB), queue, CALLS, 16, (answered) => {
      if (!killed && answered >= CALLS / 3) {
        killed = true;
        a.child.kill('SIGKILL');
      }
    }),
  );
  await a.exited;
  expect(killed).toBe(true);
  expect(await ledger.problems(redis.port, prefix, queue)).toEqual([]);
});

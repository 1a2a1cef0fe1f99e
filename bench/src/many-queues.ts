// node bench/dist/many-queues.js [--queues 1000] [--rate 200] [--seconds 10] [--idle-seconds 10] [--shared true|false]:
// what serving many queues costs one worker-pool replica (issue 14, point 9). It starts a
// redis-server of its own, a scheduler, creates --queues queues, and starts one worker-pool
// (no-op processor on every queue, as spawnService starts it), then reports
// The worker-pool runs with JOBMESH_SHARED_CONNECTIONS=--shared (default true), so the figures are
// those of shared connections; --shared false measures a BullMQ Worker's two per queue.
//   - the Redis connections the worker-pool holds (CLIENT LIST, by its connections' names, and
//     all of Redis's less the scheduler's and the bench's own);
//   - its CPU while idle (utime + stime from /proc/<pid>/stat over --idle-seconds), in % of a core;
//   - its resident set (VmRSS) idle;
//   - enqueue→start under a trickle: --rate jobs/s in all for --seconds, each to a queue in turn,
//     one EnqueueJob call each; start − enqueue from each job's own timestamps (BullMQ's
//     `timestamp` and `processedOn`, ms), p50 and p99.
// Linux only (/proc). Not a test: the figures depend on the machine.
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { JobmeshClient } from '@jobmesh/sdk';
import { startRedis } from '@jobmesh/testing';
import { Redis } from 'ioredis';
import { type ServiceProcess, spawnService } from './environment';
import { childPid, cpuMsOf, memoryOf } from './proc';

const ROOT = resolve(__dirname, '../..');
const SCHEDULER = resolve(ROOT, 'services/scheduler/dist/main.js');
const WORKER_POOL = resolve(ROOT, 'services/worker-pool/dist/main.js');
const NOOP_PROCESSOR = resolve(ROOT, 'bench/fixtures/noop-processor.js');
/** The key prefix spawnService gives the services (environment.ts). */
const PREFIX = 'bench-jobmesh';
/** Issue 14's goals for one replica. */
const GOAL = { connections: 50, idleCpuPct: 5, p99Ms: 50 };

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const progress = (line: string): void => void process.stderr.write(`many-queues: ${line}\n`);

/** Redis's clients, as CLIENT LIST names them. */
async function clientNames(redis: Redis): Promise<string[]> {
  const list = (await redis.client('LIST')) as string;
  return list
    .trim()
    .split('\n')
    .map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { queues: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, 'idle-seconds': { type: 'string' }, shared: { type: 'string' } } });
  const queues = Number(values.queues ?? 1000);
  const rate = Number(values.rate ?? 200);
  const seconds = Number(values.seconds ?? 10);
  const idleSeconds = Number(values['idle-seconds'] ?? 10);
  const shared = (values.shared ?? 'true') === 'true';
  const redis = await startRedis({ own: true });
  const raw = new Redis(redis.url);
  const started: ServiceProcess[] = [];
  try {
    const scheduler = await spawnService(SCHEDULER, 'scheduler listening', redis.url);
    started.push(scheduler);
    const client = new JobmeshClient({ address: `127.0.0.1:${scheduler.port}`, coalesce: false });
    const names = Array.from({ length: queues }, (_, i) => `mq-${i}`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((name) => client.createQueue({ queue: { name } })));
    progress(`${queues} queues created`);
    const before = (await clientNames(raw)).length;
    started.push(await spawnService(WORKER_POOL, 'worker-pool running', redis.url, { JOBMESH_PROCESSORS: NOOP_PROCESSOR, JOBMESH_SHARED_CONNECTIONS: String(shared) }));
    const pid = childPid(WORKER_POOL);
    // Its runners start as the registry is read; let them settle before measuring.
    await sleep(3000);
    const all = await clientNames(raw);
    const connections = all.length - before;
    const byName = new Map<string, number>();
    for (const name of all) byName.set(name || '(unnamed)', (byName.get(name || '(unnamed)') ?? 0) + 1);
    progress(`worker-pool started: ${connections} more Redis connections; ${idleSeconds} s idle`);
    const cpu0 = cpuMsOf(pid);
    const t0 = Date.now();
    await sleep(idleSeconds * 1000);
    const idleCpuPct = ((cpuMsOf(pid) - cpu0) / (Date.now() - t0)) * 100;
    const { rss } = memoryOf(pid);

    progress(`trickle: ${rate} jobs/s over ${queues} queues for ${seconds} s`);
    const jobs: { queue: string; id: string }[] = [];
    const total = rate * seconds;
    const startAt = Date.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = startAt + (i * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      const queue = names[i % names.length]!;
      pending.push(
        client.enqueueJob({ queue, job: { name: 'bench', data: {} } }).then(({ job }) => {
          jobs.push({ queue, id: job!.id });
        }),
      );
    }
    await Promise.all(pending);
    // Every job started (processedOn set), or 10 s more at most.
    const latencies: number[] = [];
    const deadline = Date.now() + 10_000;
    let missing = jobs;
    while (missing.length && Date.now() < deadline) {
      const pipe = raw.pipeline();
      for (const j of missing) pipe.hmget(`${PREFIX}:${j.queue}:${j.id}`, 'timestamp', 'processedOn');
      const replies = (await pipe.exec()) ?? [];
      const next: typeof jobs = [];
      missing.forEach((j, i) => {
        const [ts, on] = (replies[i]?.[1] as [string | null, string | null]) ?? [null, null];
        if (ts && on) latencies.push(Number(on) - Number(ts));
        else next.push(j);
      });
      missing = next;
      if (missing.length) await sleep(200);
    }
    latencies.sort((a, b) => a - b);
    client.close();

    say(`worker-pool serving ${queues} queues, ${shared ? 'shared connections' : 'two connections a queue'} (node ${process.version}, ${new Date().toISOString()}):`);
    say('');
    say('| figure | measured | goal |');
    say('|---|---|---|');
    say(`| Redis connections of the worker-pool | ${connections} | ≤ ${GOAL.connections} |`);
    say(`| CPU idle, % of a core (over ${idleSeconds} s) | ${idleCpuPct.toFixed(1)} | < ${GOAL.idleCpuPct} |`);
    say(`| RSS idle, MB | ${rss.toFixed(1)} | — |`);
    say(`| enqueue→start p50, ms (${jobs.length} jobs at ${rate}/s) | ${percentile(latencies, 50)} | — |`);
    say(`| enqueue→start p99, ms | ${percentile(latencies, 99)} | < ${GOAL.p99Ms} |`);
    if (missing.length) say(`| jobs not started 10 s after the last enqueue | ${missing.length} | 0 |`);
    say('');
    const top = [...byName].sort((a, b) => b[1] - a[1]);
    const rest = top.slice(8).reduce((n, [, c]) => n + c, 0);
    say(`Redis clients by name with the worker-pool running: ${top.slice(0, 8).map(([n, c]) => `${n} ${c}`).join(', ')}${rest ? `, ${rest} others` : ''}`);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
    raw.disconnect();
    await redis.stop();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`many-queues: ${err.stack ?? err.message}\n`);
  process.exit(1);
});

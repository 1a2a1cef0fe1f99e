// node bench/dist/memory.js [--rate 10000] [--seconds 60] [--idle-seconds 10]: what the services
// hold in memory (issue 14, point 10). It starts a redis-server of its own, then measures the
// resident set (VmRSS in /proc/<pid>/status) of
//   1. each service process idle (scheduler, worker-pool, dead-letter, monitor, started with the
//      bench's spawnService, side by side, one queue and no jobs), after --idle-seconds;
//   2. `jobmesh up` (every service in one process) idle, on the same Redis, after --idle-seconds;
//   3. a fresh scheduler and worker-pool under load: no-op jobs at --rate jobs/s for --seconds,
//      queued through EnqueueJobs by a paced producer (a call every 100 ms, open loop) and run by
//      the worker-pool at concurrency 100, sampled every second. After a warm-up (the first third)
//      each process's RSS should be flat: the least-squares line through the samples after it
//      rises by less than FLAT_MB over that window.
// A rate the machine cannot keep up with is reported as not sustained (the producer fell behind its
// schedule, or jobs piled up in Redis): run it again with a lower --rate. Linux only (/proc).
// Not a test: the figures depend on the machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { JobmeshClient } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { Queue } from 'bullmq';
import { type ServiceProcess, spawnService } from './environment';
import { childPid, memoryOf } from './proc';
import { median } from './stats';

const ROOT = resolve(__dirname, '../..');
const SCHEDULER = resolve(ROOT, 'services/scheduler/dist/main.js');
const WORKER_POOL = resolve(ROOT, 'services/worker-pool/dist/main.js');
const DEAD_LETTER = resolve(ROOT, 'services/dead-letter/dist/main.js');
const MONITOR = resolve(ROOT, 'services/monitor/dist/main.js');
const CLI = resolve(ROOT, 'cli/dist/main.js');
const NOOP_PROCESSOR = resolve(ROOT, 'bench/fixtures/noop-processor.js');
/** The key prefix spawnService gives the services (environment.ts), for the bench's own reader of their queue. */
const JOBMESH_PREFIX = 'bench-jobmesh';

/** Issue 14's goals. */
const GOAL = { idleMb: 120, upMb: 200 };
/** Under load, RSS is flat after the warm-up when the fitted line over the rest rises less than this. */
const FLAT_MB = 5;
/** One EnqueueJobs call every TICK_MS. */
const TICK_MS = 100;
/** Calls the producer lets be unanswered; past them it waits, and falls behind its schedule. */
const MAX_IN_FLIGHT = 10;
const CONCURRENCY = 100;

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const progress = (line: string): void => void process.stderr.write(`memory: ${line}\n`);
const fmt = (n: number, digits = 1): string => n.toFixed(digits);
const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** RSS once a second for `seconds`: the median, and the peak the process reached at any time. */
async function idleMemory(pid: number, seconds: number): Promise<{ rss: number; peak: number }> {
  const samples: number[] = [];
  for (let s = 0; s < seconds; s++) {
    await sleep(1000);
    samples.push(memoryOf(pid).rss);
  }
  return { rss: median(samples), peak: memoryOf(pid).peak };
}

/** Least-squares slope of `ys` against `xs`. */
function slope(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return num / den;
}

/** 1. Each service on its own process, started side by side, idle. */
async function services(redis: RedisHandle, idleSeconds: number): Promise<Record<string, { rss: number; peak: number }>> {
  const started: ServiceProcess[] = [];
  try {
    const scheduler = await spawnService(SCHEDULER, 'scheduler listening', redis.url);
    started.push(scheduler);
    const schedulerAddress = `127.0.0.1:${scheduler.port}`;
    const client = new JobmeshClient({ address: schedulerAddress });
    await client.createQueue({ queue: { name: 'idle' } });
    client.close();
    started.push(await spawnService(WORKER_POOL, 'worker-pool running', redis.url, { JOBMESH_PROCESSORS: NOOP_PROCESSOR }));
    started.push(await spawnService(DEAD_LETTER, 'dead-letter listening', redis.url, { JOBMESH_SCHEDULER_ADDRESS: schedulerAddress }));
    started.push(await spawnService(MONITOR, 'monitor listening', redis.url, { JOBMESH_SCHEDULER_ADDRESS: schedulerAddress }));
    progress(`scheduler, worker-pool, dead-letter and monitor started; ${idleSeconds} s idle`);
    const mains = { scheduler: SCHEDULER, 'worker-pool': WORKER_POOL, 'dead-letter': DEAD_LETTER, monitor: MONITOR };
    const pids = Object.entries(mains).map(([name, main]) => [name, childPid(main)] as const);
    const figures = await Promise.all(pids.map(async ([name, pid]) => [name, await idleMemory(pid, idleSeconds)] as const));
    return Object.fromEntries(figures);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
  }
}

/** 2. `jobmesh up` on the bench's Redis (so its RSS holds no redis-server), idle. */
async function up(redis: RedisHandle, idleSeconds: number): Promise<{ rss: number; peak: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'jobmesh-memory-up-'));
  const child: ChildProcess = spawn(process.execPath, [CLI, 'up'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      REDIS_URL: redis.url,
      JOBMESH_REDIS_PREFIX: 'bench-up',
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      LOG_LEVEL: 'warn',
    },
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    let output = '';
    await new Promise<void>((ready, reject) => {
      const timer = setTimeout(() => reject(new Error(`jobmesh up did not start within 30 s:\n${output}`)), 30_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Stop:')) {
          clearTimeout(timer);
          ready();
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`jobmesh up exited with code ${code}:\n${output}`));
      });
    });
    progress(`jobmesh up started; ${idleSeconds} s idle`);
    return await idleMemory(child.pid!, idleSeconds);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Sample {
  /** Seconds since the producer started. */
  t: number;
  scheduler: number;
  workerPool: number;
  /** Jobs in Redis not yet done: waiting, prioritized, delayed and active. */
  backlog: number;
  /** Jobs the scheduler acknowledged so far. */
  enqueued: number;
}

interface LoadResult {
  rate: number;
  seconds: number;
  samples: Sample[];
  /** How late the producer's latest call went out, ms after its turn by the schedule. */
  lateMs: number;
  /** Jobs done per second over the part after the warm-up. */
  doneRate: number;
  sustained: boolean;
}

/** 3. A fresh scheduler and worker-pool under a paced load, RSS sampled every second. */
async function load(redis: RedisHandle, rate: number, seconds: number): Promise<LoadResult> {
  const started: ServiceProcess[] = [];
  const { hostname, port } = new URL(redis.url);
  const counts = new Queue('load', { connection: { host: hostname, port: Number(port) }, prefix: JOBMESH_PREFIX });
  let client: JobmeshClient | undefined;
  try {
    const scheduler = await spawnService(SCHEDULER, 'scheduler listening', redis.url);
    started.push(scheduler);
    client = new JobmeshClient({ address: `127.0.0.1:${scheduler.port}` });
    await client.createQueue({ queue: { name: 'load', concurrency: CONCURRENCY } });
    started.push(await spawnService(WORKER_POOL, 'worker-pool running', redis.url, { JOBMESH_PROCESSORS: NOOP_PROCESSOR, JOBMESH_WORKER_QUEUES: 'load' }));
    const pids = { scheduler: childPid(SCHEDULER), workerPool: childPid(WORKER_POOL) };
    progress(`no-op jobs at ${int.format(rate)} jobs/s for ${seconds} s through a scheduler and a worker-pool (concurrency ${CONCURRENCY})`);

    const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
    const jobs = Array.from({ length: perTick }, (_, i) => ({ name: 'bench', data: { index: i, tenant: 'bench', action: 'send-email', to: `user-${i}@example.com`, attempt: 1 } }));
    const start = performance.now();
    const end = start + seconds * 1000;
    let enqueued = 0;
    let lateMs = 0;
    let failed: { err: unknown } | undefined;
    const inFlight = new Set<Promise<unknown>>();
    const producer = (async () => {
      for (let tick = 0; start + tick * TICK_MS < end && !failed; tick++) {
        await sleep(Math.max(0, start + tick * TICK_MS - performance.now()));
        // At the limit the producer waits for an answer, and so falls behind its schedule.
        while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
        lateMs = Math.max(lateMs, performance.now() - (start + tick * TICK_MS));
        const call = client!.enqueueJobs({ queue: 'load', jobs }).then(
          (res) => void (enqueued += res.jobs.length),
          (err: unknown) => void (failed ??= { err }),
        );
        inFlight.add(call);
        void call.finally(() => inFlight.delete(call));
      }
      await Promise.all(inFlight);
    })();

    const samples: Sample[] = [];
    for (let s = 1; s <= seconds; s++) {
      await sleep(Math.max(0, start + s * 1000 - performance.now()));
      const c = await counts.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
      const backlog = Object.values(c).reduce((a, b) => a + b, 0);
      const sample = { t: s, scheduler: memoryOf(pids.scheduler).rss, workerPool: memoryOf(pids.workerPool).rss, backlog, enqueued };
      samples.push(sample);
      if (s % 5 === 0) progress(`${s} s: scheduler ${fmt(sample.scheduler)} MB, worker-pool ${fmt(sample.workerPool)} MB, ${int.format(enqueued)} enqueued, backlog ${int.format(backlog)}`);
    }
    await producer;
    if (failed) throw failed.err;
    const warm = samples[Math.floor(seconds / 3) - 1]!;
    const last = samples[samples.length - 1]!;
    const doneRate = (last.enqueued - last.backlog - (warm.enqueued - warm.backlog)) / (last.t - warm.t);
    // Kept up: the producer stayed within a second of its schedule, and the jobs did not pile up
    // (at most a second's worth waiting at the end, and as many done as sent after the warm-up).
    const sustained = lateMs <= 1000 && last.backlog <= rate && doneRate >= 0.95 * rate;
    return { rate, seconds, samples, lateMs, doneRate, sustained };
  } finally {
    client?.close();
    await counts.close();
    await Promise.all(started.map((s) => s.stop()));
  }
}

/** Whether `series` (MB, one a second) is flat after the warm-up: its fitted rise over that window, and its max−min. */
function flatness(samples: Sample[], series: (s: Sample) => number, seconds: number): { rise: number; swing: number; flat: boolean } {
  const after = samples.slice(Math.floor(seconds / 3));
  const rise = slope(after.map((s) => s.t), after.map(series)) * (after.length - 1);
  const ys = after.map(series);
  return { rise, swing: Math.max(...ys) - Math.min(...ys), flat: rise < FLAT_MB };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rate: { type: 'string', default: '10000' }, seconds: { type: 'string', default: '60' }, 'idle-seconds': { type: 'string', default: '10' } },
  });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const idleSeconds = Number(values['idle-seconds']);
  for (const [flag, n, min] of [['--rate', rate, 10], ['--seconds', seconds, 6], ['--idle-seconds', idleSeconds, 1]] as const) {
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} must be a whole number of at least ${min}`);
  }
  const redis = await startRedis({ own: true });
  try {
    const idle = await services(redis, idleSeconds);
    const upRss = await up(redis, idleSeconds);
    const loaded = await load(redis, rate, seconds);

    say(`Idle RSS after ${idleSeconds} s (median of a sample a second; peak: VmHWM), goal ≤ ${GOAL.idleMb} MB a service, ≤ ${GOAL.upMb} MB for jobmesh up:`);
    for (const [name, m] of Object.entries(idle)) say(`  ${name.padEnd(12)} ${fmt(m.rss).padStart(6)} MB   peak ${fmt(m.peak).padStart(6)} MB   ${m.rss <= GOAL.idleMb ? 'within goal' : 'OVER GOAL'}`);
    say(`  ${'jobmesh up'.padEnd(12)} ${fmt(upRss.rss).padStart(6)} MB   peak ${fmt(upRss.peak).padStart(6)} MB   ${upRss.rss <= GOAL.upMb ? 'within goal' : 'OVER GOAL'}`);
    say('');
    const warmS = Math.floor(seconds / 3);
    say(
      `Under load: no-op jobs at ${int.format(rate)} jobs/s for ${seconds} s (EnqueueJobs of ${int.format(Math.round((rate * TICK_MS) / 1000))} every ${TICK_MS} ms), ` +
        `${loaded.sustained ? 'sustained' : 'NOT SUSTAINED'}: ${int.format(loaded.doneRate)} jobs/s done after ${warmS} s, ` +
        `producer at worst ${int.format(loaded.lateMs)} ms behind its schedule, backlog ${int.format(loaded.samples.at(-1)!.backlog)} at the end` +
        `${loaded.sustained ? '' : ' — run again with a lower --rate'}`,
    );
    say(`  ${'t s'.padStart(4)}  ${'scheduler MB'.padStart(12)}  ${'worker-pool MB'.padStart(14)}  ${'enqueued'.padStart(9)}  ${'backlog'.padStart(8)}`);
    for (const s of loaded.samples.filter((x) => x.t % 5 === 0 || x.t === 1)) {
      say(`  ${String(s.t).padStart(4)}  ${fmt(s.scheduler).padStart(12)}  ${fmt(s.workerPool).padStart(14)}  ${int.format(s.enqueued).padStart(9)}  ${int.format(s.backlog).padStart(8)}`);
    }
    const verdicts = { scheduler: flatness(loaded.samples, (s) => s.scheduler, seconds), 'worker-pool': flatness(loaded.samples, (s) => s.workerPool, seconds) };
    say(`  After the warm-up (${warmS} s to ${seconds} s): flat when the least-squares line rises less than ${FLAT_MB} MB over that window`);
    for (const [name, v] of Object.entries(verdicts)) {
      say(`  ${name.padEnd(12)} fitted rise ${v.rise >= 0 ? '+' : ''}${fmt(v.rise)} MB, max−min ${fmt(v.swing)} MB: ${v.flat ? 'flat after warm-up' : 'GROWS after warm-up'}`);
    }
    // V8 grows its old space until the first full collection, which under load can come minutes in.
    if (Object.values(verdicts).some((v) => !v.flat)) say(`  A rise may be heap growth before V8's first full collection: a longer --seconds tells it from a leak.`);
    say(JSON.stringify({ bench: 'jobmesh-memory', at: new Date().toISOString(), node: process.version, idle, up: upRss, load: { ...loaded, verdicts } }));
  } finally {
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`memory: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);

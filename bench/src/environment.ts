import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { resolveJobOptions } from '@jobmesh/core';
import { toBullOptions } from '@jobmesh/queue';
import { JobmeshClient } from '@jobmesh/sdk';
import { startRedis } from '@jobmesh/testing';
import { type JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { RawOptions, RawWorker } from './options';

/** Key prefixes of the raw BullMQ queues and of the scheduler: two key spaces on one Redis. */
const RAW_PREFIX = 'bench-raw';
const JOBMESH_PREFIX = 'bench-jobmesh';
/** The scheduler's own grace is 5 s; a stop that takes longer is stuck, and Redis must still go. */
const STOP_TIMEOUT_MS = 15_000;

/** The scheduler runs as its own process, as in a deployment, so its CPU is not the client's. */
const SCHEDULER_MAIN = resolve(__dirname, '../../services/scheduler/dist/main.js');

/** What raw BullMQ's jobs do in the processing scenarios: nothing, or fail for good at once. */
export type RawJobs = 'noop' | 'fail';

/** A service process the bench started. */
export interface ServiceProcess {
  /** Its gRPC port. */
  port: number;
  /** "host:port" of its HTTP server (/metrics), as it logged it. */
  http: string;
  stop(): Promise<void>;
}

const WORKER_POOL_MAIN = resolve(__dirname, '../../services/worker-pool/dist/main.js');
const DEAD_LETTER_MAIN = resolve(__dirname, '../../services/dead-letter/dist/main.js');
const ECHO_MAIN = resolve(__dirname, 'echo-server-main.js');
const RAW_WORKER_MAIN = resolve(__dirname, 'raw-worker-main.js');

/**
 * Node arguments for every process spawnService starts, from BENCH_SERVICE_NODE_ARGS (split on
 * white space). They go on the command line, since NODE_OPTIONS refuses `--cpu-prof`:
 * `--cpu-prof --cpu-prof-dir=DIR` writes each service's CPU profile to DIR when it stops.
 */
const SERVICE_NODE_ARGS = (process.env.BENCH_SERVICE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

/**
 * Spawns a Jobmesh service (`node services/<svc>/dist/main.js`) on free ports; resolves once its
 * start-up log line (`ready`) appears, with the gRPC port it printed. Its environment is the one
 * below and `extra`, nothing of the bench's own: an OTEL_* variable in the bench's shell does not
 * turn tracing on in a service (only a traced scenario's `extra` does).
 */
export async function spawnService(main: string, ready: string, redisUrl: string, extra: Record<string, string> = {}): Promise<ServiceProcess> {
  const child: ChildProcess = spawn(process.execPath, [...SERVICE_NODE_ARGS, main], {
    env: {
      PATH: process.env.PATH,
      REDIS_URL: redisUrl,
      JOBMESH_REDIS_PREFIX: JOBMESH_PREFIX,
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
      JOBMESH_SHUTDOWN_GRACE: '5s',
      LOG_LEVEL: 'info',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buffered = '';
  const started = await new Promise<{ port: number; http: string }>((resolvePort, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${main} did not start within 20 s:\n${buffered}`));
    }, 20_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      // Whole lines only: the last piece may be the start of one.
      const line = buffered.split('\n').slice(0, -1).find((l) => l.includes(`"msg":"${ready}"`));
      if (line) {
        clearTimeout(timer);
        child.stdout!.removeAllListeners('data').resume();
        // "grpc" is "host:port" or a port; a process without a gRPC server logs none (port 0).
        const { grpc, http } = JSON.parse(line) as { grpc?: string | number; http?: string };
        resolvePort({ port: Number(/(\d+)$/.exec(String(grpc ?? ''))?.[1] ?? 0), http: http ?? '' });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${main} exited with code ${code}:\n${buffered}`));
    });
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    ...started,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The Redis, the scheduler process and a client: everything a bench run talks to. */
export interface BenchEnvironment {
  redisUrl: string;
  redisVersion: string;
  client: JobmeshClient;
  /** "host:port" of the bench's scheduler. */
  schedulerAddress: string;
  /** What raw BullMQ's jobs are given (`--raw-options`). */
  rawOptions: RawOptions;
  /** Where the processing scenarios run raw BullMQ's Worker (`--raw-worker`). */
  rawWorker: RawWorker;
  /**
   * A fresh, connected BullMQ queue with prefix `bench-raw`, whose jobs get `rawJobOptions`
   * unless they say otherwise; close it when done.
   */
  rawQueue(label: string): Promise<Queue>;
  /** A fresh Jobmesh queue, created with CreateQueue. */
  jobmeshQueue(label: string): Promise<string>;
  /**
   * FLUSHALL SYNC: every key of both sides goes, and its memory is freed before the call returns
   * (ASYNC would free it on a Redis thread while the next run is measured).
   */
  flush(): Promise<void>;
  /** Starts a worker-pool process with these extra settings; stop it when done. */
  spawnWorkerPool(env: Record<string, string>): Promise<{ port: number; stop(): Promise<void> }>;
  /**
   * Starts a second scheduler process on the bench's Redis with these extra settings (the bench's
   * own one runs without any); stop it when done.
   */
  spawnScheduler(env: Record<string, string>): Promise<{ port: number; stop(): Promise<void> }>;
  /** Starts a dead-letter process (replays through the bench's scheduler); stop it when done. */
  spawnDeadLetter(): Promise<{ port: number; stop(): Promise<void> }>;
  /**
   * Starts raw BullMQ's Worker as a process of its own (raw-worker-main.ts) on `queue`: no-op
   * jobs, or jobs that fail for good; stop it when done.
   */
  spawnRawWorker(queue: Queue, concurrency: number, jobs: RawJobs): Promise<{ stop(): Promise<void> }>;
  /** Starts the bare gRPC echo server (echo-server-main.ts); stop it when done. */
  spawnEcho(): Promise<{ port: number; stop(): Promise<void> }>;
  /** The key prefix of Jobmesh's queues, for BullMQ readers of them. */
  jobmeshPrefix: string;
  /** Closes the clients, stops the scheduler, then Redis; tries every step even if one fails. */
  stop(): Promise<void>;
}

const uniqueName = (label: string): string => `${label}-${randomUUID().slice(0, 8)}`;

/**
 * Starts a redis-server of the bench's own on a free port (never a shared one: the numbers must
 * not depend on what else uses it) and a scheduler process on a free gRPC port.
 */
/**
 * BullMQ's own options of a Jobmesh job enqueued with none of its own on a queue with no
 * defaults, the work BullMQ does for it: its attempts and backoff, and its retention (completed
 * jobs trimmed to 1,000 and 24 h, one removal a completion in BullMQ's script). Jobmesh's
 * own field (`opts.jobmesh`) is left out: it means nothing to raw BullMQ. Failed jobs are kept
 * as a dead-letter queue keeps them for capture (`removeOnFail: false`), BullMQ's default too.
 */
export function rawJobOptions(kind: RawOptions): JobsOptions {
  if (kind === 'bare') return {};
  const { jobmesh: _own, ...bull } = toBullOptions(resolveJobOptions({}), { holdFailed: true }) as JobsOptions & { jobmesh?: unknown };
  return bull;
}

export async function startEnvironment({ rawOptions = 'jobmesh', rawWorker = 'process' }: { rawOptions?: RawOptions; rawWorker?: RawWorker } = {}): Promise<BenchEnvironment> {
  const redis = await startRedis({ own: true });
  let running: ServiceProcess;
  try {
    running = await spawnService(SCHEDULER_MAIN, 'scheduler listening', redis.url);
  } catch (err) {
    // Clean-up after a failed start: the start's own error is the one to report.
    await redis.stop().catch(() => undefined);
    throw err;
  }
  const client = new JobmeshClient({ address: `127.0.0.1:${running.port}` });
  const { hostname, port } = new URL(redis.url);

  const defaultJobOptions = rawJobOptions(rawOptions);
  const rawQueue = async (label: string): Promise<Queue> => {
    const queue = new Queue(uniqueName(label), { connection: { host: hostname, port: Number(port) }, prefix: RAW_PREFIX, defaultJobOptions });
    queue.on('error', (err) => console.error(`raw queue ${queue.name}: ${err.message}`));
    await queue.waitUntilReady();
    return queue;
  };

  // The bench's own connection, for INFO and the flush between runs.
  const admin = new Redis(redis.url);
  admin.on('error', (err) => console.error(`bench redis connection: ${err.message}`));
  const info = await admin.info('server');

  return {
    rawOptions,
    rawWorker,
    redisUrl: redis.url,
    redisVersion: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    client,
    schedulerAddress: `127.0.0.1:${running.port}`,
    rawQueue,
    jobmeshPrefix: JOBMESH_PREFIX,
    spawnWorkerPool: (extra) => spawnService(WORKER_POOL_MAIN, 'worker-pool running', redis.url, extra),
    spawnScheduler: (extra) => spawnService(SCHEDULER_MAIN, 'scheduler listening', redis.url, extra),
    spawnEcho: () => spawnService(ECHO_MAIN, 'echo listening', redis.url),
    spawnRawWorker: (queue, concurrency, jobs) =>
      spawnService(RAW_WORKER_MAIN, 'raw worker running', redis.url, {
        RAW_QUEUE: queue.name,
        RAW_PREFIX: queue.opts.prefix ?? RAW_PREFIX,
        RAW_CONCURRENCY: String(concurrency),
        RAW_JOBS: jobs,
      }),
    spawnDeadLetter: () => spawnService(DEAD_LETTER_MAIN, 'dead-letter listening', redis.url, { JOBMESH_SCHEDULER_ADDRESS: `127.0.0.1:${running.port}` }),
    async jobmeshQueue(label) {
      const name = uniqueName(label);
      await client.createQueue({ queue: { name } });
      return name;
    },
    async flush() {
      await admin.flushall('SYNC');
    },
    async stop() {
      const errors: unknown[] = [];
      client.close();
      admin.disconnect();
      await withTimeout(running.stop(), STOP_TIMEOUT_MS, 'scheduler stop').catch((err: unknown) => errors.push(err));
      await redis.stop().catch((err: unknown) => errors.push(err));
      if (errors.length) throw new AggregateError(errors, 'bench clean-up failed');
    },
  };
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

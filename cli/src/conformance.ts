import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, credentials } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { JobmeshClient } from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { loadWorkerPoolEnv, type RunningWorkerPool, startWorkerPool } from '@jobmesh/worker-pool';
import { type LocalRedis, NO_REDIS_HELP, hasRedisServer, startLocalRedis } from './local-redis';

/**
 * `jobmesh conformance --worker "<command>"`: checks that a remote worker speaks the
 * WorkerService Connect protocol. It starts its own Jobmesh (scheduler + worker-pool on a free
 * port, Redis from REDIS_URL or a redis-server of its own), creates the queue `conformance`,
 * launches the command with JOBMESH_ADDRESS and JOBMESH_QUEUES=conformance, and runs jobs named by
 * the example handlers of examples/python-worker: echo, sum, fail, fail-once, unrecoverable, slow,
 * steps, fan-out, square and collect.
 */

export const QUEUE = 'conformance';
/** A short lease TTL, so the lease rule needs the worker's heartbeats to keep a job. */
const LEASE_TTL_MS = 2_000;
const RULE_DEADLINE_MS = 30_000;

export interface Rule {
  name: string;
  /** What the rule checks, for --help and the docs. */
  checks: string;
  run(ctx: ConformanceContext): Promise<void>;
}

export interface ConformanceContext {
  client: JobmeshClient;
  workers: pb.WorkerServiceClient;
  enqueue(name: string, data: Record<string, unknown>, options?: Record<string, unknown>): Promise<string>;
  /** Polls GetJob until `pred` holds; throws with the last state seen when the rule's deadline passes. */
  waitFor(id: string, pred: (j: pb.Job) => boolean, what: string): Promise<pb.Job>;
  streamWorkers(): Promise<pb.WorkerInfo[]>;
  restartPool(): Promise<void>;
  /** Takes the job's lease away from the worker, as if it had expired. */
  revokeLease(jobId: string): boolean;
  /** How many verdicts the server has refused as stale so far. */
  refused(): number;
  deadline: number;
}

const S = pb.JobState;
const stateName = (j: pb.Job): string => pb.JobState[j.state] ?? String(j.state);
const fast = { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 100_000_000 } } };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const same = (a: unknown, b: unknown): boolean => JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortKeys(x)]));
  return v;
}
function check(ok: boolean, why: string): void {
  if (!ok) throw new Error(why);
}

export const RULES: Rule[] = [
  {
    name: 'complete',
    checks: 'an echo job completes on attempt 1 and its result is the data the worker sent back',
    async run(c) {
      const data = { hello: 'conformance', n: 42, nested: { list: [1, 'two', true] } };
      const id = await c.enqueue('echo', data);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the echo job to finish');
      check(j.state === S.JOB_STATE_COMPLETED, `echo ended ${stateName(j)}: ${j.failureReason}`);
      check(same(j.result, data), `result ${JSON.stringify(j.result)} is not the data ${JSON.stringify(data)}`);
      check(j.attemptsMade === 1, `took ${j.attemptsMade} attempts`);
    },
  },
  {
    name: 'retry',
    checks: 'a fail-once job (Fail RETRYABLE on attempt 1) is retried and completes on attempt 2',
    async run(c) {
      const id = await c.enqueue('fail-once', {}, fast);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the fail-once job to finish');
      check(j.state === S.JOB_STATE_COMPLETED, `fail-once ended ${stateName(j)}: ${j.failureReason}`);
      check(j.attemptsMade === 2, `completed after ${j.attemptsMade} attempts, expected 2`);
    },
  },
  {
    name: 'retryable-failure',
    checks: 'a fail job with attempts 2 runs twice and ends FAILED with the error message',
    async run(c) {
      const id = await c.enqueue('fail', { message: 'conformance says no' }, { ...fast, attempts: 2 });
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_FAILED || x.state === S.JOB_STATE_COMPLETED, 'the fail job to end');
      check(j.state === S.JOB_STATE_FAILED, `fail ended ${stateName(j)}`);
      check(j.attemptsMade === 2, `failed after ${j.attemptsMade} attempts, expected 2`);
      check(j.failureReason.includes('conformance says no'), `failure reason "${j.failureReason}" lacks the error message`);
    },
  },
  {
    name: 'unrecoverable',
    checks: 'an unrecoverable job (Fail UNRECOVERABLE) ends FAILED after 1 of its 3 attempts',
    async run(c) {
      const id = await c.enqueue('unrecoverable', { message: 'cannot ever work' }, fast);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_FAILED || x.state === S.JOB_STATE_COMPLETED, 'the unrecoverable job to end');
      check(j.state === S.JOB_STATE_FAILED, `unrecoverable ended ${stateName(j)}`);
      check(j.attemptsMade === 1, `failed after ${j.attemptsMade} attempts, expected 1`);
    },
  },
  {
    name: 'progress',
    checks: 'a sum job reports Progress (seen as PROGRESS events by WatchJob, 100 at the end by GetJob) and completes with the sum',
    async run(c) {
      const id = await c.enqueue('sum', { numbers: [1, 2, 3, 4, 5], delay_ms: 100 });
      const seen: unknown[] = [];
      const abort = new AbortController();
      const watching = (async () => {
        try {
          for await (const e of c.client.watchJob(QUEUE, id, { signal: abort.signal })) if (e.type === pb.JobEventType.JOB_EVENT_TYPE_PROGRESS) seen.push(e.progress);
        } catch {
          // ends with the job, or when aborted
        }
      })();
      try {
        const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the sum job to finish');
        check(j.state === S.JOB_STATE_COMPLETED, `sum ended ${stateName(j)}: ${j.failureReason}`);
        check(same(j.result, { sum: 15 }), `result ${JSON.stringify(j.result)}, expected {"sum":15}`);
        check(j.progress === 100, `GetJob progress is ${JSON.stringify(j.progress)}, expected 100`);
        await Promise.race([watching, sleep(500)]);
        check(seen.length > 0, 'WatchJob saw no PROGRESS event');
      } finally {
        abort.abort();
      }
    },
  },
  {
    name: 'steps',
    checks:
      'a steps job (step "first" saves {attempt}, step "second" fails on attempt 1) completes on attempt 2 with ' +
      '{first: {attempt: 1}, second: {attempt: 2}}: the worker saved step results (SaveStep) and resumed at the failed step from Assignment.steps',
    async run(c) {
      const id = await c.enqueue('steps', {}, fast);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the steps job to finish');
      check(j.state === S.JOB_STATE_COMPLETED, `steps ended ${stateName(j)}: ${j.failureReason}`);
      check(j.attemptsMade === 2, `completed after ${j.attemptsMade} attempts, expected 2 (step "second" fails on attempt 1)`);
      const want = { first: { attempt: 1 }, second: { attempt: 2 } };
      check(
        same(j.result, want),
        `result ${JSON.stringify(j.result)}, expected ${JSON.stringify(want)}` +
          (same((j.result as { first?: unknown } | undefined)?.first, { attempt: 2 }) ? ': step "first" ran again on attempt 2 instead of being resumed' : ''),
      );
    },
  },
  {
    name: 'children',
    checks:
      'a fan-out job adds three square children (AddChildren), waits for them without using an attempt and completes on attempt 1 ' +
      'with their results keyed "queue:id"; a collect parent enqueued with EnqueueFlow gets its children\'s results (GetChildrenResults)',
    async run(c) {
      const numbers = [2, 3, 4];
      const id = await c.enqueue('fan-out', { numbers }, fast);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the fan-out job to finish');
      check(j.state === S.JOB_STATE_COMPLETED, `fan-out ended ${stateName(j)}: ${j.failureReason}`);
      check(j.attemptsMade === 1, `completed after ${j.attemptsMade} attempts: waiting for children must not use an attempt`);
      const squares = (j.result as { squares?: Record<string, unknown> } | undefined)?.squares ?? {};
      const keys = Object.keys(squares);
      check(keys.length === numbers.length, `expected ${numbers.length} children's results, got ${JSON.stringify(j.result)}`);
      const got: number[] = [];
      for (const key of keys) {
        const [queue, childId] = key.split(':');
        const child = await c.client.getJob(queue!, childId!);
        check(child.parent?.id === id && child.parent.queue === QUEUE, `child ${key} has parent ${JSON.stringify(child.parent)}, expected ${QUEUE}/${id}`);
        check(child.state === S.JOB_STATE_COMPLETED && same(child.result, squares[key]), `child ${key} is ${stateName(child)} with ${JSON.stringify(child.result)}`);
        got.push(Number(squares[key]));
      }
      check(same(got.sort((a, b) => a - b), [4, 9, 16]), `children's results ${JSON.stringify(got)}, expected [4, 9, 16]`);

      const { flow } = await c.client.enqueueFlow({
        root: { queue: QUEUE, job: { name: 'collect' }, children: [5, 6].map((n) => ({ queue: QUEUE, job: { name: 'square', data: { n } }, children: [] })) },
      });
      const parentId = flow!.job!.id;
      const p = await c.waitFor(parentId, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the collect parent to finish');
      check(p.state === S.JOB_STATE_COMPLETED, `collect ended ${stateName(p)}: ${p.failureReason}`);
      const want = Object.fromEntries(flow!.children.map((ch, i) => [`${QUEUE}:${ch.job!.id}`, [25, 36][i]]));
      check(same((p.result as { collected?: unknown } | undefined)?.collected, want), `collect result ${JSON.stringify(p.result)}, expected {"collected":${JSON.stringify(want)}}`);
    },
  },
  {
    name: 'cancel',
    checks:
      'a slow job cancelled while ACTIVE ends CANCELLED, and the worker stops it: afterwards the worker holds max_in_flight (at most 8) slow jobs at once, which it then also stops on Cancel',
    async run(c) {
      const id = await c.enqueue('slow', { ms: 120_000 });
      await c.waitFor(id, (x) => x.state === S.JOB_STATE_ACTIVE, 'the slow job to be ACTIVE');
      await c.client.cancelJob(QUEUE, id, 'conformance');
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_CANCELLED, 'the job to be CANCELLED');
      check(j.state === S.JOB_STATE_CANCELLED, `ended ${stateName(j)}`);
      // A worker that ignored Cancel still runs the handler and has not given back its credit.
      const max = Math.min(8, Math.max(1, ...(await c.streamWorkers()).map((w) => w.maxInFlight)));
      const ids = await Promise.all(Array.from({ length: max }, () => c.enqueue('slow', { ms: 30_000 })));
      // The server counts a job in flight once the worker holds it, which needs a credit back.
      const until = Date.now() + 10_000;
      let inFlight = 0;
      while (Date.now() < until) {
        inFlight = Math.max(0, ...(await c.streamWorkers()).map((w) => w.inFlight));
        if (inFlight >= max) break;
        await sleep(25);
      }
      check(inFlight >= max, `after the cancel the worker held at most ${inFlight} of ${max} slow jobs at once: the cancelled job still holds a slot`);
      for (const x of ids) await c.client.cancelJob(QUEUE, x, 'conformance');
      for (const x of ids) await c.waitFor(x, (y) => y.state === S.JOB_STATE_CANCELLED, 'the follow-up slow jobs to be cancelled');
    },
  },
  {
    name: 'lease',
    checks:
      `a slow job running 3 lease TTLs (TTL ${LEASE_TTL_MS} ms) completes once, on attempt 1: the worker's Heartbeats keep its lease. ` +
      '(A stale completion is refused by the server with Nack code 9; a conforming worker never sends one, so it is not provoked here.)',
    async run(c) {
      const id = await c.enqueue('slow', { ms: LEASE_TTL_MS * 3 }, fast);
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the slow job to finish');
      check(j.state === S.JOB_STATE_COMPLETED, `slow ended ${stateName(j)}: ${j.failureReason}`);
      check(j.attemptsMade === 1, `completed after ${j.attemptsMade} attempts: the lease lapsed and the job was re-leased`);
    },
  },
  {
    name: 'stale-lease',
    checks:
      'the lease of a running slow job is taken away (as if it expired): the job is re-leased and completes once, on attempt 1; ' +
      "the worker's late Complete for the old lease is refused (Nack code 9), and the worker keeps working",
    async run(c) {
      const before = c.refused();
      const id = await c.enqueue('slow', { ms: 1500 });
      await c.waitFor(id, (x) => x.state === S.JOB_STATE_ACTIVE, 'the slow job to be ACTIVE');
      check(c.revokeLease(id), 'the server holds no lease for the ACTIVE job');
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'the slow job to finish on its new lease');
      check(j.state === S.JOB_STATE_COMPLETED && j.attemptsMade === 1, `ended ${stateName(j)} after ${j.attemptsMade} attempts`);
      while (c.refused() === before) {
        check(Date.now() < c.deadline, 'the worker never answered for the revoked lease');
        await sleep(50);
      }
      const echo = await c.enqueue('echo', { after: 'stale' });
      const e = await c.waitFor(echo, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'an echo job after the refusal');
      check(e.state === S.JOB_STATE_COMPLETED, `the echo job after the refusal ended ${stateName(e)}`);
    },
  },
  {
    name: 'reconnect',
    checks: 'after the worker-pool restarts on the same port (Drain, then the stream drops) the worker reconnects and completes a new job',
    async run(c) {
      await c.restartPool();
      const until = Date.now() + 20_000;
      while (!(await c.streamWorkers().catch(() => [])).length) {
        check(Date.now() < until, 'the worker did not reconnect within 20 s');
        await sleep(100);
      }
      const id = await c.enqueue('echo', { again: true });
      const j = await c.waitFor(id, (x) => x.state === S.JOB_STATE_COMPLETED || x.state === S.JOB_STATE_FAILED, 'an echo job after the reconnect');
      check(j.state === S.JOB_STATE_COMPLETED && same(j.result, { again: true }), `ended ${stateName(j)} with ${JSON.stringify(j.result)}`);
    },
  },
];

export interface ConformanceOptions {
  worker: string;
  env?: NodeJS.ProcessEnv;
  out?: (line: string) => void;
  /** Only these rules (by name). */
  only?: string[];
}

function spawnWorker(command: string, env: NodeJS.ProcessEnv, log: string[]): ChildProcess {
  const child = spawn(command, { shell: true, detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer): void => {
    log.push(...b.toString().split('\n').filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

/** SIGTERM to the worker's process group; SIGKILL to the group if its output is not closed within 5 s. */
async function killGroup(child: ChildProcess): Promise<void> {
  if (!child.pid) return;
  const closed = new Promise<void>((r) => {
    if (child.stdout!.closed && child.stderr!.closed && child.exitCode !== null) r();
    else child.once('close', () => r());
  });
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already gone
    }
  };
  kill('SIGTERM');
  let t: NodeJS.Timeout | undefined;
  const killed = await Promise.race([closed.then(() => false), new Promise<boolean>((r) => (t = setTimeout(() => r(true), 5_000)))]);
  clearTimeout(t);
  if (killed) {
    kill('SIGKILL');
    await Promise.race([closed, sleep(2_000)]);
  }
  child.stdout!.destroy();
  child.stderr!.destroy();
}

/** Runs every rule; returns 0 when all pass, 1 otherwise. */
export async function runConformance(opts: ConformanceOptions): Promise<number> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const envSource = opts.env ?? process.env;
  const cwd = mkdtempSync(join(tmpdir(), 'jobmesh-conformance-'));
  const logger = silentLogger();
  const workerLog: string[] = [];
  let local: LocalRedis | undefined;
  let scheduler: RunningScheduler | undefined;
  let pool: RunningWorkerPool | undefined;
  let client: JobmeshClient | undefined;
  let workers: pb.WorkerServiceClient | undefined;
  let child: ChildProcess | undefined;
  try {
    let redisUrl = envSource.REDIS_URL;
    if (!redisUrl) {
      if (!hasRedisServer()) throw new Error(NO_REDIS_HELP);
      local = await startLocalRedis(cwd);
      redisUrl = local.url;
    }
    const prefix = `conf${Date.now().toString(36)}`;
    const common = { REDIS_URL: redisUrl, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_HTTP_ADDRESS: '127.0.0.1:0', JOBMESH_CONFIG: '', JOBMESH_SHUTDOWN_GRACE: '2s' };
    scheduler = await startScheduler(loadSchedulerEnv({ ...common, JOBMESH_GRPC_ADDRESS: '127.0.0.1:0' }), { logger });
    client = new JobmeshClient({ address: `127.0.0.1:${scheduler.grpcPort}`, timeoutMs: 5_000 });
    await client.createQueue({ queue: { name: QUEUE } });
    const poolEnv = (port: number) =>
      loadWorkerPoolEnv({ ...common, JOBMESH_GRPC_ADDRESS: `127.0.0.1:${port}`, JOBMESH_LEASE_TTL: `${LEASE_TTL_MS}ms` });
    pool = await startWorkerPool(poolEnv(0), { logger });
    const port = pool.grpcPort;
    const address = `127.0.0.1:${port}`;
    workers = new pb.WorkerServiceClient(address, credentials.createInsecure());
    const wc = workers;
    const streamWorkers = (): Promise<pb.WorkerInfo[]> =>
      new Promise((res, rej) =>
        wc.listWorkers({ queue: QUEUE }, new Metadata(), { deadline: Date.now() + 3_000 }, (err, r) =>
          err ? rej(err) : res(r.workers.filter((w) => w.kind === pb.WorkerKind.WORKER_KIND_STREAM)),
        ),
      );
    out(`Jobmesh for conformance: scheduler 127.0.0.1:${scheduler.grpcPort}, WorkerService ${address}, queue ${QUEUE}`);
    child = spawnWorker(opts.worker, { ...envSource, JOBMESH_ADDRESS: address, JOBMESH_QUEUES: QUEUE }, workerLog);
    const exitedEarly = new Promise<string>((r) => child!.once('exit', (code, sig) => r(`the worker exited (${sig ?? code})`)));

    // The worker must connect before any rule runs.
    const connectUntil = Date.now() + 20_000;
    let connected = false;
    while (Date.now() < connectUntil && child.exitCode === null) {
      if ((await streamWorkers().catch(() => [])).length) {
        connected = true;
        break;
      }
      await sleep(100);
    }
    const rules = RULES.filter((r) => !opts.only?.length || opts.only.includes(r.name));
    let passed = 0;
    for (const rule of rules) {
      if (!connected) {
        out(`FAIL ${rule.name}: the worker did not open a Connect stream on ${address} within 20 s`);
        continue;
      }
      const deadline = Date.now() + RULE_DEADLINE_MS;
      const c: ConformanceContext = {
        client,
        workers: wc,
        deadline,
        streamWorkers,
        enqueue: async (name, data, options = {}) => (await client!.enqueueJob({ queue: QUEUE, job: { name, data, options } })).job!.id,
        waitFor: async (id, pred, what) => {
          let last: pb.Job | undefined;
          for (;;) {
            last = await client!.getJob(QUEUE, id);
            if (pred(last)) return last;
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (job ${id} is ${stateName(last)}, ${last.attemptsMade} attempts)`);
            await sleep(50);
          }
        },
        revokeLease: (jobId) => pool!.worker.pool.dispatcher.revoke(QUEUE, jobId),
        refused: () => pool!.worker.pool.dispatcher.refused,
        restartPool: async () => {
          await pool!.stop();
          pool = await startWorkerPool(poolEnv(port), { logger });
        },
      };
      let timer: NodeJS.Timeout | undefined;
      try {
        const why = await Promise.race([
          rule.run(c).then(() => undefined),
          exitedEarly,
          new Promise<string>((r) => (timer = setTimeout(() => r(`no verdict within ${RULE_DEADLINE_MS / 1000} s`), RULE_DEADLINE_MS + 2_000))),
        ]);
        if (why) throw new Error(why);
        passed++;
        out(`PASS ${rule.name}`);
      } catch (err) {
        out(`FAIL ${rule.name}: ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
    out(`${passed}/${rules.length} rules passed`);
    if (passed !== rules.length && workerLog.length) {
      out('--- worker output (last lines) ---');
      for (const l of workerLog.slice(-40)) out(l);
    }
    return passed === rules.length ? 0 : 1;
  } finally {
    if (child) await killGroup(child);
    workers?.close();
    client?.close();
    // Clean-up of the kit's own services: a failure to stop them must not hide the verdict.
    await pool?.stop().catch(() => undefined);
    await scheduler?.stop().catch(() => undefined); // likewise
    await local?.stop();
    rmSync(cwd, { recursive: true, force: true });
  }
}

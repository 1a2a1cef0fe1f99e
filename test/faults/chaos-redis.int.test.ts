// Chaos, part one (issue 16, point 1): Redis killed with SIGKILL and started again from its
// append-only file, three times, while producers enqueue every kind of job and the services run
// them. The scheduler, a worker-pool and the dead-letter service are OS processes of their own; a
// TypeScript RemoteWorker in this process serves one job name over a Connect stream; a schedule
// fires every second. The ledger is kept outside Redis: what each producer was told (in memory)
// and what each processor ran (an append-only file, and memory for the remote worker). It must
// show that every acknowledged job completed or was dead-lettered, that a job ran twice only when
// its run overlapped an outage (its lease could not be kept), that every failed call failed
// within its deadline with UNAVAILABLE or DEADLINE_EXCEEDED, and that every part recovered by
// itself, the schedule included.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
import type * as pb from '@jobmesh/contracts';
import { DeadLetterClient, JobmeshClient, RemoteWorker, defineProcessor } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, killAll, readLines, type ServiceProcess, startService } from '../system/fixtures/services';

const CHAOS_PROCESSOR = resolve(__dirname, 'fixtures/chaos-processor.js');
/** How long the producers run, ms from the start of the load, and when Redis is killed in it. */
const LOAD_MS = 12_000;
const KILLS_AT_MS = [2_000, 5_500, 9_000];
/** How long Redis stays down each time: the fault, not a synchronisation. */
const DOWN_MS = 500;
const PRODUCERS = 6;
/** Each call's deadline; a failed call must have failed within it (plus scheduling slack). */
const CALL_TIMEOUT_MS = 2_000;
/** The worker-pool's lock and stalled interval: how soon a run Redis lost is run again. */
const LOCK = '5s';
const STALLED = '2s';
/** A run whose interval comes this close to an outage may be cut off by it. */
const NEAR_OUTAGE_MS = 2_000;

type Kind = 'work' | 'doom' | 'remote';
interface Outage {
  killedAt: number;
  upAt: number;
}
interface Run {
  start: number;
  done?: number;
}

let redis: RedisHandle;
let dir: string;
let eventsFile: string;
let scheduler: ServiceProcess;
let deadLetter: ServiceProcess;
let client: JobmeshClient;
let dl: DeadLetterClient;
let remote: RemoteWorker;
const prefix = `chaos-${randomUUID().slice(0, 8)}`;
const queue = `chaos-${randomUUID().slice(0, 8)}`;
/** The remote worker's runs, by job id. */
const remoteRuns = new Map<string, Run[]>();

beforeAll(async () => {
  // Every write Redis answered must survive kill -9: fsync before each answer, as Jobmesh ships it.
  redis = await startRedis({ own: true, appendonly: true, appendfsync: 'always' });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-chaos-'));
  eventsFile = join(dir, 'events');
  const common = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_SHUTDOWN_GRACE: '2s' };
  scheduler = await startService('scheduler', common, dir);
  client = new JobmeshClient({ address: scheduler.grpcAddress, timeoutMs: CALL_TIMEOUT_MS, retry: { maxTries: 3, attemptTimeoutMs: 1_000 } });
  await client.createQueue({ queue: { name: queue, concurrency: 20, processorWait: { seconds: 30, nanos: 0 } } });
  const pool = await startService(
    'worker-pool',
    { ...common, JOBMESH_PROCESSORS: CHAOS_PROCESSOR, JOBMESH_TEST_EVENTS_FILE: eventsFile, JOBMESH_LOCK_DURATION: LOCK, JOBMESH_STALLED_INTERVAL: STALLED },
    dir,
  );
  deadLetter = await startService('dead-letter', { ...common, JOBMESH_DLQ_SWEEP_INTERVAL: '1s', JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress }, dir);
  dl = DeadLetterClient.connect(deadLetter.grpcAddress);
  remote = new RemoteWorker({
    address: pool.grpcAddress,
    workerId: 'chaos-ts',
    concurrency: 10,
    processors: [
      defineProcessor({
        queue,
        name: 'remote',
        async process(job) {
          const run: Run = { start: Date.now() };
          remoteRuns.set(job.id, [...(remoteRuns.get(job.id) ?? []), run]);
          await sleep(5);
          run.done = Date.now();
          return {};
        },
      }),
    ],
  });
  await remote.start();
}, 60_000);

afterAll(async () => {
  await remote?.stop({ graceMs: 1_000 });
  client?.close();
  dl?.close();
  await killAll();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What the producers were told, and how the calls that failed failed. */
class ProducerLedger {
  readonly acked = new Map<string, Kind>();
  calls = 0;
  acknowledgedCalls = 0;
  readonly failedBy = new Map<string, number>();
  slowestFailureMs = 0;

  ack(kind: Kind, ids: string[]): void {
    this.acknowledgedCalls += 1;
    for (const id of ids) this.acked.set(id, kind);
  }

  failed(err: unknown, elapsedMs: number): void {
    const code = (err as ServiceError).code;
    const name = status[code] ?? String((err as Error).message);
    this.failedBy.set(name, (this.failedBy.get(name) ?? 0) + 1);
    this.slowestFailureMs = Math.max(this.slowestFailureMs, elapsedMs);
  }

  ids(kind: Kind): string[] {
    return [...this.acked].filter(([, k]) => k === kind).map(([id]) => id);
  }
}

/** One producer: every kind of enqueue in turn until `until`. */
async function produce(ledger: ProducerLedger, p: number, until: number): Promise<void> {
  const flowIds = (f: pb.EnqueuedFlow): string[] => [f.job!.id, ...f.children.flatMap(flowIds)];
  for (let i = 0; Date.now() < until; i++) {
    const started = Date.now();
    ledger.calls += 1;
    try {
      switch ((p + i) % 6) {
        case 0:
          ledger.ack('work', [(await client.enqueueJob({ queue, job: { name: 'work' } })).job!.id]);
          break;
        case 1:
          ledger.ack('work', [(await client.enqueueJob({ queue, job: { name: 'work', options: { idempotencyKey: `k-${p}-${i}` } } })).job!.id]);
          break;
        case 2:
          ledger.ack('work', (await client.enqueueJobs({ queue, jobs: [{ name: 'work' }, { name: 'work' }, { name: 'work', options: { idempotencyKey: `b-${p}-${i}` } }] })).jobs.map((j) => j.id));
          break;
        case 3: {
          const child = { queue, job: { name: 'work' }, children: [] };
          ledger.ack('work', flowIds((await client.enqueueFlow({ root: { queue, job: { name: 'work' }, children: [child, child] } })).flow!));
          break;
        }
        case 4:
          ledger.ack('doom', [(await client.enqueueJob({ queue, job: { name: 'doom' } })).job!.id]);
          break;
        default:
          ledger.ack('remote', [(await client.enqueueJob({ queue, job: { name: 'remote' } })).job!.id]);
      }
    } catch (err) {
      ledger.failed(err, Date.now() - started);
      // Paces a producer while Redis is down; what the call answered is already decided.
      await sleep(50);
    }
  }
}

/** The worker-pool's runs, by job id, from the processor's events file. */
function poolRuns(): { runs: Map<string, Run[]>; ticks: Array<Run & { id: string }> } {
  const runs = new Map<string, Run[]>();
  const ticks: Array<Run & { id: string }> = [];
  for (const line of readLines(eventsFile)) {
    const [what, at, , id, tag] = line.split(' ');
    const list = runs.get(id!) ?? [];
    if (what === 'start') {
      list.push({ start: Number(at) });
      runs.set(id!, list);
    } else {
      const open = list.find((r) => r.done === undefined);
      if (open) open.done = Number(at);
      if (tag === 'tick' && open) ticks.push({ ...open, id: id! });
    }
  }
  return { runs, ticks };
}

/** Every dead letter of the queue's job ids. */
async function deadLetteredIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  let pageToken = '';
  do {
    const page = await dl.list({ filter: { queue }, pageSize: 1000, pageToken });
    for (const d of page.deadLetters) ids.add(d.job!.id);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return ids;
}

const overlapsAnOutage = (run: Run, outages: Outage[]): boolean =>
  outages.some((o) => run.start <= o.upAt + NEAR_OUTAGE_MS && (run.done ?? Infinity) + NEAR_OUTAGE_MS >= o.killedAt);

it('keeps every acknowledged job through three Redis kills: each completes or is dead-lettered, and everything recovers by itself', async () => {
  const scheduledAt = Date.now();
  await client.upsertSchedule({ id: 'tick', queue, every: { seconds: 1, nanos: 0 }, template: { name: 'work', data: { tag: 'tick' } } });
  const ledger = new ProducerLedger();
  const outages: Outage[] = [];
  const t0 = Date.now();
  const faults = (async () => {
    for (const at of KILLS_AT_MS) {
      await sleep(Math.max(0, t0 + at - Date.now()));
      const killedAt = Date.now();
      await redis.kill();
      await sleep(DOWN_MS);
      await redis.restart();
      outages.push({ killedAt, upAt: Date.now() });
    }
  })();
  await Promise.all([faults, ...Array.from({ length: PRODUCERS }, (_, p) => produce(ledger, p, t0 + LOAD_MS))]);
  const lastUp = outages.at(-1)!.upAt;

  // Every acknowledged job completes (in the pool or on the remote worker) or is dead-lettered.
  const missing = async (): Promise<{ work: string[]; remote: string[]; doom: string[] }> => {
    const { runs } = poolRuns();
    const doomed = await deadLetteredIds().catch(() => new Set<string>());
    return {
      work: ledger.ids('work').filter((id) => !runs.get(id)?.some((r) => r.done !== undefined)),
      remote: ledger.ids('remote').filter((id) => !remoteRuns.get(id)?.some((r) => r.done !== undefined)),
      doom: ledger.ids('doom').filter((id) => !doomed.has(id)),
    };
  };
  await eventually(
    async () => {
      const m = await missing();
      return m.work.length + m.remote.length + m.doom.length === 0;
    },
    60_000,
    'every acknowledged job to complete or be dead-lettered',
    250,
  ).catch(async (err: Error) => {
    const m = await missing();
    err.message += `\nstill missing: ${m.work.length} work (${m.work.slice(0, 5).join(', ')}), ${m.remote.length} remote, ${m.doom.length} doom`;
    throw err;
  });
  // The schedule fires again after the last recovery.
  await eventually(() => poolRuns().ticks.some((t) => t.start > lastUp), 10_000, 'the schedule to fire after the last restart');

  const { runs, ticks } = poolRuns();
  const allRuns = new Map([...runs, ...remoteRuns]);
  const twice = [...allRuns].filter(([, r]) => r.length > 1);
  const unexplained = twice.filter(([, r]) => !overlapsAnOutage(r[0]!, outages));
  const firstDoneAfter = (o: Outage): number => Math.min(...[...allRuns.values()].flat().flatMap((r) => (r.done !== undefined && r.done > o.upAt ? [r.done - o.upAt] : [])));
  const summary = {
    calls: ledger.calls,
    acknowledgedCalls: ledger.acknowledgedCalls,
    acknowledgedJobs: { work: ledger.ids('work').length, remote: ledger.ids('remote').length, doom: ledger.ids('doom').length },
    failedCalls: Object.fromEntries(ledger.failedBy),
    slowestFailedCallMs: ledger.slowestFailureMs,
    ranTwice: twice.length,
    scheduleRuns: ticks.length,
    outagesMs: outages.map((o) => o.upAt - o.killedAt),
    firstCompletionAfterRestartMs: outages.map(firstDoneAfter),
  };
  process.stdout.write(`chaos ledger (Redis kill -9 ×${outages.length}): ${JSON.stringify(summary)}\n`);

  expect(outages).toHaveLength(KILLS_AT_MS.length);
  // Load went on through the faults, and some calls met them.
  expect(ledger.ids('work').length).toBeGreaterThan(100);
  expect(ledger.ids('remote').length).toBeGreaterThan(10);
  expect(ledger.ids('doom').length).toBeGreaterThan(10);
  expect(ledger.calls).toBeGreaterThan(ledger.acknowledgedCalls);
  // Failed calls failed cleanly and within their deadline, never hung.
  expect([...ledger.failedBy.keys()].filter((c) => c !== 'UNAVAILABLE' && c !== 'DEADLINE_EXCEEDED')).toEqual([]);
  expect(ledger.slowestFailureMs).toBeLessThan(CALL_TIMEOUT_MS + 1_000);
  // A job ran twice only where Redis went away under its run.
  expect(unexplained.map(([id, r]) => ({ id, runs: r }))).toEqual([]);
  // The schedule fired at most once a slot: no more runs than seconds went by (and one to start).
  expect(new Set(ticks.map((t) => t.id)).size).toBeLessThanOrEqual(Math.ceil((Date.now() - scheduledAt) / 1000) + 1);
  // Each restart was followed by completions within seconds (the pool and the remote worker came back).
  for (const ms of summary.firstCompletionAfterRestartMs) expect(ms).toBeLessThan(10_000);
}, 150_000);

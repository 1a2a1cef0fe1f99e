// Chaos (issue 16, point 1): Redis killed with SIGKILL and started again from its append-only
// file, three times; then each service killed with SIGKILL and started again; all while producers
// enqueue every kind of job and the services run them. The scheduler, a worker-pool and the dead-letter service are OS processes of their own; a
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
import { DeadLetterClient, JobmeshClient, MonitorClient, RemoteWorker, defineProcessor } from '@jobmesh/sdk';
import { type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, killAll, readLines, type ServiceKind, type ServiceProcess, startService, stopService } from '../system/fixtures/services';

const CHAOS_PROCESSOR = resolve(__dirname, 'fixtures/chaos-processor.js');
/** How long the producers run, ms from the start of the load, and when Redis is killed in it. */
const LOAD_MS = 12_000;
const KILLS_AT_MS = [1_500, 4_500, 7_500];
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
const prefix = `chaos-${randomUUID().slice(0, 8)}`;
/** Each queue's remote worker's runs, by job id. */
const remoteRuns = new Map<string, Map<string, Run[]>>();
const remotes: RemoteWorker[] = [];
const clients: Array<{ close(): void }> = [];

/** The services of the run, each on a fixed port so that a restarted one is found where it was. */
const svc: Partial<Record<ServiceKind, ServiceProcess>> = {};
const ports: Partial<Record<ServiceKind, string>> = {};

function envOf(kind: ServiceKind): Record<string, string> {
  const common = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: prefix, JOBMESH_SHUTDOWN_GRACE: '2s', ...(ports[kind] && { JOBMESH_GRPC_ADDRESS: ports[kind] }) };
  switch (kind) {
    case 'worker-pool':
      return { ...common, JOBMESH_PROCESSORS: CHAOS_PROCESSOR, JOBMESH_TEST_EVENTS_FILE: eventsFile, JOBMESH_LOCK_DURATION: LOCK, JOBMESH_STALLED_INTERVAL: STALLED };
    case 'dead-letter':
      return { ...common, JOBMESH_DLQ_SWEEP_INTERVAL: '1s', JOBMESH_SCHEDULER_ADDRESS: ports.scheduler! };
    default:
      return common;
  }
}

/** Starts `kind` (again, on its port, after a kill). */
async function start(kind: ServiceKind): Promise<ServiceProcess> {
  const s = await startService(kind, envOf(kind), dir);
  svc[kind] = s;
  ports[kind] ??= s.grpcAddress;
  return s;
}

let client: JobmeshClient;
let dl: DeadLetterClient;
let monitor: MonitorClient;

beforeAll(async () => {
  // Every write Redis answered must survive kill -9: fsync before each answer, as Jobmesh ships it.
  redis = await startRedis({ own: true, appendonly: true, appendfsync: 'always' });
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-chaos-'));
  eventsFile = join(dir, 'events');
  for (const kind of ['scheduler', 'worker-pool', 'dead-letter', 'monitor'] as const) await start(kind);
  client = new JobmeshClient({ address: ports.scheduler!, timeoutMs: CALL_TIMEOUT_MS, retry: { maxTries: 3, attemptTimeoutMs: 1_000 } });
  dl = DeadLetterClient.connect(ports['dead-letter']!);
  monitor = MonitorClient.connect(ports.monitor!, { timeoutMs: CALL_TIMEOUT_MS });
  clients.push(client, dl, monitor);
}, 60_000);

afterAll(async () => {
  await Promise.all(remotes.map((r) => r.stop({ graceMs: 1_000 })));
  for (const c of clients) c.close();
  await killAll();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A queue for one test, and a TypeScript RemoteWorker serving its `remote` jobs over Connect. */
async function newQueue(tag: string): Promise<string> {
  const queue = `${tag}-${randomUUID().slice(0, 8)}`;
  const runs = new Map<string, Run[]>();
  remoteRuns.set(queue, runs);
  await client.createQueue({ queue: { name: queue, concurrency: 20, processorWait: { seconds: 30, nanos: 0 } } });
  const remote = new RemoteWorker({
    address: ports['worker-pool']!,
    workerId: `chaos-ts-${tag}`,
    concurrency: 10,
    processors: [
      defineProcessor({
        queue,
        name: 'remote',
        async process(job) {
          const run: Run = { start: Date.now() };
          runs.set(job.id, [...(runs.get(job.id) ?? []), run]);
          await sleep(5);
          run.done = Date.now();
          return {};
        },
      }),
    ],
  });
  remotes.push(remote);
  await remote.start();
  return queue;
}

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

/** One producer: every kind of enqueue in turn on `queue` until `until`. */
async function produce(ledger: ProducerLedger, queue: string, p: number, until: number): Promise<void> {
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
      // Paces a producer while a part is down; what the call answered is already decided.
      await sleep(50);
    }
  }
}

/** The worker-pool's runs of `queue`'s jobs, by job id, from the processor's events file. */
function poolRuns(queue: string): { runs: Map<string, Run[]>; ticks: Array<Run & { id: string }> } {
  const runs = new Map<string, Run[]>();
  const ticks: Array<Run & { id: string }> = [];
  for (const line of readLines(eventsFile)) {
    const [what, at, , q, id, tag] = line.split(' ');
    if (q !== queue) continue;
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

/** The job ids of every dead letter of `queue`. */
async function deadLetteredIds(queue: string): Promise<Set<string>> {
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

/** A fault at `at` ms into the load: `inject` takes the part down and brings it back. */
interface Fault {
  at: number;
  what: string;
  inject(): Promise<void>;
}

/**
 * Runs the load on a new queue with its schedule, injects `faults`, then checks the ledger: every
 * acknowledged job completed or was dead-lettered, a job ran twice only where a fault cut its run,
 * failed calls failed cleanly within their deadline, and everything recovered by itself (the
 * schedule fires after the last fault, at most once a slot).
 */
async function chaos(tag: string, faults: Fault[]): Promise<void> {
  const queue = await newQueue(tag);
  const scheduledAt = Date.now();
  await client.upsertSchedule({ id: 'tick', queue, every: { seconds: 1, nanos: 0 }, template: { name: 'work', data: { tag: 'tick' } } });
  const ledger = new ProducerLedger();
  const outages: Outage[] = [];
  const t0 = Date.now();
  const injector = (async () => {
    for (const f of faults) {
      await sleep(Math.max(0, t0 + f.at - Date.now()));
      const killedAt = Date.now();
      await f.inject();
      outages.push({ killedAt, upAt: Date.now() });
    }
  })();
  await Promise.all([injector, ...Array.from({ length: PRODUCERS }, (_, p) => produce(ledger, queue, p, t0 + LOAD_MS))]);
  const lastUp = outages.at(-1)!.upAt;

  // Every acknowledged job completes (in the pool or on the remote worker) or is dead-lettered.
  const missing = async (): Promise<{ work: string[]; remote: string[]; doom: string[] }> => {
    const { runs } = poolRuns(queue);
    const doomed = await deadLetteredIds(queue).catch(() => new Set<string>());
    return {
      work: ledger.ids('work').filter((id) => !runs.get(id)?.some((r) => r.done !== undefined)),
      remote: ledger.ids('remote').filter((id) => !remoteRuns.get(queue)!.get(id)?.some((r) => r.done !== undefined)),
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
  await eventually(() => poolRuns(queue).ticks.some((t) => t.start > lastUp), 10_000, 'the schedule to fire after the last fault');

  const { runs, ticks } = poolRuns(queue);
  const ids = new Set(ledger.acked.keys());
  const allRuns = new Map([...runs, ...remoteRuns.get(queue)!].filter(([id]) => ids.has(id)));
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
    faults: faults.map((f, i) => ({ what: f.what, downMs: outages[i]!.upAt - outages[i]!.killedAt, firstCompletionAfterMs: firstDoneAfter(outages[i]!) })),
  };
  process.stdout.write(`chaos ledger (${tag}): ${JSON.stringify(summary)}\n`);

  expect(outages).toHaveLength(faults.length);
  // Load went on through the faults.
  expect(ledger.ids('work').length).toBeGreaterThan(100);
  expect(ledger.ids('remote').length).toBeGreaterThan(10);
  expect(ledger.ids('doom').length).toBeGreaterThan(10);
  // Failed calls failed cleanly and within their deadline, never hung.
  expect([...ledger.failedBy.keys()].filter((c) => c !== 'UNAVAILABLE' && c !== 'DEADLINE_EXCEEDED')).toEqual([]);
  expect(ledger.slowestFailureMs).toBeLessThan(CALL_TIMEOUT_MS + 1_000);
  // A job ran twice only where a fault cut its run (its lease could not be kept).
  expect(unexplained.map(([id, r]) => ({ id, runs: r }))).toEqual([]);
  // The schedule fired at most once a slot: no more runs than seconds went by (and one to start).
  expect(new Set(ticks.map((t) => t.id)).size).toBeLessThanOrEqual(Math.ceil((Date.now() - scheduledAt) / 1000) + 1);
  // After each fault, jobs completed again within seconds.
  for (const f of summary.faults) expect(f.firstCompletionAfterMs).toBeLessThan(5_000);
}

it('keeps every acknowledged job through three Redis kills: each completes or is dead-lettered, and everything recovers by itself', async () => {
  const redisKill = (at: number): Fault => ({
    at,
    what: 'redis kill -9',
    async inject() {
      await redis.kill();
      await sleep(DOWN_MS);
      await redis.restart();
    },
  });
  await chaos('redis-kill', KILLS_AT_MS.map(redisKill));
}, 150_000);

it('keeps every acknowledged job through a SIGKILL of each service, restarted where it was', async () => {
  const serviceKill = (at: number, kind: ServiceKind): Fault => ({
    at,
    what: `${kind} kill -9`,
    async inject() {
      await stopService(svc[kind]!, 'SIGKILL');
      await sleep(DOWN_MS);
      await start(kind);
      // The monitor answers again, and sees the other services.
      if (kind === 'monitor') expect((await monitor.systemHealth()).services.length).toBeGreaterThan(0);
    },
  });
  // The last one early enough that jobs still come after it, even when a restart takes 3 s.
  await chaos('service-kill', [serviceKill(1_000, 'scheduler'), serviceKill(3_500, 'worker-pool'), serviceKill(6_000, 'dead-letter'), serviceKill(7_500, 'monitor')]);
}, 150_000);

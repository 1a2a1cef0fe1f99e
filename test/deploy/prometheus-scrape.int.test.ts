// A real Prometheus (the `prometheus` binary, on a free port) scraping a real Jobmesh: the
// scheduler, a worker-pool, the dead-letter service and the monitor as separate OS processes on
// their own redis-server, each scraped every second with the `service` label
// deploy/prometheus/prometheus.yml gives it, and deploy/prometheus's alert rules loaded as they are
// but with every `for:` cut to 1s. Jobs run on a test queue; the query API returns the pattern
// document's five series for it; a queue whose jobs no processor serves, and one that no worker
// serves at all, are seen alerting through /api/v1/alerts; every rule evaluates without error, and
// so does every dashboard query.
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JobmeshClient } from '@jobmesh/sdk';
import { connectRedis, eventually, type RedisClient, type RedisHandle, startRedis } from '@jobmesh/testing';
import YAML from 'yaml';
import { dashboardQueries, readDashboard } from './fixtures/dashboard';
import { METRICS_PROCESSOR, type PrometheusProcess, type ServiceKind, type ServiceProcess, startPrometheus, startService, stopAll } from './fixtures/processes';

const ROOT = resolve(__dirname, '../..');
const RULES = resolve(ROOT, 'deploy/prometheus/rules/jobmesh.rules.yml');
const THRESHOLDS = resolve(ROOT, 'deploy/prometheus/rules/queue-thresholds.yml');
/** Long enough for four Node processes and Prometheus on two busy cores. */
const WAIT_MS = 45_000;

jest.setTimeout(120_000);

interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

let redis: RedisHandle;
let rc: RedisClient;
let dir: string;
let client: JobmeshClient;
let prom: PrometheusProcess;
const services = new Map<ServiceKind, ServiceProcess>();
/** Jobs run here: 5 complete, 1 fails for good. */
const queue = `scrape-${randomUUID().slice(0, 8)}`;
/** Jobs here have a name nothing serves. */
const orphanQueue = `orphans-${randomUUID().slice(0, 8)}`;
/** A queue the worker-pool leaves out (JOBMESH_WORKER_QUEUES), and no remote worker serves. */
const unservedQueue = `unserved-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startRedis({ own: true });
  rc = connectRedis(redis.url, { maxRetriesPerRequest: 3 });
  // A limit, so that the monitor's maxmemory gauge and the memory alert have something to divide by.
  await rc.config('SET', 'maxmemory', String(512 * 1024 * 1024));
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-prometheus-'));
  const env = { REDIS_URL: redis.url, JOBMESH_REDIS_PREFIX: `prom-${randomUUID().slice(0, 8)}` };

  const scheduler = await startService('scheduler', env, dir);
  services.set('scheduler', scheduler);
  const [pool, deadLetter] = await Promise.all([
    startService('worker-pool', { ...env, JOBMESH_PROCESSORS: METRICS_PROCESSOR, JOBMESH_WORKER_QUEUES: `${queue},${orphanQueue}` }, dir),
    startService('dead-letter', { ...env, JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress, JOBMESH_DLQ_SWEEP_INTERVAL: '500ms' }, dir),
  ]);
  // The monitor checks the others' health where they really listen.
  const monitor = await startService(
    'monitor',
    {
      ...env,
      JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress,
      JOBMESH_WORKER_POOL_ADDRESS: pool.grpcAddress,
      JOBMESH_DEAD_LETTER_ADDRESS: deadLetter.grpcAddress,
    },
    dir,
  );
  for (const s of [pool, deadLetter, monitor]) services.set(s.kind, s);
  client = new JobmeshClient({ address: scheduler.grpcAddress });

  // The shipped rules, every `for:` cut to 1s so that an alert fires within two evaluations.
  const rules = YAML.parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { for?: string }[] }[] };
  for (const r of rules.groups.flatMap((g) => g.rules)) if (r.for) r.for = '1s';
  writeFileSync(join(dir, 'rules.yml'), YAML.stringify(rules));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    YAML.stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [join(dir, 'rules.yml'), THRESHOLDS],
      scrape_configs: [
        {
          job_name: 'jobmesh',
          static_configs: [...services.values()].map((s) => ({ targets: [s.httpAddress], labels: { service: s.kind } })),
        },
      ],
    }),
  );
  mkdirSync(join(dir, 'tsdb'));
  prom = await startPrometheus(join(dir, 'prometheus.yml'), join(dir, 'tsdb'));
});

afterAll(async () => {
  client?.close();
  await stopAll();
  await rc?.quit().catch(() => rc.disconnect());
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Creates a queue and resolves once the worker-pool process serves it. */
async function createQueue(name: string): Promise<void> {
  await client.createQueue({ queue: { name, concurrency: 5 } });
  const pool = services.get('worker-pool')!;
  await eventually(() => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === name), WAIT_MS, `the worker-pool to serve ${name}`);
}

/** Polls an instant query until `accept` holds for its result; resolves with that result. */
async function queryUntil(expr: string, accept: (r: { metric: Record<string, string>; value: number }[]) => boolean): Promise<{ metric: Record<string, string>; value: number }[]> {
  let last: unknown;
  return eventually(
    async () => {
      const r = (await prom.query(expr)).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
      last = r;
      return accept(r) ? r : undefined;
    },
    WAIT_MS,
    `${expr} to match`,
    200,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last result: ${JSON.stringify(last)}`);
  });
}

const single = (value: number) => (r: { value: number }[]) => r.length === 1 && r[0]!.value === value;

describe('a real Prometheus scraping Jobmesh', () => {
  it('scrapes every service, each labelled with its service', async () => {
    const targets = await eventually(
      async () => {
        const t = (await prom.api<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] }>('targets')).activeTargets;
        return t.length === services.size && t.every((x) => x.health === 'up') ? t : undefined;
      },
      WAIT_MS,
      'every target to be up',
      200,
    );
    expect(targets.map((t) => t.labels.service).sort()).toEqual(['dead-letter', 'monitor', 'scheduler', 'worker-pool']);
  });

  it('returns the five pattern-document series of a queue whose jobs ran', async () => {
    await createQueue(queue);
    await client.enqueueJobs({
      queue,
      jobs: [
        ...Array.from({ length: 5 }, (_, i) => ({ name: 'ok', data: { i } })),
        { name: 'fail', data: {}, options: { attempts: 1 } },
      ],
    });
    const q = `queue="${queue}"`;
    // Counted by the worker-pool where the attempts ran.
    const completed = await queryUntil(`jobmesh_jobs_processed_total{${q},status="completed"}`, single(5));
    expect(completed[0]!.metric).toMatchObject({ service: 'worker-pool', job: 'jobmesh' });
    await queryUntil(`jobmesh_jobs_processed_total{${q},status="failed"}`, single(1));
    const failed = await queryUntil(`jobmesh_jobs_failed_total{${q}}`, single(1));
    expect(failed[0]!.metric).toMatchObject({ error_type: 'Error', service: 'worker-pool' });
    await queryUntil(`jobmesh_job_processing_duration_seconds_count{${q}}`, single(6));
    await queryUntil(`jobmesh_job_processing_duration_seconds_bucket{${q},le="+Inf"}`, single(6));
    // Each `ok` attempt sleeps 20 ms: about 0.1 s in all (a timer may fire a fraction of a
    // millisecond early against the attempt's clock; 0.0998 s was seen).
    await queryUntil(`jobmesh_job_processing_duration_seconds_sum{${q}}`, (r) => r.length === 1 && r[0]!.value >= 0.09);
    // Read from Redis by the monitor at scrape time: nothing left to run, nothing running.
    const length = await queryUntil(`jobmesh_queue_length{${q}}`, single(0));
    expect(length[0]!.metric).toMatchObject({ service: 'monitor' });
    await queryUntil(`jobmesh_active_jobs{${q}}`, single(0));
    await queryUntil(`jobmesh_queue_jobs{${q},state="completed"}`, single(5));
    await queryUntil(`jobmesh_workers{${q},kind="in_process"}`, single(1));
  });

  it('fires JobmeshJobsWithoutProcessor for a queue whose jobs no processor serves, and for no other queue', async () => {
    await createQueue(orphanQueue);
    await client.enqueueJobs({ queue: orphanQueue, jobs: [{ name: 'ghost', data: {} }, { name: 'ghost', data: {} }] });
    await queryUntil(`jobmesh_queue_jobs{queue="${orphanQueue}",state="waiting_for_processor"}`, single(2));
    const alert = await eventually(
      async () =>
        (await prom.api<{ alerts: Alert[] }>('alerts')).alerts.find(
          (a) => a.labels.alertname === 'JobmeshJobsWithoutProcessor' && a.labels.queue === orphanQueue && a.state === 'firing',
        ),
      WAIT_MS,
      `JobmeshJobsWithoutProcessor to fire for ${orphanQueue}`,
      200,
    );
    expect(alert.labels).toEqual({ alertname: 'JobmeshJobsWithoutProcessor', queue: orphanQueue, severity: 'warning' });
    expect(alert.annotations.summary).toBe(`2 jobs of queue ${orphanQueue} wait for a processor`);
    expect(alert.annotations.runbook_url).toBe('docs/operations.md#jobmeshjobswithoutprocessor');
    const all = (await prom.api<{ alerts: Alert[] }>('alerts')).alerts.filter((a) => a.labels.alertname === 'JobmeshJobsWithoutProcessor');
    expect(all.map((a) => a.labels.queue)).toEqual([orphanQueue]);
  });

  it('fires JobmeshQueueWithoutWorkers for a queue with ready jobs that no worker serves', async () => {
    await client.createQueue({ queue: { name: unservedQueue } });
    await client.enqueueJobs({ queue: unservedQueue, jobs: [1, 2, 3].map((i) => ({ name: 'ok', data: { i } })) });
    await queryUntil(`sum(jobmesh_workers{queue="${unservedQueue}"})`, single(0));
    const alert = await eventually(
      async () =>
        (await prom.api<{ alerts: Alert[] }>('alerts')).alerts.find(
          (a) => a.labels.alertname === 'JobmeshQueueWithoutWorkers' && a.labels.queue === unservedQueue && a.state === 'firing',
        ),
      WAIT_MS,
      `JobmeshQueueWithoutWorkers to fire for ${unservedQueue}`,
      200,
    );
    expect(alert.labels).toEqual({ alertname: 'JobmeshQueueWithoutWorkers', queue: unservedQueue, severity: 'critical' });
    expect(alert.annotations.summary).toBe(`Queue ${unservedQueue} has 3 jobs ready and no worker`);
    // The queues the worker-pool serves have no such alert, even the one whose jobs wait for a processor.
    const all = (await prom.api<{ alerts: Alert[] }>('alerts')).alerts.filter((a) => a.labels.alertname === 'JobmeshQueueWithoutWorkers');
    expect(all.map((a) => a.labels.queue)).toEqual([unservedQueue]);
  });

  it('evaluates every rule of deploy/prometheus without error', async () => {
    type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string };
    const rules = await eventually(
      async () => {
        const r = (await prom.api<{ groups: { rules: Rule[] }[] }>('rules')).groups.flatMap((g) => g.rules);
        // Once each has been evaluated at least once.
        return r.length > 0 && r.every((x) => !x.lastEvaluation.startsWith('0001-')) ? r : undefined;
      },
      WAIT_MS,
      'every rule to be evaluated',
      200,
    );
    const shipped = (YAML.parse(readFileSync(RULES, 'utf8')) as { groups: { rules: unknown[] }[] }).groups.flatMap((g) => g.rules);
    expect(rules).toHaveLength(shipped.length);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => ({ rule: r.name, error: r.lastError }))).toEqual([]);
  });

  it('answers every dashboard query, with data for the test queue', async () => {
    const queries = dashboardQueries(readDashboard(ROOT), { queue, rateInterval: '1m' });
    // What this run has no data for: nothing stalled, no scheduler call failed, and no queue
    // has a threshold of its own.
    const empty = new Set(['Stalled jobs', 'Scheduler server-error ratio']);
    const results = await Promise.all(queries.map(async (q) => ({ q, result: await prom.query(q.expr) })));
    const missing = results
      .filter(({ q, result }) => result.length === 0 && !empty.has(q.panel) && !q.expr.includes('jobmesh:queue_max_wait_seconds'))
      .map(({ q }) => `${q.panel}: ${q.expr}`);
    expect(missing).toEqual([]);
    // The queue variable lists the test queues.
    const values = await prom.api<string[]>('label/queue/values', { 'match[]': 'jobmesh_queue_length' });
    expect(values).toEqual(expect.arrayContaining([queue, orphanQueue, unservedQueue]));
  });

  it('uses only metric names that a Jobmesh process exposes, in the rules and the dashboard', async () => {
    // Every family each process declares on /metrics (# TYPE), samples or not.
    const families = new Map<string, string>();
    for (const s of services.values()) {
      const text = await (await fetch(`http://${s.httpAddress}/metrics`)).text();
      for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1]!, m[2]!);
    }
    const exposed = (name: string): boolean => {
      if (families.has(name)) return true;
      const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
      return base !== undefined && families.get(base) === 'histogram';
    };
    const used = new Set<string>();
    const texts = [readFileSync(RULES, 'utf8'), ...dashboardQueries(readDashboard(ROOT), { queue: '.*', rateInterval: '1m' }).map((q) => q.expr)];
    // Recording rules' names have a colon (jobmesh:…) and are not matched here.
    for (const t of texts) for (const m of t.matchAll(/\bjobmesh_[a-z0-9_]+\b/g)) used.add(m[0]);
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((n) => !exposed(n))).toEqual([]);
  });
});

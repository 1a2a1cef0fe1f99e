import type { BenchEnvironment } from './environment';
import type { RunContext, Scenario } from './scenario';

/** One side of one scenario: jobs done over wall time. */
export interface Measurement {
  jobs: number;
  ms: number;
  jobsPerSec: number;
}

export interface ScenarioResult {
  name: string;
  title: string;
  jobs: number;
  warmup: number;
  raw: Measurement;
  jobmesh: Measurement;
  /** Jobmesh jobs/s over raw BullMQ jobs/s. */
  ratio: number;
}

export interface RunSettings {
  /** Overrides the scenario's default job count. */
  jobs?: number;
  /** Overrides the default warm-up size. */
  warmup?: number;
  /** Progress lines (they go to stderr, so stdout is only the results). */
  log(line: string): void;
}

/** A tenth of the run, at least 1,000 jobs, never more than the run itself. */
export const defaultWarmup = (jobs: number): number => Math.min(jobs, Math.max(1_000, Math.round(jobs / 10)));

/**
 * Warms up both sides (same code paths, JIT and connections), then measures raw BullMQ and
 * Jobmesh one after the other, each on a fresh queue that is dropped afterwards.
 */
export async function runScenario(scenario: Scenario, env: BenchEnvironment, settings: RunSettings): Promise<ScenarioResult> {
  const jobs = settings.jobs ?? scenario.defaultJobs;
  const warmup = settings.warmup ?? defaultWarmup(jobs);
  if (warmup > 0) {
    settings.log(`${scenario.name}: warm-up, ${warmup} jobs a side`);
    await runRaw(scenario, env, warmup);
    await runJobmesh(scenario, env, warmup);
  }
  settings.log(`${scenario.name}: raw BullMQ, ${jobs} jobs`);
  const raw = await runRaw(scenario, env, jobs);
  settings.log(`${scenario.name}: Jobmesh, ${jobs} jobs`);
  const jobmesh = await runJobmesh(scenario, env, jobs);
  return { name: scenario.name, title: scenario.title, jobs, warmup, raw, jobmesh, ratio: jobmesh.jobsPerSec / raw.jobsPerSec };
}

async function runRaw(scenario: Scenario, env: BenchEnvironment, jobs: number): Promise<Measurement> {
  const queue = await env.rawQueue(`${scenario.name}-raw`);
  try {
    return await measure(`${scenario.name} (raw BullMQ)`, jobs, env, (ctx) => scenario.raw({ ...ctx, queue }));
  } finally {
    await env.dropRawQueue(queue);
  }
}

async function runJobmesh(scenario: Scenario, env: BenchEnvironment, jobs: number): Promise<Measurement> {
  const queue = await env.jobmeshQueue(`${scenario.name}-jm`);
  try {
    return await measure(`${scenario.name} (Jobmesh)`, jobs, env, (ctx) => scenario.jobmesh({ ...ctx, client: env.client, queue }));
  } finally {
    await env.dropJobmeshQueue(queue);
  }
}

async function measure(what: string, jobs: number, env: BenchEnvironment, body: (ctx: RunContext) => Promise<number>): Promise<Measurement> {
  let started = performance.now();
  let stopped: number | undefined;
  const done = await body({ jobs, env, startClock: () => (started = performance.now()), stopClock: () => (stopped ??= performance.now()) });
  const ms = (stopped ?? performance.now()) - started;
  // A run that quietly did less would report a rate for work it never did.
  if (done !== jobs) throw new Error(`${what} got ${done} of ${jobs} jobs done`);
  return { jobs: done, ms, jobsPerSec: done / (ms / 1000) };
}

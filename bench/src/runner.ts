import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { BenchEnvironment } from './environment';
import { cpuBetween, cpuSample } from './proc';
import { type AnyScenario, type FigureTable, type RunContext, isFeatureScenario } from './scenario';
import { type Spread, spread } from './stats';

/** One run of one side: jobs done over wall time. */
export interface Measurement {
  jobs: number;
  ms: number;
  jobsPerSec: number;
  /** What the run recorded besides its rate (`RunContext.record`), if anything. */
  figures?: Record<string, number>;
  /**
   * CPU time over the timed part, ms, by process: `bench` (this one, both sides' clients and raw
   * BullMQ's in-process Worker) and each child by what it runs (`redis`, `scheduler`, …; see
   * proc.ts). Absent where there is no /proc.
   */
  cpuMs?: Record<string, number>;
  /**
   * How long each process (as in `cpuMs`) was runnable but waiting for a CPU over the timed part,
   * ms, summed over its threads. Absent where the kernel keeps no count (/proc/<pid>/schedstat).
   */
  waitMs?: Record<string, number>;
}

/**
 * The two sides of a round: raw BullMQ and Jobmesh, or for a feature scenario the feature off
 * (`raw`, the baseline) and on (`jobmesh`).
 */
export type Side = 'raw' | 'jobmesh';

/** Both sides of a scenario, measured back to back; `first` is the side that ran first. */
export interface Round {
  first: Side;
  raw: Measurement;
  jobmesh: Measurement;
  /** This round's Jobmesh jobs/s over its raw BullMQ jobs/s (feature on over off, for a feature scenario). */
  ratio: number;
}

export interface ScenarioResult {
  name: string;
  title: string;
  /**
   * What the sides are: raw BullMQ and Jobmesh, or (`kind: 'feature'`) Jobmesh with a feature off
   * and on, in `raw` and `jobmesh` respectively.
   */
  kind: 'bullmq' | 'feature';
  /** How the report names the sides: `raw BullMQ` and `Jobmesh`, or a feature scenario's labels. */
  sides: Record<Side, string>;
  jobs: number;
  warmup: number;
  /** Every measured round, in the order they ran (the warm-up is not one of them). */
  rounds: Round[];
  /** Jobs/s of raw BullMQ over the rounds (of the feature off, for a feature scenario). */
  raw: Spread;
  /** Jobs/s through Jobmesh over the rounds (with the feature on, for a feature scenario). */
  jobmesh: Spread;
  /**
   * `ofMedians`: the Jobmesh median over the raw median, the figure to quote. `min` / `max`: the
   * lowest and highest of the rounds' own ratios (each round's two sides ran back to back), so
   * the range is how far one round alone could have been off; `ofMedians` always lies within it
   * for an odd number of rounds.
   */
  ratio: { ofMedians: number; min: number; max: number };
  /** The scenario's recorded figures that the report sets in a table of their own, if any. */
  figureTable?: FigureTable;
}

export interface RunSettings {
  /** Overrides the scenario's default job count. */
  jobs?: number;
  /** Overrides the default warm-up size. */
  warmup?: number;
  /** Measured rounds. */
  rounds: number;
  /** Progress lines (they go to stderr, so stdout is only the results). */
  log(line: string): void;
}

/** A tenth of the run, at least 1,000 jobs, never more than the run itself. */
export const defaultWarmup = (jobs: number): number => Math.min(jobs, Math.max(1_000, Math.round(jobs / 10)));

/**
 * A full collection of this process's heap before each run, so a run does not pay for the
 * garbage the one before it left (the raw side's BullMQ client and the Jobmesh client both live
 * here). Exposed at run time, so `node bench/dist/main.js` needs no `--expose-gc`.
 */
const collectGarbage: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    // A runtime without the flag: runs then start with whatever heap they find.
    return () => undefined;
  }
})();

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
/** Recorded figures: whole numbers as they are, others (latencies in ms) to 2 decimals. */
const figure = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/**
 * Warms up both sides once (JIT, connections, the scheduler's code paths), then measures
 * `rounds` rounds. A round runs raw BullMQ and Jobmesh back to back, raw first in odd rounds and
 * Jobmesh first in even ones, so a machine that speeds up or slows down during the run weighs
 * on both sides alike. Every run starts on an empty Redis (FLUSHALL) with a fresh queue.
 */
export async function runScenario(scenario: AnyScenario, env: BenchEnvironment, settings: RunSettings): Promise<ScenarioResult> {
  const jobs = settings.jobs ?? scenario.defaultJobs;
  const feature = isFeatureScenario(scenario);
  // The progress lines keep their old words for the BullMQ scenarios.
  const says: Record<Side, string> = feature ? { raw: scenario.labels.off, jobmesh: scenario.labels.on } : { raw: 'raw', jobmesh: 'Jobmesh' };
  const warmup = settings.warmup ?? defaultWarmup(jobs);
  if (warmup > 0) {
    settings.log(`${scenario.name}: warm-up, ${warmup} jobs a side`);
    await runSide('raw', scenario, env, warmup);
    await runSide('jobmesh', scenario, env, warmup);
  }
  const rounds: Round[] = [];
  for (let r = 0; r < settings.rounds; r++) {
    const first: Side = r % 2 === 0 ? 'raw' : 'jobmesh';
    const second: Side = first === 'raw' ? 'jobmesh' : 'raw';
    const got = { [first]: await runSide(first, scenario, env, jobs) } as Partial<Record<Side, Measurement>>;
    got[second] = await runSide(second, scenario, env, jobs);
    const round: Round = { first, raw: got.raw!, jobmesh: got.jobmesh!, ratio: got.jobmesh!.jobsPerSec / got.raw!.jobsPerSec };
    rounds.push(round);
    settings.log(
      `${scenario.name}: round ${r + 1}/${settings.rounds} (${says[first]} first): ${says.raw} ${int.format(round.raw.jobsPerSec)} jobs/s${figuresText(round.raw)}, ` +
        `${says.jobmesh} ${int.format(round.jobmesh.jobsPerSec)} jobs/s${figuresText(round.jobmesh)}, ratio ${round.ratio.toFixed(3)}`,
    );
  }
  const raw = spread(rounds.map((r) => r.raw.jobsPerSec));
  const jobmesh = spread(rounds.map((r) => r.jobmesh.jobsPerSec));
  const ratios = rounds.map((r) => r.ratio);
  return {
    name: scenario.name,
    title: scenario.title,
    kind: feature ? 'feature' : 'bullmq',
    sides: feature ? { raw: scenario.labels.off, jobmesh: scenario.labels.on } : { raw: 'raw BullMQ', jobmesh: 'Jobmesh' },
    jobs,
    warmup,
    rounds,
    raw,
    jobmesh,
    ratio: { ofMedians: jobmesh.median / raw.median, min: Math.min(...ratios), max: Math.max(...ratios) },
    ...(!feature && scenario.figureTable && { figureTable: scenario.figureTable }),
  };
}

/** ` (spans 20,000, requests 40)`: a run's recorded figures, for the progress lines; '' for none. */
function figuresText(m: Measurement): string {
  const entries = Object.entries(m.figures ?? {});
  return entries.length ? ` (${entries.map(([k, v]) => `${k} ${figure.format(v)}`).join(', ')})` : '';
}

/** One run of one side, on an empty Redis and a fresh queue. */
async function runSide(side: Side, scenario: AnyScenario, env: BenchEnvironment, jobs: number): Promise<Measurement> {
  await env.flush();
  collectGarbage();
  if (isFeatureScenario(scenario)) {
    const feature = scenario;
    const on = side === 'jobmesh';
    const queue = await env.jobmeshQueue(`${feature.name}-${on ? 'on' : 'off'}`);
    return measure(`${feature.name} (${on ? feature.labels.on : feature.labels.off})`, jobs, env, (ctx) =>
      on ? feature.on({ ...ctx, client: env.client, queue }) : feature.off({ ...ctx, client: env.client, queue }),
    );
  }
  if (side === 'raw') {
    const queue = await env.rawQueue(`${scenario.name}-raw`);
    try {
      return await measure(`${scenario.name} (raw BullMQ)`, jobs, env, (ctx) => scenario.raw({ ...ctx, queue }));
    } finally {
      await queue.close();
    }
  }
  const queue = await env.jobmeshQueue(`${scenario.name}-jm`);
  return measure(`${scenario.name} (Jobmesh)`, jobs, env, (ctx) => scenario.jobmesh({ ...ctx, client: env.client, queue }));
}

async function measure(what: string, jobs: number, env: BenchEnvironment, body: (ctx: RunContext) => Promise<number>): Promise<Measurement> {
  // The CPU readings are taken outside the clock: before it starts, after it stops.
  let cpuFrom = cpuSample();
  let started = performance.now();
  let stopped: number | undefined;
  let cpuTo: ReturnType<typeof cpuSample>;
  const stop = (): void => {
    if (stopped !== undefined) return;
    stopped = performance.now();
    cpuTo = cpuSample();
  };
  let figures: Record<string, number> | undefined;
  const done = await body({
    jobs,
    env,
    startClock: () => {
      cpuFrom = cpuSample();
      started = performance.now();
    },
    stopClock: stop,
    record: (more) => void (figures = { ...figures, ...more }),
  });
  stop();
  const ms = stopped! - started;
  // A run that quietly did less would report a rate for work it never did.
  if (done !== jobs) throw new Error(`${what} got ${done} of ${jobs} jobs done`);
  const times = cpuFrom && cpuTo && cpuBetween(cpuFrom, cpuTo);
  return { jobs: done, ms, jobsPerSec: done / (ms / 1000), ...(figures && { figures }), ...(times && { cpuMs: times.cpu }), ...(times?.wait && { waitMs: times.wait }) };
}

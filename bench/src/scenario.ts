import type { JobmeshClient } from '@jobmesh/sdk';
import type { Queue } from 'bullmq';
import type { BenchEnvironment } from './environment';

/**
 * One benchmark: the same work done against raw BullMQ and through Jobmesh. Each run of a side
 * starts on an empty Redis with a fresh queue and returns how many jobs it got done; jobs/s is
 * that count over the wall time from the call (or from `startClock()`) to its return (or to
 * `stopClock()`). A side need not delete what it wrote: the next run starts with a FLUSHALL.
 */
export interface Scenario {
  /** Stable id: the JSON line's key and the `--scenario` value. */
  name: string;
  /** One line for the table. */
  title: string;
  /** Jobs per measured run unless BENCH_JOBS or --jobs says otherwise. */
  defaultJobs: number;
  raw(ctx: RawContext): Promise<number>;
  jobmesh(ctx: JobmeshContext): Promise<number>;
  /** Recorded figures (`ctx.record`) the report sets in a table of their own, side by side. */
  figureTable?: FigureTable;
}

/**
 * Figures a scenario's runs record that matter more than its rate (latency, say): the report
 * shows them in a table, one row a figure, with per side the median and range over the rounds,
 * and Jobmesh's minus raw's and Jobmesh's over raw's, each of the medians with the range of the
 * rounds' own. Scenarios with the same caption and keys share one table.
 */
export interface FigureTable {
  /** The line above the table: what the figures are, in which unit. */
  caption: string;
  /** The keys the runs record them under, in the table's order: `['p50 ms', 'p99 ms']`. */
  keys: string[];
  /** Decimals shown. */
  digits: number;
}

/**
 * The cost of a Jobmesh feature: the same Jobmesh work with the feature off (`off`, the side the
 * ratio divides by) and on (`on`), both on a fresh Jobmesh queue. Rounds, warm-up and flushes are
 * those of a `Scenario`; in the runner, the report and the JSON line `off` takes raw BullMQ's place
 * (the `raw` side) and `on` Jobmesh's, and `labels` names them, so its ratio is on/off, not
 * Jobmesh/BullMQ.
 */
export interface FeatureScenario {
  kind: 'feature';
  name: string;
  title: string;
  defaultJobs: number;
  /** What each side is, for the report: `{ off: 'Jobmesh, tracing off', on: 'Jobmesh, tracing on' }`. */
  labels: { off: string; on: string };
  off(ctx: JobmeshContext): Promise<number>;
  on(ctx: JobmeshContext): Promise<number>;
}

export type AnyScenario = Scenario | FeatureScenario;

export const isFeatureScenario = (s: AnyScenario): s is FeatureScenario => (s as Partial<FeatureScenario>).kind === 'feature';

export interface RunContext {
  /** Jobs this run should get done (the warm-up's count in a warm-up). */
  jobs: number;
  /** The bench's Redis and the services around it. */
  env: BenchEnvironment;
  /** Restarts the clock: call it after set-up that should not be timed. */
  startClock(): void;
  /** Stops the clock: call it before clean-up that should not be timed (else: at the return). */
  stopClock(): void;
  /**
   * Keeps figures of this run besides its rate (spans an OTLP receiver got, say) with its
   * measurement: the progress log, the report and the JSON line show them. A later call adds to
   * (and overrides keys of) an earlier one.
   */
  record(figures: Record<string, number>): void;
}

export interface RawContext extends RunContext {
  /** A fresh BullMQ queue (prefix `bench-raw`) on the bench's Redis, connected; closed after the run. */
  queue: Queue;
}

export interface JobmeshContext extends RunContext {
  client: JobmeshClient;
  /** A fresh queue, created through CreateQueue with default settings. */
  queue: string;
}

/** The job name every scenario enqueues. */
export const JOB_NAME = 'bench';

/** A small, realistic payload (about 100 bytes of JSON), the same on both sides. */
export function jobData(i: number): Record<string, unknown> {
  return { index: i, tenant: 'bench', action: 'send-email', to: `user-${i}@example.com`, attempt: 1 };
}

/** Calls `fn(0 … total-1)` with at most `limit` calls pending; rejects with the first error. */
export async function inFlight(total: number, limit: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < total) {
      const i = next++;
      try {
        await fn(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, total) }, lane));
}

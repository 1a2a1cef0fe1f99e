import { parseArgs } from 'node:util';

/** What a bench run was asked to do; read once from the command line and the environment. */
export interface BenchOptions {
  /** Jobs in each measured run, for every scenario. @default each scenario's `defaultJobs` */
  jobs?: number;
  /** Jobs in each warm-up run. @default a tenth of the measured run, at least 1,000 (at most the run) */
  warmup?: number;
  /** Measured rounds per scenario, each one run of raw BullMQ and one of Jobmesh. @default 5 */
  rounds: number;
  /** Run only the scenarios with these names. @default all */
  only: string[];
  /**
   * The job options of raw BullMQ's jobs: `jobmesh`, the BullMQ options a Jobmesh job is stored
   * with by default (3 attempts, exponential backoff, completed jobs kept to 1,000 / 24 h), so
   * both sides do the same work a job; `bare`, none (BullMQ keeps every completed job forever).
   * @default jobmesh
   */
  rawOptions: RawOptions;
  /**
   * Where end-to-end and dead-letter run raw BullMQ's Worker: `process`, a process of its own, as
   * the worker-pool runs and as a deployment runs either; `bench`, in the bench's process, next
   * to the QueueEvents that counts both sides' completions (the way before 2026-12-03).
   * @default process
   */
  rawWorker: RawWorker;
}

export const RAW_OPTIONS = ['jobmesh', 'bare'] as const;
export type RawOptions = (typeof RAW_OPTIONS)[number];
export const RAW_WORKERS = ['process', 'bench'] as const;
export type RawWorker = (typeof RAW_WORKERS)[number];

/** Enough for a median that one odd run cannot move, and a range worth reading. */
export const DEFAULT_ROUNDS = 5;

export const USAGE = `usage: npm run bench -- [--rounds N] [--jobs N] [--warmup N] [--scenario NAME]...

  --rounds N       measured rounds per scenario, each a raw and a Jobmesh run (default ${DEFAULT_ROUNDS}; env BENCH_ROUNDS)
  --jobs N         jobs per measured run, every scenario (env BENCH_JOBS)
  --warmup N       jobs per warm-up run; 0 skips the warm-up (env BENCH_WARMUP)
  --scenario NAME  run only this scenario; repeatable
  --raw-options jobmesh|bare
                   raw BullMQ's job options: jobmesh (default), the BullMQ options a Jobmesh job is
                   stored with by default (3 attempts, exponential backoff, completed jobs kept to
                   1,000 / 24 h); bare, none, as BullMQ defaults them (every completed job kept
                   forever) (env BENCH_RAW_OPTIONS)
  --raw-worker process|bench
                   where end-to-end and dead-letter run raw BullMQ's Worker: process (default), a
                   process of its own, as the worker-pool is one; bench, in the bench's own process,
                   next to the QueueEvents that counts completions (env BENCH_RAW_WORKER).
                   remote-worker runs it in the bench's process always, where its RemoteWorker runs

  env BENCH_OTLP_RECEIVER=count|decode  the OTLP receiver of end-to-end-traced: count (default) counts
                   spans without decoding them; decode is @jobmesh/testing's, which decodes every span
  env BENCH_SERVICE_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"  Node arguments for every process the
                   bench spawns (services, echo server, raw Worker): here, a CPU profile of each, written
                   to DIR when it stops
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Flags win over BENCH_* variables. Throws UsageError on anything it does not understand. */
export function parseBenchOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        rounds: { type: 'string' },
        jobs: { type: 'string' },
        warmup: { type: 'string' },
        scenario: { type: 'string', multiple: true },
        'raw-options': { type: 'string' },
        'raw-worker': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values } = parsed;
  if (values.help) return 'help';
  return {
    jobs: count(values.jobs ?? env.BENCH_JOBS, values.jobs !== undefined ? '--jobs' : 'BENCH_JOBS', 1),
    warmup: count(values.warmup ?? env.BENCH_WARMUP, values.warmup !== undefined ? '--warmup' : 'BENCH_WARMUP', 0),
    rounds: count(values.rounds ?? env.BENCH_ROUNDS, values.rounds !== undefined ? '--rounds' : 'BENCH_ROUNDS', 1) ?? DEFAULT_ROUNDS,
    only: values.scenario ?? [],
    rawOptions: oneOf(values['raw-options'] ?? env.BENCH_RAW_OPTIONS, values['raw-options'] !== undefined ? '--raw-options' : 'BENCH_RAW_OPTIONS', RAW_OPTIONS) ?? 'jobmesh',
    rawWorker: oneOf(values['raw-worker'] ?? env.BENCH_RAW_WORKER, values['raw-worker'] !== undefined ? '--raw-worker' : 'BENCH_RAW_WORKER', RAW_WORKERS) ?? 'process',
  };
}

function count(raw: string | undefined, source: string, min: number): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${source} must be a whole number of at least ${min}, got "${raw}"`);
  return n;
}

function oneOf<T extends string>(raw: string | undefined, source: string, allowed: readonly T[]): T | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(`${source} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

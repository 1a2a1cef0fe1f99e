/**
 * The processor API: what a job handler written in TypeScript sees. The same definitions run
 * in-process in the worker-pool and, over the worker protocol, in a RemoteWorker.
 */

/** A job as its processor sees it. */
export interface JobInfo<Data = Record<string, unknown>> {
  id: string;
  queue: string;
  name: string;
  data: Data;
  /** This attempt, counted from 1. */
  attempt: number;
  /** Attempts allowed in all. */
  maxAttempts: number;
  createdAt: Date;
  /** The flow parent, when this job is a child. */
  parent?: { queue: string; id: string };
  /** The W3C trace id of the enqueue. */
  traceId?: string;
}

/** A child job a processor adds, see {@link JobContext.runChildren}. */
export interface ChildJobSpec {
  /** Defaults to the parent's queue. */
  queue?: string;
  name: string;
  data?: Record<string, unknown>;
  /** A stable id makes adding the child idempotent. */
  jobId?: string;
  attempts?: number;
}

export interface JobContext {
  /**
   * Aborted when the attempt ends early; the reason says why: a JobTimeoutError (the job's
   * `timeout`; a failed attempt), a JobCancelledError (CancelJob; the job ends CANCELLED), or an
   * error named WorkerShutdownError (the replica's shutdown grace period ran out; the job goes
   * back to the queue without using an attempt).
   */
  readonly signal: AbortSignal;
  /** This attempt, counted from 1. */
  readonly attempt: number;
  /** Reports progress: a number 0..100 or any JSON value. WatchJob streams it. */
  progress(value: number | Record<string, unknown>): Promise<void>;
  /** Attaches a log line to the job. WatchJob streams it. */
  log(message: string): Promise<void>;
  /**
   * Runs `fn` once per job: its result is persisted, and when a later attempt reaches a step that
   * already succeeded, the stored result is returned without running `fn` again. So a retry
   * resumes at the step that failed. Step names must be unique within the job; results must be
   * JSON-serialisable.
   */
  step<T>(name: string, fn: () => T | Promise<T>): Promise<T>;
  /**
   * Adds child jobs and waits for them: the first time, the children are added, the job moves to
   * WAITING_CHILDREN and this attempt ends; once every child completed, the processor runs again
   * from the start, and the same call returns the children's results (keyed "queue:id").
   * Use a stable `name` per call site, like a step.
   */
  runChildren(name: string, children: ChildJobSpec[]): Promise<Record<string, unknown>>;
  /**
   * The results of this job's completed children, keyed "queue:id": for a parent enqueued with
   * EnqueueFlow, which runs only once its children completed. Empty for a job without children.
   */
  childrenResults(): Promise<Record<string, unknown>>;
}

export type ProcessFn<Data = Record<string, unknown>, Result = unknown> = (job: JobInfo<Data>, ctx: JobContext) => Result | Promise<Result>;

const PROCESSOR = Symbol.for('jobmesh.processor');
const BACKOFF = Symbol.for('jobmesh.backoff');

export interface ProcessorDefinition<Data = Record<string, unknown>, Result = unknown> {
  readonly [PROCESSOR]: true;
  /** The queue it serves, or '*' for every queue. */
  queue: string;
  /** The job name it handles. */
  name: string;
  process: ProcessFn<Data, Result>;
}

/**
 * A processor of any data and result: what lists of processors hold. (`ProcessorDefinition` alone
 * means untyped data, and a processor declared with typed data is not one, as its `process`
 * accepts less.)
 */
export type AnyProcessorDefinition = ProcessorDefinition<any, any>;

/**
 * Declares a processor for jobs named `name` on `queue` ('*': any queue). Export it from a module
 * listed in the config file or in JOBMESH_PROCESSORS.
 *
 * @example
 * export default defineProcessor({ queue: 'emails', name: 'welcome', async process(job, ctx) { … } });
 */
export function defineProcessor<Data = Record<string, unknown>, Result = unknown>(def: {
  queue: string;
  name: string;
  process: ProcessFn<Data, Result>;
}): ProcessorDefinition<Data, Result> {
  if (!def.queue || !def.name || typeof def.process !== 'function') {
    throw new TypeError('defineProcessor needs { queue, name, process(job, ctx) }');
  }
  return { ...def, [PROCESSOR]: true };
}

export function isProcessorDefinition(v: unknown): v is ProcessorDefinition {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[PROCESSOR] === true;
}

/** A custom backoff: the delay in ms before the next attempt, after `attemptsMade` failed ones. */
export type BackoffFn = (attemptsMade: number, error: Error, job: { id: string; queue: string; name: string }) => number;

export interface BackoffDefinition {
  readonly [BACKOFF]: true;
  name: string;
  delay: BackoffFn;
}

/** Registers a backoff strategy, chosen by jobs with `backoff: { kind: CUSTOM, custom_strategy: name }`. */
export function defineBackoff(name: string, delay: BackoffFn): BackoffDefinition {
  return { name, delay, [BACKOFF]: true };
}

export function isBackoffDefinition(v: unknown): v is BackoffDefinition {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[BACKOFF] === true;
}

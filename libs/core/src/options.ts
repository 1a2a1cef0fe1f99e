/** How the wait between attempts grows. */
export type BackoffKind = 'fixed' | 'exponential' | 'linear' | 'custom';

export interface BackoffSpec {
  kind: BackoffKind;
  /** Base delay in milliseconds. */
  delayMs: number;
  /** Upper bound on one delay, in milliseconds. */
  maxDelayMs?: number;
  /** Randomises each delay by up to this fraction, 0..1. @default 0 */
  jitter?: number;
  /** With kind 'custom': the registered strategy's name. */
  customStrategy?: string;
}

/** How many finished jobs, or for how long, are kept. */
export interface RetentionSpec {
  count?: number;
  ageMs?: number;
}

/** Per-job options in domain terms (milliseconds, Dates). Unset fields take defaults. */
export interface JobOptionsSpec {
  /** @default 3 */
  attempts?: number;
  /** @default exponential, 1 s */
  backoff?: BackoffSpec;
  delayMs?: number;
  runAt?: Date;
  /** 0 is FIFO, 1 the highest priority. @default 0 */
  priority?: number;
  timeoutMs?: number;
  idempotencyKey?: string;
  jobId?: string;
  /** @default 1000 jobs, 24 h */
  keepCompleted?: RetentionSpec;
  /** @default 10000 jobs, 7 days */
  keepFailed?: RetentionSpec;
  /** The dead letter this job replays (set by DeadLetterService.ReplayDeadLetters). */
  replayOf?: string;
}

export interface RateLimitSpec {
  max: number;
  durationMs: number;
}

export type SeverityName = 'info' | 'warning' | 'critical';

export interface DeadLetterRuleSpec {
  errorName?: string;
  messagePattern?: string;
  jobName?: string;
  category: string;
  severity?: SeverityName;
  /** Quarantine the dead letter at capture. */
  quarantine?: boolean;
}

export interface DeadLetterPolicySpec {
  disabled?: boolean;
  rules?: DeadLetterRuleSpec[];
  retention?: RetentionSpec;
}

/** A queue in the registry. */
export interface QueueSpec {
  name: string;
  /** Jobs one worker-pool replica runs at once. @default 10 */
  concurrency: number;
  rateLimit?: RateLimitSpec;
  defaultJobOptions: JobOptionsSpec;
  paused: boolean;
  deadLetter: DeadLetterPolicySpec;
  labels: Record<string, string>;
  /**
   * How long a job whose name nothing serves (no in-process processor, no remote worker) waits
   * for one, counted from when it could first have run; then it fails as PROCESSOR_NOT_FOUND.
   * 0 fails it at once. @default 1 h ({@link DEFAULT_PROCESSOR_WAIT_MS})
   */
  processorWaitMs?: number;
}

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF: Readonly<BackoffSpec> = Object.freeze({ kind: 'exponential', delayMs: 1000 });
export const DEFAULT_KEEP_COMPLETED: Readonly<RetentionSpec> = Object.freeze({ count: 1000, ageMs: 24 * 3_600_000 });
export const DEFAULT_KEEP_FAILED: Readonly<RetentionSpec> = Object.freeze({ count: 10_000, ageMs: 7 * 24 * 3_600_000 });
/** How long a queue's dead letters are kept, unless its dead-letter policy says otherwise. */
export const DEFAULT_DEAD_LETTER_RETENTION: Readonly<RetentionSpec> = Object.freeze({ count: 100_000, ageMs: 30 * 24 * 3_600_000 });
export const DEFAULT_CONCURRENCY = 10;
/** How long a job waits for a processor for its name, unless its queue's `processor_wait` says otherwise. */
export const DEFAULT_PROCESSOR_WAIT_MS = 3_600_000;
/** The longest `processor_wait` a queue may set. */
export const MAX_PROCESSOR_WAIT_MS = 30 * 24 * 3_600_000;
/** Highest numeric priority value BullMQ accepts (lowest priority): 2^21 - 1. */
export const MAX_PRIORITY = 2_097_151;

/** The options a job runs with: its own, else the queue's defaults, else the built-in ones. */
export type ResolvedJobOptions = JobOptionsSpec &
  Required<Pick<JobOptionsSpec, 'attempts' | 'backoff' | 'keepCompleted' | 'keepFailed'>>;

export function resolveJobOptions(job: JobOptionsSpec, queueDefaults: JobOptionsSpec = {}): ResolvedJobOptions {
  const merged: JobOptionsSpec = { ...stripUndefined(queueDefaults), ...stripUndefined(job) };
  // delay and runAt are alternatives: the job's own choice wins over a queue default of the other.
  if (job.runAt !== undefined) delete merged.delayMs;
  if (job.delayMs !== undefined) delete merged.runAt;
  return {
    ...merged,
    attempts: merged.attempts ?? DEFAULT_ATTEMPTS,
    backoff: merged.backoff ?? { ...DEFAULT_BACKOFF },
    keepCompleted: merged.keepCompleted ?? { ...DEFAULT_KEEP_COMPLETED },
    keepFailed: merged.keepFailed ?? { ...DEFAULT_KEEP_FAILED },
  };
}

export function defaultQueueSpec(name: string): QueueSpec {
  return { name, concurrency: DEFAULT_CONCURRENCY, defaultJobOptions: {}, paused: false, deadLetter: {}, labels: {} };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

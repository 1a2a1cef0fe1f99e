import { InvalidArgumentError, PayloadTooLargeError } from './errors';
import { validateLabels, validateLength } from './limits';
import type { PatternCompiler } from './pattern';
import { MAX_PRIORITY, MAX_PROCESSOR_WAIT_MS, type BackoffSpec, type JobOptionsSpec, type QueueSpec, type RetentionSpec } from './options';

const QUEUE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/;

/**
 * The longest duration any option may give (a delay, a timeout, an interval, an age): 10 years.
 * BullMQ keeps a delayed job's due time times 4096 in a float score; much further out it loses
 * precision and refuses the job, which was answered INTERNAL.
 */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/** What a google.protobuf.Duration out of its range (seconds, nanos, signs) is answered with. */
export const INVALID_DURATION =
  'is not a valid google.protobuf.Duration: seconds within ±315576000000, nanos within ±999999999 and of the same sign as seconds';

/** The most attempts a job may have: each failed attempt keeps its error, stack and a retry. */
export const MAX_ATTEMPTS = 1000;

/** Dead-letter rules per queue. */
export const MAX_DEAD_LETTER_RULES = 100;

/** Default limit on a job's JSON-encoded data: 256 KiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024;

export function validateQueueName(name: string, field = 'queue'): string {
  if (!name) throw new InvalidArgumentError(field, 'is required');
  if (!QUEUE_NAME.test(name)) {
    throw new InvalidArgumentError(
      field,
      `"${truncate(name)}" is not a valid queue name: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/** Schedule ids follow the queue-name rules. */
export function validateScheduleId(id: string, field = 'schedule.id'): string {
  return validateQueueName(id, field);
}

export function validateJobName(name: string, field = 'job.name'): string {
  if (!name) throw new InvalidArgumentError(field, 'is required');
  if (!JOB_NAME.test(name)) {
    throw new InvalidArgumentError(
      field,
      `"${truncate(name)}" is not a valid job name: use 1-200 letters, digits, '.', '_', '-', '/' or ':', starting with a letter or digit`,
    );
  }
  return name;
}

export function validateJobId(id: string, field = 'job.options.job_id'): string {
  if (!JOB_ID.test(id) || /^\d+$/.test(id)) {
    throw new InvalidArgumentError(
      field,
      `"${truncate(id)}" is not a valid job id: use 1-200 letters, digits, '.', '_', '-' or '/', not a plain integer and without ':'`,
    );
  }
  return id;
}

/** The longest free-text reason a caller may give (CancelJob, quarantine, …), in characters. */
export const MAX_REASON_LENGTH = 1024;

/** Refuses a reason over {@link MAX_REASON_LENGTH} characters; it is stored and echoed back. */
export function validateReason(reason: string, field = 'reason'): string {
  if (reason.length > MAX_REASON_LENGTH) throw new InvalidArgumentError(field, `is ${reason.length} characters; at most ${MAX_REASON_LENGTH}`);
  return reason;
}

/**
 * Refuses a key or id holding U+FFFD. Protobuf decoding turns each invalid UTF-8 sequence of a
 * string into U+FFFD, so two different keys sent as invalid UTF-8 would arrive equal and
 * deduplicate onto one job; the replacement character is refused outright, sent or made.
 */
export function validateKeyText(value: string, field: string): string {
  if (value.includes('\uFFFD')) {
    throw new InvalidArgumentError(field, 'holds invalid UTF-8 (or U+FFFD, which invalid UTF-8 decodes to): send keys and ids as valid UTF-8');
  }
  return value;
}

/** Measures the JSON encoding of `data` and rejects it over `limit` bytes. Returns the size. */
export function validatePayload(data: unknown, limit: number, field = 'job.data'): number {
  const size = Buffer.byteLength(JSON.stringify(data ?? {}), 'utf8');
  if (size > limit) throw new PayloadTooLargeError(field, size, limit);
  return size;
}

export function validateBackoff(b: BackoffSpec, field: string): void {
  nonNegative(b.delayMs, `${field}.delay`);
  if (b.maxDelayMs !== undefined) nonNegative(b.maxDelayMs, `${field}.max_delay`);
  if (b.jitter !== undefined && !(b.jitter >= 0 && b.jitter <= 1)) {
    throw new InvalidArgumentError(`${field}.jitter`, `must be between 0 and 1, got ${b.jitter}`);
  }
  if (b.kind === 'custom' && !b.customStrategy) {
    throw new InvalidArgumentError(`${field}.custom_strategy`, 'is required with BACKOFF_KIND_CUSTOM');
  }
}

function validateRetention(r: RetentionSpec, field: string): void {
  if (r.ageMs !== undefined) nonNegative(r.ageMs, `${field}.age`);
}

/** Checks every option of a job; `field` is the path of the options message in the request. */
export function validateJobOptions(o: JobOptionsSpec, field = 'job.options'): void {
  if (o.attempts !== undefined && (!Number.isInteger(o.attempts) || o.attempts < 1 || o.attempts > MAX_ATTEMPTS)) {
    throw new InvalidArgumentError(`${field}.attempts`, `must be between 1 and ${MAX_ATTEMPTS}, got ${o.attempts}`);
  }
  if (o.backoff) validateBackoff(o.backoff, `${field}.backoff`);
  if (o.delayMs !== undefined) nonNegative(o.delayMs, `${field}.delay`);
  if (o.runAt !== undefined && Number.isNaN(o.runAt.getTime())) throw new InvalidArgumentError(`${field}.run_at`, 'is not a valid time');
  if (o.runAt !== undefined && o.runAt.getTime() - Date.now() > MAX_DURATION_MS) {
    throw new InvalidArgumentError(`${field}.run_at`, `must be at most 10 years ahead, got ${o.runAt.toISOString()}`);
  }
  if (o.delayMs !== undefined && o.runAt !== undefined) throw new InvalidArgumentError(`${field}.delay`, 'set delay or run_at, not both');
  if (o.priority !== undefined && (!Number.isInteger(o.priority) || o.priority < 0 || o.priority > MAX_PRIORITY)) {
    throw new InvalidArgumentError(`${field}.priority`, `must be between 0 and ${MAX_PRIORITY}, got ${o.priority}`);
  }
  if (o.timeoutMs !== undefined) nonNegative(o.timeoutMs, `${field}.timeout`);
  if (o.idempotencyKey !== undefined && o.idempotencyKey.length > 512) {
    throw new InvalidArgumentError(`${field}.idempotency_key`, 'must be at most 512 characters');
  }
  if (o.idempotencyKey !== undefined) validateKeyText(o.idempotencyKey, `${field}.idempotency_key`);
  if (o.jobId !== undefined) validateJobId(o.jobId, `${field}.job_id`);
  if (o.replayOf !== undefined && o.replayOf.length > 512) throw new InvalidArgumentError(`${field}.replay_of`, 'must be at most 512 characters');
  if (o.replayOf !== undefined) validateKeyText(o.replayOf, `${field}.replay_of`);
  if (o.keepCompleted) validateRetention(o.keepCompleted, `${field}.keep_completed`);
  if (o.keepFailed) validateRetention(o.keepFailed, `${field}.keep_failed`);
}

/** Checks a queue's settings; `compilePattern` checks its dead-letter rules' patterns (see PatternCompiler). */
export function validateQueueSpec(q: QueueSpec, compilePattern: PatternCompiler, field = 'queue'): void {
  validateQueueName(q.name, `${field}.name`);
  if (!Number.isInteger(q.concurrency) || q.concurrency < 1 || q.concurrency > 10_000) {
    throw new InvalidArgumentError(`${field}.concurrency`, `must be between 1 and 10000, got ${q.concurrency}`);
  }
  if (q.rateLimit && q.rateLimit.max > 0) {
    nonNegative(q.rateLimit.durationMs, `${field}.rate_limit.duration`);
    if (!(q.rateLimit.durationMs > 0)) throw new InvalidArgumentError(`${field}.rate_limit.duration`, 'must be positive when rate_limit.max is set');
  }
  validateJobOptions(q.defaultJobOptions, `${field}.default_job_options`);
  for (const [key, name] of [['jobId', 'job_id'], ['idempotencyKey', 'idempotency_key'], ['replayOf', 'replay_of']] as const) {
    if (q.defaultJobOptions[key] !== undefined) {
      throw new InvalidArgumentError(`${field}.default_job_options.${name}`, 'cannot be a queue default: it belongs to one job');
    }
  }
  if (q.processorWaitMs !== undefined) {
    nonNegative(q.processorWaitMs, `${field}.processor_wait`);
    if (q.processorWaitMs > MAX_PROCESSOR_WAIT_MS) {
      throw new InvalidArgumentError(`${field}.processor_wait`, `must be at most 30 days, got ${q.processorWaitMs}ms`);
    }
  }
  validateLabels(q.labels, `${field}.labels`);
  if (q.deadLetter.retention) validateRetention(q.deadLetter.retention, `${field}.dead_letter.retention`);
  const rules = q.deadLetter.rules ?? [];
  if (rules.length > MAX_DEAD_LETTER_RULES) throw new InvalidArgumentError(`${field}.dead_letter.rules`, `holds ${rules.length} rules; at most ${MAX_DEAD_LETTER_RULES}`);
  for (const [i, rule] of rules.entries()) {
    const rf = `${field}.dead_letter.rules[${i}]`;
    if (!rule.category) throw new InvalidArgumentError(`${rf}.category`, 'is required');
    validateLength(rule.category, 100, `${rf}.category`);
    if (rule.errorName) validateLength(rule.errorName, 200, `${rf}.error_name`);
    if (rule.jobName) validateLength(rule.jobName, 200, `${rf}.job_name`);
    if (rule.messagePattern) compilePattern(rule.messagePattern, `${rf}.message_pattern`);
  }
}

/** A duration option (delay, timeout, backoff, retention age, …): 0 up to {@link MAX_DURATION_MS}. */
function nonNegative(ms: number, field: string): void {
  if (Number.isNaN(ms)) throw new InvalidArgumentError(field, INVALID_DURATION);
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError(field, `must not be negative, got ${ms}ms`);
  if (ms > MAX_DURATION_MS) throw new InvalidArgumentError(field, `must be at most ${MAX_DURATION_MS}ms (10 years), got ${ms}ms`);
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

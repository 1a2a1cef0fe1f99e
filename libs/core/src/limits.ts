import { InvalidArgumentError, PayloadTooLargeError } from './errors';

// Bounds on what a caller may have stored: every stored value is read back whole (GetJob,
// ListJobs, ListQueues, ListWorkers), so one oversized value would make every later read of it
// fail with RESOURCE_EXHAUSTED, for everyone.

/** Labels per queue or worker. */
export const MAX_LABELS = 64;
/** A label's key, in characters. */
export const MAX_LABEL_KEY_LENGTH = 128;
/** A label's value, in characters. */
export const MAX_LABEL_VALUE_LENGTH = 1024;
/** A remote worker's progress value, JSON-encoded, in bytes. */
export const MAX_PROGRESS_BYTES = 64 * 1024;
/** One log line of a job, in characters. */
export const MAX_LOG_LINE_LENGTH = 16 * 1024;
/** Job names one worker may list in Hello or LeaseJobs. */
export const MAX_WORKER_JOB_NAMES = 1000;
/** A worker id or SDK name, in characters. */
export const MAX_WORKER_ID_LENGTH = 200;
/** A failure message kept for an attempt, in characters; a longer one is cut to this. */
export const MAX_FAILURE_MESSAGE_LENGTH = 16 * 1024;
/** Stack trace lines kept for an attempt, and each line's length in characters. */
export const MAX_STACK_LINES = 100;
export const MAX_STACK_LINE_LENGTH = 1024;

/** Refuses more than {@link MAX_LABELS} labels, or a key or value over its length. */
export function validateLabels(labels: Record<string, string>, field = 'labels'): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) throw new InvalidArgumentError(field, `holds ${keys.length} labels; at most ${MAX_LABELS}`);
  for (const key of keys) {
    if (key.length === 0 || key.length > MAX_LABEL_KEY_LENGTH) {
      throw new InvalidArgumentError(field, `a label key must be 1-${MAX_LABEL_KEY_LENGTH} characters, got ${key.length}`);
    }
    const value = labels[key]!;
    if (value.length > MAX_LABEL_VALUE_LENGTH) {
      throw new InvalidArgumentError(`${field}[${shorten(key, 40)}]`, `is ${value.length} characters; at most ${MAX_LABEL_VALUE_LENGTH}`);
    }
  }
}

/** Refuses a string over `max` characters. */
export function validateLength(value: string, max: number, field: string): string {
  if (value.length > max) throw new InvalidArgumentError(field, `is ${value.length} characters; at most ${max}`);
  return value;
}

/** Refuses a JSON value whose encoding is over `limit` bytes (RESOURCE_EXHAUSTED). Returns the size. */
export function validateJsonSize(value: unknown, limit: number, field: string): number {
  // The length in UTF-16 units bounds the UTF-8 size from below: a clearly oversized value is
  // refused without measuring its bytes.
  const json = JSON.stringify(value ?? null) ?? 'null';
  if (json.length > limit) throw new PayloadTooLargeError(field, Buffer.byteLength(json, 'utf8'), limit);
  const size = Buffer.byteLength(json, 'utf8');
  if (size > limit) throw new PayloadTooLargeError(field, size, limit);
  return size;
}

/** `s` cut to `max` characters, with "…" marking the cut. */
export function shorten(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

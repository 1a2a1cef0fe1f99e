/**
 * Errors a processor throws to steer what happens to its job. Each sets `name`, so workers in
 * other processes (and languages) recognise them after serialization.
 */

/** Fails the job now, whatever attempts remain. */
export class UnrecoverableError extends Error {
  override readonly name = 'UnrecoverableError';
}

/**
 * A downstream rate limit: the queue backs off for `retryAfterMs` and the job runs again later,
 * without using up an attempt.
 */
export class RateLimitError extends Error {
  override readonly name = 'RateLimitError';
  constructor(
    readonly retryAfterMs: number,
    message = `rate limited; retry after ${retryAfterMs} ms`,
  ) {
    super(message);
  }
}

/** An attempt ran longer than the job's `timeout`; it counts as a failed attempt. */
export class JobTimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(readonly timeoutMs: number) {
    super(`attempt timed out after ${timeoutMs} ms`);
  }
}

/** The job was cancelled (CancelJob) while it ran. */
export class JobCancelledError extends Error {
  override readonly name = 'JobCancelledError';
  constructor(readonly reason: string) {
    super(`cancelled: ${reason}`);
  }
}

/** Reason prefix of a job no processor (in-process or remote) could take. */
export const PROCESSOR_NOT_FOUND = 'PROCESSOR_NOT_FOUND';

/**
 * Predicates by `name`, not `instanceof`: an error that crossed a process (a remote worker's Fail,
 * BullMQ's stored failure, another copy of this package) keeps its name but not its class.
 */
export const isUnrecoverable = (err: unknown): boolean => (err as Error | undefined)?.name === 'UnrecoverableError';
export const isRateLimited = (err: unknown): err is RateLimitError => (err as Error | undefined)?.name === 'RateLimitError';
export const isTimeout = (err: unknown): boolean => (err as Error | undefined)?.name === 'TimeoutError';

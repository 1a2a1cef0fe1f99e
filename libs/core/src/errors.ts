/**
 * Typed errors of the Jobmesh domain. Each sets a stable `name` (so checks survive
 * serialization) and a `kind` that libs/grpc-kit maps to a gRPC status in one place.
 */
export type ErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'unavailable'
  | 'unauthenticated'
  | 'permission_denied'
  | 'deadline_exceeded'
  | 'aborted';

export abstract class JobmeshError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Input that can never succeed; `field` names what to fix (proto field path). */
export class InvalidArgumentError extends JobmeshError {
  readonly kind = 'invalid_argument';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export class NotFoundError extends JobmeshError {
  readonly kind = 'not_found';
}

export class QueueNotFoundError extends NotFoundError {
  constructor(readonly queue: string) {
    super(`queue "${queue}" does not exist; create it with CreateQueue or in the config file`);
  }
}

export class JobNotFoundError extends NotFoundError {
  constructor(
    readonly queue: string,
    readonly jobId: string,
  ) {
    super(`job "${jobId}" not found on queue "${queue}"`);
  }
}

export class ScheduleNotFoundError extends NotFoundError {
  constructor(
    readonly queue: string,
    readonly scheduleId: string,
  ) {
    super(`schedule "${scheduleId}" not found on queue "${queue}"`);
  }
}

export class AlreadyExistsError extends JobmeshError {
  readonly kind = 'already_exists';
}

/** The request is well formed but the target is in the wrong state for it. */
export class FailedPreconditionError extends JobmeshError {
  readonly kind = 'failed_precondition';
}

/** A lease token that no longer holds the job's lock (fencing). */
export class StaleLeaseError extends FailedPreconditionError {
  constructor(
    readonly queue: string,
    readonly jobId: string,
  ) {
    super(`lease on job "${jobId}" of queue "${queue}" is no longer held (expired or taken over)`);
  }
}

export class PayloadTooLargeError extends JobmeshError {
  readonly kind = 'resource_exhausted';
  constructor(
    readonly field: string,
    readonly size: number,
    readonly limit: number,
  ) {
    super(`${field}: payload is ${size} bytes, over the limit of ${limit} bytes`);
  }
}

/** A limit of the deployment (not of one request) is reached, e.g. a queue's schedules. */
export class ResourceExhaustedError extends JobmeshError {
  readonly kind = 'resource_exhausted';
}

/** The backbone (Redis) or a peer service cannot be reached; the call may be retried. */
export class UnavailableError extends JobmeshError {
  readonly kind = 'unavailable';
}

export class UnauthenticatedError extends JobmeshError {
  readonly kind = 'unauthenticated';
}

export class PermissionDeniedError extends JobmeshError {
  readonly kind = 'permission_denied';
}

export function isJobmeshError(err: unknown): err is JobmeshError {
  return err instanceof JobmeshError;
}

/**
 * The gRPC trailer in which a status made from a JobmeshError names it: UTF-8 JSON of
 * {@link errorFacts}, e.g. `{"name":"QueueNotFoundError","kind":"not_found","queue":"emails"}`.
 * Binary (`-bin`), so any name a field holds travels as it is. libs/grpc-kit writes it; the SDK
 * reads it to throw the matching typed error without parsing the message.
 */
export const ERROR_TRAILER = 'jobmesh-error-bin';

/** A JobmeshError's `name` and its own string and number fields (`queue`, `jobId`, `field`, …). */
export function errorFacts(err: JobmeshError): Record<string, string | number> {
  const facts: Record<string, string | number> = { name: err.name };
  for (const [key, value] of Object.entries(err)) if (typeof value === 'string' || typeof value === 'number') facts[key] = value;
  return facts;
}

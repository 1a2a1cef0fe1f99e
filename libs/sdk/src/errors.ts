/**
 * The errors a Jobmesh client call throws: one class per gRPC status a caller acts on, each the
 * SDK's face of the domain error the server threw (libs/core), so a caller writes `instanceof`
 * instead of comparing `err.code`. Every one of them still carries the call's `code` (the numeric
 * gRPC status code), `details` and `metadata` as grpc-js gave them, and that grpc-js error as
 * `cause`, so code that reads `err.code` or `err.details` keeps working. The message is the
 * server's own (`details`), as Temporal's client errors have it, without grpc-js's "5 NOT_FOUND: "
 * prefix: the class says that. A service that passes a client error on (throws it from a
 * handler) answers with the same status, message and error trailer, since grpc-kit maps these
 * as the core errors they extend.
 */
import { Metadata, type ServiceError, type StatusObject, status } from '@grpc/grpc-js';
import * as core from '@jobmesh/core';

/** What every error thrown by a failed call carries, whatever its class. */
export interface StatusFacts {
  /** The gRPC status code, e.g. 5 (`status.NOT_FOUND`). */
  readonly code: status;
  /** The server's message, as it sent it. */
  readonly details: string;
  /** The trailers that came with the status. */
  readonly metadata: Metadata;
  /** The grpc-js error the call failed with. */
  readonly cause: ServiceError;
}

/** Marks an error as one of these; see {@link StatusError}'s `instanceof`. */
const STATUS_ERROR = Symbol.for('jobmesh.sdk.StatusError');

type ErrorClass<T extends Error> = abstract new (...args: any[]) => T;

/** Adds the status facts to a domain error class: one base each, so `instanceof` the core class holds too. */
function withStatus<B extends ErrorClass<Error>>(Base: B) {
  abstract class WithStatus extends Base implements StatusFacts {
    declare readonly code: status;
    declare readonly details: string;
    declare readonly metadata: Metadata;
    declare readonly cause: ServiceError;
  }
  return WithStatus;
}

/** Copies what grpc-js reported onto `err`; the message becomes the server's (`details`). */
function adopt(err: Error, s: ServiceError, message = s.details || s.message): void {
  err.message = message;
  Object.assign(err, { code: s.code, details: s.details ?? '', metadata: s.metadata ?? new Metadata() });
  // Not enumerable, as `cause` is on errors made with `new Error(message, { cause })`.
  Object.defineProperty(err, 'cause', { value: s, writable: true, configurable: true, enumerable: false });
  Object.defineProperty(err, STATUS_ERROR, { value: true });
}

/**
 * The SDK class of a domain error whose constructor takes its message: made from a failed call's
 * status, with the server's message and the status facts.
 */
function fromStatus<B extends abstract new (message: string) => Error>(Base: B) {
  abstract class FromStatus extends withStatus(Base as abstract new (message: string) => Error) {
    constructor(s: ServiceError) {
      super(s.details || s.message);
      adopt(this, s);
    }
  }
  return FromStatus as unknown as abstract new (s: ServiceError) => InstanceType<B> & StatusFacts;
}

/**
 * A failed call whose status has no class of its own (CANCELLED, UNKNOWN, ABORTED, OUT_OF_RANGE,
 * UNIMPLEMENTED, INTERNAL, DATA_LOSS). `err instanceof StatusError` is true for every error this
 * SDK makes from a status, whatever its class (a check by brand, as Temporal's
 * `SymbolBasedInstanceOfError`, so it also holds across two copies of the SDK).
 */
export class StatusError extends withStatus(Error) {
  constructor(s: ServiceError) {
    super(s.message);
    this.name = 'StatusError';
    // The class does not say which status it was, so the message does: "INTERNAL: …".
    adopt(this, s, `${status[s.code] ?? s.code}: ${s.details || s.message}`);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && STATUS_ERROR in value;
  }
}

/** NOT_FOUND: what the call named does not exist. The classes below say which kind of thing. */
export class NotFoundError extends fromStatus(core.NotFoundError) {}

/** NOT_FOUND for a queue: create it (CreateQueue, or the config file) before using it. */
export class QueueNotFoundError extends NotFoundError {
  constructor(
    s: ServiceError,
    readonly queue: string,
  ) {
    super(s);
  }
}

export class JobNotFoundError extends NotFoundError {
  constructor(
    s: ServiceError,
    readonly queue: string,
    readonly jobId: string,
  ) {
    super(s);
  }
}

export class ScheduleNotFoundError extends NotFoundError {
  constructor(
    s: ServiceError,
    readonly queue: string,
    readonly scheduleId: string,
  ) {
    super(s);
  }
}

export class DeadLetterNotFoundError extends NotFoundError {
  constructor(
    s: ServiceError,
    readonly id: string,
  ) {
    super(s);
  }
}

/**
 * INVALID_ARGUMENT: the request can never succeed as it is. `field` is the proto field path to
 * fix (`job.name`, `jobs[3].options.job_id`), or '' when the server did not say.
 */
export class InvalidArgumentError extends withStatus(core.InvalidArgumentError) {
  constructor(s: ServiceError, field: string) {
    super(field, '');
    adopt(this, s);
  }
}

/** ALREADY_EXISTS, e.g. CreateQueue of a name that is taken. */
export class AlreadyExistsError extends fromStatus(core.AlreadyExistsError) {}

/** FAILED_PRECONDITION: well formed, but the target is in the wrong state (e.g. retrying a job that has not failed). */
export class FailedPreconditionError extends fromStatus(core.FailedPreconditionError) {}

/** PERMISSION_DENIED: the API key lacks the role, or the queue is outside its scope. */
export class PermissionDeniedError extends fromStatus(core.PermissionDeniedError) {}

/** UNAUTHENTICATED: no API key, or one the server does not know. */
export class UnauthenticatedError extends fromStatus(core.UnauthenticatedError) {}

/** UNAVAILABLE: the server or its Redis could not be reached; the call may be tried again. */
export class UnavailableError extends fromStatus(core.UnavailableError) {}

/** RESOURCE_EXHAUSTED, e.g. a payload over the limit; `field` names it when the server did. */
export class ResourceExhaustedError extends withStatus(core.JobmeshError) {
  readonly kind = 'resource_exhausted';
  constructor(
    s: ServiceError,
    readonly field?: string,
  ) {
    super(s.details || s.message);
    adopt(this, s);
  }
}

/** DEADLINE_EXCEEDED: no answer within the call's `timeoutMs`. The call may or may not have been applied. */
export class DeadlineExceededError extends withStatus(core.JobmeshError) {
  readonly kind = 'deadline_exceeded';
  constructor(s: ServiceError) {
    super(s.details || s.message);
    adopt(this, s);
  }
}

/** The error trailer's facts (see ERROR_TRAILER in @jobmesh/core); {} when there is none. */
function factsOf(metadata: Metadata | undefined): Record<string, unknown> {
  const raw = metadata?.get(core.ERROR_TRAILER)[0];
  if (raw === undefined) return {};
  try {
    const parsed: unknown = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    // A trailer that is not ours, or garbled: the status alone still says enough.
    return {};
  }
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function notFound(s: ServiceError, facts: Record<string, unknown>): NotFoundError {
  const queue = text(facts.queue);
  switch (facts.name) {
    case 'QueueNotFoundError':
      if (queue !== undefined) return new QueueNotFoundError(s, queue);
      break;
    case 'JobNotFoundError':
      if (queue !== undefined && text(facts.jobId) !== undefined) return new JobNotFoundError(s, queue, text(facts.jobId)!);
      break;
    case 'ScheduleNotFoundError':
      if (queue !== undefined && text(facts.scheduleId) !== undefined) return new ScheduleNotFoundError(s, queue, text(facts.scheduleId)!);
      break;
    case 'DeadLetterNotFoundError':
      if (text(facts.id) !== undefined) return new DeadLetterNotFoundError(s, text(facts.id)!);
      break;
  }
  return new NotFoundError(s);
}

/** Whether `err` is the error grpc-js rejects a call with. */
export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && (err as Partial<ServiceError>).metadata instanceof Metadata;
}

/**
 * The typed error for a failed call: its class from the status code, and for NOT_FOUND and
 * INVALID_ARGUMENT from the error trailer the server sends (which thing was not found, which
 * field is wrong). Anything that is not a grpc-js status error (and one already typed) is
 * returned as it is.
 */
export function toClientError(err: ServiceError): Error & StatusFacts;
export function toClientError(err: unknown): unknown;
export function toClientError(err: unknown): unknown {
  if (!isServiceError(err) || err instanceof StatusError) return err;
  const facts = factsOf(err.metadata);
  switch (err.code) {
    case status.NOT_FOUND:
      return notFound(err, facts);
    case status.INVALID_ARGUMENT:
      return new InvalidArgumentError(err, text(facts.field) ?? '');
    case status.ALREADY_EXISTS:
      return new AlreadyExistsError(err);
    case status.FAILED_PRECONDITION:
      return new FailedPreconditionError(err);
    case status.PERMISSION_DENIED:
      return new PermissionDeniedError(err);
    case status.UNAUTHENTICATED:
      return new UnauthenticatedError(err);
    case status.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(err, text(facts.field));
    case status.UNAVAILABLE:
      return new UnavailableError(err);
    case status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(err);
    default:
      return new StatusError(err);
  }
}

/**
 * The grpc-js error for a status that arrived as a StatusObject (a stream's 'status' event, a
 * Nack), with grpc-js's own message format, so that it maps as a call's error does.
 */
export function serviceErrorOf(s: Pick<StatusObject, 'code' | 'details'> & { metadata?: Metadata }): ServiceError {
  return Object.assign(new Error(`${s.code} ${status[s.code] ?? 'UNKNOWN'}: ${s.details}`), {
    code: s.code,
    details: s.details,
    metadata: s.metadata ?? new Metadata(),
  });
}

/** Brands an error made elsewhere in the SDK (WorkerRejectedError, …) as a StatusError. */
export function markStatusError(err: Error): void {
  Object.defineProperty(err, STATUS_ERROR, { value: true });
}

import { status as Status, Metadata, type ServiceError } from '@grpc/grpc-js';
import { ERROR_TRAILER, type ErrorKind, errorFacts, isJobmeshError, type JobmeshError } from '@jobmesh/core';

const KIND_TO_STATUS: Record<ErrorKind, Status> = {
  invalid_argument: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  already_exists: Status.ALREADY_EXISTS,
  failed_precondition: Status.FAILED_PRECONDITION,
  resource_exhausted: Status.RESOURCE_EXHAUSTED,
  unavailable: Status.UNAVAILABLE,
  unauthenticated: Status.UNAUTHENTICATED,
  permission_denied: Status.PERMISSION_DENIED,
  deadline_exceeded: Status.DEADLINE_EXCEEDED,
  aborted: Status.ABORTED,
};

/**
 * Recognises a failure of a backend that grpc-kit knows nothing of as a typed error, e.g. a Redis
 * outage as an UnavailableError (libs/queue's redisUnavailable, wired by the service host);
 * undefined for errors it does not know.
 */
export type ErrorTranslator = (err: unknown) => JobmeshError | undefined;

export interface MappedStatus {
  code: Status;
  details: string;
  /** False for errors we did not expect: they are logged with their stack. */
  expected: boolean;
  /** Trailers sent with the status: a typed error's facts (ERROR_TRAILER), for clients. */
  metadata?: Metadata;
}

/**
 * The one place where an error becomes a gRPC status. Typed Jobmesh errors carry their kind; a
 * downstream gRPC status is passed on; what `translate` recognises (a backend outage) maps as the
 * typed error it gives; anything else is INTERNAL with a generic message (the detail goes to the
 * log, never to the caller).
 */
export function toStatus(err: unknown, translate?: ErrorTranslator): MappedStatus {
  if (isJobmeshError(err)) {
    // Only on the error path: the trailer costs the normal path nothing.
    const metadata = new Metadata();
    metadata.set(ERROR_TRAILER, Buffer.from(JSON.stringify(errorFacts(err))));
    return { code: KIND_TO_STATUS[err.kind], details: err.message, expected: true, metadata };
  }
  const e = err as Partial<ServiceError> & { name?: string; message?: string };
  if (typeof e?.code === 'number' && e.code in Status && e.metadata instanceof Metadata) {
    // A status from a downstream gRPC call: pass it on.
    return { code: e.code, details: e.details ?? e.message ?? '', expected: true };
  }
  const known = translate?.(err);
  if (known) return toStatus(known);
  return { code: Status.INTERNAL, details: 'internal error; the server log has the details', expected: false };
}

export function serviceError(mapped: MappedStatus): Partial<ServiceError> {
  return { code: mapped.code, details: mapped.details, message: mapped.details, metadata: mapped.metadata };
}

import { status as Status, Metadata, type ServiceError } from '@grpc/grpc-js';
import { ERROR_TRAILER, type ErrorKind, errorFacts, isJobmeshError, type JobmeshError, shorten } from '@jobmesh/core';

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

/**
 * The longest status message sent, and the longest string fact in the error trailer, in
 * characters: errors echo what the caller sent (an id, a name), and a status message of 1 MiB
 * fails at the client as oversized metadata instead of telling it what was wrong.
 */
export const MAX_DETAILS_LENGTH = 1024;
export const MAX_FACT_LENGTH = 256;

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
    const facts = errorFacts(err);
    for (const [key, value] of Object.entries(facts)) if (typeof value === 'string') facts[key] = shorten(value, MAX_FACT_LENGTH);
    metadata.set(ERROR_TRAILER, Buffer.from(JSON.stringify(facts)));
    return { code: KIND_TO_STATUS[err.kind], details: shorten(err.message, MAX_DETAILS_LENGTH), expected: true, metadata };
  }
  const e = err as Partial<ServiceError> & { name?: string; message?: string };
  if (typeof e?.code === 'number' && e.code in Status && e.metadata instanceof Metadata) {
    // A status from a downstream gRPC call: pass it on.
    return { code: e.code, details: shorten(e.details ?? e.message ?? '', MAX_DETAILS_LENGTH), expected: true };
  }
  const known = translate?.(err);
  if (known) return toStatus(known);
  return { code: Status.INTERNAL, details: 'internal error; the server log has the details', expected: false };
}

export function serviceError(mapped: MappedStatus): Partial<ServiceError> {
  return { code: mapped.code, details: mapped.details, message: mapped.details, metadata: mapped.metadata };
}

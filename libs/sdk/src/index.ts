export * from './client';
export { EnqueueStream, type EnqueueStreamOptions, type StreamedJobSettings } from './enqueue-stream';
export {
  AlreadyExistsError,
  DeadLetterNotFoundError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  JobNotFoundError,
  NotFoundError,
  PermissionDeniedError,
  QueueNotFoundError,
  ResourceExhaustedError,
  ScheduleNotFoundError,
  StatusError,
  type StatusFacts,
  UnauthenticatedError,
  UnavailableError,
  toClientError,
} from './errors';
export * from './processor';
export * from './helpers';
export { UnrecoverableError, RateLimitError, JobTimeoutError, JobCancelledError } from '@jobmesh/core';
export * from './remote-worker';
export * from './tls';
export * from './keepalive';

export * from './client';
export * from './processor';
export * from './helpers';
export { UnrecoverableError, RateLimitError, JobTimeoutError, JobCancelledError } from '@jobmesh/core';
export * from './remote-worker';

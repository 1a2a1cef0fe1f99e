import { UnavailableError } from '@jobmesh/core';

// What ioredis says when Redis cannot be reached, or cannot answer in time.
const REDIS_DOWN = /Stream isn't writeable|enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|Command timed out|LOADING|READONLY|MASTERDOWN|Reached the max retries/;

/**
 * The UnavailableError an ioredis failure to reach Redis (or to hear from it in time) stands for,
 * or undefined for any other error. ioredis and BullMQ throw plain Errors, told apart only by
 * name and message; this is the one place that reads them. The service host hands it to
 * grpc-kit's RpcKit, so a call that meets a Redis outage answers UNAVAILABLE.
 */
export function redisUnavailable(err: unknown): UnavailableError | undefined {
  const e = err as { name?: unknown; message?: unknown } | null | undefined;
  const message = typeof e?.message === 'string' ? e.message : '';
  if (e?.name !== 'MaxRetriesPerRequestError' && !REDIS_DOWN.test(message)) return undefined;
  return new UnavailableError(`Redis is unavailable: ${message}`, { cause: err });
}

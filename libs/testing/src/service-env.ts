/**
 * The environment every service a test starts in-process shares: this Redis and key prefix, ports 0
 * (the OS picks free ones; the running service tells which), a 2 s shutdown grace so a stop is quick,
 * and no config file. `extra` adds variables or overrides these.
 */
export function serviceEnv(redis: { url: string }, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    JOBMESH_REDIS_PREFIX: prefix,
    JOBMESH_GRPC_ADDRESS: '127.0.0.1:0',
    JOBMESH_HTTP_ADDRESS: '127.0.0.1:0',
    JOBMESH_SHUTDOWN_GRACE: '2s',
    JOBMESH_CONFIG: '',
    ...extra,
  };
}

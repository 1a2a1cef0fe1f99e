import { DEFAULT_MAX_PAYLOAD_BYTES } from '@jobmesh/core';
import { z } from 'zod';
import { durationMs } from './durations';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:50051 or 0.0.0.0:50051');

/** One sentinel: host:port with a port from 1 to 65535 (IPv6 in brackets), or a host alone (port 26379). */
const sentinelAddress = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(:([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5]))?$/;

const int = (min: number) => z.coerce.number().int().min(min);

/** A file path; an empty value counts as not set (e.g. `JOBMESH_TLS_CERT=` in a compose file). */
const optionalPath = z.preprocess((v) => (v === '' ? undefined : v), z.string().optional());

/**
 * Settings every Jobmesh process reads from its environment. Each service's config.ts extends
 * this with its own; nothing else in the code reads process.env.
 */
export const commonEnvSchema = z.object({
  /** 'production' refuses a Redis that may evict keys, and auth off (no JOBMESH_API_KEYS_FILE). @default development */
  JOBMESH_MODE: z.enum(['development', 'production']).default('development'),
  /** redis:// or rediss:// URL, with user and password if needed. */
  REDIS_URL: z.string().url().optional(),
  /**
   * Sentinel endpoints "host:port,host:port" (docs/reliability.md "Redis Sentinel"), used with
   * REDIS_MASTER_NAME instead of REDIS_URL's host; REDIS_URL's user and password, if set, are
   * those of the master. Empty is unset.
   */
  REDIS_SENTINELS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z
      .string()
      .refine((v) => v.split(',').every((hp) => sentinelAddress.test(hp.trim())), 'must be host:port,host:port, e.g. 10.0.0.1:26379,10.0.0.2:26379')
      .optional(),
  ),
  /** The master's name in the sentinels' "sentinel monitor <name> ..." line; needed with REDIS_SENTINELS. Empty is unset. */
  REDIS_MASTER_NAME: z.preprocess((v) => (v === '' ? undefined : v), z.string().regex(/^\S+$/, 'must be a name without spaces').optional()),
  /**
   * Redis Cluster seed nodes "host:port,host:port" (any masters; the rest are discovered), used
   * instead of REDIS_URL, whose user and password still apply. Each queue's keys then share a
   * hash slot of their own (docs/reliability.md "Redis Cluster").
   */
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^\s*(\[[0-9a-fA-F:.]+\]|[^:\s,]+):\d{1,5}\s*(,\s*(\[[0-9a-fA-F:.]+\]|[^:\s,]+):\d{1,5}\s*)*$/, 'must be host:port,host:port, e.g. 10.0.0.1:7000,10.0.0.2:7000')
    .optional(),
  /** Prefix of every Redis key. @default jobmesh */
  JOBMESH_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_{}.-]+$/).default('jobmesh'),
  /** A Redis command that takes longer fails with UNAVAILABLE. @default 5s */
  JOBMESH_REDIS_COMMAND_TIMEOUT: durationMs.default(5000),
  /** Where gRPC listens. Port 0 picks a free port. */
  JOBMESH_GRPC_ADDRESS: hostPort.default('127.0.0.1:50051'),
  /** Where /metrics, /livez, /readyz listen. */
  JOBMESH_HTTP_ADDRESS: hostPort.default('127.0.0.1:9464'),
  /** Path of jobmesh.config.yaml (or .json). @default ./jobmesh.config.yaml when it exists */
  JOBMESH_CONFIG: z.string().optional(),
  /** pino level. @default info */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Largest JSON-encoded job data accepted. @default 262144 (256 KiB) */
  JOBMESH_MAX_PAYLOAD_BYTES: int(1).default(DEFAULT_MAX_PAYLOAD_BYTES),
  /** Largest gRPC message sent or received. @default 8388608 (8 MiB) */
  JOBMESH_MAX_MESSAGE_BYTES: int(1024).default(8 * 1024 * 1024),
  /** Streams one gRPC client connection may hold open at once. @default 1000 */
  JOBMESH_GRPC_MAX_STREAMS: int(1).default(1000),
  /** How long an idempotency key is remembered. @default 24h */
  JOBMESH_IDEMPOTENCY_TTL: durationMs.default(24 * 3_600_000),
  /**
   * `replicas:N`: an enqueue is acknowledged only once N Redis replicas have its write (Redis
   * WAIT), so that a failover to one of them cannot lose it. Off by default (docs/reliability.md).
   */
  JOBMESH_DURABLE_ACK: z
    .string()
    .regex(/^replicas:[1-9]\d{0,2}$/, 'must be replicas:N with N from 1, e.g. replicas:1 (or unset)')
    .transform((v) => Number(v.slice('replicas:'.length)))
    .optional(),
  /** With JOBMESH_DURABLE_ACK: how long an enqueue waits for the replicas before it answers UNAVAILABLE. @default 1s */
  JOBMESH_DURABLE_ACK_TIMEOUT: durationMs.default(1000),
  /**
   * The API keys file (YAML, see docs/operations.md "Auth"): every gRPC call must then carry
   * `authorization: Bearer <id>.<secret>` of a key it declares. Unset: auth is off. Reloaded when
   * it changes and on SIGHUP.
   */
  JOBMESH_API_KEYS_FILE: z.string().min(1).optional(),
  /**
   * The API key this service sends (`<id>.<secret>`) on its calls to other services: dead-letter →
   * scheduler replays, monitor → every service, sent as `authorization: Bearer <key>`. Needed when
   * those services have auth on. Empty is unset.
   */
  JOBMESH_API_KEY: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
  /** How long SIGTERM waits for in-flight work. @default 30s */
  JOBMESH_SHUTDOWN_GRACE: durationMs.default(30_000),
  /**
   * gRPC keepalive, servers and inter-service clients alike: each connection is pinged this often,
   * and one that does not answer within JOBMESH_KEEPALIVE_TIMEOUT is closed (a worker's stream
   * then ends, and its leases are released). @default 10s
   */
  JOBMESH_KEEPALIVE_INTERVAL: durationMs.pipe(z.number().min(100)).default(10_000),
  /** @default 5s */
  JOBMESH_KEEPALIVE_TIMEOUT: durationMs.pipe(z.number().min(100)).default(5_000),
  /** PEM certificate (chain) every gRPC server serves TLS with; needs JOBMESH_TLS_KEY. Unset: plaintext. */
  JOBMESH_TLS_CERT: optionalPath,
  /** PEM private key of JOBMESH_TLS_CERT. */
  JOBMESH_TLS_KEY: optionalPath,
  /** PEM CA bundle: with it, gRPC servers require client certificates signed by it (mTLS). */
  JOBMESH_TLS_CLIENT_CA: optionalPath,
  /** PEM CA bundle this process's gRPC clients (inter-service calls) trust. Unset: the system's roots. */
  JOBMESH_TLS_CA: optionalPath,
  /** PEM client certificate this process's gRPC clients present (mTLS); needs JOBMESH_TLS_CLIENT_KEY. */
  JOBMESH_TLS_CLIENT_CERT: optionalPath,
  /** PEM private key of JOBMESH_TLS_CLIENT_CERT. */
  JOBMESH_TLS_CLIENT_KEY: optionalPath,
  /** How often the TLS files are checked for a change; a changed, valid set is used by new connections without a restart. @default 30s */
  JOBMESH_TLS_RELOAD_INTERVAL: durationMs.pipe(z.number().min(10)).default(30_000),
  /** The ops HTTP server (/metrics, /livez, /readyz, the dashboard) serves HTTPS with JOBMESH_TLS_CERT/KEY too. @default false */
  JOBMESH_HTTP_TLS: z.stringbool().default(false),
});

export type CommonEnv = z.infer<typeof commonEnvSchema>;

/** Splits "host:port" (IPv6 in brackets) into parts. */
export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

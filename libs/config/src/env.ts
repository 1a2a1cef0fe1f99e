import { DEFAULT_MAX_PAYLOAD_BYTES } from '@jobmesh/core';
import { z } from 'zod';
import { durationMs } from './durations';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:50051 or 0.0.0.0:50051');

const int = (min: number) => z.coerce.number().int().min(min);

/**
 * Settings every Jobmesh process reads from its environment. Each service's config.ts extends
 * this with its own; nothing else in the code reads process.env.
 */
export const commonEnvSchema = z.object({
  /** 'production' refuses a Redis that may evict keys. @default development */
  JOBMESH_MODE: z.enum(['development', 'production']).default('development'),
  /** redis:// or rediss:// URL, with user and password if needed. */
  REDIS_URL: z.string().url().optional(),
  /** Sentinel endpoints "host:port,host:port", used with REDIS_MASTER_NAME instead of REDIS_URL. */
  REDIS_SENTINELS: z.string().optional(),
  REDIS_MASTER_NAME: z.string().optional(),
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
  /** How long SIGTERM waits for in-flight work. @default 30s */
  JOBMESH_SHUTDOWN_GRACE: durationMs.default(30_000),
});

export type CommonEnv = z.infer<typeof commonEnvSchema>;

/** Splits "host:port" (IPv6 in brackets) into parts. */
export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

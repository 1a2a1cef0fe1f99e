import { durationMs, parseEnv } from '@jobmesh/config';
import { z } from 'zod';

/** What the operator commands read from the environment; flags override it. */
export const cliEnvSchema = z.object({
  /** The Jobmesh gRPC endpoint. @default 127.0.0.1:50051 */
  JOBMESH_ADDRESS: z.string().default('127.0.0.1:50051'),
  /** Sent as `authorization: Bearer …`. */
  JOBMESH_API_KEY: z.string().optional(),
  /** Dial TLS, trusting the system's roots (implied by the JOBMESH_TLS_* files below). @default false */
  JOBMESH_TLS: z.stringbool().default(false),
  /** PEM CA bundle the server's certificate must chain to; dials TLS. */
  JOBMESH_TLS_CA: z.string().optional(),
  /** PEM client certificate for a server that requires one (mTLS); dials TLS, needs JOBMESH_TLS_CLIENT_KEY. */
  JOBMESH_TLS_CLIENT_CERT: z.string().optional(),
  /** PEM private key of JOBMESH_TLS_CLIENT_CERT. */
  JOBMESH_TLS_CLIENT_KEY: z.string().optional(),
  /** DeadLetterService, when it is not served at JOBMESH_ADDRESS (a separate deployment). */
  JOBMESH_DLQ_ADDRESS: z.string().optional(),
  /** MonitorService (stats, health, top), when it is not served at JOBMESH_ADDRESS (a separate deployment). */
  JOBMESH_MONITOR_ADDRESS: z.string().optional(),
  /** Deadline of each call. @default 10s */
  JOBMESH_TIMEOUT: durationMs.default(10_000),
  /** A trace viewer's page for one trace, e.g. Jaeger's `http://localhost:16686/trace/{trace_id}`: `get` and `dlq show` print the link. */
  JOBMESH_TRACE_UI_URL: z
    .string()
    .refine((v) => v.includes('{trace_id}'), 'must contain {trace_id} where the trace id goes, e.g. http://localhost:16686/trace/{trace_id}')
    .optional(),
});

export const loadCliEnv = (env: NodeJS.ProcessEnv = process.env): z.infer<typeof cliEnvSchema> => parseEnv(cliEnvSchema, env);

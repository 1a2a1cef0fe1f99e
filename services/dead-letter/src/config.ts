import { commonEnvSchema, durationMs, parseEnv } from '@jobmesh/config';
import type { SeverityName } from '@jobmesh/core';
import { z } from 'zod';

/** An http(s) URL; an empty value counts as not set (e.g. `JOBMESH_DLQ_WEBHOOK_INFO=` in a compose file). */
const webhookUrl = z.preprocess((v) => (v === '' ? undefined : v), z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional());

/**
 * The dead-letter settings that do not depend on where the service runs: capture and alerting.
 * The standalone service and `jobmesh up` both read them.
 */
export const deadLetterOwnEnvShape = {
  /** How often every queue's failed set is swept for dead letters. @default 10s */
  JOBMESH_DLQ_SWEEP_INTERVAL: durationMs.default(10_000),
  /** Webhook POSTed for each new dead letter of severity info. Unset: no alert. */
  JOBMESH_DLQ_WEBHOOK_INFO: webhookUrl,
  /** Webhook POSTed for each new dead letter of severity warning. Unset: no alert. */
  JOBMESH_DLQ_WEBHOOK_WARNING: webhookUrl,
  /** Webhook POSTed for each new dead letter of severity critical. Unset: no alert. */
  JOBMESH_DLQ_WEBHOOK_CRITICAL: webhookUrl,
  /** When set, each webhook body is signed: `X-Jobmesh-Signature: sha256=<hex HMAC-SHA256 of the body>`. */
  JOBMESH_DLQ_WEBHOOK_SECRET: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
  /** Attempts per webhook delivery (network errors, timeouts, 5xx, 408 and 429 are retried). @default 8 */
  JOBMESH_DLQ_WEBHOOK_ATTEMPTS: z.coerce.number().int().min(1).default(8),
  /** How long one delivery attempt may take. @default 5s */
  JOBMESH_DLQ_WEBHOOK_TIMEOUT: durationMs.pipe(z.number().min(1)).default(5000),
  /** First delay between delivery attempts; it doubles after each. @default 1s */
  JOBMESH_DLQ_WEBHOOK_BACKOFF: durationMs.pipe(z.number().min(1)).default(1000),
};

/** The dead-letter service's settings: the common ones plus its own. */
export const deadLetterEnvSchema = commonEnvSchema.extend({
  ...deadLetterOwnEnvShape,
  /** The scheduler replays go through (SchedulerService.EnqueueJob). @default 127.0.0.1:50051 */
  JOBMESH_SCHEDULER_ADDRESS: commonEnvSchema.shape.JOBMESH_GRPC_ADDRESS,
});

export type DeadLetterEnv = z.infer<typeof deadLetterEnvSchema>;

/** The parsed settings of deadLetterOwnEnvShape, as part of any service's env. */
export type DeadLetterOwnEnv = z.infer<z.ZodObject<typeof deadLetterOwnEnvShape>>;

export function loadDeadLetterEnv(env: NodeJS.ProcessEnv = process.env): DeadLetterEnv {
  return parseEnv(deadLetterEnvSchema, env);
}

/** Where and how dead letters are alerted. */
export interface WebhookSettings {
  /** URL per severity; a severity without one is not alerted. */
  urls: Partial<Record<SeverityName, string>>;
  /** HMAC-SHA256 key of X-Jobmesh-Signature; unsigned without. */
  secret?: string;
  /** Delivery attempts, the first included. */
  attempts: number;
  /** Deadline of one delivery attempt, ms. */
  timeoutMs: number;
  /** First retry delay, ms; doubles after each retry. */
  backoffMs: number;
}

/** The webhook settings of a parsed env. */
export function webhookSettings(env: DeadLetterOwnEnv): WebhookSettings {
  const urls: Partial<Record<SeverityName, string>> = {};
  if (env.JOBMESH_DLQ_WEBHOOK_INFO) urls.info = env.JOBMESH_DLQ_WEBHOOK_INFO;
  if (env.JOBMESH_DLQ_WEBHOOK_WARNING) urls.warning = env.JOBMESH_DLQ_WEBHOOK_WARNING;
  if (env.JOBMESH_DLQ_WEBHOOK_CRITICAL) urls.critical = env.JOBMESH_DLQ_WEBHOOK_CRITICAL;
  return {
    urls,
    secret: env.JOBMESH_DLQ_WEBHOOK_SECRET,
    attempts: env.JOBMESH_DLQ_WEBHOOK_ATTEMPTS,
    timeoutMs: env.JOBMESH_DLQ_WEBHOOK_TIMEOUT,
    backoffMs: env.JOBMESH_DLQ_WEBHOOK_BACKOFF,
  };
}

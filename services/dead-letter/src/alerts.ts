import { createHmac } from 'node:crypto';
import * as pb from '@jobmesh/contracts';
import { type SeverityName, isTimeout } from '@jobmesh/core';
import { severityFromProto } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import { type ConnectionOptions, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import type { WebhookSettings } from './config';
import type { DeadLetterMetrics } from './metrics';

/**
 * The BullMQ queue of pending webhook deliveries. Its keys are `<prefix>:_dlq-alerts:…`: names
 * under `<prefix>:_` are Jobmesh's own (libs/queue keys.ts), so no user queue can take it, and the
 * queue registry never lists it (no worker-pool runs it, no dead letter is captured from it).
 */
export const ALERT_QUEUE = '_dlq-alerts';

/** The JSON POSTed to a webhook. */
export interface AlertBody {
  /** pb.DeadLetter.toJSON of the dead letter, as captured. */
  dead_letter: unknown;
  severity: SeverityName;
  queue: string;
  category: string;
  id: string;
}

interface AlertData {
  severity: SeverityName;
  body: AlertBody;
}

/**
 * The BullMQ job id of a dead letter's alert: the dead letter id with ':' escaped (BullMQ takes a
 * custom id with ':' for a repeatable job's). One id per dead letter, so it is queued at most once.
 */
export const alertJobId = (deadLetterId: string): string => deadLetterId.replace(/%/g, '%25').replace(/:/g, '%3A');

/** The value of X-Jobmesh-Signature for `body` signed with `secret`. */
export const signature = (secret: string, body: string): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** Statuses worth another attempt; any other non-2xx is given up at once. */
const retryableStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

/** Finished alert jobs kept for inspection; BullMQ's `age` is in seconds. */
const KEEP_DELIVERED = { count: 1000, age: 24 * 3600 };
const KEEP_FAILED = { count: 5000, age: 7 * 24 * 3600 };

export interface AlertsOptions {
  /** Connection for the producing side (Queue.add); may be shared, it is not closed here. */
  redis: Redis;
  /** Options of the Worker's own connections (retry forever). */
  workerConnection: RedisOptions;
  prefix: string;
  settings: WebhookSettings;
  logger: Logger;
  metrics: DeadLetterMetrics;
  /** Deliveries run at once. @default 8 */
  concurrency?: number;
}

/**
 * Webhook alerts for new dead letters: each one whose severity has a URL becomes a job on the
 * `_dlq-alerts` BullMQ queue, so a delivery survives a restart and is retried with exponential
 * backoff; a Worker POSTs it. URLs and the secret stay in the environment, never in Redis.
 */
export class Alerts {
  private readonly queue: Queue<AlertData>;
  private worker: Worker<AlertData> | undefined;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly opts: AlertsOptions) {
    this.queue = new Queue<AlertData>(ALERT_QUEUE, { connection: opts.redis, prefix: opts.prefix, skipWaitingForReady: true });
    this.queue.on('error', (err) => opts.logger.warn({ err: err.message }, 'dead-letter alert queue error'));
  }

  /** True when at least one severity has a webhook. */
  static enabled(settings: WebhookSettings): boolean {
    return Object.values(settings.urls).some(Boolean);
  }

  /** Starts delivering, including alerts queued before a restart. */
  start(): void {
    if (this.worker) return;
    const { logger } = this.opts;
    this.worker = new Worker<AlertData>(ALERT_QUEUE, (job) => this.deliver(job), {
      connection: this.opts.workerConnection as ConnectionOptions,
      prefix: this.opts.prefix,
      concurrency: this.opts.concurrency ?? 8,
    });
    this.worker.on('error', (err) => logger.warn({ err: err.message }, 'dead-letter alert worker error'));
  }

  /** Queues the alert of a newly captured dead letter, if its severity has a webhook. */
  async alert(d: pb.DeadLetter): Promise<void> {
    const severity = severityFromProto(d.severity);
    if (!severity || !this.opts.settings.urls[severity]) return;
    const body: AlertBody = { dead_letter: pb.DeadLetter.toJSON(d), severity, queue: d.job?.queue ?? '', category: d.category, id: d.id };
    const { attempts, backoffMs } = this.opts.settings;
    const added = this.queue
      .add('webhook', { severity, body }, {
        jobId: alertJobId(d.id),
        attempts,
        backoff: { type: 'exponential', delay: backoffMs },
        removeOnComplete: KEEP_DELIVERED,
        removeOnFail: KEEP_FAILED,
      })
      .catch((err: Error) => this.opts.logger.warn({ err: err.message, deadLetter: d.id, severity }, 'cannot queue dead-letter alert; it is not sent'))
      .finally(() => this.pending.delete(added));
    this.pending.add(added);
    await added;
  }

  /** One delivery attempt; throws to have BullMQ retry it (UnrecoverableError: give up). */
  private async deliver(job: Job<AlertData>): Promise<void> {
    const { severity, body } = job.data;
    const { settings, logger, metrics } = this.opts;
    const log = { deadLetter: body.id, severity, attempt: job.attemptsMade + 1 };
    const giveUp = (reason: string): never => {
      metrics.webhooks.inc({ severity, outcome: 'failed' });
      logger.warn({ ...log, reason }, 'dead-letter webhook not delivered; giving up');
      throw new UnrecoverableError(reason);
    };
    const retry = (reason: string): never => {
      if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) giveUp(`${reason} (after ${job.attemptsMade + 1} attempts)`);
      metrics.webhooks.inc({ severity, outcome: 'retried' });
      logger.info({ ...log, reason }, 'dead-letter webhook not delivered; will retry');
      throw new Error(reason);
    };
    const url = settings.urls[severity];
    if (!url) return giveUp(`no webhook is configured for severity ${severity} on this replica`);
    const text = JSON.stringify(body);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'jobmesh-dead-letter' };
    if (settings.secret) headers['x-jobmesh-signature'] = signature(settings.secret, text);
    let res: Response;
    try {
      // A webhook URL that redirects is a mistake to fix, not to follow with a re-sent body.
      res = await fetch(url, { method: 'POST', headers, body: text, redirect: 'manual', signal: AbortSignal.timeout(settings.timeoutMs) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      return retry(isTimeout(e) ? `timed out after ${settings.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message));
    }
    if (res.ok) {
      // Delivered; the body is only drained to free the connection, and a failure there changes nothing.
      await res.body?.cancel().catch(() => undefined);
      metrics.webhooks.inc({ severity, outcome: 'delivered' });
      return;
    }
    // The status decides; the body is only an excerpt for the log, and may be unreadable.
    const answer = (await res.text().catch(() => '')).slice(0, 200);
    const reason = `webhook answered ${res.status}${answer ? `: ${answer}` : ''}`;
    return retryableStatus(res.status) ? retry(reason) : giveUp(reason);
  }

  /** Waits for alerts being queued, then stops the worker (after its running deliveries) and the queue. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    await this.worker?.close();
    await this.queue.close();
  }
}

import { createHmac } from 'node:crypto';
import * as pb from '@jobmesh/contracts';
import { type SeverityName, UnrecoverableError, isTimeout } from '@jobmesh/core';
import { type Backbone, type Task, TaskQueue, type TaskState, severityFromProto } from '@jobmesh/queue';
import type { Logger } from '@jobmesh/telemetry';
import type { WebhookSettings } from './config';
import type { DeadLetterMetrics } from './metrics';

/**
 * The task queue of pending webhook deliveries, one task per dead letter (its id). Its keys are
 * `<prefix>:_dlq-alerts:…`, among Jobmesh's own (see TaskQueue).
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

/** The value of X-Jobmesh-Signature for `body` signed with `secret`. */
export const signature = (secret: string, body: string): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** Statuses worth another attempt; any other non-2xx is given up at once. */
const retryableStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

/** Finished alerts kept for inspection. */
const KEEP_DELIVERED = { count: 1000, ageMs: 24 * 3600_000 };
const KEEP_FAILED = { count: 5000, ageMs: 7 * 24 * 3600_000 };

export interface AlertsOptions {
  /** Where the alert queue lives; its connections are not closed here. */
  backbone: Backbone;
  settings: WebhookSettings;
  logger: Logger;
  metrics: DeadLetterMetrics;
  /** Deliveries run at once. @default 8 */
  concurrency?: number;
}

/**
 * Webhook alerts for new dead letters: each one whose severity has a URL becomes a task on the
 * `_dlq-alerts` task queue, so a delivery survives a restart and is retried with exponential
 * backoff. URLs and the secret stay in the environment, never in Redis.
 */
export class Alerts {
  private readonly queue: TaskQueue<AlertData>;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly opts: AlertsOptions) {
    this.queue = new TaskQueue<AlertData>(ALERT_QUEUE, opts.backbone, { logger: opts.logger, what: 'dead-letter alert' });
  }

  /** True when at least one severity has a webhook. */
  static enabled(settings: WebhookSettings): boolean {
    return Object.values(settings.urls).some(Boolean);
  }

  /** Starts delivering, including alerts queued before a restart. */
  start(): void {
    this.queue.run((task) => this.deliver(task), this.opts.concurrency ?? 8);
  }

  /** Where the alert of dead letter `id` is; undefined when none was queued (or it is no longer kept). */
  state(deadLetterId: string): Promise<TaskState | undefined> {
    return this.queue.state(deadLetterId);
  }

  /** Why the alert of dead letter `id` was given up; undefined unless it was. */
  failure(deadLetterId: string): Promise<string | undefined> {
    return this.queue.failure(deadLetterId);
  }

  /** Queues the alert of a newly captured dead letter, if its severity has a webhook. */
  async alert(d: pb.DeadLetter): Promise<void> {
    const severity = severityFromProto(d.severity);
    if (!severity || !this.opts.settings.urls[severity]) return;
    const body: AlertBody = { dead_letter: pb.DeadLetter.toJSON(d), severity, queue: d.job?.queue ?? '', category: d.category, id: d.id };
    const { attempts, backoffMs } = this.opts.settings;
    const added = this.queue
      .add(d.id, { severity, body }, { attempts, backoffMs, keepDone: KEEP_DELIVERED, keepFailed: KEEP_FAILED })
      .catch((err: Error) => this.opts.logger.warn({ err: err.message, deadLetter: d.id, severity }, 'cannot queue dead-letter alert; it is not sent'))
      .finally(() => this.pending.delete(added));
    this.pending.add(added);
    await added;
  }

  /** One delivery attempt; throws to have it retried (UnrecoverableError: give up). */
  private async deliver(task: Task<AlertData>): Promise<void> {
    const { severity, body } = task.data;
    const { settings, logger, metrics } = this.opts;
    const log = { deadLetter: body.id, severity, attempt: task.attempt };
    const giveUp = (reason: string): never => {
      metrics.webhooks.inc({ severity, outcome: 'failed' });
      logger.warn({ ...log, reason }, 'dead-letter webhook not delivered; giving up');
      throw new UnrecoverableError(reason);
    };
    const retry = (reason: string): never => {
      if (task.attempt >= task.attempts) giveUp(`${reason} (after ${task.attempt} attempts)`);
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

  /** Waits for alerts being queued, then stops delivering (after the running deliveries) and closes the queue. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    await this.queue.close();
  }
}

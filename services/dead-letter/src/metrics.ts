import type { DeadLetterStore } from '@jobmesh/queue';
import { type Counter, Gauge, type Logger, type Registry, counter } from '@jobmesh/telemetry';

export type WebhookOutcome = 'delivered' | 'retried' | 'failed';

export interface DeadLetterMetrics {
  /** Dead letters this replica captured (each is captured by one replica only). */
  captured: Counter<'queue' | 'category'>;
  /** Webhook delivery attempts by severity and outcome. */
  webhooks: Counter<'severity' | 'outcome'>;
}

const STORED = 'jobmesh_dead_letters';

/**
 * The dead-letter metrics, on `registry`:
 * - `jobmesh_dead_letters_total{queue,category}`: dead letters this replica captured. Capture is
 *   idempotent across replicas, so the sum over replicas counts each dead letter once.
 * - `jobmesh_dead_letters{queue,category}`: dead letters stored now, read from the store at scrape
 *   time; a combination purged to zero disappears.
 * - `jobmesh_dead_letter_webhooks_total{severity,outcome}`: webhook delivery attempts.
 */
export function deadLetterMetrics(registry: Registry, store: DeadLetterStore, logger: Logger): DeadLetterMetrics {
  // The gauge reads this store; a later registration on the same registry replaces the earlier one.
  registry.removeSingleMetric(STORED);
  new Gauge({
    name: STORED,
    help: 'Dead letters stored now, by queue and category (read from Redis at scrape time)',
    labelNames: ['queue', 'category'],
    registers: [registry],
    async collect() {
      let stats;
      try {
        stats = await store.stats();
      } catch (err) {
        // No series rather than stale ones, and the rest of the scrape still answers.
        this.reset();
        logger.warn({ err: (err as Error).message }, 'cannot read dead-letter counts for /metrics');
        return;
      }
      this.reset();
      for (const c of stats.counts) this.labels({ queue: c.queue, category: c.category }).set(c.count);
    },
  });
  return {
    captured: counter(registry, 'jobmesh_dead_letters_total', 'Dead letters captured by this replica, by queue and category', ['queue', 'category']),
    webhooks: counter(
      registry,
      'jobmesh_dead_letter_webhooks_total',
      'Dead-letter webhook delivery attempts, by severity and outcome (delivered, retried: will be tried again, failed: given up)',
      ['severity', 'outcome'],
    ),
  };
}

import type { BackoffSpec } from './options';

/**
 * The delay before the next attempt, after `attempt` attempts have failed (attempt ≥ 1).
 * fixed: delay; exponential: delay·2^(attempt-1); linear: delay·attempt. The result is capped at
 * `maxDelayMs`, then jitter takes off up to `jitter`·delay at random, so the cap still holds.
 * 'custom' strategies are resolved by the worker-pool; here they fall back to fixed.
 */
export function computeBackoff(spec: BackoffSpec, attempt: number, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(attempt));
  let delay: number;
  switch (spec.kind) {
    case 'exponential':
      delay = spec.delayMs * 2 ** (n - 1);
      break;
    case 'linear':
      delay = spec.delayMs * n;
      break;
    case 'fixed':
    case 'custom':
      delay = spec.delayMs;
      break;
  }
  if (spec.maxDelayMs !== undefined && spec.maxDelayMs > 0) delay = Math.min(delay, spec.maxDelayMs);
  const jitter = Math.min(Math.max(spec.jitter ?? 0, 0), 1);
  if (jitter > 0) delay -= delay * jitter * random();
  return Math.max(0, Math.round(delay));
}

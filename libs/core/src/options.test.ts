import {
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF,
  DEFAULT_CONCURRENCY,
  DEFAULT_KEEP_COMPLETED,
  DEFAULT_KEEP_FAILED,
  defaultQueueSpec,
  resolveJobOptions,
  type JobOptionsSpec,
} from './options';
import { validateQueueSpec } from './validation';

const runAt = new Date('2030-01-01T00:00:00Z');

describe('resolveJobOptions', () => {
  it('fills the built-in defaults when neither job nor queue sets them', () => {
    expect(resolveJobOptions({})).toEqual({
      attempts: 3,
      backoff: { kind: 'exponential', delayMs: 1000 },
      keepCompleted: { count: 1000, ageMs: 24 * 3_600_000 },
      keepFailed: { count: 10_000, ageMs: 7 * 24 * 3_600_000 },
    });
    expect(DEFAULT_ATTEMPTS).toBe(3);
  });

  it('leaves delay, run_at, priority and timeout unset by default', () => {
    const resolved = resolveJobOptions({}, {});
    for (const key of ['delayMs', 'runAt', 'priority', 'timeoutMs', 'jobId', 'idempotencyKey'] as const) {
      expect(resolved).not.toHaveProperty(key);
    }
  });

  it('returns copies of the defaults, so a caller may change them without touching the shared constants', () => {
    const resolved = resolveJobOptions({});
    resolved.backoff.delayMs = 5;
    resolved.keepCompleted.count = 1;
    resolved.keepFailed.ageMs = 1;
    expect(DEFAULT_BACKOFF).toEqual({ kind: 'exponential', delayMs: 1000 });
    expect(DEFAULT_KEEP_COMPLETED.count).toBe(1000);
    expect(DEFAULT_KEEP_FAILED.ageMs).toBe(7 * 24 * 3_600_000);
    expect(resolveJobOptions({}).backoff.delayMs).toBe(1000);
  });

  it("takes the queue's defaults for what the job leaves unset", () => {
    const queue: JobOptionsSpec = {
      attempts: 5,
      backoff: { kind: 'linear', delayMs: 200 },
      priority: 7,
      timeoutMs: 30_000,
      keepCompleted: { count: 10 },
      keepFailed: { ageMs: 60_000 },
    };
    expect(resolveJobOptions({}, queue)).toEqual(queue);
  });

  it("prefers the job's own options over the queue's defaults", () => {
    const queue: JobOptionsSpec = { attempts: 5, priority: 7, timeoutMs: 30_000, keepCompleted: { count: 10 } };
    const job: JobOptionsSpec = { attempts: 1, priority: 1, timeoutMs: 500, keepCompleted: { count: 0 } };
    expect(resolveJobOptions(job, queue)).toMatchObject(job);
  });

  it("replaces the queue's backoff as a whole instead of merging it field by field", () => {
    const queue: JobOptionsSpec = { backoff: { kind: 'exponential', delayMs: 2000, maxDelayMs: 60_000, jitter: 0.2 } };
    const job: JobOptionsSpec = { backoff: { kind: 'fixed', delayMs: 500 } };
    expect(resolveJobOptions(job, queue).backoff).toEqual({ kind: 'fixed', delayMs: 500 });
  });

  it('does not let an explicitly undefined job option erase the queue default', () => {
    expect(resolveJobOptions({ attempts: undefined, priority: undefined }, { attempts: 5, priority: 2 })).toMatchObject({
      attempts: 5,
      priority: 2,
    });
  });

  it("inherits the queue's default delay when the job sets no start", () => {
    expect(resolveJobOptions({}, { delayMs: 5000 }).delayMs).toBe(5000);
  });

  it("prefers the job's delay over the queue's default delay", () => {
    expect(resolveJobOptions({ delayMs: 0 }, { delayMs: 5000 }).delayMs).toBe(0);
  });

  it("drops the queue's default delay when the job sets run_at", () => {
    const resolved = resolveJobOptions({ runAt }, { delayMs: 5000 });
    expect(resolved.runAt).toBe(runAt);
    expect(resolved).not.toHaveProperty('delayMs');
  });

  it("drops the queue's default run_at when the job sets a delay", () => {
    const resolved = resolveJobOptions({ delayMs: 100 }, { runAt });
    expect(resolved.delayMs).toBe(100);
    expect(resolved).not.toHaveProperty('runAt');
  });

  it('does not change its arguments', () => {
    const job: JobOptionsSpec = { runAt };
    const queue: JobOptionsSpec = { delayMs: 5000, attempts: 2 };
    resolveJobOptions(job, queue);
    expect(job).toEqual({ runAt });
    expect(queue).toEqual({ delayMs: 5000, attempts: 2 });
  });
});

describe('defaultQueueSpec', () => {
  it('describes an unpaused queue with the default concurrency and no defaults of its own', () => {
    expect(defaultQueueSpec('emails')).toEqual({
      name: 'emails',
      concurrency: DEFAULT_CONCURRENCY,
      defaultJobOptions: {},
      paused: false,
      deadLetter: {},
      labels: {},
    });
    expect(DEFAULT_CONCURRENCY).toBe(10);
  });

  it('passes validation', () => {
    expect(() => validateQueueSpec(defaultQueueSpec('emails'), () => ({ test: () => false }))).not.toThrow();
  });
});

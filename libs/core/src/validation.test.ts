import { InvalidArgumentError, PayloadTooLargeError } from './errors';
import { MAX_PRIORITY, defaultQueueSpec, type JobOptionsSpec, type QueueSpec } from './options';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  validateJobId,
  validateJobName,
  validateJobOptions,
  validatePayload,
  validateQueueName,
  validateQueueSpec,
  validateScheduleId,
} from './validation';
import { checkPatternLength } from './pattern';

/** The InvalidArgumentError `fn` throws; fails the test if it throws nothing or something else. */
function rejection(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err;
    throw err;
  }
  throw new Error('expected an InvalidArgumentError, but nothing was thrown');
}

describe('validateQueueName', () => {
  it.each(['emails', 'a', '0', 'billing.v2_retry-1', 'A'.repeat(100)])('accepts %p and returns it', (name) => {
    expect(validateQueueName(name)).toBe(name);
  });

  it.each(['-emails', '.emails', '_emails', 'has space', 'a:b', 'a/b', 'ünicode', 'A'.repeat(101)])('rejects %p', (name) => {
    const err = rejection(() => validateQueueName(name));
    expect(err.field).toBe('queue');
    expect(err.message).toMatch(/is not a valid queue name/);
  });

  it('rejects an empty name as required', () => {
    expect(rejection(() => validateQueueName('')).message).toBe('queue: is required');
  });

  it('names the given field and reports the invalid_argument kind', () => {
    const err = rejection(() => validateQueueName('bad name', 'request.queue'));
    expect(err).toMatchObject({ name: 'InvalidArgumentError', kind: 'invalid_argument', field: 'request.queue' });
    expect(err.message).toMatch(/^request\.queue: "bad name"/);
  });

  it('shortens a long invalid name in the message to 40 characters', () => {
    const err = rejection(() => validateQueueName(`-${'x'.repeat(200)}`));
    expect(err.message).toContain(`"-${'x'.repeat(39)}…"`);
    expect(err.message).not.toContain('x'.repeat(40));
  });
});

describe('validateScheduleId', () => {
  it('follows the queue-name rules under the schedule.id field', () => {
    expect(validateScheduleId('nightly-report')).toBe('nightly-report');
    expect(rejection(() => validateScheduleId('nightly report')).field).toBe('schedule.id');
  });
});

describe('validateJobName', () => {
  it.each(['send-email', 'reports/daily:v2', 'a.b_c', 'x'.repeat(200)])('accepts %p', (name) => {
    expect(validateJobName(name)).toBe(name);
  });

  it.each(['/leading-slash', ':leading-colon', 'has space', 'x'.repeat(201)])('rejects %p', (name) => {
    const err = rejection(() => validateJobName(name));
    expect(err.field).toBe('job.name');
    expect(err.message).toMatch(/is not a valid job name/);
  });

  it('rejects an empty name as required', () => {
    expect(rejection(() => validateJobName('')).message).toBe('job.name: is required');
  });
});

describe('validateJobId', () => {
  it.each(['order-42', 'tenant/abc.1', '42a', 'x'.repeat(200)])('accepts %p', (id) => {
    expect(validateJobId(id)).toBe(id);
  });

  it.each([
    ['42', 'a plain integer, which BullMQ uses for its own ids'],
    ['a:b', 'a colon, which BullMQ uses in its keys'],
    ['', 'an empty id'],
    ['-a', 'a leading dash'],
    ['x'.repeat(201), 'over 200 characters'],
  ])('rejects %p: %s', (id) => {
    const err = rejection(() => validateJobId(id));
    expect(err.field).toBe('job.options.job_id');
    expect(err.message).toMatch(/is not a valid job id/);
  });
});

describe('validatePayload', () => {
  it('returns the size of the JSON encoding in bytes', () => {
    expect(validatePayload({ to: 'a@b.c' }, 1000)).toBe(Buffer.byteLength('{"to":"a@b.c"}'));
  });

  it('counts UTF-8 bytes, not characters', () => {
    expect(validatePayload('é', 1000)).toBe(4); // "é" with quotes: 1 + 2 + 1
  });

  it('measures missing data as an empty object', () => {
    expect(validatePayload(undefined, 1000)).toBe(2);
    expect(validatePayload(null, 1000)).toBe(2);
  });

  it('accepts data of exactly the limit', () => {
    const data = 'x'.repeat(98); // 100 bytes with the quotes
    expect(validatePayload(data, 100)).toBe(100);
  });

  it('rejects data over the limit with the field name, size and limit in the message', () => {
    let caught: unknown;
    try {
      validatePayload('x'.repeat(99), 100, 'flow.children[2].data');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PayloadTooLargeError);
    expect(caught).toMatchObject({ name: 'PayloadTooLargeError', kind: 'resource_exhausted', field: 'flow.children[2].data', size: 101, limit: 100 });
    expect((caught as Error).message).toBe('flow.children[2].data: payload is 101 bytes, over the limit of 100 bytes');
  });

  it('names the field job.data when none is given', () => {
    expect(() => validatePayload({ blob: 'x'.repeat(DEFAULT_MAX_PAYLOAD_BYTES) }, DEFAULT_MAX_PAYLOAD_BYTES)).toThrow(/^job\.data: payload is \d+ bytes, over the limit of 262144 bytes$/);
  });
});

describe('validateJobOptions', () => {
  it('rejects delay together with run_at', () => {
    expect(() => validateJobOptions({ delayMs: 0, runAt: new Date() })).toThrow(/job\.options\.delay: set delay or run_at, not both/);
  });

  it('rejects a fractional priority', () => {
    expect(() => validateJobOptions({ priority: 1.5 })).toThrow(/job\.options\.priority/);
  });

  it('accepts empty options', () => {
    expect(() => validateJobOptions({})).not.toThrow();
  });

  it('accepts a full set of valid options, including the limits', () => {
    const options: JobOptionsSpec = {
      attempts: 1,
      backoff: { kind: 'exponential', delayMs: 0, maxDelayMs: 60_000, jitter: 1 },
      runAt: new Date('2030-01-01T00:00:00Z'),
      priority: MAX_PRIORITY,
      timeoutMs: 30_000,
      idempotencyKey: 'k'.repeat(512),
      jobId: 'order-42',
      keepCompleted: { count: 0, ageMs: 0 },
      keepFailed: { count: 10, ageMs: 1000 },
    };
    expect(() => validateJobOptions(options)).not.toThrow();
  });

  it.each<[string, JobOptionsSpec, string, RegExp]>([
    ['attempts 0', { attempts: 0 }, 'job.options.attempts', /must be between 1 and 1000, got 0/],
    ['negative attempts', { attempts: -2 }, 'job.options.attempts', /must be between 1 and 1000/],
    ['fractional attempts', { attempts: 1.5 }, 'job.options.attempts', /must be between 1 and 1000, got 1\.5/],
    ['a negative delay', { delayMs: -1 }, 'job.options.delay', /must not be negative, got -1ms/],
    ['an infinite delay', { delayMs: Number.POSITIVE_INFINITY }, 'job.options.delay', /must not be negative/],
    ['a NaN delay (a Duration out of range)', { delayMs: Number.NaN }, 'job.options.delay', /is not a valid google.protobuf.Duration/],
    ['attempts over 1000', { attempts: 2 ** 32 - 1 }, 'job.options.attempts', /must be between 1 and 1000, got 4294967295/],
    ['a delay over 10 years', { delayMs: 2 ** 52 }, 'job.options.delay', /at most 315360000000ms \(10 years\)/],
    ['an invalid run_at', { runAt: new Date('not a date') }, 'job.options.run_at', /is not a valid time/],
    ['a negative priority', { priority: -1 }, 'job.options.priority', /must be between 0 and 2097151, got -1/],
    ['a priority above the maximum', { priority: MAX_PRIORITY + 1 }, 'job.options.priority', /must be between 0 and 2097151/],
    ['a negative timeout', { timeoutMs: -5 }, 'job.options.timeout', /must not be negative/],
    ['an idempotency key over 512 characters', { idempotencyKey: 'k'.repeat(513) }, 'job.options.idempotency_key', /at most 512/],
    ['an invalid job id', { jobId: '123' }, 'job.options.job_id', /is not a valid job id/],
    ['jitter 2', { backoff: { kind: 'fixed', delayMs: 1000, jitter: 2 } }, 'job.options.backoff.jitter', /must be between 0 and 1, got 2/],
    ['negative jitter', { backoff: { kind: 'fixed', delayMs: 1000, jitter: -0.1 } }, 'job.options.backoff.jitter', /between 0 and 1/],
    ['NaN jitter', { backoff: { kind: 'fixed', delayMs: 1000, jitter: Number.NaN } }, 'job.options.backoff.jitter', /between 0 and 1/],
    ['a negative backoff delay', { backoff: { kind: 'fixed', delayMs: -1 } }, 'job.options.backoff.delay', /must not be negative/],
    ['a negative max delay', { backoff: { kind: 'exponential', delayMs: 1, maxDelayMs: -1 } }, 'job.options.backoff.max_delay', /must not be negative/],
    ['a custom backoff without a strategy', { backoff: { kind: 'custom', delayMs: 1 } }, 'job.options.backoff.custom_strategy', /is required/],
    ['a negative keep_completed age', { keepCompleted: { ageMs: -1 } }, 'job.options.keep_completed.age', /must not be negative/],
    ['a negative keep_failed age', { keepFailed: { ageMs: -1 } }, 'job.options.keep_failed.age', /must not be negative/],
  ])('rejects %s', (_what, options, field, message) => {
    const err = rejection(() => validateJobOptions(options));
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });

  it('prefixes fields with the given path of the options message', () => {
    expect(rejection(() => validateJobOptions({ attempts: 0 }, 'flow.children[1].options')).field).toBe('flow.children[1].options.attempts');
  });
});

/** A stand-in engine: libs/core takes the real one (RE2, libs/config) as an argument. */
const jsPattern = (source: string, field: string) => {
  checkPatternLength(source, field);
  try {
    return new RegExp(source);
  } catch (err) {
    throw new InvalidArgumentError(field, `is not a valid regular expression: ${(err as Error).message}`);
  }
};
const validateSpec = (q: QueueSpec) => validateQueueSpec(q, jsPattern);

describe('validateQueueSpec', () => {
  const queue = (overrides: Partial<QueueSpec> = {}): QueueSpec => ({ ...defaultQueueSpec('emails'), ...overrides });

  it('accepts the default spec of a queue', () => {
    expect(() => validateSpec(queue())).not.toThrow();
  });

  it('rejects an invalid queue name under queue.name', () => {
    expect(rejection(() => validateSpec(queue({ name: 'no spaces' }))).field).toBe('queue.name');
  });

  it.each([0, -1, 1.5, 10_001])('rejects concurrency %p', (concurrency) => {
    const err = rejection(() => validateSpec(queue({ concurrency })));
    expect(err.field).toBe('queue.concurrency');
    expect(err.message).toMatch(/must be between 1 and 10000/);
  });

  it('accepts concurrency at both ends of the range', () => {
    expect(() => validateSpec(queue({ concurrency: 1 }))).not.toThrow();
    expect(() => validateSpec(queue({ concurrency: 10_000 }))).not.toThrow();
  });

  it('rejects a rate limit with a max but no positive duration', () => {
    const err = rejection(() => validateSpec(queue({ rateLimit: { max: 10, durationMs: 0 } })));
    expect(err.field).toBe('queue.rate_limit.duration');
  });

  it('accepts a rate limit with a max of 0 whatever its duration', () => {
    expect(() => validateSpec(queue({ rateLimit: { max: 0, durationMs: 0 } }))).not.toThrow();
  });

  it('validates the default job options under queue.default_job_options', () => {
    const err = rejection(() => validateSpec(queue({ defaultJobOptions: { attempts: 0 } })));
    expect(err.field).toBe('queue.default_job_options.attempts');
  });

  it.each<[string, JobOptionsSpec]>([
    ['job_id', { jobId: 'fixed-id' }],
    ['idempotency_key', { idempotencyKey: 'same-key' }],
    ['replay_of', { replayOf: 'q:1:3' }],
  ])('rejects %s as a queue default', (field, defaultJobOptions) => {
    const err = rejection(() => validateSpec(queue({ defaultJobOptions })));
    expect(err.field).toBe(`queue.default_job_options.${field}`);
    expect(err.message).toMatch(/cannot be a queue default/);
  });

  it('rejects a dead-letter rule whose message pattern is not a valid regular expression', () => {
    const deadLetter = {
      rules: [
        { messagePattern: '^timeout', category: 'transient' },
        { messagePattern: '(unclosed', category: 'bug' },
      ],
    };
    const err = rejection(() => validateSpec(queue({ deadLetter })));
    expect(err.field).toBe('queue.dead_letter.rules[1].message_pattern');
    expect(err.message).toMatch(/is not a valid regular expression: .+/);
  });

  it('rejects a dead-letter rule pattern over 1024 characters', () => {
    const err = rejection(() => validateSpec(queue({ deadLetter: { rules: [{ messagePattern: 'a'.repeat(1025), category: 'c' }] } })));
    expect(err.message).toMatch(/1025 characters; at most 1024/);
  });

  it('rejects a dead-letter rule without a category', () => {
    const err = rejection(() => validateSpec(queue({ deadLetter: { rules: [{ errorName: 'TypeError', category: '' }] } })));
    expect(err.field).toBe('queue.dead_letter.rules[0].category');
  });

  it('rejects a negative dead-letter retention age', () => {
    const err = rejection(() => validateSpec(queue({ deadLetter: { retention: { ageMs: -1 } } })));
    expect(err.field).toBe('queue.dead_letter.retention.age');
  });

  it('accepts dead-letter rules with valid patterns', () => {
    const deadLetter = { rules: [{ errorName: 'TimeoutError', messagePattern: 'ETIMEDOUT|ECONNRESET', category: 'network', severity: 'warning' as const }] };
    expect(() => validateSpec(queue({ deadLetter }))).not.toThrow();
  });
});

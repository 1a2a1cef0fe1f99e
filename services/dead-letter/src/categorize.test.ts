import { categorize, DATA_QUARANTINE, errorNameOf, type FailureFacts } from './categorize';

const facts = (over: Partial<FailureFacts> = {}): FailureFacts => ({ jobName: 'send', reason: 'boom', attemptsMade: 3, attempts: 3, ...over });

describe('errorNameOf', () => {
  it('reads the error name from the first line of a stack', () => {
    expect(errorNameOf('UnrecoverableError: bad input\n    at x (y.js:1:1)')).toBe('UnrecoverableError');
    expect(errorNameOf('Error\n    at x')).toBe('Error');
  });
  it('gives an empty name without a stack', () => {
    expect(errorNameOf(undefined)).toBe('');
    expect(errorNameOf('')).toBe('');
  });
});

describe('categorize', () => {
  it('applies the first matching queue rule before any built-in', () => {
    const rules = [
      { jobName: 'other', category: 'NOPE' },
      { errorName: 'TypeError', messagePattern: 'ECONN(REFUSED|RESET)', category: 'network', severity: 'critical' as const },
      { messagePattern: '.*', category: 'CATCH_ALL' },
    ];
    expect(categorize(facts({ reason: 'connect ECONNREFUSED', stack: 'TypeError: connect ECONNREFUSED\n at a' }), rules)).toEqual({ category: 'network', severity: 'critical' });
    expect(categorize(facts({ reason: 'connect ECONNREFUSED', stack: 'Error: x' }), rules)).toEqual({ category: 'CATCH_ALL', severity: 'warning' });
  });

  it('matches a rule on the job name alone', () => {
    expect(categorize(facts({ jobName: 'import' }), [{ jobName: 'import', category: 'IMPORTS', severity: 'info' }])).toEqual({ category: 'IMPORTS', severity: 'info' });
  });

  it('ignores a rule whose pattern is not a valid regex', () => {
    expect(categorize(facts(), [{ messagePattern: '(', category: 'BAD' }]).category).toBe('EXHAUSTED_RETRIES');
  });

  it('matches a catastrophic-backtracking pattern in linear time (RE2), not for a minute', () => {
    const started = Date.now();
    const f = facts({ reason: 'a'.repeat(100_000) });
    expect(categorize(f, [{ messagePattern: '(a+)+b', category: 'NEVER' }]).category).toBe('EXHAUSTED_RETRIES');
    expect(categorize(facts({ reason: `${'a'.repeat(30)}b` }), [{ messagePattern: '(a+)+b', category: 'REDOS' }]).category).toBe('REDOS');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('recognises a job no processor could take, as critical', () => {
    const f = facts({ reason: 'PROCESSOR_NOT_FOUND: no processor for job "x" on queue "q"', stack: 'UnrecoverableError: PROCESSOR_NOT_FOUND: …', attemptsMade: 1 });
    expect(categorize(f)).toEqual({ category: 'PROCESSOR_NOT_FOUND', severity: 'critical' });
  });

  it('recognises an UnrecoverableError from its stack, before the attempts ran out', () => {
    expect(categorize(facts({ reason: 'invalid input', stack: 'UnrecoverableError: invalid input\n at p', attemptsMade: 1 })).category).toBe('UNRECOVERABLE');
  });

  it('recognises a timed-out attempt', () => {
    expect(categorize(facts({ reason: 'attempt timed out after 50 ms', stack: 'TimeoutError: attempt timed out after 50 ms' })).category).toBe('TIMEOUT');
    expect(categorize(facts({ reason: 'x', stack: 'TimeoutError: x' })).category).toBe('TIMEOUT');
  });

  it('files a job that stalled out as STALLED_LIMIT, before UNRECOVERABLE', () => {
    expect(categorize(facts({ reason: 'job stalled more than allowable limit', attemptsMade: 1, stalledOut: true })).category).toBe('STALLED_LIMIT');
    // As BullMQ 6 stores it: an UnrecoverableError of its own, before any attempt finished.
    const stack = 'UnrecoverableError: job stalled more than allowable limit\n    at Worker.processJob (bullmq/dist/cjs/classes/worker.js:578:21)';
    expect(categorize(facts({ reason: 'job stalled more than allowable limit', stack, attemptsMade: 0, stalledOut: true })).category).toBe('STALLED_LIMIT');
  });

  it('calls a job that used every attempt EXHAUSTED_RETRIES', () => {
    expect(categorize(facts({ reason: 'ECONNREFUSED 127.0.0.1:5432', stack: 'Error: ECONNREFUSED' }))).toEqual({ category: 'EXHAUSTED_RETRIES', severity: 'warning' });
  });

  it('guesses from the message when a job failed for good otherwise', () => {
    const early = (reason: string): string => categorize(facts({ reason, attemptsMade: 1, stack: `Error: ${reason}` })).category;
    expect(early('connect ECONNREFUSED 10.0.0.1:443')).toBe('EXTERNAL_SERVICE');
    expect(early('upstream answered 503')).toBe('EXTERNAL_SERVICE');
    expect(early('request timeout')).toBe('EXTERNAL_SERVICE');
    expect(early('SMTP_URL not configured')).toBe('CONFIGURATION');
    expect(early('validation failed: email is invalid')).toBe('DATA');
    expect(early('could not parse row 3')).toBe('DATA');
    expect(early('something odd')).toBe('UNRECOVERABLE');
  });

  it('quarantines DATA dead letters, and those of a rule that says so', () => {
    expect(categorize(facts({ reason: 'malformed row', attemptsMade: 1 }))).toEqual({ category: 'DATA', severity: 'warning', quarantine: DATA_QUARANTINE });
    expect(categorize(facts({ reason: 'connect ECONNREFUSED', attemptsMade: 1 })).quarantine).toBeUndefined();
    const rules = [{ jobName: 'send', category: 'POISON', severity: 'critical' as const, quarantine: true }];
    expect(categorize(facts(), rules)).toEqual({ category: 'POISON', severity: 'critical', quarantine: "the queue's rule for POISON quarantines it" });
  });
});

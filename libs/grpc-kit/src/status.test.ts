import { Metadata, status } from '@grpc/grpc-js';
import { ERROR_TRAILER, InvalidArgumentError, JobNotFoundError, PayloadTooLargeError, QueueNotFoundError, StaleLeaseError, UnavailableError } from '@jobmesh/core';
import { toStatus } from './status';

describe('toStatus', () => {
  it('maps typed errors by kind and keeps their message', () => {
    expect(toStatus(new QueueNotFoundError('q'))).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('"q"') });
    expect(toStatus(new InvalidArgumentError('job.name', 'is required'))).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'job.name: is required' });
    expect(toStatus(new PayloadTooLargeError('job.data', 10, 5))).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect(toStatus(new StaleLeaseError('q', '1'))).toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  // Which errors are a Redis outage is libs/queue's knowledge (redisUnavailable, tested there and,
  // wired into the kit, in libs/host); grpc-kit only maps what a translator recognises.
  it('maps what the translator recognises as the typed error it gives, and knows no backend without one', () => {
    const outage = new Error('Connection is closed.');
    const translate = (err: unknown) => (err === outage ? new UnavailableError('Redis is unavailable: Connection is closed.') : undefined);
    expect(toStatus(outage, translate)).toMatchObject({ code: status.UNAVAILABLE, details: 'Redis is unavailable: Connection is closed.', expected: true });
    expect(toStatus(new Error('other'), translate)).toMatchObject({ code: status.INTERNAL, expected: false });
    expect(toStatus(outage)).toMatchObject({ code: status.INTERNAL, expected: false });
  });

  it('passes on a status from a downstream gRPC call', () => {
    const downstream = Object.assign(new Error('4 DEADLINE_EXCEEDED'), { code: status.DEADLINE_EXCEEDED, details: 'too slow', metadata: new Metadata() });
    expect(toStatus(downstream)).toMatchObject({ code: status.DEADLINE_EXCEEDED, details: 'too slow' });
  });

  it('hides unexpected errors behind INTERNAL with a generic message', () => {
    const mapped = toStatus(new TypeError('cannot read x of undefined'));
    expect(mapped).toMatchObject({ code: status.INTERNAL, expected: false });
    expect(mapped.details).not.toContain('undefined');
  });

  it('cuts an echoed value: a 1 MiB id gives a short message and trailer, not an oversized-metadata error', () => {
    const mapped = toStatus(new JobNotFoundError('q', 'x'.repeat(1024 * 1024)));
    expect(mapped.code).toBe(status.NOT_FOUND);
    expect(mapped.details.length).toBeLessThanOrEqual(1025);
    expect(mapped.details).toMatch(/^job "x+…$/);
    const facts = JSON.parse(String(mapped.metadata!.get(ERROR_TRAILER)[0])) as Record<string, string>;
    expect(facts).toMatchObject({ name: 'JobNotFoundError', queue: 'q' });
    expect(facts.jobId!.length).toBeLessThanOrEqual(257);
  });
});

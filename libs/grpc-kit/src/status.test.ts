import { Metadata, status } from '@grpc/grpc-js';
import { InvalidArgumentError, PayloadTooLargeError, QueueNotFoundError, StaleLeaseError } from '@jobmesh/core';
import { toStatus } from './status';

describe('toStatus', () => {
  it('maps typed errors by kind and keeps their message', () => {
    expect(toStatus(new QueueNotFoundError('q'))).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('"q"') });
    expect(toStatus(new InvalidArgumentError('job.name', 'is required'))).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'job.name: is required' });
    expect(toStatus(new PayloadTooLargeError('job.data', 10, 5))).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect(toStatus(new StaleLeaseError('q', '1'))).toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  it('maps Redis connection failures to UNAVAILABLE', () => {
    for (const message of ["Stream isn't writeable and enableOfflineQueue options is false", 'Connection is closed.', 'connect ECONNREFUSED 127.0.0.1:1', 'Command timed out']) {
      expect(toStatus(new Error(message)).code).toBe(status.UNAVAILABLE);
    }
    expect(toStatus(Object.assign(new Error('x'), { name: 'MaxRetriesPerRequestError' })).code).toBe(status.UNAVAILABLE);
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
});

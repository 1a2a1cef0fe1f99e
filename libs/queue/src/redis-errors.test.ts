import { UnavailableError } from '@jobmesh/core';
import { redisUnavailable } from './redis-errors';

describe('redisUnavailable', () => {
  it('takes ioredis connection failures and timeouts for an UnavailableError that keeps the message and the cause', () => {
    for (const message of ["Stream isn't writeable and enableOfflineQueue options is false", 'Connection is closed.', 'connect ECONNREFUSED 127.0.0.1:1', 'Command timed out']) {
      const err = new Error(message);
      const mapped = redisUnavailable(err);
      expect(mapped).toBeInstanceOf(UnavailableError);
      expect(mapped).toMatchObject({ kind: 'unavailable', message: `Redis is unavailable: ${message}`, cause: err });
    }
    expect(redisUnavailable(Object.assign(new Error('x'), { name: 'MaxRetriesPerRequestError' }))).toBeInstanceOf(UnavailableError);
  });

  it('leaves any other error, and a non-error, alone', () => {
    expect(redisUnavailable(new TypeError('cannot read x of undefined'))).toBeUndefined();
    expect(redisUnavailable(new Error('ERR wrong number of arguments'))).toBeUndefined();
    expect(redisUnavailable(undefined)).toBeUndefined();
    expect(redisUnavailable('Connection is closed.')).toBeUndefined();
  });
});

// What the scheduler's error tests check of every bad call: rejected with the caller's code, and
// nothing written.
import type { RedisClient } from '@jobmesh/testing';
import { keyspace, type SchedulerHarness } from '../src/testing';

/**
 * A check for `h`'s scheduler: runs `call`, expects it rejected like `expected`, and that Redis
 * did not change (the harness's keyspace, and the key count). `redis()` is a plain connection.
 */
export function rejectsWithoutWriting(h: SchedulerHarness, redis: () => RedisClient) {
  return async (call: () => Promise<unknown>, expected: { code: number; details?: unknown }): Promise<void> => {
    const r = redis();
    const before = await keyspace(r, h.prefix);
    const dbsize = await r.dbsize();
    await expect(call()).rejects.toMatchObject(expected);
    expect(await keyspace(r, h.prefix)).toEqual(before);
    expect(await r.dbsize()).toBe(dbsize);
  };
}

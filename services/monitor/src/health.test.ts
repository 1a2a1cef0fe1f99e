import { redisAddress } from './health';

describe('redisAddress', () => {
  it('shows the URL with its password hidden', () => {
    expect(redisAddress({ prefix: 'p', url: 'redis://app:s3cret@redis.internal:6380/2' })).toBe('redis://app:***@redis.internal:6380/2');
    expect(redisAddress({ prefix: 'p' })).toBe('redis://127.0.0.1:6379');
  });

  it('under Sentinel, names the master, the sentinels and the node it is on now, not REDIS_URL', () => {
    const settings = { prefix: 'p', url: 'redis://:pw@ignored:6379', sentinels: '10.0.0.1:26379,10.0.0.2:26379', masterName: 'jobmesh' };
    expect(redisAddress(settings, '10.0.0.7:6379')).toBe('sentinel master jobmesh via 10.0.0.1:26379,10.0.0.2:26379, now 10.0.0.7:6379');
    expect(redisAddress(settings)).toBe('sentinel master jobmesh via 10.0.0.1:26379,10.0.0.2:26379');
  });

  it('on a cluster, names the seed nodes', () => {
    expect(redisAddress({ prefix: 'p', clusterNodes: '10.0.0.1:7000,10.0.0.2:7000' })).toBe('cluster 10.0.0.1:7000,10.0.0.2:7000');
  });
});

import { redisOptions } from './connection';

const base = { prefix: 'jobmesh' };

describe('redisOptions', () => {
  it('takes host, port, username, the percent-decoded password and the db from a redis:// URL', () => {
    const o = redisOptions({ ...base, url: 'redis://user:p%40ss@host:6380/2' }, 'producer');
    expect(o).toMatchObject({ host: 'host', port: 6380, username: 'user', password: 'p@ss', db: 2 });
    expect(o.tls).toBeUndefined();
  });

  it('defaults to 127.0.0.1:6379, db unset and no credentials when no URL is given', () => {
    const o = redisOptions(base, 'worker');
    expect(o).toMatchObject({ host: '127.0.0.1', port: 6379 });
    expect(o.db).toBeUndefined();
    expect(o.username).toBeUndefined();
    expect(o.password).toBeUndefined();
  });

  it('takes a password without a username (redis://:secret@host)', () => {
    const o = redisOptions({ ...base, url: 'redis://:secret@cache.internal' }, 'producer');
    expect(o).toMatchObject({ host: 'cache.internal', port: 6379, password: 'secret' });
    expect(o.username).toBeUndefined();
  });

  it('strips the brackets of an IPv6 host', () => {
    expect(redisOptions({ ...base, url: 'redis://[::1]:6390' }, 'producer')).toMatchObject({ host: '::1', port: 6390 });
  });

  it('turns on TLS with the URL host as servername for rediss://', () => {
    const o = redisOptions({ ...base, url: 'rediss://default:pw@redis.example.com:6380' }, 'producer');
    expect(o).toMatchObject({ host: 'redis.example.com', port: 6380, username: 'default', password: 'pw', tls: { servername: 'redis.example.com' } });
  });

  it('makes a producer fail fast: no offline queue, one retry per request, the configured command timeout', () => {
    const o = redisOptions({ ...base, url: 'redis://host:6380', commandTimeoutMs: 1234 }, 'producer');
    expect(o).toMatchObject({ enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1234 });
  });

  it('gives a producer a 5 s command timeout by default', () => {
    expect(redisOptions({ ...base, url: 'redis://host:6380' }, 'producer').commandTimeout).toBe(5000);
  });

  it('lets a worker connection retry forever, with no command timeout and the offline queue on', () => {
    const o = redisOptions({ ...base, url: 'redis://host:6380', commandTimeoutMs: 1234 }, 'worker');
    expect(o.maxRetriesPerRequest).toBeNull();
    expect(o.commandTimeout).toBeUndefined();
    expect(o.enableOfflineQueue).not.toBe(false);
  });

  it('names the connection and reconnects with a back-off capped at 2 s', () => {
    const o = redisOptions({ ...base, url: 'redis://host:6380' }, 'worker', 'jobmesh:worker');
    expect(o.connectionName).toBe('jobmesh:worker');
    expect([1, 5, 100].map((n) => o.retryStrategy!(n))).toEqual([200, 1000, 2000]);
  });

  it('uses Sentinel when sentinels and a master name are given, with credentials from the URL', () => {
    const o = redisOptions(
      { ...base, sentinels: 'sentinel-a:26379, sentinel-b:26380,sentinel-c', masterName: 'mymaster', url: 'redis://app:s%3Acret@ignored:1' },
      'worker',
    );
    expect(o.sentinels).toEqual([
      { host: 'sentinel-a', port: 26379 },
      { host: 'sentinel-b', port: 26380 },
      { host: 'sentinel-c', port: 26379 },
    ]);
    expect(o).toMatchObject({ name: 'mymaster', username: 'app', password: 's:cret', maxRetriesPerRequest: null });
    expect(o.host).toBeUndefined();
    expect(o.port).toBeUndefined();
  });

  it('percent-decodes the Sentinel username as it does the password', () => {
    const o = redisOptions({ ...base, sentinels: 'sentinel-a:26379', masterName: 'mymaster', url: 'redis://ops%40team:pw@ignored' }, 'worker');
    expect(o).toMatchObject({ username: 'ops@team', password: 'pw' });
  });

  it('uses Sentinel without credentials when no URL is given', () => {
    const o = redisOptions({ ...base, sentinels: 'sentinel-a:26379', masterName: 'mymaster' }, 'producer');
    expect(o).toMatchObject({ name: 'mymaster', enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    expect(o.username).toBeUndefined();
    expect(o.password).toBeUndefined();
  });

  it('refuses sentinels without a master name, and a master name without sentinels, naming the missing one', () => {
    expect(() => redisOptions({ ...base, sentinels: 'sentinel-a:26379', url: 'redis://host:6380' }, 'producer')).toThrow(
      /REDIS_SENTINELS is set but REDIS_MASTER_NAME is not/,
    );
    expect(() => redisOptions({ ...base, masterName: 'mymaster' }, 'worker')).toThrow(/REDIS_MASTER_NAME is set but REDIS_SENTINELS is not/);
  });

  it.each(['sentinel-a:26379,', 'sentinel-a:0', 'sentinel-a:70000', 'sentinel-a:port', 'a b:1'])('refuses the sentinel list "%s", naming the bad entry', (sentinels) => {
    expect(() => redisOptions({ ...base, sentinels, masterName: 'mymaster' }, 'worker')).toThrow(/REDIS_SENTINELS must be "host:port,host:port".*is not a host:port/);
  });

  it('takes an IPv6 sentinel in brackets', () => {
    expect(redisOptions({ ...base, sentinels: '[::1]:26380', masterName: 'm' }, 'worker').sentinels).toEqual([{ host: '::1', port: 26380 }]);
  });

  it('makes a Sentinel connection follow a failover: READONLY reconnects (a worker resends, a producer fails the command)', () => {
    const worker = redisOptions({ ...base, sentinels: 'sentinel-a:26379', masterName: 'm' }, 'worker');
    const producer = redisOptions({ ...base, sentinels: 'sentinel-a:26379', masterName: 'm' }, 'producer');
    const readonly = new Error("READONLY You can't write against a read only replica.");
    expect(worker.reconnectOnError!(readonly)).toBe(2);
    expect(producer.reconnectOnError!(readonly)).toBe(1);
    expect(producer.reconnectOnError!(new Error('ERR unknown command'))).toBe(false);
    expect([1, 5, 100].map((n) => worker.sentinelRetryStrategy!(n))).toEqual([100, 500, 2000]);
    expect(producer.sentinelCommandTimeout).toBe(2000);
  });

  it('leaves a plain URL connection without Sentinel behaviour', () => {
    const o = redisOptions({ ...base, url: 'redis://host:6380' }, 'worker');
    expect(o.reconnectOnError).toBeUndefined();
  });

  it('rejects a URL whose path is not a database number', () => {
    expect(() => redisOptions({ ...base, url: 'redis://host:6379/cache' }, 'producer')).toThrow(/database number.*"\/cache"/);
    expect(() => redisOptions({ ...base, url: 'redis://host:6379/-1' }, 'producer')).toThrow(/database number/);
  });

  it('rejects a URL that is not redis:// or rediss://, naming the scheme it got', () => {
    expect(() => redisOptions({ ...base, url: 'http://host:6379' }, 'producer')).toThrow('REDIS_URL must start with redis:// or rediss://, got http://');
  });
});

import { parseConfigFile } from './config-file';
import { commonEnvSchema } from './env';
import { ConfigError, parseEnv } from './load';

describe('parseConfigFile', () => {
  it('turns a YAML queue declaration into a spec with durations in milliseconds', () => {
    const [q] = parseConfigFile(
      `queues:
  - name: emails
    concurrency: 5
    rate_limit: { max: 100, duration: 1s }
    default_job_options:
      attempts: 5
      backoff: { kind: linear, delay: 2s, max_delay: 1m, jitter: 0.2 }
      timeout: 30s
      keep_failed: { age: 7d }
`,
      'jobmesh.config.yaml',
    );
    expect(q!.spec).toMatchObject({
      name: 'emails',
      concurrency: 5,
      rateLimit: { max: 100, durationMs: 1000 },
      defaultJobOptions: { attempts: 5, backoff: { kind: 'linear', delayMs: 2000, maxDelayMs: 60_000, jitter: 0.2 }, timeoutMs: 30_000, keepFailed: { ageMs: 604_800_000 } },
    });
    expect(q!.setsPaused).toBe(false);
  });

  it('reads a queue\'s dead-letter rules and retention', () => {
    const [q] = parseConfigFile(
      `queues:
  - name: payments
    dead_letter:
      rules:
        - { error_name: CardDeclinedError, category: DECLINED, severity: info }
        - { message_pattern: "ECONNREFUSED", job_name: payments.settle, category: EXTERNAL_SERVICE }
        - { error_name: SchemaError, category: DATA, quarantine: true }
      retention: { count: 500, age: 14d }
`,
      'jobmesh.config.yaml',
    );
    expect(q!.spec.deadLetter).toEqual({
      rules: [
        { errorName: 'CardDeclinedError', category: 'DECLINED', severity: 'info' },
        { messagePattern: 'ECONNREFUSED', jobName: 'payments.settle', category: 'EXTERNAL_SERVICE' },
        { errorName: 'SchemaError', category: 'DATA', quarantine: true },
      ],
      retention: { count: 500, ageMs: 14 * 86_400_000 },
    });
  });

  it('reads a queue\'s processor_wait, leaves it unset when not given, and rejects one over 30 days', () => {
    const [waits, plain] = parseConfigFile(
      `queues:
  - { name: images, processor_wait: 10m }
  - { name: plain }
  - { name: strict, processor_wait: 0s }
`,
      'jobmesh.config.yaml',
    );
    expect(waits!.spec.processorWaitMs).toBe(600_000);
    expect(plain!.spec.processorWaitMs).toBeUndefined();
    expect(parseConfigFile('queues:\n  - { name: strict, processor_wait: 0s }\n', 'c.yaml')[0]!.spec.processorWaitMs).toBe(0);
    expect(() => parseConfigFile('queues:\n  - { name: long, processor_wait: 31d }\n', 'c.yaml')).toThrow(/queues\[0\]\.processor_wait: must be at most 30 days/);
  });

  it('reads JSON when the file name ends in .json', () => {
    const [q] = parseConfigFile('{"queues":[{"name":"a","paused":true}]}', 'x.json');
    expect(q).toMatchObject({ spec: { name: 'a', paused: true }, setsPaused: true });
  });

  it('rejects an unknown key and names where it is', () => {
    expect(() => parseConfigFile('queues:\n  - name: a\n    concurency: 3\n', 'c.yaml')).toThrow(/c\.yaml: queues\.0.*concurency/s);
  });

  it('rejects a bad duration with the accepted forms', () => {
    expect(() => parseConfigFile('queues:\n  - name: a\n    default_job_options: { timeout: soon }\n', 'c.yaml')).toThrow(/"soon" is not a duration/);
  });

  it('rejects an invalid queue name and a queue declared twice', () => {
    expect(() => parseConfigFile('queues:\n  - name: "bad name"\n', 'c.yaml')).toThrow(/queues\[0\]\.name/);
    expect(() => parseConfigFile('queues:\n  - name: a\n  - name: a\n', 'c.yaml')).toThrow(/declared twice/);
  });
});

describe('commonEnvSchema', () => {
  it('applies the documented defaults', () => {
    const env = parseEnv(commonEnvSchema, {});
    expect(env).toMatchObject({
      JOBMESH_MODE: 'development',
      JOBMESH_REDIS_PREFIX: 'jobmesh',
      JOBMESH_GRPC_ADDRESS: '127.0.0.1:50051',
      JOBMESH_HTTP_ADDRESS: '127.0.0.1:9464',
      JOBMESH_MAX_PAYLOAD_BYTES: 262_144,
      JOBMESH_IDEMPOTENCY_TTL: 86_400_000,
      JOBMESH_SHUTDOWN_GRACE: 30_000,
    });
  });

  it('takes REDIS_CLUSTER_NODES as host:port,host:port and refuses anything else, naming the variable', () => {
    expect(parseEnv(commonEnvSchema, { REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001' }).REDIS_CLUSTER_NODES).toBe('10.0.0.1:7000, 10.0.0.2:7001');
    for (const bad of ['10.0.0.1', 'redis://10.0.0.1:7000', '10.0.0.1:7000,', 'a:1;b:2']) {
      expect(() => parseEnv(commonEnvSchema, { REDIS_CLUSTER_NODES: bad })).toThrow(/REDIS_CLUSTER_NODES: must be host:port,host:port/);
    }
  });

  it('lists every bad variable at once', () => {
    try {
      parseEnv(commonEnvSchema, { JOBMESH_GRPC_ADDRESS: 'nope', JOBMESH_MODE: 'prod', JOBMESH_SHUTDOWN_GRACE: 'x' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).issues.map((i) => i.split(':')[0])).toEqual(
        expect.arrayContaining(['JOBMESH_GRPC_ADDRESS', 'JOBMESH_MODE', 'JOBMESH_SHUTDOWN_GRACE']),
      );
    }
  });

  it('takes Sentinel endpoints with or without a port, and treats empty Sentinel settings as unset', () => {
    const env = parseEnv(commonEnvSchema, { REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380,sentinel-c', REDIS_MASTER_NAME: 'jobmesh' });
    expect(env).toMatchObject({ REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380,sentinel-c', REDIS_MASTER_NAME: 'jobmesh' });
    const empty = parseEnv(commonEnvSchema, { REDIS_SENTINELS: '', REDIS_MASTER_NAME: '' });
    expect(empty.REDIS_SENTINELS).toBeUndefined();
    expect(empty.REDIS_MASTER_NAME).toBeUndefined();
  });

  it.each(['10.0.0.1:26379,', 'host:0', 'host:65536', 'host:port', 'a b:26379', '10.0.0.1:26379;10.0.0.2:26379'])(
    'refuses REDIS_SENTINELS=%s, saying what form it takes',
    (value) => {
      expect(() => parseEnv(commonEnvSchema, { REDIS_SENTINELS: value, REDIS_MASTER_NAME: 'jobmesh' })).toThrow(/REDIS_SENTINELS: must be host:port,host:port/);
    },
  );

  it('refuses a REDIS_MASTER_NAME with spaces', () => {
    expect(() => parseEnv(commonEnvSchema, { REDIS_SENTINELS: 'h:26379', REDIS_MASTER_NAME: 'my master' })).toThrow(/REDIS_MASTER_NAME: must be a name without spaces/);
  });
});

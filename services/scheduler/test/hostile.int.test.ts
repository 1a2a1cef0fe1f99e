import * as http2 from 'node:http2';
import { Client, compressionAlgorithms, credentials, Metadata, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import type { DeepPartial } from '@jobmesh/sdk';
import { RawGrpcClient, type RedisClient } from '@jobmesh/testing';
import { keyspace, useSchedulerHarness } from '../src/testing';
import { rejectsWithoutWriting as rejectsWithoutWritingTo } from './rejects';

// Regression tests for what a hostile-input probe found: each bad call is answered with the
// caller's error code, and a rejected call writes nothing.

const h = useSchedulerHarness();
let redis: RedisClient;
beforeAll(() => {
  redis = h.redisClient();
});

const rejectsWithoutWriting = rejectsWithoutWritingTo(h, () => redis);

const details = (text: string) => expect.stringContaining(text);

/** A chain of `levels` jobs: the root, its one child, that one's child, … */
function chain(queue: string, levels: number): DeepPartial<pb.FlowNode> {
  let node: DeepPartial<pb.FlowNode> = { queue, job: { name: `level-${levels}` } };
  for (let i = levels - 1; i >= 1; i--) node = { queue, job: { name: `level-${i}` }, children: [node] };
  return node;
}

describe('flows are bounded before anything is written', () => {
  it('accepts a flow 32 levels deep', async () => {
    const queue = await h.newQueue('deep');
    const { flow } = await h.client.enqueueFlow({ root: chain(queue, 32) });
    expect(flow!.job!.name).toBe('level-1');
  });

  it('refuses a flow 33 levels deep with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('deeper');
    await rejectsWithoutWriting(() => h.client.enqueueFlow({ root: chain(queue, 33) }), { code: status.INVALID_ARGUMENT, details: details('at most 32 levels') });
  });

  it('refuses a flow of 10,001 jobs with INVALID_ARGUMENT, at once', async () => {
    const queue = await h.newQueue('wide');
    const children = Array.from({ length: 10_000 }, (_, i) => ({ queue, job: { name: `child-${i}` } }));
    const started = Date.now();
    await rejectsWithoutWriting(() => h.client.enqueueFlow({ root: { queue, job: { name: 'parent' }, children } }), {
      code: status.INVALID_ARGUMENT,
      details: details('at most 10000 per flow'),
    });
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('CancelJob', () => {
  it('refuses a reason over 1024 characters with INVALID_ARGUMENT and leaves the job as it was', async () => {
    const queue = await h.newQueue('cancel');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await rejectsWithoutWriting(() => h.client.cancelJob(queue, job!.id, 'r'.repeat(8 * 1024 * 1024 - 100)), {
      code: status.INVALID_ARGUMENT,
      details: details('reason: is 8388508 characters; at most 1024'),
    });
    await rejectsWithoutWriting(() => h.client.cancelJob(queue, job!.id, 'r'.repeat(1025)), { code: status.INVALID_ARGUMENT, details: details('at most 1024') });
    expect((await h.client.getJob(queue, job!.id)).state).toBe(pb.JobState.JOB_STATE_WAITING);
    const cancelled = await h.client.cancelJob(queue, job!.id, 'r'.repeat(1024));
    expect(cancelled.job!.state).toBe(pb.JobState.JOB_STATE_CANCELLED);
  });
});

describe('dead-letter rule patterns', () => {
  it('refuses a pattern RE2 cannot match in linear time, and one over 1024 characters, at CreateQueue and UpdateQueue', async () => {
    const rule = (messagePattern: string) => ({ deadLetter: { rules: [{ messagePattern, category: 'C' }] } });
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'lookahead', ...rule('(?=a)b') } }), {
      code: status.INVALID_ARGUMENT,
      details: details('queue.dead_letter.rules[0].message_pattern: is not a valid RE2'),
    });
    const queue = await h.newQueue('rules', rule('(a+)+b'));
    await rejectsWithoutWriting(() => h.client.updateQueue({ queue: { name: queue, ...rule('x'.repeat(1025)) }, updateMask: ['dead_letter'] }), {
      code: status.INVALID_ARGUMENT,
      details: details('at most 1024'),
    });
  });
});

describe('stored and echoed values are bounded', () => {
  it('refuses an 8 MiB queue label, and more than 64 labels, with INVALID_ARGUMENT; ListQueues keeps working', async () => {
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'big-label', labels: { team: 'x'.repeat(8 * 1024 * 1024 - 100) } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('queue.labels[team]: is 8388508 characters; at most 1024'),
    });
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    await rejectsWithoutWriting(() => h.client.createQueue({ queue: { name: 'many-labels', labels } }), { code: status.INVALID_ARGUMENT, details: details('at most 64') });
    await expect(h.client.listQueues({ pageSize: 1000 })).resolves.toBeDefined();
  });

  it('answers a 1 MiB id with NOT_FOUND and a short message, not an oversized-metadata error', async () => {
    const queue = await h.newQueue('echo');
    const err = (await h.client.getJob(queue, 'x'.repeat(1024 * 1024)).catch((e: unknown) => e)) as { code: number; details: string };
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.details.length).toBeLessThanOrEqual(1025);
  });
});

describe('requests that are no valid protobuf message', () => {
  let raw: RawGrpcClient;
  beforeAll(() => {
    raw = new RawGrpcClient(h.address);
  });
  afterAll(() => raw.close());

  async function scrape(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${h.scheduler.httpPort}/metrics`)).text();
  }
  const counted = (text: string, method: string): number => {
    const series = `jobmesh_grpc_requests_total{method="/jobmesh.v1.SchedulerService/${method}",code="INVALID_ARGUMENT"} `;
    const line = text.split('\n').find((l) => l.startsWith(series));
    return line ? Number(line.slice(series.length)) : 0;
  };

  it('answers malformed bytes with INVALID_ARGUMENT, not INTERNAL, writes nothing, and counts the call', async () => {
    const before = await scrape();
    // Field 1 (queue) as a length-delimited string claiming 100 bytes, with 2 there.
    const truncated = Buffer.from([0x0a, 100, 0x61, 0x62]);
    // Wire type 7 does not exist.
    const badWireType = Buffer.from([0x0f]);
    for (const bytes of [truncated, badWireType]) {
      const keys = await keyspace(redis, h.prefix);
      const out = await raw.unary('/jobmesh.v1.SchedulerService/EnqueueJob', bytes);
      expect(out).toMatchObject({ code: status.INVALID_ARGUMENT, details: details('not a valid protobuf message') });
      expect(await keyspace(redis, h.prefix)).toEqual(keys);
    }
    const after = await scrape();
    expect(counted(after, 'EnqueueJob') - counted(before, 'EnqueueJob')).toBe(2);
  });

  it('answers a Duration with seconds 2^62 with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('huge-duration');
    // EnqueueJobRequest{queue, job: JobSpec{name: "x", options: JobOptions{delay: Duration{seconds: 2^62}}}},
    // by hand: 2^62 is beyond what a JS number holds exactly, so no generated client can send it.
    const delay = Buffer.concat([Buffer.from([0x08]), varint(2n ** 62n)]);
    const options = Buffer.concat([Buffer.from([0x1a, delay.length]), delay]); // JobOptions.delay = 3
    const job = Buffer.concat([Buffer.from([0x0a, 1, 0x78, 0x1a, options.length]), options]); // JobSpec.name = 1, options = 3
    const bytes = Buffer.concat([Buffer.from([0x0a, queue.length]), Buffer.from(queue), Buffer.from([0x12, job.length]), job]);
    await rejectsWithoutWriting(async () => {
      const out = await raw.unary('/jobmesh.v1.SchedulerService/EnqueueJob', bytes);
      throw Object.assign(new Error(out.details), out);
    }, { code: status.INVALID_ARGUMENT, details: details('MAX_SAFE_INTEGER') });
  });
});

function varint(n: bigint): Buffer {
  const out: number[] = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return Buffer.from(out);
}

/** `{ a: { a: … { a: 1 } } }`, `levels` objects deep. */
function nested(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

describe('what the contract allows but the backend refused is INVALID_ARGUMENT, not INTERNAL', () => {
  const tooLow = { priority: 2_097_152 };

  it('refuses priority 2097152 in EnqueueJob, EnqueueJobs and EnqueueFlow; 2097151 is the lowest', async () => {
    const queue = await h.newQueue('priority');
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: tooLow } }), { code: status.INVALID_ARGUMENT, details: details('job.options.priority') });
    await rejectsWithoutWriting(() => h.client.enqueueJobs({ queue, jobs: [{ name: 'x' }, { name: 'y', options: tooLow }] }), {
      code: status.INVALID_ARGUMENT,
      details: details('jobs[1].options.priority'),
    });
    await rejectsWithoutWriting(() => h.client.enqueueFlow({ root: { queue, job: { name: 'p' }, children: [{ queue, job: { name: 'c', options: tooLow } }] } }), {
      code: status.INVALID_ARGUMENT,
      details: details('root.children[0].job.options.priority'),
    });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x', options: { priority: 2_097_151 } } });
    expect(job!.state).toBe(pb.JobState.JOB_STATE_PRIORITIZED);
  });

  it('refuses durations beyond 10 years, a run_at in year 9999, and a Duration out of its range', async () => {
    const queue = await h.newQueue('durations');
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { delay: { seconds: 2 ** 52, nanos: 0 } } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('job.options.delay'),
    });
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { timeout: { seconds: 400_000_000, nanos: 0 } } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('at most 315360000000ms (10 years)'),
    });
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { runAt: new Date('9999-01-01T00:00:00Z') } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('job.options.run_at: must be at most 10 years ahead'),
    });
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { delay: { seconds: 1, nanos: 2e9 } } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('job.options.delay: is not a valid google.protobuf.Duration'),
    });
  });

  it('refuses backoff.kind 99 and attempts 2^32-1', async () => {
    const queue = await h.newQueue('options');
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { backoff: { kind: 99 as pb.BackoffKind, delay: { seconds: 1, nanos: 0 } } } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('job.options.backoff.kind: 99 is not a BackoffKind'),
    });
    await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', options: { attempts: 2 ** 32 - 1 } } }), {
      code: status.INVALID_ARGUMENT,
      details: details('job.options.attempts: must be between 1 and 1000'),
    });
  });

  it('refuses a crafted page token with an offset beyond 2^53', async () => {
    const queue = await h.newQueue('token');
    const pageToken = Buffer.from(JSON.stringify({ s: 0, o: 1e20 })).toString('base64url');
    await rejectsWithoutWriting(() => h.client.listJobs({ queue, pageToken }), { code: status.INVALID_ARGUMENT, details: details('page_token') });
  });

  it('answers job data nested past the protobuf recursion limit (33, 1000 levels) with INVALID_ARGUMENT, not INTERNAL; 32 levels are stored', async () => {
    const queue = await h.newQueue('nested');
    await expect(h.client.enqueueJob({ queue, job: { name: 'x', data: nested(32) } })).resolves.toBeDefined();
    for (const levels of [33, 1000]) {
      await rejectsWithoutWriting(() => h.client.enqueueJob({ queue, job: { name: 'x', data: nested(levels) } }), {
        code: status.INVALID_ARGUMENT,
        details: details('recursion limit'),
      });
    }
  });
});

describe('UpsertSchedule', () => {
  const template = { name: 'tick' };

  it('refuses an empty cron with no every, an end_at in the past, and a cron that never fires in its window, with INVALID_ARGUMENT', async () => {
    const queue = await h.newQueue('sched');
    await rejectsWithoutWriting(() => h.client.upsertSchedule({ queue, id: 's1', cron: '', template }), { code: status.INVALID_ARGUMENT, details: details('schedule.cron: is empty') });
    await rejectsWithoutWriting(() => h.client.upsertSchedule({ queue, id: 's2', every: { seconds: 60, nanos: 0 }, endAt: new Date(Date.now() - 60_000), template }), {
      code: status.INVALID_ARGUMENT,
      details: details('schedule.end_at: is in the past'),
    });
    // A day that exists in neither month: the parser takes it, no time ever matches.
    await rejectsWithoutWriting(() => h.client.upsertSchedule({ queue, id: 's4', cron: '0 0 31 2,4 *', template }), {
      code: status.INVALID_ARGUMENT,
      details: details('schedule.cron: "0 0 31 2,4 *" never fires'),
    });
    // Every 1 January at midnight, with a window that closes before the next one.
    const soon = new Date(Date.now() + 60_000);
    const next = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 0, 1));
    await rejectsWithoutWriting(() => h.client.upsertSchedule({ queue, id: 's3', cron: '0 0 1 1 *', endAt: soon, template }), {
      code: status.INVALID_ARGUMENT,
      details: details(`before the first time the schedule fires (${next.toISOString()})`),
    });
  });
});

describe('invalid UTF-8 in keys and ids', () => {
  let raw: RawGrpcClient;
  beforeAll(() => {
    raw = new RawGrpcClient(h.address);
  });
  afterAll(() => raw.close());

  /** An EnqueueJob request whose idempotency key is `key`'s bytes as they are (valid UTF-8 or not). */
  function withKey(queue: string, key: Buffer): Buffer {
    const placeholder = 'K'.repeat(key.length);
    const bytes = Buffer.from(pb.EnqueueJobRequest.encode({ queue, job: pb.JobSpec.fromPartial({ name: 'x', options: { idempotencyKey: placeholder } }) }).finish());
    const at = bytes.indexOf(placeholder);
    key.copy(bytes, at);
    return bytes;
  }

  it('refuses an idempotency key that is not valid UTF-8 with INVALID_ARGUMENT, so two such keys cannot collide on one job', async () => {
    const queue = await h.newQueue('utf8');
    for (const key of [Buffer.from([0x6b, 0xff, 0x31]), Buffer.from([0x6b, 0xfe, 0x31])]) {
      await rejectsWithoutWriting(async () => {
        const out = await raw.unary('/jobmesh.v1.SchedulerService/EnqueueJob', withKey(queue, key));
        throw Object.assign(new Error(out.details), out);
      }, { code: status.INVALID_ARGUMENT, details: details('job.options.idempotency_key: holds invalid UTF-8') });
    }
    // Valid UTF-8 of the same length is taken.
    const ok = await raw.unary('/jobmesh.v1.SchedulerService/EnqueueJob', withKey(queue, Buffer.from('k-1')));
    expect(ok.code).toBe(status.OK);
  });
});

describe('schedule limits (JOBMESH_MAX_SCHEDULES_PER_QUEUE, JOBMESH_MIN_SCHEDULE_INTERVAL)', () => {
  const limited = useSchedulerHarness({ env: { JOBMESH_MAX_SCHEDULES_PER_QUEUE: '3', JOBMESH_MIN_SCHEDULE_INTERVAL: '5s' } });
  const template = { name: 'tick' };
  let limitedRedis: RedisClient;
  beforeAll(() => {
    limitedRedis = limited.redisClient();
  });

  it('refuses one schedule more than the queue may hold with RESOURCE_EXHAUSTED, writing nothing; replacing one still works', async () => {
    const queue = await limited.newQueue('many');
    for (const id of ['s1', 's2', 's3']) await limited.client.upsertSchedule({ queue, id, every: { seconds: 60, nanos: 0 }, template });
    const before = await keyspace(limitedRedis, limited.prefix);
    await expect(limited.client.upsertSchedule({ queue, id: 's4', every: { seconds: 60, nanos: 0 }, template })).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      details: details('has 3 schedules'),
    });
    expect(await keyspace(limitedRedis, limited.prefix)).toEqual(before);
    await expect(limited.client.upsertSchedule({ queue, id: 's1', every: { seconds: 120, nanos: 0 }, template })).resolves.toMatchObject({ id: 's1' });
    // Other queues have their own count.
    const other = await limited.newQueue('other');
    await expect(limited.client.upsertSchedule({ queue: other, id: 's4', every: { seconds: 60, nanos: 0 }, template })).resolves.toMatchObject({ id: 's4' });
  });

  it('refuses an every, or a cron, that fires more often than the minimum interval with INVALID_ARGUMENT', async () => {
    const queue = await limited.newQueue('often');
    await expect(limited.client.upsertSchedule({ queue, id: 'e', every: { seconds: 4, nanos: 0 }, template })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: details('schedule.every: must be at least 5000ms'),
    });
    await expect(limited.client.upsertSchedule({ queue, id: 'c', cron: '* * * * * *', template })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: details('fires every 1000ms; at most once every 5000ms'),
    });
    await expect(limited.client.upsertSchedule({ queue, id: 'ok', cron: '*/5 * * * * *', template })).resolves.toMatchObject({ id: 'ok' });
  });
});

describe('transport limits', () => {
  const small = useSchedulerHarness({ env: { JOBMESH_GRPC_MAX_STREAMS: '7', JOBMESH_MAX_MESSAGE_BYTES: String(64 * 1024) } });

  it('tells each connection the most streams it may open (JOBMESH_GRPC_MAX_STREAMS)', async () => {
    const session = http2.connect(`http://${small.address}`);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.maxConcurrentStreams).toBe(7);
    } finally {
      session.close();
    }
  });

  it('answers a gzip message that inflates past the message limit with RESOURCE_EXHAUSTED, and still serves', async () => {
    const client = new Client(small.address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': compressionAlgorithms.gzip, 'grpc.max_send_message_length': -1 });
    try {
      // 1 MiB of one repeated letter as the queue name: about 1 KiB on the wire once gzipped.
      const bytes = Buffer.from(pb.GetQueueRequest.encode({ name: 'a'.repeat(1024 * 1024) }).finish());
      const out = await new Promise<{ code: number; details: string }>((resolve) =>
        client.makeUnaryRequest('/jobmesh.v1.SchedulerService/GetQueue', (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), {}, (err) =>
          resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '' }),
        ),
      );
      expect(out).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('decompresses to a size larger than 65536') });
    } finally {
      client.close();
    }
    await expect(small.client.listQueues({})).resolves.toBeDefined();
  });
});

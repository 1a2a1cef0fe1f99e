// API keys on every RPC: one `jobmesh up` (every service on one port) with a keys file, and every
// method of every jobmesh.v1 service called with no key, malformed and wrong keys, and a key of each
// role, in and out of its queues. Allowed calls get past auth (their answer may still be NOT_FOUND
// and the like); denials are UNAUTHENTICATED or PERMISSION_DENIED and write nothing to Redis.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChannelCredentials, type ClientDuplexStream, type ClientReadableStream, credentials, loadPackageDefinition, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { type UpHandle, up } from '@jobmesh/cli';
import * as pb from '@jobmesh/contracts';
import { hashSecret } from '@jobmesh/core';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { connectRedis, eventually, keyspace, type RedisClient, type RedisHandle, serviceEnv, startRedis, uniquePrefix } from '@jobmesh/testing';

type Role = 'producer' | 'worker' | 'viewer' | 'admin';
type Client = pb.SchedulerServiceClient | pb.WorkerServiceClient | pb.DeadLetterServiceClient | pb.MonitorServiceClient;

const IN = 'mx-a';
const OUT = 'mx-b';
const KEYS: Record<string, { role: Role; queues: string[]; secret: string }> = {
  producer: { role: 'producer', queues: [IN], secret: 'producer-secret' },
  worker: { role: 'worker', queues: ['mx-a*'], secret: 'worker-secret' },
  viewer: { role: 'viewer', queues: ['*'], secret: 'viewer-secret' },
  admin: { role: 'admin', queues: ['*'], secret: 'admin-secret' },
  'scoped-viewer': { role: 'viewer', queues: [IN], secret: 'scoped-secret' },
};
const bearer = (id: string, secret = KEYS[id]!.secret): string => `Bearer ${id}.${secret}`;

let redis: RedisHandle;
let raw: RedisClient;
let dir: string;
let prefix: string;
let handle: UpHandle;
const clients: Record<'scheduler' | 'worker' | 'deadLetter' | 'monitor', Client> = {} as never;

beforeAll(async () => {
  redis = await startRedis();
  raw = connectRedis(redis.url);
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-auth-'));
  const file = join(dir, 'keys.yaml');
  writeFileSync(file, `keys:\n${Object.entries(KEYS).map(([id, k]) => `  - { id: ${id}, hash: "${hashSecret(k.secret)}", role: ${k.role}, queues: ${JSON.stringify(k.queues)} }`).join('\n')}\n`);
  prefix = uniquePrefix();
  handle = await up(serviceEnv(redis, prefix, { JOBMESH_API_KEYS_FILE: file, LOG_LEVEL: 'silent' }), () => undefined);
  const address = handle.grpcAddress;
  clients.scheduler = new pb.SchedulerServiceClient(address, credentials.createInsecure());
  clients.worker = new pb.WorkerServiceClient(address, credentials.createInsecure());
  clients.deadLetter = new pb.DeadLetterServiceClient(address, credentials.createInsecure());
  clients.monitor = new pb.MonitorServiceClient(address, credentials.createInsecure());
  for (const name of [IN, OUT, 'mx-gone']) await call('scheduler', 'createQueue', { queue: { name } }, bearer('admin'));
});
afterAll(async () => {
  for (const c of Object.values(clients)) c?.close();
  await handle?.stop();
  raw?.disconnect();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const md = (authorization?: string): Metadata => {
  const m = new Metadata();
  if (authorization !== undefined) m.set('authorization', authorization);
  return m;
};
/** The request message `method` takes, filled in from `req` (ts-proto's clients encode whole messages only). */
const message = (method: string, req: unknown): unknown =>
  (pb as unknown as Record<string, { fromPartial(o: unknown): unknown }>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`]!.fromPartial(req);
const deadline = (ms = 5000): { deadline: Date } => ({ deadline: new Date(Date.now() + ms) });

/** A unary call's status code. */
function call(client: keyof typeof clients, method: string, req: unknown, authorization?: string): Promise<number> {
  const c = clients[client] as unknown as Record<string, (r: unknown, m: Metadata, o: object, cb: (err: ServiceError | null) => void) => void>;
  return new Promise((resolve) => c[method]!.call(c, message(method, req), md(authorization), deadline(), (err) => resolve(err ? err.code : status.OK)));
}

/** A server stream's outcome: OK at its first message, else the status it ends with (DEADLINE_EXCEEDED for one that waits, past auth). */
function stream(client: keyof typeof clients, method: string, req: unknown, authorization?: string): Promise<number> {
  const c = clients[client] as unknown as Record<string, (r: unknown, m: Metadata, o: object) => ClientReadableStream<unknown>>;
  return new Promise((resolve) => {
    const s = c[method]!.call(c, message(method, req), md(authorization), deadline(800));
    s.on('data', () => {
      resolve(status.OK);
      s.cancel();
    });
    s.on('error', (err: ServiceError) => resolve(err.code));
    s.on('end', () => resolve(status.OK));
  });
}

/** A bidi stream: `first` written, the outcome of its first answer (an EnqueueStream ack's own error code counts). */
function bidi(client: keyof typeof clients, method: string, first: unknown, authorization?: string): Promise<number> {
  const c = clients[client] as unknown as Record<string, (m: Metadata, o: object) => ClientDuplexStream<unknown, unknown>>;
  return new Promise((resolve) => {
    const s = c[method]!.call(c, md(authorization), deadline());
    s.on('data', (res: { acks?: { error?: { code: number } }[] }) => {
      resolve(res.acks?.[0]?.error?.code ?? status.OK);
      s.cancel();
    });
    s.on('error', (err: ServiceError) => resolve(err.code));
    s.write(message(method, first));
  });
}

interface Case {
  rpc: string;
  /** The roles besides admin that may call it: written here on its own, not read from the code's table. */
  roles: Role[];
  /** Calls it with `queue` in its request, or undefined when it names no queue. */
  run(queue: string, auth?: string): Promise<number>;
  /** queue: the request names one, so a key scoped to mx-a is refused on mx-b; all: it reads across queues, so it needs "*"; none: no queue data. */
  scoped: 'queue' | 'all' | 'none';
}

const lease = (queue: string) => ({ queue, jobId: 'nope', leaseToken: 'nope' });
const C = (rpc: string, roles: Role[], scoped: Case['scoped'], run: Case['run']): Case => ({ rpc, roles, scoped, run });
const CASES: Case[] = [
  C('SchedulerService/CreateQueue', [], 'queue', (q, a) => call('scheduler', 'createQueue', { queue: { name: `${q}-new` } }, a)),
  C('SchedulerService/UpdateQueue', [], 'queue', (q, a) => call('scheduler', 'updateQueue', { queue: { name: q, concurrency: 3 }, updateMask: ['concurrency'] }, a)),
  C('SchedulerService/GetQueue', ['producer', 'viewer'], 'queue', (q, a) => call('scheduler', 'getQueue', { name: q }, a)),
  C('SchedulerService/ListQueues', ['viewer'], 'all', (_q, a) => call('scheduler', 'listQueues', {}, a)),
  C('SchedulerService/PauseQueue', [], 'queue', (q, a) => call('scheduler', 'pauseQueue', { name: q }, a)),
  C('SchedulerService/ResumeQueue', [], 'queue', (q, a) => call('scheduler', 'resumeQueue', { name: q }, a)),
  C('SchedulerService/EnqueueJob', ['producer'], 'queue', (q, a) => call('scheduler', 'enqueueJob', { queue: q, job: { name: 'x', data: { n: 1 } } }, a)),
  C('SchedulerService/EnqueueJobs', ['producer'], 'queue', (q, a) => call('scheduler', 'enqueueJobs', { queue: q, jobs: [{ name: 'x' }, { name: 'y' }] }, a)),
  C('SchedulerService/EnqueueFlow', ['producer'], 'queue', (q, a) => call('scheduler', 'enqueueFlow', { root: { queue: IN, job: { name: 'parent' }, children: [{ queue: q, job: { name: 'child' }, children: [] }] } }, a)),
  C('SchedulerService/EnqueueStream', ['producer'], 'queue', (q, a) => bidi('scheduler', 'enqueueStream', { jobs: [{ seq: 1, queue: q, job: { name: 'x' } }] }, a)),
  C('SchedulerService/GetJob', ['producer', 'viewer'], 'queue', (q, a) => call('scheduler', 'getJob', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/ListJobs', ['producer', 'viewer'], 'queue', (q, a) => call('scheduler', 'listJobs', { queue: q }, a)),
  C('SchedulerService/CancelJob', [], 'queue', (q, a) => call('scheduler', 'cancelJob', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/RetryJob', [], 'queue', (q, a) => call('scheduler', 'retryJob', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/PromoteJob', [], 'queue', (q, a) => call('scheduler', 'promoteJob', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/WatchJob', ['producer', 'viewer'], 'queue', (q, a) => stream('scheduler', 'watchJob', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/UpsertSchedule', [], 'queue', (q, a) => call('scheduler', 'upsertSchedule', { schedule: { id: 'yearly', queue: q, cron: '0 0 1 1 *', template: { name: 'x' } } }, a)),
  C('SchedulerService/GetSchedule', ['viewer'], 'queue', (q, a) => call('scheduler', 'getSchedule', { queue: q, id: 'nope' }, a)),
  C('SchedulerService/ListSchedules', ['viewer'], 'queue', (q, a) => call('scheduler', 'listSchedules', { queue: q }, a)),
  C('SchedulerService/DeleteSchedule', [], 'queue', (q, a) => call('scheduler', 'deleteSchedule', { queue: q, id: 'nope' }, a)),
  C('WorkerService/Connect', ['worker'], 'queue', (q, a) => bidi('worker', 'connect', { hello: { workerId: 'w1', queues: [q], maxInFlight: 1, jobNames: ['nothing'] } }, a)),
  C('WorkerService/LeaseJobs', ['worker'], 'queue', (q, a) => call('worker', 'leaseJobs', { queue: q, max: 1, jobNames: ['nothing'], workerId: 'w2' }, a)),
  C('WorkerService/ExtendLease', ['worker'], 'queue', (q, a) => call('worker', 'extendLease', lease(q), a)),
  C('WorkerService/CompleteJob', ['worker'], 'queue', (q, a) => call('worker', 'completeJob', { complete: lease(q) }, a)),
  C('WorkerService/FailJob', ['worker'], 'queue', (q, a) => call('worker', 'failJob', { fail: { ...lease(q), message: 'no' } }, a)),
  C('WorkerService/ReportProgress', ['worker'], 'queue', (q, a) => call('worker', 'reportProgress', { progress: { ...lease(q), progress: 5 } }, a)),
  C('WorkerService/ListWorkers', ['worker', 'viewer'], 'queue', (q, a) => call('worker', 'listWorkers', { queue: q }, a)),
  C('WorkerService/SaveStep', ['worker'], 'queue', (q, a) => call('worker', 'saveStep', { saveStep: { ...lease(q), requestId: 'r', name: 's', value: 1 } }, a)),
  C('WorkerService/AddChildren', ['worker'], 'queue', (q, a) => call('worker', 'addChildren', { addChildren: { ...lease(IN), requestId: 'r', name: 'c', children: [{ queue: q, name: 'kid' }] } }, a)),
  C('WorkerService/GetChildrenResults', ['worker'], 'queue', (q, a) => call('worker', 'getChildrenResults', { getChildrenResults: { ...lease(q), requestId: 'r' } }, a)),
  C('DeadLetterService/ListDeadLetters', ['viewer'], 'queue', (q, a) => call('deadLetter', 'listDeadLetters', { filter: { queue: q } }, a)),
  C('DeadLetterService/GetDeadLetter', ['viewer'], 'all', (_q, a) => call('deadLetter', 'getDeadLetter', { id: 'nope' }, a)),
  C('DeadLetterService/ReplayDeadLetters', [], 'queue', (q, a) => call('deadLetter', 'replayDeadLetters', { filter: { queue: q } }, a)),
  C('DeadLetterService/StreamReplayDeadLetters', [], 'queue', (q, a) => stream('deadLetter', 'streamReplayDeadLetters', { replay: { filter: { queue: q } } }, a)),
  C('DeadLetterService/PurgeDeadLetters', [], 'queue', (q, a) => call('deadLetter', 'purgeDeadLetters', { filter: { queue: q } }, a)),
  C('DeadLetterService/QuarantineDeadLetters', [], 'all', (_q, a) => call('deadLetter', 'quarantineDeadLetters', { ids: ['nope'], quarantined: true }, a)),
  C('DeadLetterService/GetDeadLetterStats', ['viewer'], 'queue', (q, a) => call('deadLetter', 'getDeadLetterStats', { queue: q }, a)),
  C('DeadLetterService/WatchDeadLetters', ['viewer'], 'queue', (q, a) => stream('deadLetter', 'watchDeadLetters', { filter: { queue: q } }, a)),
  C('MonitorService/GetQueueStats', ['viewer'], 'queue', (q, a) => call('monitor', 'getQueueStats', { queue: q }, a)),
  C('MonitorService/ListQueueStats', ['viewer'], 'all', (_q, a) => call('monitor', 'listQueueStats', {}, a)),
  C('MonitorService/WatchQueueStats', ['viewer'], 'queue', (q, a) => stream('monitor', 'watchQueueStats', { queues: [q], interval: { seconds: 1 } }, a)),
  C('MonitorService/GetSystemHealth', ['viewer'], 'none', (_q, a) => call('monitor', 'getSystemHealth', {}, a)),
  // Last: it deletes the queue it names.
  C('SchedulerService/DeleteQueue', [], 'queue', (q, a) => call('scheduler', 'deleteQueue', { name: q === IN ? 'mx-gone' : q }, a)),
];

const DENIED = [status.UNAUTHENTICATED, status.PERMISSION_DENIED];

/**
 * Every key under the prefix, less what the worker-pool writes on its own (BullMQ's stalled-check
 * stamp) and keys gone between KEYS and TYPE (a lock taken and released).
 */
async function fingerprint(): Promise<Record<string, string>> {
  const keys = await keyspace(raw, prefix);
  return Object.fromEntries(Object.entries(keys).filter(([k, v]) => !k.endsWith(':stalled-check') && v !== 'none:'));
}

/** The fingerprint once the work an allowed call started (a job parked for want of a processor) is over: two reads alike. */
async function settled(): Promise<Record<string, string>> {
  let last = JSON.stringify(await fingerprint());
  return eventually(async () => {
    const now = await fingerprint();
    const same = JSON.stringify(now) === last;
    last = JSON.stringify(now);
    return same ? now : undefined;
  }, 10_000, 'Redis to settle');
}

/** Runs `run` and checks that it answered `code` and left every key under the prefix as it was. */
async function deniedWritingNothing(what: string, run: () => Promise<number>, code: number): Promise<void> {
  const before = await settled();
  const got = await run();
  expect({ what, code: status[got] }).toEqual({ what, code: status[code] });
  expect({ what, keys: await fingerprint() }).toEqual({ what, keys: before });
}

it('lists every method of every jobmesh.v1 service', () => {
  const methods = [pb.SchedulerServiceService, pb.WorkerServiceService, pb.DeadLetterServiceService, pb.MonitorServiceService].flatMap((s) =>
    Object.values(s).map((m) => m.path.replace('/jobmesh.v1.', '')),
  );
  expect(CASES.map((c) => c.rpc).sort()).toEqual(methods.sort());
});

it.each(CASES.map((c) => [c.rpc, c] as const))('%s: allowed, PERMISSION_DENIED or UNAUTHENTICATED for every key', async (_rpc, c) => {
  await deniedWritingNothing('no key', () => c.run(IN), status.UNAUTHENTICATED);
  await deniedWritingNothing('malformed key', () => c.run(IN, 'Bearer not-a-key'), status.UNAUTHENTICATED);
  await deniedWritingNothing('not Bearer', () => c.run(IN, `Basic ${Buffer.from('admin:admin-secret').toString('base64')}`), status.UNAUTHENTICATED);
  await deniedWritingNothing('unknown id', () => c.run(IN, bearer('nobody', 'admin-secret')), status.UNAUTHENTICATED);
  await deniedWritingNothing('wrong secret', () => c.run(IN, bearer('admin', 'viewer-secret')), status.UNAUTHENTICATED);
  for (const role of ['producer', 'worker', 'viewer'] as const) {
    if (c.roles.includes(role)) {
      expect({ role, code: status[await c.run(IN, bearer(role))] }).not.toEqual(expect.objectContaining({ code: expect.stringMatching(/UNAUTHENTICATED|PERMISSION_DENIED/) }));
      // Out of the key's queues (the viewer's are all).
      if (c.scoped === 'queue' && role !== 'viewer') await deniedWritingNothing(`${role} on ${OUT}`, () => c.run(OUT, bearer(role)), status.PERMISSION_DENIED);
    } else {
      await deniedWritingNothing(`role ${role}`, () => c.run(IN, bearer(role)), status.PERMISSION_DENIED);
    }
  }
  // A viewer scoped to one queue: in it as a viewer is; calls that name no queue need "*".
  const scoped = bearer('scoped-viewer');
  if (!c.roles.includes('viewer')) await deniedWritingNothing('scoped viewer, role', () => c.run(IN, scoped), status.PERMISSION_DENIED);
  else if (c.scoped === 'all') await deniedWritingNothing('scoped viewer, no queue named', () => c.run(IN, scoped), status.PERMISSION_DENIED);
  else if (c.scoped === 'none') expect(DENIED).not.toContain(await c.run(IN, scoped));
  else {
    expect(DENIED).not.toContain(await c.run(IN, scoped));
    await deniedWritingNothing(`scoped viewer on ${OUT}`, () => c.run(OUT, scoped), status.PERMISSION_DENIED);
  }
  expect({ role: 'admin', code: status[await c.run(IN, bearer('admin'))] }).not.toEqual(expect.objectContaining({ code: expect.stringMatching(/UNAUTHENTICATED|PERMISSION_DENIED/) }));
});

it('keeps grpc.health.v1 open: a check without a key answers SERVING', async () => {
  const def = loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = (loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: new (a: string, c: ChannelCredentials) => HealthClient } } } }).grpc.health.v1.Health;
  const health = new Health(handle.grpcAddress, credentials.createInsecure());
  try {
    const res = await new Promise<{ status: string }>((resolve, reject) => health.check({ service: 'jobmesh.v1.SchedulerService' }, deadline(), (err, r) => (err ? reject(err) : resolve(r!))));
    expect(res.status).toBe('SERVING');
  } finally {
    health.close();
  }
});

it("keeps KEDA's external scaler open: IsActive without a key answers", async () => {
  const scaler = new pb.keda.ExternalScalerClient(handle.grpcAddress, credentials.createInsecure());
  try {
    const res = await new Promise<pb.keda.IsActiveResponse>((resolve, reject) =>
      scaler.isActive({ name: 'workers', namespace: 'default', scalerMetadata: { queue: IN } }, md(), deadline(), (err, r) => (err ? reject(err) : resolve(r))),
    );
    expect(typeof res.result).toBe('boolean');
  } finally {
    scaler.close();
  }
});

interface HealthClient {
  check(req: { service: string }, opts: object, cb: (err: ServiceError | null, res?: { status: string }) => void): void;
  close(): void;
}

// The keys file at work: `jobmesh keys create` makes a key whose line, added to the file, is taken
// by a running scheduler without a restart, and a key removed is refused (SIGHUP and a bad file
// kept out: libs/grpc-kit/src/auth/api-keys.test.ts); error messages say what is missing and never the secret; production
// mode refuses to start with auth off.
import { execFile } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { hashSecret } from '@jobmesh/core';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { silentLogger } from '@jobmesh/telemetry';
import { eventually, type RedisHandle, serviceEnv, startRedis, uniquePrefix } from '@jobmesh/testing';

const CLI = resolve(__dirname, '../../cli/bin/jobmesh.js');
const run = promisify(execFile);

const ADMIN = `  - { id: admin, hash: "${hashSecret('admin-secret')}", role: admin, queues: ["*"] }`;

let redis: RedisHandle;
let dir: string;
let file: string;
let scheduler: RunningScheduler;
let client: pb.SchedulerServiceClient;

const writeKeys = (lines: string[]): void => {
  // As an editor saves: a new file renamed over the old one.
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `keys:\n${lines.join('\n')}\n`);
  renameSync(tmp, file);
};

beforeAll(async () => {
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-keys-'));
  file = join(dir, 'keys.yaml');
  writeKeys([ADMIN]);
  scheduler = await startScheduler(loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_API_KEYS_FILE: file })), { logger: silentLogger() });
  client = new pb.SchedulerServiceClient(`127.0.0.1:${scheduler.grpcPort}`, credentials.createInsecure());
  await listQueues(`Bearer admin.admin-secret`);
  await createQueue('emails', 'Bearer admin.admin-secret');
});
afterAll(async () => {
  client?.close();
  await scheduler?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const md = (authorization?: string): Metadata => {
  const m = new Metadata();
  if (authorization) m.set('authorization', authorization);
  return m;
};
const opts = () => ({ deadline: new Date(Date.now() + 5000) });

function listQueues(authorization?: string): Promise<pb.ListQueuesResponse> {
  return new Promise((res, rej) => client.listQueues(pb.ListQueuesRequest.fromPartial({}), md(authorization), opts(), (err, r) => (err ? rej(err) : res(r))));
}
function createQueue(name: string, authorization?: string): Promise<pb.CreateQueueResponse> {
  return new Promise((res, rej) => client.createQueue(pb.CreateQueueRequest.fromPartial({ queue: { name } }), md(authorization), opts(), (err, r) => (err ? rej(err) : res(r))));
}
function enqueue(queue: string, authorization?: string): Promise<pb.EnqueueJobResponse> {
  return new Promise((res, rej) => client.enqueueJob(pb.EnqueueJobRequest.fromPartial({ queue, job: { name: 'send' } }), md(authorization), opts(), (err, r) => (err ? rej(err) : res(r))));
}
const failure = (p: Promise<unknown>): Promise<ServiceError> =>
  p.then(
    () => {
      throw new Error('the call succeeded');
    },
    (err: ServiceError) => err,
  );

it('answers UNAUTHENTICATED and PERMISSION_DENIED with what is missing, never the secret', async () => {
  const none = await failure(listQueues());
  expect(none.code).toBe(status.UNAUTHENTICATED);
  expect(none.details).toMatch(/authorization: Bearer <id>\.<secret>/);
  const wrong = await failure(listQueues('Bearer admin.guessed-secret'));
  expect(wrong.code).toBe(status.UNAUTHENTICATED);
  expect(wrong.details).not.toContain('guessed-secret');
});

it('takes a key made by `jobmesh keys create` once its line is in the file, and refuses it once removed, without a restart', async () => {
  const { stdout } = await run(process.execPath, [CLI, 'keys', 'create', '--role', 'producer', '--queues', 'emails,hooks-*', '--id', 'made']);
  const key = /^\s+(made\.[A-Za-z0-9_-]{43})$/m.exec(stdout)?.[1];
  const line = /^\s+- \{ id: "made", .*\}$/m.exec(stdout)?.[0];
  expect(key).toBeDefined();
  expect(line).toBe(`  - { id: "made", hash: "${hashSecret(key!.slice('made.'.length))}", role: producer, queues: ["emails", "hooks-*"] }`);
  // Unknown before it is in the file.
  expect((await failure(enqueue('emails', `Bearer ${key}`))).code).toBe(status.UNAUTHENTICATED);

  writeKeys([ADMIN, line!]);
  const job = await eventually(() => enqueue('emails', `Bearer ${key}`).catch(() => undefined), 10_000, 'the new key to be accepted');
  expect(job.job?.queue).toBe('emails');
  const denied = await failure(enqueue('reports', `Bearer ${key}`));
  expect(denied.code).toBe(status.PERMISSION_DENIED);
  expect(denied.details).toContain('may not use queue "reports"; its queues are emails, hooks-*');
  const role = await failure(createQueue('other', `Bearer ${key}`));
  expect(role.code).toBe(status.PERMISSION_DENIED);
  expect(role.details).toContain('has role producer; jobmesh.v1.SchedulerService/CreateQueue needs role admin');

  // Then the key removed: refused.
  writeKeys([ADMIN]);
  const refused = await eventually(() => failure(enqueue('emails', `Bearer ${key}`)).catch(() => undefined), 10_000, 'the removed key to be refused');
  expect(refused.code).toBe(status.UNAUTHENTICATED);
});

it('refuses to start in production mode with auth off, in one paragraph saying what to do', async () => {
  const env = loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_MODE: 'production' }));
  await expect(startScheduler(env, { logger: silentLogger() })).rejects.toThrow(
    /^JOBMESH_MODE=production refuses to start with auth off: .* set JOBMESH_API_KEYS_FILE to its path/,
  );
});

it('refuses to start with a bad keys file, naming the line and what to fix', async () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, `keys:\n  - { id: ci, hash: "${hashSecret('x')}", role: boss, queues: [a] }\n`);
  const env = loadSchedulerEnv(serviceEnv(redis, uniquePrefix(), { JOBMESH_API_KEYS_FILE: bad }));
  await expect(startScheduler(env, { logger: silentLogger() })).rejects.toThrow(`${bad}: line 2: keys.0.role (key "ci") must be one of producer, worker, viewer, admin`);
});

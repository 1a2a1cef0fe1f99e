import { Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';

/** A SchedulerService that answers UNAVAILABLE `failFirst` times per method, then OK; counts calls. */
let server: Server;
let client: JobmeshClient;
const calls: Record<string, number> = {};
let failFirst = 2;

function flaky<Res>(name: string, ok: () => Res) {
  return (_call: unknown, cb: (err: Partial<ServiceError> | null, res?: Res) => void) => {
    calls[name] = (calls[name] ?? 0) + 1;
    if (calls[name]! <= failFirst) cb({ code: status.UNAVAILABLE, details: 'try again' });
    else cb(null, ok());
  };
}

beforeAll(async () => {
  server = new Server();
  server.addService(pb.SchedulerServiceService, {
    getJob: flaky('getJob', () => pb.GetJobResponse.fromPartial({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }) })),
    listJobs: flaky('listJobs', () => ({ jobs: [], nextPageToken: '' })),
    createQueue: flaky('createQueue', () => ({ queue: pb.QueueConfig.fromPartial({ name: 'q' }) })),
    enqueueJob: flaky('enqueueJob', () => ({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }), deduplicated: false })),
    enqueueJobs: flaky('enqueueJobs', () => ({ jobs: [] })),
  } as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  client = new JobmeshClient({ address: `127.0.0.1:${port}`, timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
});
beforeEach(() => {
  for (const k of Object.keys(calls)) delete calls[k];
  failFirst = 2;
});

it('retries a read on UNAVAILABLE and succeeds on the third try', async () => {
  const job = await client.getJob('q', 'j1');
  expect(job.id).toBe('j1');
  expect(calls.getJob).toBe(3);
  await client.listJobs({ queue: 'q' });
  expect(calls.listJobs).toBe(3);
});

it('gives up after 4 tries', async () => {
  failFirst = 10;
  await expect(client.getJob('q', 'j1')).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.getJob).toBe(4);
});

it('does not retry beyond the call deadline', async () => {
  failFirst = 10;
  await expect(client.getJob('q', 'j1', { timeoutMs: 120 })).rejects.toBeDefined();
  expect(calls.getJob).toBeLessThan(4);
});

it('never retries a non-idempotent call', async () => {
  await expect(client.createQueue({ queue: { name: 'q' } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.createQueue).toBe(1);
});

it('retries enqueueJob only with an idempotency key or a job id', async () => {
  await expect(client.enqueueJob({ queue: 'q', job: { name: 'n' } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJob).toBe(1);
  delete calls.enqueueJob;
  await client.enqueueJob({ queue: 'q', job: { name: 'n', options: { idempotencyKey: 'k1' } } });
  expect(calls.enqueueJob).toBe(3);
  delete calls.enqueueJob;
  await client.enqueueJob({ queue: 'q', job: { name: 'n', options: { jobId: 'id-1' } } });
  expect(calls.enqueueJob).toBe(3);
});

it('retries enqueueJobs only when every job is keyed', async () => {
  await expect(client.enqueueJobs({ queue: 'q', jobs: [{ name: 'a', options: { jobId: 'a' } }, { name: 'b' }] })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJobs).toBe(1);
  delete calls.enqueueJobs;
  await client.enqueueJobs({ queue: 'q', jobs: [{ name: 'a', options: { jobId: 'a' } }, { name: 'b', options: { idempotencyKey: 'b' } }] });
  expect(calls.enqueueJobs).toBe(3);
});

import { Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';

/**
 * A SchedulerService whose first `stall` calls of each method never answer (as a server waiting on
 * a paused Redis), and whose enqueueFlow answers UNAVAILABLE `failFirst` times; counts calls.
 */
let server: Server;
let client: JobmeshClient;
const calls: Record<string, number> = {};
let stall = 0;
let failFirst = 0;

function slow<Res>(name: string, ok: () => Res) {
  return (_call: unknown, cb: (err: Partial<ServiceError> | null, res?: Res) => void) => {
    calls[name] = (calls[name] ?? 0) + 1;
    if (calls[name]! <= stall) return; // never answers; the client's deadline ends the try
    if (calls[name]! <= failFirst) return cb({ code: status.UNAVAILABLE, details: 'try again' });
    cb(null, ok());
  };
}

beforeAll(async () => {
  server = new Server();
  server.addService(pb.SchedulerServiceService, {
    enqueueJob: slow('enqueueJob', () => ({ job: pb.Job.fromPartial({ id: 'j1', queue: 'q' }), deduplicated: true })),
    createQueue: slow('createQueue', () => ({ queue: pb.QueueConfig.fromPartial({ name: 'q' }) })),
    enqueueFlow: slow('enqueueFlow', () => ({ flow: { job: pb.Job.fromPartial({ id: 'root' }), children: [] }, deduplicated: false })),
  } as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  client = new JobmeshClient({ address: `127.0.0.1:${port}`, timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  server.forceShutdown();
});
beforeEach(() => {
  for (const k of Object.keys(calls)) delete calls[k];
  stall = 0;
  failFirst = 0;
});

const keyed = { queue: 'q', job: { name: 'n', options: { idempotencyKey: 'k' } } };

it('with attemptTimeoutMs, gives up a try that gets no answer and retries within the deadline', async () => {
  stall = 2;
  const started = Date.now();
  await expect(client.enqueueJob(keyed, { retry: { attemptTimeoutMs: 300 } })).resolves.toMatchObject({ deduplicated: true });
  expect(calls.enqueueJob).toBe(3);
  // Two tries of 300 ms and two short backoffs, far from the 5 s deadline (a generous bound under load).
  expect(Date.now() - started).toBeLessThan(4000);
});

it('without attemptTimeoutMs, one try may use the whole deadline and DEADLINE_EXCEEDED is not retried', async () => {
  stall = 1;
  await expect(client.enqueueJob(keyed, { timeoutMs: 400 })).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
  expect(calls.enqueueJob).toBe(1);
});

it('stops at the call deadline even when each try has its own', async () => {
  stall = 100;
  const started = Date.now();
  await expect(client.enqueueJob(keyed, { timeoutMs: 700, retry: { attemptTimeoutMs: 200, maxTries: 100 } })).rejects.toMatchObject({
    code: status.DEADLINE_EXCEEDED,
  });
  expect(calls.enqueueJob).toBeGreaterThanOrEqual(2);
  expect(calls.enqueueJob).toBeLessThanOrEqual(4);
  expect(Date.now() - started).toBeLessThan(700 + 1000);
});

it('never retries a call that may not be repeated, with or without attemptTimeoutMs', async () => {
  stall = 1;
  await expect(client.createQueue({ queue: { name: 'q' } }, { timeoutMs: 1000, retry: { attemptTimeoutMs: 200 } })).rejects.toMatchObject({
    code: status.DEADLINE_EXCEEDED,
  });
  expect(calls.createQueue).toBe(1);
});

it('honours maxTries', async () => {
  failFirst = 10;
  await expect(client.enqueueJob(keyed, { retry: { maxTries: 6 } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueJob).toBe(6);
});

it('retries enqueueFlow only when the root has a job_id', async () => {
  failFirst = 2;
  await expect(client.enqueueFlow({ root: { queue: 'q', job: { name: 'p' } } })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  expect(calls.enqueueFlow).toBe(1);
  delete calls.enqueueFlow;
  await expect(client.enqueueFlow({ root: { queue: 'q', job: { name: 'p', options: { jobId: 'root' } } } })).resolves.toMatchObject({ deduplicated: false });
  expect(calls.enqueueFlow).toBe(3);
});

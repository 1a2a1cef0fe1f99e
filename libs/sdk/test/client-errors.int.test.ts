// Typed client errors over the wire: a real scheduler and dead-letter service on port 0 against a
// real Redis; each failed call rejects with the class its status names, with the facts from the
// server's error trailer, and still with the numeric `code` and `details` older callers read.
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import * as core from '@jobmesh/core';
import { loadDeadLetterEnv, type RunningDeadLetter, startDeadLetter } from '@jobmesh/dead-letter';
import { loadSchedulerEnv, type RunningScheduler, startScheduler } from '@jobmesh/scheduler';
import { loadWorkerPoolEnv, ProcessorRegistry, type RunningWorkerPool, startWorkerPool } from '@jobmesh/worker-pool';
import {
  AlreadyExistsError,
  type AnyProcessorDefinition,
  DeadLetterClient,
  DeadLetterNotFoundError,
  defineProcessor,
  InvalidArgumentError,
  JobmeshClient,
  JobNotFoundError,
  NotFoundError,
  QueueNotFoundError,
  RemoteWorker,
  ResourceExhaustedError,
  ScheduleNotFoundError,
  StatusError,
  UnavailableError,
  WorkerRejectedError,
  WorkerRequestError,
} from '@jobmesh/sdk';
import { silentLogger } from '@jobmesh/telemetry';
import { type RedisHandle, serviceEnv, startRedis } from '@jobmesh/testing';

const uniqueQueue = (label: string): string => `${label}-${randomUUID().slice(0, 8)}`;

const schedulerEnv = (redis: RedisHandle, prefix: string) => loadSchedulerEnv(serviceEnv(redis, prefix));

/** The rejection of `call`, which must reject. */
async function rejection(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('the call succeeded; it was expected to fail');
    },
    (err: unknown) => err,
  );
}

describe('against a running scheduler, worker-pool and dead-letter service', () => {
  let redis: RedisHandle;
  let scheduler: RunningScheduler;
  let pool: RunningWorkerPool;
  let deadLetter: RunningDeadLetter;
  let client: JobmeshClient;
  let dlq: DeadLetterClient;
  let queue: string;

  beforeAll(async () => {
    redis = await startRedis();
    const prefix = `t${randomUUID().slice(0, 8)}`;
    scheduler = await startScheduler(schedulerEnv(redis, prefix), { logger: silentLogger() });
    const address = `127.0.0.1:${scheduler.grpcPort}`;
    deadLetter = await startDeadLetter(loadDeadLetterEnv(serviceEnv(redis, prefix, { JOBMESH_SCHEDULER_ADDRESS: address })), { logger: silentLogger() });
    pool = await startWorkerPool(loadWorkerPoolEnv(serviceEnv(redis, prefix)), { logger: silentLogger(), processors: new ProcessorRegistry() });
    client = new JobmeshClient({ address, timeoutMs: 5000 });
    dlq = DeadLetterClient.connect(`127.0.0.1:${deadLetter.grpcPort}`, { timeoutMs: 5000 });
    queue = uniqueQueue('errors');
    await client.createQueue({ queue: { name: queue } });
  });
  afterAll(async () => {
    client?.close();
    dlq?.close();
    await deadLetter?.stop();
    await pool?.stop();
    await scheduler?.stop();
    await redis?.stop();
  });

  it('rejects an enqueue to an unknown queue with QueueNotFoundError carrying code 5, the queue name and the grpc-js error', async () => {
    const missing = uniqueQueue('nope');
    const err = await rejection(client.enqueueJob({ queue: missing, job: { name: 'n' } }));
    expect(err).toBeInstanceOf(QueueNotFoundError);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err).toBeInstanceOf(StatusError);
    // The domain class the server threw holds on the client too.
    expect(err).toBeInstanceOf(core.NotFoundError);
    const e = err as QueueNotFoundError;
    expect(e.queue).toBe(missing);
    expect(e.name).toBe('QueueNotFoundError');
    // What callers written against raw grpc-js errors read stays as it was.
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.code).toBe(5);
    expect(e.details).toContain(`"${missing}"`);
    expect(e.message).toBe(e.details);
    expect(e.cause).toMatchObject({ code: status.NOT_FOUND, details: e.details });
    expect(e.cause).not.toBeInstanceOf(StatusError);
  });

  it('rejects an enqueue without a job name with InvalidArgumentError naming the field job.name', async () => {
    const err = await rejection(client.enqueueJob({ queue, job: { name: '' } }));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toBeInstanceOf(core.InvalidArgumentError);
    expect(err).toMatchObject({ code: status.INVALID_ARGUMENT, field: 'job.name' });
    expect((err as InvalidArgumentError).details).toMatch(/^job\.name: /);
  });

  it('names the job of a batch that is wrong: InvalidArgumentError with field jobs[1].name', async () => {
    const err = await rejection(client.enqueueJobs({ queue, jobs: [{ name: 'ok' }, { name: '' }] }));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).field).toBe('jobs[1].name');
  });

  it('rejects GetJob of an unknown id with JobNotFoundError naming the queue and the id', async () => {
    const err = await rejection(client.getJob(queue, 'no-such-job'));
    expect(err).toBeInstanceOf(JobNotFoundError);
    expect(err).toMatchObject({ code: status.NOT_FOUND, queue, jobId: 'no-such-job' });
  });

  it('rejects GetSchedule of an unknown id with ScheduleNotFoundError naming the queue and the id', async () => {
    const err = await rejection(client.getSchedule(queue, 'no-such-schedule'));
    expect(err).toBeInstanceOf(ScheduleNotFoundError);
    expect(err).toMatchObject({ code: status.NOT_FOUND, queue, scheduleId: 'no-such-schedule' });
  });

  it('rejects CreateQueue of a name that is taken with AlreadyExistsError (code 6)', async () => {
    const err = await rejection(client.createQueue({ queue: { name: queue } }));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err).toMatchObject({ code: status.ALREADY_EXISTS });
  });

  it('rejects a payload over the limit with ResourceExhaustedError naming the field job.data', async () => {
    const err = await rejection(client.enqueueJob({ queue, job: { name: 'big', data: { blob: 'x'.repeat(300 * 1024) } } }));
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, field: 'job.data' });
  });

  it('throws QueueNotFoundError out of a WatchJob stream on an unknown queue', async () => {
    const missing = uniqueQueue('nope');
    const watch = async (): Promise<void> => {
      for await (const _event of client.watchJob(missing, '1')) throw new Error('no event was expected');
    };
    const err = await rejection(watch());
    expect(err).toBeInstanceOf(QueueNotFoundError);
    expect(err).toMatchObject({ code: status.NOT_FOUND, queue: missing });
  });

  it('rejects GetDeadLetter of an unknown id with DeadLetterNotFoundError carrying the id', async () => {
    const err = await rejection(dlq.get('no-such-dead-letter'));
    expect(err).toBeInstanceOf(DeadLetterNotFoundError);
    expect(err).toMatchObject({ code: status.NOT_FOUND, id: 'no-such-dead-letter' });
  });

  describe('a RemoteWorker', () => {
    const workers: RemoteWorker[] = [];
    const worker = (queue: string, processors: AnyProcessorDefinition[] = [defineProcessor({ queue, name: 'j', process: () => null })]): RemoteWorker => {
      const w = new RemoteWorker({ address: `127.0.0.1:${pool.grpcPort}`, workerId: `rw-${queue}`, processors });
      workers.push(w);
      return w;
    };
    afterAll(async () => {
      await Promise.all(workers.map((w) => w.stop({ graceMs: 0 })));
    });

    it('refused for an unknown queue rejects with WorkerRejectedError whose cause is a QueueNotFoundError naming it', async () => {
      const missing = uniqueQueue('rw-nope');
      const err = await rejection(worker(missing).run());
      expect(err).toBeInstanceOf(WorkerRejectedError);
      expect(err).toBeInstanceOf(StatusError);
      expect(err).toMatchObject({ code: status.NOT_FOUND });
      const cause = (err as WorkerRejectedError).cause;
      expect(cause).toBeInstanceOf(QueueNotFoundError);
      expect(cause).toMatchObject({ code: status.NOT_FOUND, queue: missing });
    });

    it('refused for a Hello the server cannot accept has an InvalidArgumentError with the field as its cause', async () => {
      const err = await rejection(worker('not a queue name!').run());
      expect(err).toBeInstanceOf(WorkerRejectedError);
      expect((err as WorkerRejectedError).cause).toBeInstanceOf(InvalidArgumentError);
      expect((err as WorkerRejectedError).cause).toMatchObject({ field: 'hello.queues[0]' });
    });

    it('gives a processor whose children name an unknown queue a WorkerRequestError with a NotFoundError cause', async () => {
      const q = uniqueQueue('rw-fan');
      await client.createQueue({ queue: { name: q } });
      let refused!: (err: unknown) => void;
      const refusal = new Promise<unknown>((resolve) => (refused = resolve));
      const w = worker(q, [
        defineProcessor({
          queue: q,
          name: 'fan-out',
          async process(_job, ctx) {
            try {
              return await ctx.runChildren('kids', [{ name: 'kid', queue: uniqueQueue('no-such') }]);
            } catch (err) {
              refused(err);
              throw err;
            }
          },
        }),
      ]);
      await w.start();
      await client.enqueueJob({ queue: q, job: { name: 'fan-out', options: { attempts: 1 } } });
      const err = await refusal;
      expect(err).toBeInstanceOf(WorkerRequestError);
      expect(err).toBeInstanceOf(StatusError);
      expect(err).toMatchObject({ code: status.NOT_FOUND });
      // A Nack carries a code and a message only, so the cause knows no more than NOT_FOUND.
      expect((err as WorkerRequestError).cause).toBeInstanceOf(NotFoundError);
    });
  });
});

describe('when the server cannot answer', () => {
  it('rejects with UnavailableError (code 14) once the scheduler is gone, for a call that is retried and for one that is not', async () => {
    const redis = await startRedis();
    const scheduler = await startScheduler(schedulerEnv(redis, `t${randomUUID().slice(0, 8)}`), { logger: silentLogger() });
    const client = new JobmeshClient({ address: `127.0.0.1:${scheduler.grpcPort}`, timeoutMs: 5000 });
    try {
      const queue = uniqueQueue('gone');
      await client.createQueue({ queue: { name: queue } });
      await scheduler.stop();
      const once = await rejection(client.enqueueJob({ queue, job: { name: 'n' } }));
      expect(once).toBeInstanceOf(UnavailableError);
      expect(once).toBeInstanceOf(core.UnavailableError);
      expect(once).toMatchObject({ code: status.UNAVAILABLE });
      // A read is retried on UNAVAILABLE, then rejects with the last try's error, typed.
      const retried = await rejection(client.getQueue(queue, { retry: { maxTries: 2 } }));
      expect(retried).toBeInstanceOf(UnavailableError);
      expect(retried).toMatchObject({ code: status.UNAVAILABLE });
    } finally {
      client.close();
      await scheduler.stop();
      await redis.stop();
    }
  });

  it('rejects with UnavailableError when the scheduler answers but its Redis is gone', async () => {
    const redis = await startRedis({ own: true });
    const scheduler = await startScheduler(schedulerEnv(redis, `t${randomUUID().slice(0, 8)}`), { logger: silentLogger() });
    const client = new JobmeshClient({ address: `127.0.0.1:${scheduler.grpcPort}`, timeoutMs: 5000 });
    try {
      const queue = uniqueQueue('no-redis');
      await client.createQueue({ queue: { name: queue } });
      await redis.stop();
      const err = await rejection(client.enqueueJob({ queue, job: { name: 'n' } }));
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/Redis/) });
    } finally {
      client.close();
      await scheduler.stop();
    }
  });
});

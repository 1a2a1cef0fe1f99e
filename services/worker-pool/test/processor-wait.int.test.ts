import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { Keys } from '@jobmesh/queue';
import { defineProcessor } from '@jobmesh/sdk';
import { eventually, uniqueQueue } from '../src/testing';
import { call, type RawStream, unaryClient, useRemotePool } from './remote-helpers';

const S = pb.JobState;
/** A worker-pool with no processors of its own (only the built-ins), that remote workers connect to. */
const h = useRemotePool();
const stream = (): RawStream => h.stream();
const newQueue = (prefix: string, config?: Partial<pb.QueueConfig>): Promise<string> => h.newQueue(prefix, config);

const seconds = (n: number) => ({ seconds: n, nanos: 0 });

/** Resolves once every given job waits for a processor (parked), as GetJob tells. */
async function waitingForProcessor(queue: string, ids: string[], timeoutMs = 20_000): Promise<pb.Job[]> {
  return eventually(
    async () => {
      const jobs = await Promise.all(ids.map((id) => h.client.getJob(queue, id)));
      return jobs.every((j) => j.processorWaitUntil) && jobs;
    },
    timeoutMs,
    'the jobs to wait for a processor',
  );
}

describe('a job whose name nothing serves', () => {
  it('stays WAITING without using an attempt, and is listed as waiting, not delayed', async () => {
    const queue = await newQueue('pw-state');
    const before = Date.now();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'resize', data: { w: 10 }, options: { attempts: 2 } } });
    const [j] = await waitingForProcessor(queue, [job!.id]);
    expect(j).toMatchObject({ state: S.JOB_STATE_WAITING, attemptsMade: 0, failureReason: '', runAt: undefined });
    // The default processor_wait is an hour, counted from when the job first came up to run.
    const until = j!.processorWaitUntil!.getTime();
    expect(until).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(until).toBeLessThan(Date.now() + 3_600_000 + 1000);
    const waiting = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING] });
    expect(waiting.jobs.map((x) => x.id)).toEqual([job!.id]);
    expect(waiting.jobs[0]!.processorWaitUntil).toEqual(j!.processorWaitUntil);
    expect((await h.client.listJobs({ queue, states: [S.JOB_STATE_DELAYED] })).jobs).toEqual([]);
    const all = await h.client.listJobs({ queue });
    expect(all.jobs.map((x) => [x.id, x.state])).toEqual([[job!.id, S.JOB_STATE_WAITING]]);
    // PromoteJob is for delayed jobs; this one runs the moment something serves its name.
    await expect(h.client.promoteJob(queue, job!.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  });

  it('runs within a second of a remote worker saying Hello for its name', async () => {
    const queue = await newQueue('pw-hello');
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await h.client.enqueueJob({ queue, job: { name: 'resize', data: { i } } })).job!.id);
    await waitingForProcessor(queue, ids);
    const s = stream();
    await s.hello({ workerId: 'late-resizer', queues: [queue], jobNames: ['resize'], maxInFlight: 20 });
    const helloAt = Date.now();
    s.stream.write({ credit: { n: 20 } });
    const got = await eventually(() => s.assignments().length === 20 && s.assignments(), 5000, '20 assignments');
    expect(Date.now() - helloAt).toBeLessThan(1000);
    expect(got.map((a) => a.job!.id).sort()).toEqual([...ids].sort());
    expect(got.every((a) => a.attempt === 1 && a.job!.attemptsMade === 0)).toBe(true);
    for (const a of got) s.stream.write({ complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: 'ok' } });
    await eventually(async () => (await h.client.listJobs({ queue, states: [S.JOB_STATE_COMPLETED] })).jobs.length === 20, 10_000, 'all COMPLETED');
  });

  it('is reported by WatchJob as waiting for a processor, not as a retry', async () => {
    const queue = await newQueue('pw-watch');
    // Delayed a little, so the watch is open before a worker-pool takes the job up.
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'watched', options: { delay: { seconds: 0, nanos: 300_000_000 } } } });
    const types: string[] = [];
    const reasons: string[] = [];
    const watching = (async () => {
      for await (const e of h.client.watchJob(queue, job!.id)) {
        types.push(pb.jobEventTypeToJSON(e.type).replace('JOB_EVENT_TYPE_', ''));
        reasons.push(e.reason);
      }
    })();
    await eventually(() => types.includes('WAITING_FOR_PROCESSOR'), 10_000, 'WAITING_FOR_PROCESSOR');
    expect(reasons[types.indexOf('WAITING_FOR_PROCESSOR')]).toMatch(/waits for a processor until \d{4}-/);
    // A second watcher opened now starts from the job's current state.
    const again = h.client.watchJob(queue, job!.id)[Symbol.asyncIterator]();
    expect((await again.next()).value).toMatchObject({ type: pb.JobEventType.JOB_EVENT_TYPE_WAITING_FOR_PROCESSOR });
    await again.return?.(undefined);
    const s = stream();
    await s.hello({ workerId: 'watched-worker', queues: [queue], jobNames: ['watched'] });
    s.stream.write({ credit: { n: 1 } });
    const a = await eventually(() => s.assignments()[0], 5000, 'the assignment');
    s.stream.write({ complete: { queue, jobId: job!.id, leaseToken: a.leaseToken, result: 'seen' } });
    await watching;
    expect(types).not.toContain('RETRY_SCHEDULED');
    expect(types).toEqual(['ADDED', 'WAITING', 'ACTIVE', 'WAITING_FOR_PROCESSOR', 'WAITING', 'ACTIVE', 'COMPLETED']);
  });

  it('runs soon after an in-process processor for its name starts on another replica', async () => {
    const queue = await newQueue('pw-replica');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'thumb', data: { n: 7 } } });
    await waitingForProcessor(queue, [job!.id]);
    const pool = await h.startPool([defineProcessor({ queue, name: 'thumb', process: (j) => ({ doubled: (j.data.n as number) * 2 }) })]);
    const upAt = Date.now();
    try {
      const done = await eventually(async () => {
        const j = await h.client.getJob(queue, job!.id);
        return j.state === S.JOB_STATE_COMPLETED && j;
      }, 15_000, 'COMPLETED');
      // Promoted at the replica's start; if the first replica fetches it first, it hands it off
      // to the new one, which it wakes (processor-wait-replicas.int.test.ts holds the 1 s bound
      // with three replicas). The bound here is loose on purpose: the new replica's start is
      // measured too; the point is that the job runs without using an attempt.
      expect(done.finishedAt!.getTime() - upAt).toBeLessThan(10_000);
      expect(done).toMatchObject({ result: { doubled: 14 }, attemptsMade: 1, processorWaitUntil: undefined });
    } finally {
      await pool.stop();
    }
  });

  it('is handed to a LeaseJobs poll that names it', async () => {
    const queue = await newQueue('pw-lease');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'poll-me' } });
    await waitingForProcessor(queue, [job!.id]);
    const c = unaryClient(h.address);
    try {
      const t0 = Date.now();
      const res = await call<pb.LeaseJobsRequest, pb.LeaseJobsResponse>(c, 'leaseJobs', { queue, max: 1, wait: pb.msToDuration(5000), workerId: 'poller', jobNames: ['poll-me'] });
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(res.assignments.map((a) => a.job!.id)).toEqual([job!.id]);
      await call(c, 'completeJob', { complete: { queue, jobId: job!.id, leaseToken: res.assignments[0]!.leaseToken, result: 1 } });
      await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_COMPLETED, 5000, 'COMPLETED');
    } finally {
      c.close();
    }
  });

  it('fails as PROCESSOR_NOT_FOUND after the queue processor_wait (2s), with one attempt used', async () => {
    const queue = await newQueue('pw-expire', { processorWait: seconds(2) });
    const t0 = Date.now();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody', options: { attempts: 5 } } });
    await waitingForProcessor(queue, [job!.id]);
    const failed = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === S.JOB_STATE_FAILED && j;
    }, 10_000, 'FAILED');
    // Delayed jobs come back on BullMQ's own clock; a generous upper bound for a loaded machine.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(failed.finishedAt!.getTime() - t0).toBeLessThan(5000);
    expect(failed.failureReason).toMatch(/^PROCESSOR_NOT_FOUND: no processor for job "nobody"/);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.processorWaitUntil).toBeUndefined();
  });

  it('is looked at again when the queue processor_wait changes while it waits', async () => {
    const queue = await newQueue('pw-change');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody' } });
    const [j] = await waitingForProcessor(queue, [job!.id]);
    const firstUp = j!.processorWaitUntil!.getTime() - 3_600_000;
    await h.client.updateQueue({ queue: { name: queue, processorWait: seconds(600) }, updateMask: ['processor_wait'] });
    // Counted from when it first came up, under the new setting.
    await eventually(async () => (await h.client.getJob(queue, job!.id)).processorWaitUntil?.getTime() === firstUp + 600_000, 5000, 'the new deadline');
    await h.client.updateQueue({ queue: { name: queue, processorWait: seconds(0) }, updateMask: ['processor_wait'] });
    const failed = await eventually(async () => {
      const x = await h.client.getJob(queue, job!.id);
      return x.state === S.JOB_STATE_FAILED && x;
    }, 5000, 'FAILED');
    expect(failed.failureReason).toMatch(/^PROCESSOR_NOT_FOUND/);
  });

  it('can be cancelled while it waits, and is no longer listed as waiting', async () => {
    const queue = await newQueue('pw-cancel');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody' } });
    await waitingForProcessor(queue, [job!.id]);
    const res = await h.client.cancelJob(queue, job!.id, 'not needed');
    expect(res).toMatchObject({ pending: false, job: { state: S.JOB_STATE_CANCELLED } });
    expect((await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING] })).jobs).toEqual([]);
    expect(await h.redisClient().exists(new Keys(h.prefix).parkedNames(queue), new Keys(h.prefix).parked(queue, 'nobody'))).toBe(0);
  });

  it('fails at once with processor_wait 0', async () => {
    const queue = await newQueue('pw-zero', { processorWait: seconds(0) });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'nobody', options: { attempts: 3 } } });
    const failed = await eventually(async () => {
      const j = await h.client.getJob(queue, job!.id);
      return j.state === S.JOB_STATE_FAILED && j;
    }, 5000, 'FAILED');
    expect(failed.failureReason).toMatch(/^PROCESSOR_NOT_FOUND/);
    expect(failed.attemptsMade).toBe(1);
  });

  it('keeps its deadline when a worker for it comes and goes before it runs', async () => {
    const queue = await newQueue('pw-flap', { processorWait: seconds(3) });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'flaky' } });
    const [first] = await waitingForProcessor(queue, [job!.id]);
    // A worker that serves the name but grants no credit: the job is fetched for it and held...
    const s = stream();
    await s.hello({ workerId: 'no-credit', queues: [queue], jobNames: ['flaky'] });
    await eventually(async () => (await h.client.getJob(queue, job!.id)).state === S.JOB_STATE_ACTIVE, 5000, 'held for the worker');
    // ...until it leaves without running it: the job waits again, with the deadline it had.
    s.close();
    const again = await waitingForProcessor(queue, [job!.id]);
    expect(again[0]!.processorWaitUntil).toEqual(first!.processorWaitUntil);
  });
});

it('served names keep flowing while other names on the same queue wait', async () => {
  const queue = await newQueue('pw-mixed');
  const pool = await h.startPool([defineProcessor({ queue, name: 'served', process: () => 'done' })]);
  try {
    const specs = Array.from({ length: 400 }, (_, i) => ({ name: i % 2 ? 'served' : 'unserved', data: { i } }));
    const { jobs } = await h.client.enqueueJobs({ queue, jobs: specs });
    const served = jobs.filter((_, i) => i % 2);
    const unserved = jobs.filter((_, i) => !(i % 2));
    await eventually(async () => (await h.client.listJobs({ queue, states: [S.JOB_STATE_COMPLETED], pageSize: 1000 })).jobs.length === 200, 20_000, '200 served jobs COMPLETED');
    const waiting = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING], pageSize: 1000 });
    expect(waiting.jobs.map((j) => j.id).sort()).toEqual(unserved.map((j) => j.id).sort());
    expect(waiting.jobs.every((j) => j.name === 'unserved' && j.processorWaitUntil && j.attemptsMade === 0)).toBe(true);
    expect((await h.client.listJobs({ queue, states: [S.JOB_STATE_FAILED] })).jobs).toEqual([]);
    for (const j of served) expect((await h.client.getJob(queue, j.id)).state).toBe(S.JOB_STATE_COMPLETED);
  } finally {
    await pool.stop();
  }
});

it('lists waiting jobs page by page across the ready list and the jobs waiting for a processor', async () => {
  const queue = await newQueue('pw-pages', { paused: true });
  // Paused: the ready jobs stay in the wait list. Jobs of an unserved name parked before the pause.
  await h.client.resumeQueue(queue);
  const parked = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 7 }, (_, i) => ({ name: 'nobody', data: { i } })) })).jobs.map((j) => j.id);
  await waitingForProcessor(queue, parked);
  await h.client.pauseQueue(queue);
  const ready = (await h.client.enqueueJobs({ queue, jobs: Array.from({ length: 5 }, (_, i) => ({ name: 'http.request', data: { i } })) })).jobs.map((j) => j.id);
  const seen: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING], pageSize: 3, pageToken });
    expect(page.jobs.length).toBeLessThanOrEqual(3);
    seen.push(...page.jobs.map((j) => j.id));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken && pages < 10);
  expect(seen.sort()).toEqual([...ready, ...parked].sort());
  expect(pages).toBe(4);
});

it('a job parked while a worker says Hello is not left behind', async () => {
  // 1,000 jobs are being parked while the worker connects: each is either filed before the
  // worker's promotion reads the waiting set, or sees the name served and goes back at once.
  const queue = await newQueue('pw-race');
  const enqueueing = h.client.enqueueJobs({ queue, jobs: Array.from({ length: 1000 }, (_, i) => ({ name: 'racy', data: { i } })) });
  const s = stream();
  await eventually(async () => (await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING] })).jobs.some((j) => j.processorWaitUntil), 10_000, 'parking to begin');
  await s.hello({ workerId: 'racer', queues: [queue], jobNames: ['racy'], maxInFlight: 100 });
  s.stream.write({ credit: { n: 100 } });
  await enqueueing;
  // BullMQ reuses a lock token for the job a slot fetches next, so assignments are told apart by job.
  const done = new Set<string>();
  const completeAll = (): void => {
    for (const a of s.assignments()) {
      if (done.has(a.job!.id)) continue;
      done.add(a.job!.id);
      s.stream.write({ complete: { queue, jobId: a.job!.id, leaseToken: a.leaseToken, result: null } });
      s.stream.write({ credit: { n: 1 } });
    }
  };
  await eventually(() => {
    completeAll();
    return done.size === 1000;
  }, 30_000, 'all 1,000 jobs assigned');
  await eventually(async () => {
    const left = await h.client.listJobs({ queue, states: [S.JOB_STATE_WAITING, S.JOB_STATE_DELAYED, S.JOB_STATE_ACTIVE] });
    return left.jobs.length === 0;
  }, 10_000, 'nothing left waiting');
});

describe('processor_wait settings', () => {
  it('defaults to an hour, and UpdateQueue changes it by its mask', async () => {
    const queue = await newQueue('pw-settings');
    expect((await h.client.getQueue(queue)).processorWait).toEqual(seconds(3600));
    const updated = await h.client.updateQueue({ queue: { name: queue, processorWait: seconds(90) }, updateMask: ['processor_wait'] });
    expect(updated.processorWait).toEqual(seconds(90));
    expect((await h.client.getQueue(queue)).processorWait).toEqual(seconds(90));
  });

  it('rejects a negative or over-30-day processor_wait with INVALID_ARGUMENT naming it', async () => {
    await expect(h.client.createQueue({ queue: { name: uniqueQueue('pw-neg'), processorWait: { seconds: -1, nanos: 0 } } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('queue.processor_wait: must not be negative'),
    });
    const queue = await newQueue('pw-long');
    await expect(h.client.updateQueue({ queue: { name: queue, processorWait: seconds(31 * 86_400) }, updateMask: ['processor_wait'] })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('queue.processor_wait: must be at most 30 days'),
    });
    expect((await h.client.getQueue(queue)).processorWait).toEqual(seconds(3600));
  });
});

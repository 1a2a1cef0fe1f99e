import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { deferred, uniqueQueue, useSchedulerHarness } from '../src/testing';

const h = useSchedulerHarness();

const T = pb.JobEventType;

/**
 * Collects a watch's events. `first` resolves with the first event, which the server sends
 * after it has subscribed, so anything done after it is seen. `done` resolves when the stream ends.
 */
function collect(queue: string, id: string): { events: pb.JobEvent[]; first: Promise<pb.JobEvent>; done: Promise<pb.JobEvent[]> } {
  const events: pb.JobEvent[] = [];
  const first = deferred<pb.JobEvent>();
  const done = (async () => {
    for await (const e of h.client.watchJob(queue, id)) {
      events.push(e);
      if (events.length === 1) first.resolve(e);
    }
    return events;
  })();
  done.catch(() => undefined); // a test that expects an error awaits `done` itself
  return { events, first: first.promise, done };
}

describe('WatchJob', () => {
  it('streams ADDED, ACTIVE, COMPLETED in order for a job run by a worker started after the watch, then ends', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'watched' } });
    const watch = collect(queue, job!.id);
    await expect(watch.first).resolves.toMatchObject({ type: T.JOB_EVENT_TYPE_ADDED, jobId: job!.id, queue });

    h.worker(queue, async () => ({ ok: true }));
    const events = await watch.done;
    expect(events.map((e) => T[e.type])).toEqual(['JOB_EVENT_TYPE_ADDED', 'JOB_EVENT_TYPE_ACTIVE', 'JOB_EVENT_TYPE_COMPLETED']);
    expect(events[2]).toMatchObject({ jobId: job!.id, result: { ok: true } });
  });

  it('streams a string result that looks like a number as the string it is', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'stringly' } });
    const watch = collect(queue, job!.id);
    await watch.first;
    h.worker(queue, async () => '1');
    const events = await watch.done;
    expect(events[events.length - 1]).toMatchObject({ type: T.JOB_EVENT_TYPE_COMPLETED, result: '1' });
  });

  it('sends one COMPLETED event for a job that already completed, and ends', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'quick' } });
    const completed = deferred();
    h.worker(queue, async () => 7).on('completed', () => completed.resolve());
    await completed.promise;

    const events = await collect(queue, job!.id).done;
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: T.JOB_EVENT_TYPE_COMPLETED, jobId: job!.id, result: 7 });
  });

  it('streams FAILED with the reason for a job whose last attempt fails', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'doomed', options: { attempts: 1 } } });
    const watch = collect(queue, job!.id);
    await watch.first;
    h.worker(queue, async () => {
      throw new Error('it broke');
    });
    const events = await watch.done;
    expect(events.at(-1)).toMatchObject({ type: T.JOB_EVENT_TYPE_FAILED, reason: 'it broke' });
  });

  it('streams CANCELLED when the job is cancelled during the watch, and ends', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'later', options: { delay: { seconds: 3600, nanos: 0 } } } });
    const watch = collect(queue, job!.id);
    await watch.first;
    await h.client.cancelJob(queue, job!.id, 'changed my mind');
    const events = await watch.done;
    expect(events.map((e) => T[e.type])).toEqual(['JOB_EVENT_TYPE_ADDED', 'JOB_EVENT_TYPE_CANCELLED']);
    expect(events[1]).toMatchObject({ reason: 'changed my mind' });
  });

  it('sends one CANCELLED event for a job that was already cancelled', async () => {
    const queue = await h.newQueue();
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'x' } });
    await h.client.cancelJob(queue, job!.id, 'gone');
    const events = await collect(queue, job!.id).done;
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: T.JOB_EVENT_TYPE_CANCELLED, reason: 'gone' });
  });

  it('keeps watches on two jobs of one queue apart', async () => {
    const queue = await h.newQueue();
    const a = (await h.client.enqueueJob({ queue, job: { name: 'a' } })).job!;
    const b = (await h.client.enqueueJob({ queue, job: { name: 'b', options: { delay: { seconds: 3600, nanos: 0 } } } })).job!;
    const wa = collect(queue, a.id);
    const wb = collect(queue, b.id);
    await Promise.all([wa.first, wb.first]);
    h.worker(queue, async () => 'a done');
    const eventsA = await wa.done;
    expect(eventsA.every((e) => e.jobId === a.id)).toBe(true);
    expect(eventsA.at(-1)!.type).toBe(T.JOB_EVENT_TYPE_COMPLETED);
    await h.client.cancelJob(queue, b.id);
    const eventsB = await wb.done;
    expect(eventsB.map((e) => T[e.type])).toEqual(['JOB_EVENT_TYPE_ADDED', 'JOB_EVENT_TYPE_CANCELLED']);
  });

  it('rejects a watch of an unknown job with NOT_FOUND', async () => {
    const queue = await h.newQueue();
    await expect(collect(queue, 'nope').done).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('rejects a watch on an unknown queue with NOT_FOUND', async () => {
    await expect(collect(uniqueQueue('missing'), 'x').done).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});

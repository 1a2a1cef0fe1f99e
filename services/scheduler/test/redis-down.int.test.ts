import { status } from '@grpc/grpc-js';
import { uniqueQueue, useSchedulerHarness, waitFor } from '../src/testing';

// A Redis of this file's own, so it can be stopped and restarted; with AOF, as in production, so
// the queue registry survives the restart.
const h = useSchedulerHarness({ ownRedis: true, appendonly: true });

describe('Redis down', () => {
  it('answers UNAVAILABLE well within the deadline instead of hanging, and recovers when Redis is back', async () => {
    const queue = uniqueQueue();
    await h.client.createQueue({ queue: { name: queue } });
    await h.client.enqueueJob({ queue, job: { name: 'before' } });

    await h.redis.stop();
    try {
      for (const call of [
        () => h.client.enqueueJob({ queue, job: { name: 'during' } }, { timeoutMs: 3000 }),
        () => h.client.enqueueJobs({ queue, jobs: [{ name: 'during' }] }, { timeoutMs: 3000 }),
        () => h.client.enqueueJob({ queue, job: { name: 'during', options: { idempotencyKey: 'k' } } }, { timeoutMs: 3000 }),
        () => h.client.getJob(queue, 'x', { timeoutMs: 3000 }),
        () => h.client.listJobs({ queue }, { timeoutMs: 3000 }),
      ]) {
        const started = Date.now();
        await expect(call()).rejects.toMatchObject({ code: status.UNAVAILABLE });
        // A correctness bound (fail fast, never hang until the deadline), not a performance target.
        expect(Date.now() - started).toBeLessThan(3000);
      }
    } finally {
      await h.redis.restart();
    }

    const { job } = await waitFor('enqueue to work again after Redis restarted', () =>
      h.client.enqueueJob({ queue, job: { name: 'after' } }, { timeoutMs: 3000 }),
    );
    await expect(h.client.getJob(queue, job!.id)).resolves.toMatchObject({ name: 'after' });
  });

  it('shuts down promptly while Redis is down, with a watch open, instead of hanging', async () => {
    const queue = uniqueQueue();
    await h.client.createQueue({ queue: { name: queue } });
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'watched' } });
    const watch = h.client.watchJob(queue, job!.id);
    await watch.next(); // the watch is open: its queue has a QueueEvents reader
    const ended = (async () => {
      for await (const _ of watch);
    })().catch(() => undefined); // how it ends is not the point here, only that it does

    await h.redis.stop();
    const started = Date.now();
    await h.stop();
    // Bounded by the 2 s grace period plus the reader's close bound, not by Redis coming back.
    expect(Date.now() - started).toBeLessThan(5000);
    await ended;
  });
});

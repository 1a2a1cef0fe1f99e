import { status } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { deferred, uniqueQueue, useSchedulerHarness, waitFor } from '../src/testing';

const h = useSchedulerHarness();

const S = pb.JobState;

describe('EnqueueFlow', () => {
  it('runs the parent only after its children on two queues completed, then completes it', async () => {
    const a = await h.newQueue('a');
    const b = await h.newQueue('b');
    const { flow } = await h.client.enqueueFlow({
      root: {
        queue: a,
        job: { name: 'assemble', data: { order: 1 } },
        children: [
          { queue: a, job: { name: 'part-a', data: { part: 'a' } } },
          { queue: b, job: { name: 'part-b', data: { part: 'b' } } },
        ],
      },
    });
    const parent = flow!.job!;
    expect(parent).toMatchObject({ queue: a, name: 'assemble', state: S.JOB_STATE_WAITING_CHILDREN });
    expect(flow!.children.map((c) => [c.job!.queue, c.job!.name, c.job!.state])).toEqual([
      [a, 'part-a', S.JOB_STATE_WAITING],
      [b, 'part-b', S.JOB_STATE_WAITING],
    ]);
    const [childA, childB] = flow!.children.map((c) => c.job!);
    await expect(h.client.getJob(a, parent.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING_CHILDREN });
    await expect(h.client.getJob(b, childB!.id)).resolves.toMatchObject({ parent: { queue: a, id: parent.id } });

    // Queue a's worker runs only the child at first; the parent is not runnable yet.
    const parentRan = deferred<Record<string, unknown>>();
    const workerA = h.worker(a, async (job) => {
      if (job.name === 'assemble') {
        parentRan.resolve(await job.getChildrenValues());
        return 'assembled';
      }
      return `done ${job.name}`;
    });
    await waitFor('child a to complete', async () => (await h.client.getJob(a, childA!.id)).state === S.JOB_STATE_COMPLETED);
    await expect(h.client.getJob(a, parent.id)).resolves.toMatchObject({ state: S.JOB_STATE_WAITING_CHILDREN });

    // Pause a so the parent stays visible in waiting once b's child completes.
    await workerA.pause();
    h.worker(b, async (job) => `done ${job.name}`);
    await waitFor('the parent to become runnable', async () => (await h.client.getJob(a, parent.id)).state === S.JOB_STATE_WAITING);

    workerA.resume();
    const childValues = await parentRan.promise;
    expect(Object.values(childValues).sort()).toEqual(['done part-a', 'done part-b']);
    await waitFor('the parent to complete', async () => (await h.client.getJob(a, parent.id)).state === S.JOB_STATE_COMPLETED);
    await expect(h.client.getJob(a, parent.id)).resolves.toMatchObject({ result: 'assembled' });
  });

  it('rejects a flow with a child on an unknown queue with NOT_FOUND and writes nothing', async () => {
    const a = await h.newQueue('a');
    const redis = h.redisClient();
    const before = await redis.dbsize();
    await expect(
      h.client.enqueueFlow({
        root: { queue: a, job: { name: 'p' }, children: [{ queue: uniqueQueue('missing'), job: { name: 'c' } }] },
      }),
    ).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(await redis.dbsize()).toBe(before);
  });

  it('rejects a bad child job name with INVALID_ARGUMENT naming its path', async () => {
    const a = await h.newQueue('a');
    await expect(
      h.client.enqueueFlow({
        root: { queue: a, job: { name: 'p' }, children: [{ queue: a, job: { name: 'ok' } }, { queue: a, job: { name: 'not ok' } }] },
      }),
    ).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('root.children[1].job.name') });
  });

  it('rejects a flow without a root with INVALID_ARGUMENT', async () => {
    await expect(h.client.enqueueFlow({})).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('root') });
  });
});
